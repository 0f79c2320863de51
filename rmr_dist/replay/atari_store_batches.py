"""Learner batches from the on-disk episode store, in the Reverb iterator's format, without Reverb.

With `replay.learner_source='store'` (and `collect.store_all_episodes=True`, so the training
episodes are in the store too) the learner stages read their batches here instead of from the
Reverb tables. A batch is what `iterators.make_table_iterator` yields for the same table:

  abstract: ram_t [B,128] uint8, action [B,18] uint8 one-hot, ram_tp1 [B,128] uint8
  natural:  frame_t [B,H,W,3] uint8, action [B,18] uint8 one-hot, frame_tp1 [B,H,W,3] uint8,
            ram_t [B,128] uint8 (frames as the store holds them: [B,210,160] palette indices
            for native-size frames, as in the Reverb table)

over the same items: every transition t -> t+1 of the game's training episodes, for a natural
data fraction f < 1 only those of the episodes in the fraction (`splits.in_fraction`, the rule the
collectors use to fill `natural_<game>_f<pct>`). Sampling is the tables' too: uniform, i.i.d.,
with replacement. Unlike Reverb's sampling it is seeded. One difference: a Reverb table holds at
most `replay.*_max_size` items (the oldest leave first); the store keeps every episode.

With `frame_stack` K > 1 (`natural.frame_stack`; the store only) each frame is the stack of the
K most recent frames, oldest first: frame_t [B,K,H,W,3] holds steps t-K+1 .. t and frame_tp1
[B,K,H,W,3] steps t-K+2 .. t+1, where steps before the episode's first repeat its first frame
(C-SWM's Atari inputs are two consecutive frames, so the encoder can see velocities).

The episodes are read once into memory (one copy of each frame: the transitions index into the
episode arrays); an abstract source never decompresses frames.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterator

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist.envs import atari
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import splits
from rmr_dist.replay import atari_table_names

_ONE_HOT = np.eye(atari.NUM_ACTIONS, dtype=np.uint8)  # Row a is the one-hot of action a.


class StoreTransitions:
  """Every training transition of one table's episodes, held as whole-episode arrays.

  Args:
    root: the episode store's directory (`WorkDir.episodes`).
    kind: 'abstract' or 'natural' (natural also loads frames).
    game: the game.
    fraction: the natural table's data fraction (1.0: every training episode).
    seed: the config's root seed (ranks episodes for data fractions).
    frame_stack: K, frames per natural input (the module docstring).

  Raises:
    ConfigError: the store holds no training episode of `game` (collected without
      `collect.store_all_episodes=True`).
  """

  def __init__(self, root: str, kind: str, game: str, fraction: float = 1.0, seed: int = 0,
               frame_stack: int = 1):
    table = atari_table_names.table_name(kind, game, fraction)  # Validates kind and fraction.
    if frame_stack < 1:
      raise ValueError(f'frame_stack={frame_stack} must be >= 1')
    store = atari_episode_store.EpisodeStore(root)
    train = store.entries(game, splits.TRAIN)
    entries = [e for e in train
               if splits.in_fraction(seed, game, e['head'], e['episode'], fraction)]
    if not train:
      raise config_lib.ConfigError(
          f'replay.learner_source=store: the episode store {store.root} holds no training '
          f'episodes of {game!r}; collect with collect.store_all_episodes=True (a fresh '
          '--workdir), or use replay.learner_source=reverb.')
    if not entries:
      raise config_lib.ConfigError(f'No training episode of {game!r} falls in data fraction '
                                   f'{fraction} ({table}); raise natural.data_fractions.')
    self.kind, self.table, self.frame_stack = kind, table, frame_stack
    rams, actions, frames, starts, firsts, offset = [], [], [], [], [], 0
    names = ('ram', 'action') + (('frames',) if kind == atari_table_names.NATURAL else ())
    for e in entries:
      ep = store.read_arrays(game, splits.TRAIN, e['head'], e['episode'], names, rgb=False)
      length = len(ep['action'])  # T
      rams.append(ep['ram'])  # [T+1, 128]
      actions.append(np.append(ep['action'], 0))  # [T+1]; the last step has no action.
      if 'frames' in ep:
        frames.append(ep['frames'])  # [T+1, H, W, 3] RGB or [T+1, 210, 160] palette
      starts.append(offset + np.arange(length))  # Steps t that begin a transition.
      firsts.append(np.full(length + 1, offset))  # Each step's episode's first step.
      offset += length + 1
    self.ram = np.concatenate(rams)  # [S, 128] uint8 over all steps S of the episodes.
    self.action = np.concatenate(actions).astype(np.int64)  # [S]
    self.frames = np.concatenate(frames) if frames else None  # [S, H, W(, 3)] uint8
    self.starts = np.concatenate(starts)  # [N] step index of each transition's t.
    self.first_step = np.concatenate(firsts)  # [S] the first step of each step's episode.
    # Positions [offsets[e], offsets[e+1]) of self.starts are episode e's transitions.
    self.episode_offsets = np.concatenate([[0], np.cumsum([len(x) for x in starts])])  # [E+1]

  def __len__(self) -> int:
    return len(self.starts)

  def batch(self, index: np.ndarray) -> dict[str, np.ndarray]:
    """The items of transitions `index` [B] (positions in 0..len-1), as Reverb yields them."""
    t = self.starts[index]  # [B]
    out = {'ram_t': self.ram[t], 'action': _ONE_HOT[self.action[t]]}
    if self.kind == atari_table_names.ABSTRACT:
      out['ram_tp1'] = self.ram[t + 1]
    else:
      out['frame_t'], out['frame_tp1'] = self._frames(t), self._frames(t + 1)
    return out

  def _frames(self, t: np.ndarray) -> np.ndarray:
    """Steps t [B] -> frames [B, H, W(, 3)], or with frame_stack K > 1 [B, K, H, W(, 3)]."""
    if self.frame_stack == 1:
      return self.frames[t]
    return self.frames[stack_steps(t, self.first_step[t], self.frame_stack)]


def stack_steps(t: np.ndarray, first: np.ndarray | int, frame_stack: int) -> np.ndarray:
  """[B, K] steps t-K+1 .. t of each step t [B] (oldest first), none before `first` (its
  episode's first step, [B] or a scalar): the frames of a K-frame natural input."""
  back = np.arange(frame_stack - 1, -1, -1)  # [K] K-1 .. 0 steps back
  return np.maximum(np.asarray(t)[:, None] - back, np.asarray(first)[..., None])


def batch_seed(seed: int, table: str, process_index: int = 0) -> np.random.SeedSequence:
  """The sampling seed of one learner process reading `table`."""
  return np.random.SeedSequence([seed, zlib.crc32(table.encode()), process_index, 0x5704E])


def one_episode_index(offsets: np.ndarray, batch_size: int, rng: np.random.Generator,
                      window: int = 0) -> np.ndarray:
  """[B] positions of one episode's transitions: the episode drawn with probability
  proportional to its length, then B distinct transitions of it uniformly (with replacement
  only if it has fewer than B), so each transition is in a batch with probability B/N, as in
  uniform sampling, and no next frame is its own negative.

  With ``window`` W > 0 the B transitions are drawn from W consecutive ones of the episode
  (the window's start uniform over the episode), so the negatives are a few steps apart and
  differ in what moves rather than in the score. A transition within W - 1 steps of either end
  of its episode is then covered by fewer windows, so it is drawn less often than the others.

  Args:
    offsets: [E+1] episode bounds (`StoreTransitions.episode_offsets`).
    batch_size: B.
    rng: the sampler's generator.
    window: W, consecutive transitions a batch is drawn from; 0 = the whole episode.
  """
  lengths = np.diff(offsets)  # [E]
  e = rng.choice(len(lengths), p=lengths / lengths.sum())
  if window <= 0:
    return offsets[e] + rng.choice(lengths[e], batch_size, replace=lengths[e] < batch_size)
  span = min(window, lengths[e])
  first = offsets[e] + rng.integers(lengths[e] - span + 1)
  return first + rng.choice(span, batch_size, replace=span < batch_size)


def make_store_iterator(root: str, kind: str, game: str, batch_size: int, *,
                        fraction: float = 1.0, seed: int = 0, process_index: int = 0,
                        one_episode: bool = False, window: int = 0,
                        frame_stack: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless uniform i.i.d. batches (with replacement) of one table's items from the store,
  or with `one_episode` batches of one episode each (`one_episode_index`).

  Args:
    root: the episode store's directory.
    kind: 'abstract' or 'natural'.
    game: the game.
    batch_size: items per batch (B).
    fraction: natural data fraction (1.0: all training episodes).
    seed: the config's root seed.
    process_index: this learner process (hosts of a group draw different batches).
    one_episode: draw each batch from one episode (natural.negatives='episode').
    window: with one_episode, from this many consecutive transitions of it (0 = all of it;
      natural.episode_window).
    frame_stack: K frames per natural input (natural.frame_stack; the module docstring).

  Returns:
    An iterator of dicts of [B, ...] numpy arrays (see the module docstring). The episodes are
    read (and a store without them fails) here, not at the first batch.
  """
  data = StoreTransitions(root, kind, game, fraction, seed, frame_stack)
  rng = np.random.default_rng(batch_seed(seed, data.table, process_index))
  if one_episode:
    return (data.batch(one_episode_index(data.episode_offsets, batch_size, rng, window))
            for _ in itertools.count())
  return (data.batch(rng.integers(0, len(data), batch_size)) for _ in itertools.count())
