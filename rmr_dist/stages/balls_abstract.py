"""The bouncing-balls abstract stage: train g(P(f(x))) on positions, export P, evaluate.

Outputs under `WorkDir.stage_dir('abstract')`:
  checkpoints/           Orbax learner state (resumable)
  processor/             the processor export (P of the trained MPNN + its spec)
  result.json            1-step MSE, the rollout error curve and the controls (written last)
  rollout_example.npz    one validation rollout for the report's figure

Runs in a learner group like the Atari units; under `jax.distributed` every process trains its
share of each batch and process 0 alone evaluates and writes the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import balls_eval
from rmr_dist.learning import balls_abstract as balls_abstract_learning
from rmr_dist.learning import optimizers
from rmr_dist.envs import balls_trajectories
from rmr_dist.stages import balls_data as data_stage

LogFn = Callable[[dict[str, float], int], None]


def make_iterator(config: config_lib.BallsConfig, train: balls_trajectories.TrajectorySet,
                  seed: int) -> balls_trajectories.WindowBatches:
  """This process's share of every batch of position windows (batch i from (seed, i))."""
  return balls_trajectories.WindowBatches(
      train, config.data.history, config.abstract.batch_size // jax.process_count(),
      seed + 7919 * jax.process_index(), frames=False)


def make_learner(config: config_lib.BallsConfig, iterator: Iterator[Any],
                 checkpoint_dir: str | None, log_fn: LogFn | None = None
                 ) -> balls_abstract_learning.BallsAbstractLearner:
  """The pmapped MPNN learner, resumed from `checkpoint_dir` if it holds a checkpoint."""
  ac = config.abstract
  return balls_abstract_learning.BallsAbstractLearner(
      balls_abstract_learning.abstract_spec(ac, config.sim.num_balls),
      history=config.data.history, learning_rate=ac.learning_rate, seed=config.seed,
      iterator=iterator, checkpoint_dir=checkpoint_dir, save_every=ac.save_every,
      keep=ac.keep_checkpoints, log_fn=log_fn, log_every=ac.log_every,
      schedule=optimizers.make_schedule(ac.learning_rate, ac.warmup_steps, ac.decay_rate,
                                        ac.decay_steps, ac.lr_decay),
      grad_clip_norm=ac.grad_clip_norm,
      displacement_scale=config.sim.displacement_scale,
      input_noise=ac.input_noise * config.sim.displacement_scale)


def run(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir, *,
        log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any] | None:
  """Trains, exports P, evaluates on every validation window; returns result.json."""
  out_dir = workdir.stage_dir('abstract')
  return workdir_lib.cached_result(storage.join(out_dir, 'result.json'),
                                   lambda: _train_and_evaluate(config, workdir, log_fn, say))


def _train_and_evaluate(config, workdir, log_fn, say):
  ac, history = config.abstract, config.data.history
  out_dir = workdir.stage_dir('abstract')
  train = data_stage.load_split(config, workdir, balls_trajectories.TRAIN)
  start = time.perf_counter()
  batches = make_iterator(config, train, config.seed)
  learner = make_learner(config, batches, storage.join(out_dir, 'checkpoints'),
                         logging_lib.with_prefix(log_fn, 'abstract/'))
  batches.skip_to(learner.global_step)  # A resumed learner continues the batch sequence.
  say(f'abstract: MPNN on {train.window_count(history)} windows, {ac.num_steps} steps')
  try:
    learner.run(ac.num_steps, progress_label='abstract balls')
  finally:
    learner.close()
  learner.export_processor(storage.join(out_dir, 'processor'))  # Collective (multi-host).
  if jax.process_index() != 0:
    return None
  seconds = time.perf_counter() - start
  val = data_stage.load_split(config, workdir, balls_trajectories.VAL)
  result = balls_eval.evaluate_abstract(learner.model, learner.params, val, history,
                                        ac.rollout_steps, ac.eval_batch_size)
  result.update(train_steps=ac.num_steps, train_seconds=round(seconds, 2),
                resumed_from=learner.resumed_from, learner_processes=jax.process_count(),
                learner_devices=jax.device_count())
  roll = balls_abstract_learning.rollout(learner.model, learner.params,
                                         val.positions[:1, :history], ac.rollout_steps)
  workdir_lib.atomic_write_npz(storage.join(out_dir, 'rollout_example.npz'),
                               predicted=np.asarray(roll[0]),
                               true=val.positions[0, :history + ac.rollout_steps],
                               radii=val.radii[0])
  if log_fn is not None:
    log_fn({'eval/abstract/mse_1step': result['mse_1step'],
            f'eval/abstract/mse_rollout{ac.rollout_steps}': result['rollout_mse'][-1]},
           ac.num_steps)
  say(f'abstract: 1-step validation MSE {result["mse_1step"]:.3e} (paper 4.59e-4), '
      f'{ac.rollout_steps}-step rollout MSE {result["rollout_mse"][-1]:.3e} ({seconds:.0f} s)')
  return result
