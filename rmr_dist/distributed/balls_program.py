"""The bouncing-balls RMR program (paper section 3): one Ray program, embedded or on a cluster.

This module owns placement and stage order; what each stage computes lives in
`rmr_dist.stages` (`balls_data`, `balls_abstract`, `balls_natural`, `balls_report`) and the
work directory's paths in `rmr_dist.workdir`. Simulation actors (Ray, 1 CPU each) write the
trajectory store; the abstract and natural stages run in learner groups (`learners.py`),
exactly as the Atari ones: Ray actors reserving `ray.learner_num_cpus` / `learner_num_gpus`,
`ray.learner_hosts` of them joined by `jax.distributed`, restarted on failure (resuming from
their Orbax checkpoints), and the natural group waits for the processor export.

Stages (`STAGES`) run in order; a finished stage's result is read back instead of redoing it, so
re-running the same command resumes, and a run whose config changes only later stages reuses
the earlier ones (`rmr_dist.workdir`, stage fingerprints). The stage loop, closing and the
read-back-or-run of learner units are `driver.Program`'s, shared with the Atari program.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.distributed import driver
from rmr_dist.distributed import placement
from rmr_dist.distributed import ray_setup
from rmr_dist.stages import units as units_lib

STAGES = workdir_lib.BALLS_STAGE_NAMES
LEARNER_STAGES = ('abstract', 'natural')  # Their units run in learner groups.


def check_stages(stages: list[str]) -> list[str]:
  """Validates stage names (order is normalised to the pipeline order)."""
  return workdir_lib.check_stage_names(stages, STAGES)


class BallsProgram(driver.Program):
  """Builds and runs the stages of the bouncing-balls program (`driver.Program`: run, close,
  units).

  Args:
    config: the validated config.
    workdir: the run's work directory (created if missing).
  """

  STAGES = STAGES
  LEARNER_STAGES = LEARNER_STAGES

  def __init__(self, config: config_lib.BallsConfig, workdir: str):
    super().__init__(config, workdir, workdir_lib.BALLS_STAGES)

  # ---------------------------------------------------------------- data
  def data(self) -> dict[str, Any]:
    """Simulates the missing train / validation trajectories on Ray actors (resumable)."""
    import ray  # pylint: disable=g-import-not-at-top
    from rmr_dist.stages import balls_data  # pylint: disable=g-import-not-at-top
    d = self.config.data
    self.paths.record_stage('data')
    total = d.train_episodes + d.val_episodes
    tasks = balls_data.missing_work(self.config, self.paths, d.num_workers)
    if not tasks:
      print(f'data: complete ({total} trajectories under {self.paths.trajectories})',
            flush=True)
      return {'trajectories': total, 'simulated': 0}
    ray_setup.init_ray(self.config.ray)
    actor_cls = ray.remote(num_cpus=1, max_restarts=3,
                           max_task_retries=3)(balls_data.SimulationWorker)
    todo = sum(len(i) for _, i in tasks)
    num_workers = min(d.num_workers, todo)
    placement.check_actor_cpus(self.config.ray, num_workers, 'data.num_workers')
    workers = [actor_cls.remote(self.config, self.paths.trajectories)
               for _ in range(num_workers)]
    print(f'data: simulating {todo} of {total} trajectories ({d.episode_frames} frames each) '
          f'on {num_workers} simulation actors', flush=True)
    start, frames, done = time.perf_counter(), 0, 0
    try:
      pending = {workers[n % num_workers].run.remote(split, indices): len(indices)
                 for n, (split, indices) in enumerate(tasks)}
      while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        count = pending.pop(ready[0])
        try:
          frames += ray.get(ready[0])['frames']
        except ray.exceptions.RayError as e:
          raise RuntimeError(f'data: a simulation actor failed after its retries (the '
                             f'trajectories written so far are kept; re-run to resume): '
                             f'{e}') from e
        done += count
        elapsed = time.perf_counter() - start
        print(f'\rdata: {done}/{todo} trajectories, {frames / elapsed:.0f} frames/s',
              end='' if pending else '\n', flush=True)
    finally:
      for w in workers:
        ray.kill(w)
    elapsed = time.perf_counter() - start
    self.logger.scalars({'collector/balls/frames_per_s': frames / elapsed,
                         'collector/balls/trajectories': done}, step=done)
    return {'trajectories': total, 'simulated': done, 'frames_per_s': frames / elapsed}

  # ---------------------------------------------------------------- learner stages
  def actor_pools(self, stages: list[str]) -> list[tuple[int, str]]:
    """The data stage's simulation actors, while trajectories are missing."""
    if 'data' not in stages:
      return []
    from rmr_dist.stages import balls_data  # pylint: disable=g-import-not-at-top
    d = self.config.data
    todo = sum(len(i) for _, i in balls_data.missing_work(self.config, self.paths,
                                                          d.num_workers))
    return [(min(d.num_workers, todo), 'data.num_workers')] if todo else []

  def check_inputs(self, stages: list[str]) -> None:
    """The learner stages need the trajectories, and natural the abstract stage's export:
    chosen (run before them), or already in the work directory."""
    for stage in stages:
      if stage in LEARNER_STAGES:
        self._require_inputs(stage, upstream=stages[:stages.index(stage)])

  def _require_inputs(self, stage: str, upstream: Sequence[str] = ()) -> None:
    """Raises ConfigError when `stage` needs outputs that no stage in `upstream` will write
    and the work directory lacks."""
    if (stage == 'natural' and 'abstract' not in upstream
        and not storage.isdir(self.paths.stage_dir('abstract'))):
      raise config_lib.ConfigError(
          f'The natural stage needs the abstract stage\'s processor export, and no abstract '
          f'learner has run in {self.workdir} with this config: run with '
          '--stages=abstract,natural.')
    from rmr_dist.stages import balls_data  # pylint: disable=g-import-not-at-top
    if 'data' not in upstream and balls_data.missing_work(self.config, self.paths, 1):
      raise config_lib.ConfigError(
          f'The {stage} stage needs every trajectory under {self.paths.trajectories}, and some '
          'are missing: run the data stage first (--stages=data,...).')

  def _unit(self, stage: str) -> dict[str, Any]:
    """Runs the stage's unit in its learner group, unless its result is already there."""
    self._require_inputs(stage)
    unit = units_lib.LearnerUnit(f'balls_{stage}', f'{self.paths.stage_dir(stage)}/result.json',
                                 tuple)
    return self.read_or_run(
        stage, [unit], lambda u, record, read_back: (
            f'complete ({self.paths.stage_dir(stage)})' if read_back else None))[0]

  def abstract(self) -> dict[str, Any]:
    """Trains the MPNN on positions, exports P, evaluates 1-step and rollout MSE."""
    return self._unit('abstract')

  def natural(self) -> dict[str, Any]:
    """Trains RMR and its controls x seeds in lockstep on frames (and the oracle); scores each."""
    return self._unit('natural')

  def report(self) -> dict[str, str]:
    """Writes balls.csv, balls.md and the figures (rollouts, per seed) from the finished stages."""
    from rmr_dist.stages import balls_report  # pylint: disable=g-import-not-at-top
    return balls_report.run(self.config, self.paths, self.logger,
                            say=lambda line: print(line, flush=True))
