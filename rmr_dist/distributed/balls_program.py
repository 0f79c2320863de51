"""The bouncing-balls RMR program (paper section 3): one Ray program, embedded or on a cluster.

Work directory layout (`workdir`):
  config.json              the validated config the directory was created with
  episodes/balls/{train,val}/ep_NNNNNN.npz   trajectories: positions, frames, radii
  abstract/checkpoints/    Orbax learner state (resumable)
  abstract/processor/      the processor export (P of the trained MPNN + its spec)
  abstract/result.json     1-step MSE and the rollout error curve (marks the stage complete)
  abstract/rollout_example.npz  one validation rollout for the figure
  natural/checkpoints/     lockstep RMR / end-to-end state (resumable)
  natural/result.json      per-model validation MSE, fingerprints (marks the stage complete)
  natural/rollout_example.npz   per-variant frame rollouts and slot masks for the figure
  report/                  balls.csv, balls.md, abstract_rollout.png, natural_rollout.png
  tb/                      TensorBoard run directory

Stages (`STAGES`) run in order; a stage whose outputs exist is skipped, so re-running the
same command resumes. Simulation actors (Ray, 1 CPU each) write the trajectory store; the
learners read it in the driver process, so the later stages need no Ray (they run on any machine
that sees the work directory).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist.distributed import workdir as workdir_lib
from rmr_dist.replay import balls_data
from rmr_dist.replay import episode_store

STAGES = ('data', 'abstract', 'natural', 'report')
_ROLLOUT_FIGURE_STEPS = 6  # Predicted frames in the natural rollout strip.


def check_stages(stages: list[str]) -> list[str]:
  """Validates stage names (order is normalised to the pipeline order)."""
  return workdir_lib.check_stage_names(stages, STAGES)


class SimulationWorker:
  """Simulates and renders trajectories into the store (run inside a Ray actor).

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
    """Writes trajectories ``indices`` of ``split``; returns frames written and seconds."""
    start, frames = time.perf_counter(), 0
    for index in indices:
      seed = balls_data.trajectory_seed(self._config.seed, split, index)
      episode = self._sim.episode(seed, self._config.data.episode_frames)
      images = self._balls.render_frames(episode.positions, episode.radii,
                                         self._config.sim.image_size)
      balls_data.write_trajectory(self._root, split, index, episode.positions, images,
                                  episode.radii)
      frames += len(images)
    return {'frames': frames, 'seconds': time.perf_counter() - start}


class BallsProgram:
  """Builds and runs the stages of the bouncing-balls program.

  Args:
    config: the validated config.
    workdir: the run's work directory (created if missing).
  """

  def __init__(self, config: config_lib.BallsConfig, workdir: str):
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.data_root = os.path.join(self.workdir, 'episodes', 'balls')
    os.makedirs(self.workdir, exist_ok=True)
    workdir_lib.check_workdir_config(self.workdir, config)
    self.logger = logging_lib.Logger(os.path.join(self.workdir, 'tb'))
    self._sets: dict[str, balls_data.TrajectorySet] = {}

  # ---------------------------------------------------------------- data
  def data(self) -> dict[str, Any]:
    """Simulates the missing train / validation trajectories on Ray actors (resumable)."""
    d = self.config.data
    todo = [(split, i) for split, count in ((balls_data.TRAIN, d.train_episodes),
                                            (balls_data.VAL, d.val_episodes))
            for i in balls_data.missing(self.data_root, split, count)]
    total = d.train_episodes + d.val_episodes
    if not todo:
      print(f'data: complete ({total} trajectories under {self.data_root})', flush=True)
      return {'trajectories': total, 'simulated': 0}
    import ray  # pylint: disable=g-import-not-at-top  (Ray only where actors are made)
    from rmr_dist.distributed import ray_setup  # pylint: disable=g-import-not-at-top
    ray_setup.init_ray(self.config.ray)
    actor_cls = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(SimulationWorker)
    num_workers = min(d.num_workers, len(todo))
    workers = [actor_cls.remote(self.config, self.data_root) for _ in range(num_workers)]
    chunk = max(1, min(25, len(todo) // (4 * num_workers) or 1))
    tasks = []
    for split in balls_data.SPLITS:
      indices = [i for s, i in todo if s == split]
      tasks += [(split, indices[i:i + chunk]) for i in range(0, len(indices), chunk)]
    print(f'data: simulating {len(todo)} of {total} trajectories ({d.episode_frames} frames '
          f'each) on {num_workers} simulation actors', flush=True)
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
        print(f'\rdata: {done}/{len(todo)} trajectories, {frames / elapsed:.0f} frames/s',
              end='' if pending else '\n', flush=True)
    finally:
      for w in workers:
        ray.kill(w)
    elapsed = time.perf_counter() - start
    self.logger.scalars({'collector/balls/frames_per_s': frames / elapsed,
                         'collector/balls/trajectories': done}, step=done)
    return {'trajectories': total, 'simulated': done, 'frames_per_s': frames / elapsed}

  def _load(self, split: str) -> balls_data.TrajectorySet:
    if split not in self._sets:
      count = (self.config.data.train_episodes if split == balls_data.TRAIN
               else self.config.data.val_episodes)
      try:
        self._sets[split] = balls_data.load_split(self.data_root, split, count)
      except FileNotFoundError as e:
        raise config_lib.ConfigError(f'{e} (--stages=data,...)') from e
    return self._sets[split]

  def _log_fn(self, prefix: str):
    def log_fn(scalars: dict[str, float], step: int) -> None:
      self.logger.scalars({prefix + k: v for k, v in scalars.items()}, step)
      loss = np.mean([v for k, v in scalars.items() if k.endswith('loss')])
      print(f'\r{prefix.rstrip("/")}: step {step}, loss {loss:.3g}, '
            f'{scalars.get("steps_per_s", 0.0):.2f} steps/s', end='', flush=True)
    return log_fn

  # ---------------------------------------------------------------- abstract
  def abstract(self) -> dict[str, Any]:
    """Trains the MPNN on positions, exports P, evaluates 1-step and rollout MSE."""
    from rmr_dist.learning import balls as balls_learning  # pylint: disable=g-import-not-at-top
    out_dir = os.path.join(self.workdir, 'abstract')
    result_path = os.path.join(out_dir, 'result.json')
    if os.path.exists(result_path):
      with open(result_path) as f:
        return json.load(f)
    ac, history = self.config.abstract, self.config.data.history
    train, val = self._load(balls_data.TRAIN), self._load(balls_data.VAL)
    spec = balls_learning.abstract_spec(ac, self.config.sim.num_balls)
    start = time.perf_counter()
    batches = balls_data.WindowBatches(train, history, ac.batch_size, self.config.seed,
                                       frames=False)
    learner = balls_learning.BallsAbstractLearner(
        spec, history=history, learning_rate=ac.learning_rate, seed=self.config.seed,
        iterator=batches,
        checkpoint_dir=os.path.join(out_dir, 'checkpoints'), save_every=ac.save_every,
        keep=ac.keep_checkpoints, log_fn=self._log_fn('abstract/'), log_every=ac.log_every)
    batches.skip_to(learner.global_step)  # A resumed learner continues the batch sequence.
    print(f'abstract: MPNN on {train.window_count(history)} windows, {ac.num_steps} steps',
          flush=True)
    try:
      learner.run(ac.num_steps)
    finally:
      learner.close()
    print('', flush=True)
    learner.export_processor(os.path.join(out_dir, 'processor'))
    seconds = time.perf_counter() - start
    result = balls_learning.evaluate_abstract(learner.model, learner.params, val, history,
                                              ac.rollout_steps, ac.eval_batch_size)
    result.update(train_steps=ac.num_steps, train_seconds=round(seconds, 2))
    roll = balls_learning.rollout(learner.model, learner.params,
                                  val.positions[:1, :history], ac.rollout_steps)
    np.savez(os.path.join(out_dir, 'rollout_example.npz'), predicted=np.asarray(roll[0]),
             true=val.positions[0, :history + ac.rollout_steps], radii=val.radii[0])
    episode_store.atomic_write_json(result_path, result)
    self.logger.scalars({'eval/abstract/mse_1step': result['mse_1step'],
                         f'eval/abstract/mse_rollout{ac.rollout_steps}':
                         result['rollout_mse'][-1]}, ac.num_steps)
    print(f'abstract: 1-step validation MSE {result["mse_1step"]:.3e} (paper 4.59e-4), '
          f'{ac.rollout_steps}-step rollout MSE {result["rollout_mse"][-1]:.3e} '
          f'({seconds:.0f} s)', flush=True)
    return result

  # ---------------------------------------------------------------- natural
  def natural(self) -> dict[str, Any]:
    """Trains RMR and end-to-end x seeds in lockstep on frames; scores each on validation."""
    from rmr_dist.learning import balls as balls_learning  # pylint: disable=g-import-not-at-top
    from rmr_dist.learning import natural as natural_learning  # pylint: disable=g-import-not-at-top
    out_dir = os.path.join(self.workdir, 'natural')
    result_path = os.path.join(out_dir, 'result.json')
    if os.path.exists(result_path):
      with open(result_path) as f:
        return json.load(f)
    nc, history = self.config.natural, self.config.data.history
    if not os.path.isdir(os.path.join(self.workdir, 'abstract')):
      raise config_lib.ConfigError(
          f'The natural stage needs the abstract stage\'s processor export, and no abstract '
          f'learner has run in {self.workdir}: run with --stages=abstract,natural (the natural '
          'learner waits for an export only while an abstract learner is writing it).')
    export = natural_learning.NaturalLearner.wait_for_export(
        os.path.join(self.workdir, 'abstract', 'processor'), nc.export_timeout_s)
    train, val = self._load(balls_data.TRAIN), self._load(balls_data.VAL)
    start = time.perf_counter()
    batches = balls_data.WindowBatches(train, history, nc.batch_size, self.config.seed + 1)
    learner = balls_learning.BallsNaturalLearner(
        nc, processor_export=export, image_size=self.config.sim.image_size, history=history,
        seed=self.config.seed,
        iterator=batches,
        checkpoint_dir=os.path.join(out_dir, 'checkpoints'), log_fn=self._log_fn('natural/'))
    batches.skip_to(learner.global_step)
    print(f'natural: {len(learner.variants)} variants x {learner.num_seeds} seeds in lockstep, '
          f'{nc.num_steps} steps of batch {nc.batch_size}', flush=True)
    try:
      learner.run(nc.num_steps)
    finally:
      learner.close()
    print('', flush=True)
    seconds = time.perf_counter() - start
    predict = balls_learning.make_predict_fn(learner.model)
    indices = balls_data.eval_indices(val.window_count(history), nc.eval_windows)
    mse = {v: [balls_learning.evaluate_natural(predict, learner.model_params(v, s), val,
                                               history, indices, 32)
               for s in range(learner.num_seeds)] for v in learner.variants}
    fingerprints = learner.fingerprints.tolist()
    example = val.frames[0, :history + _ROLLOUT_FIGURE_STEPS]
    rollouts = {v: balls_learning.natural_rollout(predict, learner.model_params(v, 0),
                                                  example[:history], _ROLLOUT_FIGURE_STEPS)
                for v in learner.variants}
    np.savez(os.path.join(out_dir, 'rollout_example.npz'), true=example,
             **{f'{v}_frames': r['frames'] for v, r in rollouts.items()},
             **{f'{v}_masks': r['masks'] for v, r in rollouts.items()})
    result = {'mse': mse, 'n_eval_windows': int(len(indices)), 'train_steps': nc.num_steps,
              'copy_last_mse': balls_learning.copy_last_frame_mse(val, history, indices),
              'train_seconds': round(seconds, 2), 'fingerprints': fingerprints,
              'identical_batches': len(set(fingerprints)) == 1}
    episode_store.atomic_write_json(result_path, result)
    for v, values in mse.items():
      for s, value in enumerate(values):
        self.logger.scalars({f'eval/natural/{v}/seed_{s}/mse_1step': value}, nc.num_steps)
      self.logger.image(f'eval/natural/{v}/rollout', np.concatenate(
          list(rollouts[v]['frames']), axis=1), nc.num_steps)
    summary = ', '.join(f'{v} {np.mean(x):.3e} ± {np.std(x):.1e}' for v, x in mse.items())
    summary += f', copy-last-frame baseline {result["copy_last_mse"]:.3e}'
    print(f'natural: validation MSE over {len(indices)} windows: {summary} ({seconds:.0f} s); '
          f'identical batches: {result["identical_batches"]}', flush=True)
    return result

  # ---------------------------------------------------------------- report
  def report(self) -> dict[str, str]:
    """Writes balls.csv, balls.md and the two rollout figures from the finished stages."""
    from rmr_dist.evaluation import balls_report  # pylint: disable=g-import-not-at-top
    paths = {}
    results = {}
    for stage in ('abstract', 'natural'):
      path = os.path.join(self.workdir, stage, 'result.json')
      if os.path.exists(path):
        with open(path) as f:
          results[stage] = json.load(f)
    if not results:
      raise config_lib.ConfigError(f'Nothing to report in {self.workdir}: run the abstract '
                                   '(and natural) stages first.')
    report_dir = os.path.join(self.workdir, 'report')
    rows = balls_report.rows(results.get('abstract'), results.get('natural'), self.config.seed)
    paths.update(balls_report.write_tables(report_dir, rows))
    if 'abstract' in results:
      with np.load(os.path.join(self.workdir, 'abstract', 'rollout_example.npz')) as f:
        paths['abstract_rollout.png'] = balls_report.plot_abstract_rollout(
            os.path.join(report_dir, 'abstract_rollout.png'), f['predicted'], f['true'],
            self.config.data.history, results['abstract']['rollout_mse'])
    if 'natural' in results:
      with np.load(os.path.join(self.workdir, 'natural', 'rollout_example.npz')) as f:
        example = {k: f[k] for k in f.files}
      paths['natural_rollout.png'] = balls_report.plot_natural_rollout(
          os.path.join(report_dir, 'natural_rollout.png'), example, self.config.data.history,
          tuple(results['natural']['mse']))
    with open(paths['balls.md']) as f:
      text = f.read()
    self.logger.text('eval/balls', text)
    for name in ('abstract_rollout.png', 'natural_rollout.png'):
      if name in paths:
        self.logger.image(f'eval/{name[:-4]}', paths[name])
    print(f'report: {paths["balls.csv"]}\n{text}', flush=True)
    return paths

  # ---------------------------------------------------------------- driver
  def run(self, stages: list[str]) -> None:
    """Runs `stages` (validated names) in pipeline order."""
    for stage in check_stages(stages):
      getattr(self, stage)()

  def close(self) -> None:
    """Flushes logs (Ray itself is left to the caller)."""
    self.logger.close()
