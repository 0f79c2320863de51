"""The bouncing-balls natural stage: RMR and end-to-end x seeds in lockstep on frames.

Outputs under `WorkDir.stage_dir('natural')`:
  checkpoints/           lockstep RMR / end-to-end state (resumable)
  result.json            per-model validation MSE, the copy-last control, fingerprints (last)
  rollout_example.npz    per-variant frame rollouts and slot masks for the report's figure

Waits for the abstract stage's processor export like the Atari natural units.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import balls_eval
from rmr_dist.learning import balls_natural as balls_natural_learning
from rmr_dist.replay import balls_data
from rmr_dist.stages import balls_data as data_stage

LogFn = Callable[[dict[str, float], int], None]
ROLLOUT_FIGURE_STEPS = 6  # Predicted frames in the natural rollout strip.


def make_iterator(config: config_lib.BallsConfig, train: balls_data.TrajectorySet
                  ) -> balls_data.WindowBatches:
  """This process's share of every batch of frame windows."""
  return balls_data.WindowBatches(
      train, config.data.history, config.natural.batch_size // jax.process_count(),
      config.seed + 1 + 7919 * jax.process_index())


def make_learner(config: config_lib.BallsConfig, export: str, iterator: Iterator[Any],
                 checkpoint_dir: str | None, log_fn: LogFn | None = None
                 ) -> balls_natural_learning.BallsNaturalLearner:
  """The lockstep learner of every variant x seed, resumed from `checkpoint_dir` if present."""
  return balls_natural_learning.BallsNaturalLearner(
      config.natural, processor_export=export, image_size=config.sim.image_size,
      history=config.data.history, seed=config.seed, iterator=iterator,
      checkpoint_dir=checkpoint_dir, log_fn=log_fn)


def make_evaluator(config: config_lib.BallsConfig, val: balls_data.TrajectorySet
                   ) -> Callable[[Any, Any], float]:
  """`evaluate(predict_fn, params)`: per-pixel MSE on the fixed validation windows."""
  history = config.data.history
  indices = balls_data.eval_indices(val.window_count(history), config.natural.eval_windows)
  return lambda predict, params: balls_eval.evaluate_natural(predict, params, val, history,
                                                             indices, 32)


def run(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir, *,
        log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any] | None:
  """Trains every variant x seed, scores each on validation; returns result.json."""
  out_dir = workdir.stage_dir('natural')
  return workdir_lib.cached_result(os.path.join(out_dir, 'result.json'),
                                   lambda: _train_and_evaluate(config, workdir, log_fn, say))


def _train_and_evaluate(config, workdir, log_fn, say):
  nc, history = config.natural, config.data.history
  out_dir = workdir.stage_dir('natural')
  export = checkpointing.wait_for_export(
      os.path.join(workdir.stage_dir('abstract'), 'processor'), nc.export_timeout_s,
      poll_s=min(5.0, nc.export_timeout_s), log=say)
  train = data_stage.load_split(config, workdir, balls_data.TRAIN)
  start = time.perf_counter()
  batches = make_iterator(config, train)
  learner = make_learner(config, export, batches, os.path.join(out_dir, 'checkpoints'),
                         logging_lib.with_prefix(log_fn, 'natural/'))
  batches.skip_to(learner.global_step)
  say(f'natural: {len(learner.variants)} variants x {learner.num_seeds} seeds in lockstep, '
      f'{nc.num_steps} steps of batch {nc.batch_size}')
  try:
    learner.run(nc.num_steps, progress_label='natural balls')
  finally:
    learner.close()
  if jax.process_index() != 0:
    return None
  seconds = time.perf_counter() - start
  val = data_stage.load_split(config, workdir, balls_data.VAL)
  evaluate = make_evaluator(config, val)
  predict = balls_natural_learning.make_predict_fn(learner.model)
  mse = {v: [evaluate(predict, learner.model_params(v, s)) for s in range(learner.num_seeds)]
         for v in learner.variants}
  indices = balls_data.eval_indices(val.window_count(history), nc.eval_windows)
  example = val.frames[0, :history + ROLLOUT_FIGURE_STEPS]
  rollouts = {v: balls_eval.natural_rollout(predict, learner.model_params(v, 0),
                                            example[:history], ROLLOUT_FIGURE_STEPS)
              for v in learner.variants}
  workdir_lib.atomic_write_npz(os.path.join(out_dir, 'rollout_example.npz'), true=example,
                               **{f'{v}_frames': r['frames'] for v, r in rollouts.items()},
                               **{f'{v}_masks': r['masks'] for v, r in rollouts.items()})
  fingerprints = learner.fingerprints.tolist()
  result = {'mse': mse, 'n_eval_windows': int(len(indices)), 'train_steps': nc.num_steps,
            'copy_last_mse': balls_eval.copy_last_frame_mse(val, history, indices),
            'train_seconds': round(seconds, 2), 'fingerprints': fingerprints,
            'identical_batches': len(set(fingerprints)) == 1,
            'resumed_from': learner.resumed_from, 'learner_processes': jax.process_count(),
            'learner_devices': jax.device_count()}
  if log_fn is not None:
    log_fn({f'eval/natural/{v}/seed_{s}/mse_1step': value
            for v, values in mse.items() for s, value in enumerate(values)}, nc.num_steps)
  summary = ', '.join(f'{v} {np.mean(x):.3e} ± {np.std(x):.1e}' for v, x in mse.items())
  say(f'natural: validation MSE over {len(indices)} windows: {summary}, copy-last-frame '
      f'control {result["copy_last_mse"]:.3e} ({seconds:.0f} s); identical batches: '
      f'{result["identical_batches"]}')
  return result
