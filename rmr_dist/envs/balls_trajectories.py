"""Bouncing-balls trajectory sets: an atomic on-disk store and window batches drawn from it.

Layout under ``root`` (``<workdir>/episodes/balls``)::

  train/ep_000123.npz    positions [T, N, 2] float32, frames [T, H, W, 3] uint8, radii [N]
                         (zlib-compressed: the frames are mostly black background)
  val/ep_000007.npz

Each file is written to a temporary name and renamed, so a simulation actor that dies mid-write
leaves no partial trajectory: a trajectory is either complete or absent. Trajectory ``i`` of a
split is simulated from seed ``trajectory_seed(root_seed, split, i)``, so re-running only fills
in what is missing and gives the same files.

Windows (paper section 3): ``history`` consecutive states as the input, the next state as the
target, for both positions and frames; every window of every trajectory is one example.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib

TRAIN, VAL = 'train', 'val'
SPLITS = (TRAIN, VAL)


def trajectory_seed(root_seed: int, split: str, index: int) -> int:
  """The simulator seed of trajectory ``index`` of ``split`` (disjoint across splits)."""
  return int(np.random.SeedSequence([root_seed, SPLITS.index(split), index]).generate_state(1)[0])


def _path(root: str, split: str, index: int) -> str:
  return storage.join(root, split, f'ep_{index:06d}.npz')


def write_trajectory(root: str, split: str, index: int, positions: np.ndarray,
                     frames: np.ndarray, radii: np.ndarray) -> str:
  """Writes one trajectory atomically; returns its path.

  Args:
    root: store root.
    split: 'train' or 'val'.
    index: trajectory index within the split.
    positions: [T, N, 2] float32 in [0, 1].
    frames: [T, H, W, 3] uint8 renders of the same states.
    radii: [N] float32.
  """
  if split not in SPLITS:
    raise ValueError(f'split={split!r}; valid: {SPLITS}')
  if positions.shape[0] != frames.shape[0]:
    raise ValueError(f'{positions.shape[0]} states but {frames.shape[0]} frames')
  path = _path(root, split, index)
  storage.makedirs(storage.dirname(path))
  buffer = io.BytesIO()
  np.savez_compressed(buffer, positions=positions.astype(np.float32),
                      frames=frames.astype(np.uint8), radii=radii.astype(np.float32))
  workdir_lib.atomic_write_bytes(path, buffer.getvalue())
  return path


def missing(root: str, split: str, count: int) -> list[int]:
  """Indices in ``range(count)`` whose trajectory file is not there yet."""
  return [i for i in range(count) if not storage.exists(_path(root, split, i))]


@dataclasses.dataclass(frozen=True)
class TrajectorySet:
  """All trajectories of one split, stacked.

  Attributes:
    positions: [E, T, N, 2] float32.
    frames: [E, T, H, W, 3] uint8.
    radii: [E, N] float32.
  """
  positions: np.ndarray
  frames: np.ndarray
  radii: np.ndarray

  def window_count(self, history: int) -> int:
    """E * (T - history): every window of every trajectory."""
    return self.positions.shape[0] * (self.positions.shape[1] - history)

  def windows(self, index: np.ndarray, history: int, frames: bool = True
              ) -> dict[str, np.ndarray]:
    """The windows with flat indices ``index`` (trajectory-major).

    Args:
      index: [B] ints in [0, window_count(history)).
      history: input states per window.
      frames: include the frame windows.

    Returns:
      ``history`` [B, history, N, 2], ``target`` [B, N, 2] (positions), and with ``frames``
      also ``frames`` [B, history, H, W, 3] and ``target_frame`` [B, H, W, 3] uint8.
    """
    per = self.positions.shape[1] - history
    episode, start = np.divmod(np.asarray(index), per)  # [B], [B]
    steps = start[:, None] + np.arange(history + 1)  # [B, history + 1]
    pos = self.positions[episode[:, None], steps]  # [B, history + 1, N, 2]
    out = {'history': pos[:, :history], 'target': pos[:, history]}
    if frames:
      fr = self.frames[episode[:, None], steps]  # [B, history + 1, H, W, 3]
      out['frames'] = fr[:, :history]
      out['target_frame'] = fr[:, history]
    return out


def load_split(root: str, split: str, count: int) -> TrajectorySet:
  """Loads trajectories ``0 .. count - 1`` of ``split``.

  Raises:
    FileNotFoundError: some are missing (names how many and where), e.g. the data stage did
      not finish.
  """
  absent = missing(root, split, count)
  if absent:
    raise FileNotFoundError(f'{len(absent)} of {count} {split} trajectories are missing under '
                            f'{storage.join(root, split)} (first: {absent[0]}); run the data '
                            'stage first.')
  positions, frames, radii = [], [], []
  for i in range(count):
    with storage.open_binary(_path(root, split, i)) as raw, np.load(raw) as f:
      positions.append(f['positions'])
      frames.append(f['frames'])
      radii.append(f['radii'])
  return TrajectorySet(np.stack(positions), np.stack(frames), np.stack(radii))


class WindowBatches:
  """Endless batches of windows drawn uniformly (with replacement); batch ``i`` depends only on
  ``(seed, i)``, so a learner resumed at step k continues with batch k (:meth:`skip_to`) and
  trains on exactly the batches of an uninterrupted run.

  Args:
    data: the trajectories.
    history: input states per window.
    batch_size: windows per batch.
    seed: the batch sequence's seed.
    frames: include the frame windows.

  Yields:
    dicts as :meth:`TrajectorySet.windows` returns, batch ``batch_size``.
  """

  def __init__(self, data: TrajectorySet, history: int, batch_size: int, seed: int,
               frames: bool = True):
    self._data, self._history, self._batch_size = data, history, batch_size
    self._seed, self._frames, self._next = seed, frames, 0
    self._total = data.window_count(history)

  def skip_to(self, index: int) -> None:
    """The next batch yielded will be batch ``index``."""
    self._next = int(index)

  def __iter__(self) -> WindowBatches:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self._seed, self._next])
    self._next += 1
    index = rng.integers(0, self._total, size=self._batch_size)
    return self._data.windows(index, self._history, frames=self._frames)


def eval_indices(total: int, max_windows: int) -> np.ndarray:
  """All window indices, or ``max_windows`` of them at an even stride (0 = all)."""
  if max_windows <= 0 or max_windows >= total:
    return np.arange(total)
  return np.linspace(0, total - 1, max_windows).round().astype(np.int64)
