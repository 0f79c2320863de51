"""The bouncing-balls data stage: simulate and render the fixed train / validation trajectories.

`missing_work` lists what the trajectory store (`WorkDir.trajectories`) still lacks, split into
tasks; `SimulationWorker.run(split, indices)` simulates one task. A trajectory's seed depends
only on (config seed, split, index), so tasks can run anywhere, in any order, more than once
(writes are atomic), and a re-run fills in only what is missing. `run` does every task in this
process; `rmr_dist.distributed.balls_program` spreads them over Ray actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.envs import balls_trajectories


class SimulationWorker:
  """Simulates and renders trajectories into the store.

  Args:
    config: the program config.
    root: the trajectory store root (shared storage on a cluster).
  """

  def __init__(self, config: config_lib.BallsConfig, root: str):
    from rmr_dist.envs import balls  # pylint: disable=g-import-not-at-top
    s = config.sim
    self._balls = balls
    self._sim = balls.BallsSimulator(
        num_balls=s.num_balls, radius_range=(s.radius_min, s.radius_max),
        speed_range=(s.speed_min, s.speed_max), frame_dt=s.frame_dt, physics_dt=s.physics_dt)
    self._config, self._root = config, root

  def run(self, split: str, indices: list[int]) -> dict[str, float]:
    """Writes trajectories `indices` of `split`; returns frames written and seconds."""
    start, frames = time.perf_counter(), 0
    for index in indices:
      seed = balls_trajectories.trajectory_seed(self._config.seed, split, index)
      episode = self._sim.episode(seed, self._config.data.episode_frames)
      images = self._balls.render_frames(episode.positions, episode.radii,
                                         self._config.sim.image_size)
      balls_trajectories.write_trajectory(self._root, split, index, episode.positions, images,
                                          episode.radii)
      frames += len(images)
    return {'frames': frames, 'seconds': time.perf_counter() - start}


def missing_work(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir,
                 num_workers: int) -> list[tuple[str, list[int]]]:
  """(split, indices) tasks covering every trajectory the store lacks (about 4 per worker)."""
  d = config.data
  todo = [(split, i) for split, count in ((balls_trajectories.TRAIN, d.train_episodes),
                                          (balls_trajectories.VAL, d.val_episodes))
          for i in balls_trajectories.missing(workdir.trajectories, split, count)]
  chunk = max(1, min(25, len(todo) // (4 * max(num_workers, 1)) or 1))
  tasks = []
  for split in balls_trajectories.SPLITS:
    indices = [i for s, i in todo if s == split]
    tasks += [(split, indices[i:i + chunk]) for i in range(0, len(indices), chunk)]
  return tasks


def run(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir,
        say: Callable[[str], None] = print) -> dict[str, Any]:
  """Simulates every missing trajectory in this process."""
  tasks = missing_work(config, workdir, 1)
  worker = SimulationWorker(config, workdir.trajectories)
  start, frames = time.perf_counter(), 0
  for split, indices in tasks:
    frames += worker.run(split, indices)['frames']
  seconds = time.perf_counter() - start
  done = sum(len(i) for _, i in tasks)
  if done:
    say(f'data: simulated {done} trajectories, {frames / seconds:.0f} frames/s')
  return {'trajectories': config.data.train_episodes + config.data.val_episodes,
          'simulated': done, 'frames_per_s': frames / seconds if done else None}


def load_split(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir,
               split: str) -> balls_trajectories.TrajectorySet:
  """The split's trajectories (ConfigError when the data stage has not made them)."""
  count = (config.data.train_episodes if split == balls_trajectories.TRAIN
           else config.data.val_episodes)
  try:
    return balls_trajectories.load_split(workdir.trajectories, split, count)
  except FileNotFoundError as e:
    raise config_lib.ConfigError(f'{e} (run the data stage: --stages=data,...)') from e
