"""Tests for rmr_dist.envs.balls_trajectories: window batches."""

import numpy as np

from rmr_dist.envs import balls_trajectories

HISTORY = 3


def _data():
  rng = np.random.default_rng(0)
  return balls_trajectories.TrajectorySet(
      positions=rng.random((4, 12, 3, 2), dtype=np.float32),
      frames=rng.integers(0, 256, (4, 12, 8, 8, 3), dtype=np.uint8),
      radii=np.full((4, 3), 0.05, np.float32))


def test_window_batches_depend_only_on_seed_and_index():
  data = _data()
  a = balls_trajectories.WindowBatches(data, HISTORY, 4, seed=3)
  first = [next(a) for _ in range(3)]
  b = balls_trajectories.WindowBatches(data, HISTORY, 4, seed=3)
  b.skip_to(2)  # A learner resumed at step 2 gets batch 2 next.
  resumed = next(b)
  for key in first[2]:
    np.testing.assert_array_equal(resumed[key], first[2][key])
  assert first[2]['frames'].shape == (4, HISTORY) + data.frames.shape[2:]
  assert first[2]['target'].shape == (4,) + data.positions.shape[2:]
  assert not np.array_equal(first[0]['target'], first[1]['target'])
