"""On-disk store of whole episodes, the exact data that evaluation replays.

Layout under `root`:
  <game>/<split>/h<head>_e<episode>.npz   arrays (zlib level `COMPRESS_LEVEL`):
      ram    [T+1, 128] uint8     RAM before each step and after the last
      action [T] int32            action index in [0, 18)
      reward [T] float32
      screens [T+1, 210, 160] uint8 ALE palette indices aligned with `ram` (native-size
                                    frames), or
      frames  [T+1, H, W, 3] uint8  RGB frames aligned with `ram` (resized frames, and every
                                    store written before palette frames)
  <game>/<split>/h<head>_e<episode>.json  the episode's index entry
      {game, head, episode, split, length, seed, terminal}
  index.json   all entries, rebuilt by `write_index` (a convenience; the per-episode JSON files are
               authoritative).

Reads rebuild RGB from `screens` (`rmr_dist.envs.atari_palette`, exact) unless asked for the stored
form (`read_arrays(..., rgb=False)`, the learner's batches), so `Episode.frames` and the array
`frames` mean RGB to every reader, whichever form the store holds.

Writes are atomic: each file is written to a temporary name in the same directory, fsynced and
renamed (in an object store, each object is put whole: `rmr_dist.storage`). The JSON entry is
written after the npz, so an episode is in the store only when both exist, and a crash can never
leave a half-written episode visible.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.envs import atari_palette

_NATIVE = (210, 160)  # ALE's screen: the only size stored as palette indices.


@dataclasses.dataclass(frozen=True)
class Episode:
  """A whole episode.

  Attributes:
    ram: [T+1, 128] uint8.
    action: [T] int32.
    reward: [T] float32.
    frames: [T+1, H, W, 3] uint8 RGB, or [T+1, 210, 160] uint8 palette indices.
  """
  ram: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  frames: np.ndarray

  def __post_init__(self):
    t = len(self.action)
    if self.ram.shape != (t + 1, 128) or self.ram.dtype != np.uint8:
      raise ValueError(f'ram must be [{t + 1}, 128] uint8, got {self.ram.shape} {self.ram.dtype}')
    if self.reward.shape != (t,):
      raise ValueError(f'reward must be [{t}], got {self.reward.shape}')
    rgb = self.frames.ndim == 4 and self.frames.shape[-1] == 3
    indices = self.frames.ndim == 3 and self.frames.shape[1:] == _NATIVE
    if self.frames.shape[0] != t + 1 or not (rgb or indices) or self.frames.dtype != np.uint8:
      raise ValueError(f'frames must be [{t + 1}, H, W, 3] uint8 RGB or [{t + 1}, 210, 160] '
                       f'uint8 palette indices, got {self.frames.shape} {self.frames.dtype}')

  @property
  def length(self) -> int:
    return len(self.action)


# zlib level of the episode files. Collectors write every episode here with
# `collect.store_all_episodes`, in their hot loop. On Pong, level 3 instead of numpy's default 6
# lifts that collector from 0.62 to 0.74 of bare ALE, for files 2.1x larger (286 vs 134 bytes a
# step): `python -m rmr_dist.bench collect [--store-compress-level 6]`, `ratio_with_store`,
# `store_bytes_per_step`.
COMPRESS_LEVEL = 3


class EpisodeStore:
  """Reads and writes episodes under `root` (see the module docstring)."""

  def __init__(self, root: str):
    self.root = storage.normalize(root)

  def _stem(self, game: str, split: str, head: int, episode: int) -> str:
    return storage.join(self.root, game, split, f'h{head:03d}_e{episode:03d}')

  def contains(self, game: str, split: str, head: int, episode: int) -> bool:
    """Whether the episode was completely written."""
    return storage.exists(self._stem(game, split, head, episode) + '.json')

  def write(self, episode: Episode, *, game: str, split: str, head: int, episode_index: int,
            **extra: Any) -> dict[str, Any]:
    """Atomically writes an episode and its index entry; returns the entry."""
    stem = self._stem(game, split, head, episode_index)
    storage.makedirs(storage.dirname(stem))
    frames_key = 'screens' if atari_palette.is_palette(episode.frames) else 'frames'
    workdir_lib.atomic_write_npz(stem + '.npz', compress_level=COMPRESS_LEVEL, ram=episode.ram,
                                 action=episode.action.astype(np.int32),
                                 reward=episode.reward.astype(np.float32),
                                 **{frames_key: episode.frames})
    entry = dict(game=game, head=head, episode=episode_index, split=split,
                 length=episode.length, **extra)
    workdir_lib.atomic_write_json(stem + '.json', entry)
    return entry

  def entries(self, game: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """Index entries of complete episodes, sorted by (game, split, head, episode)."""
    pattern = storage.join(self.root, game or '*', split or '*', 'h*_e*.json')
    out = [json.loads(storage.read_text(path)) for path in storage.glob(pattern)]
    return sorted(out, key=lambda e: (e['game'], e['split'], e['head'], e['episode']))

  def read(self, game: str, split: str, head: int, episode: int) -> Episode:
    """Loads one episode (RGB frames); raises FileNotFoundError naming it if it is not in the
    store."""
    return Episode(**self.read_arrays(game, split, head, episode,
                                      ('ram', 'action', 'reward', 'frames')))

  def read_arrays(self, game: str, split: str, head: int, episode: int,
                  names: tuple[str, ...], rgb: bool = True) -> dict[str, np.ndarray]:
    """Loads only the arrays `names` (of ram, action, reward, frames) of one episode: the
    others are not decompressed. `frames` is RGB [T+1, H, W, 3] (rebuilt from palette indices
    where the store holds them), or with `rgb=False` as stored (also [T+1, 210, 160] indices).
    Raises FileNotFoundError naming it if it is not in the store."""
    stem = self._stem(game, split, head, episode)
    if not storage.exists(stem + '.json'):
      raise FileNotFoundError(f'No episode game={game} split={split} head={head} '
                              f'episode={episode} in store {self.root}')
    with storage.open_binary(stem + '.npz') as f, np.load(f) as data:
      out = {name: data['screens' if name == 'frames' and 'screens' in data.files else name]
             for name in names}
    if rgb and 'frames' in out:
      out['frames'] = atari_palette.to_rgb(out['frames'])
    return out

  def write_index(self) -> str:
    """Rebuilds `index.json` from the per-episode entries; returns its path."""
    path = storage.join(self.root, 'index.json')
    workdir_lib.atomic_write_json(path, self.entries())
    return path
