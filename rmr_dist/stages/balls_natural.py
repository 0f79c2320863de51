"""The bouncing-balls natural stage: RMR and its controls x seeds in lockstep on frames.

Outputs under `WorkDir.stage_dir('natural')`:
  checkpoints/           lockstep state of every variant x seed (resumable)
  result.json            per-model validation MSE, FG-ARI, slot position error, the copy-last
                         control, where the slot latents lie against the abstract f's span,
                         fingerprints; the oracle's scores (`natural.oracle_steps`) and the
                         frames rendered at the abstract model's predictions (written last)
  rollout_example.npz    per-variant frame rollouts and slot masks for the report's figure

Waits for the abstract stage's processor export like the Atari natural units.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import balls_eval
from rmr_dist.learning import balls_abstract as balls_abstract_learning
from rmr_dist.learning import balls_natural as balls_natural_learning
from rmr_dist.envs import balls_trajectories
from rmr_dist.stages import balls_data as data_stage

LogFn = Callable[[dict[str, float], int], None]
ROLLOUT_FIGURE_STEPS = 6  # Predicted frames in the natural rollout strip.


def make_iterator(config: config_lib.BallsConfig, train: balls_trajectories.TrajectorySet
                  ) -> balls_trajectories.WindowBatches:
  """This process's share of every batch of frame windows."""
  return balls_trajectories.WindowBatches(
      train, config.data.history, config.natural.batch_size // jax.process_count(),
      config.seed + 1 + 7919 * jax.process_index())


def abstract_params(workdir: workdir_lib.WorkDir) -> Any:
  """The trained abstract model's params (f, P, g), from the abstract stage's checkpoint."""
  _, tree = checkpointing.restore_latest_tree(
      storage.join(workdir.stage_dir('abstract'), 'checkpoints'))
  return tree['params']


def make_learner(config: config_lib.BallsConfig, export: str, iterator: Iterator[Any],
                 checkpoint_dir: str | None, log_fn: LogFn | None = None,
                 abstract_encoder: Any = None) -> balls_natural_learning.BallsNaturalLearner:
  """The lockstep learner of every variant x seed, resumed from `checkpoint_dir` if present
  (`abstract_encoder`: the trained abstract f, which 'abstract_f' slot latents need)."""
  return balls_natural_learning.BallsNaturalLearner(
      config.natural, processor_export=export, image_size=config.sim.image_size,
      displacement_scale=config.sim.displacement_scale, history=config.data.history,
      seed=config.seed, iterator=iterator,
      checkpoint_dir=checkpoint_dir, log_fn=log_fn, abstract_encoder=abstract_encoder)


def make_evaluator(config: config_lib.BallsConfig, val: balls_trajectories.TrajectorySet,
                   max_windows: int | None = None) -> Callable[[Any, Any], dict[str, float]]:
  """`evaluate(predict_fn, params)`: MSE, FG-ARI and mask entropy on fixed validation windows
  (`natural.eval_windows` of them, or `max_windows`)."""
  history = config.data.history
  count = config.natural.eval_windows if max_windows is None else max_windows
  indices = balls_trajectories.eval_indices(val.window_count(history), count)
  return lambda predict, params: balls_eval.evaluate_natural(
      predict, params, val, history, indices, 32, config.sim.image_size)


def make_training_eval(config: config_lib.BallsConfig, val: balls_trajectories.TrajectorySet,
                       learner: Any, log_fn: LogFn | None) -> Callable[[int], None] | None:
  """`eval_fn(step)` logging every model's validation MSE, FG-ARI and mask entropy over
  training, on `natural.eval_windows_during_training` fixed windows (None without a log_fn)."""
  if log_fn is None or not config.natural.eval_every:
    return None
  evaluate = make_evaluator(config, val, config.natural.eval_windows_during_training)
  predict = balls_natural_learning.make_predict_fn(learner.model)

  def eval_fn(step: int) -> None:
    log_fn({f'eval/natural/{v}/seed_{s}/{k}': value for v in learner.variants
            for s in range(learner.num_seeds)
            for k, value in evaluate(predict, learner.model_params(v, s)).items()}, step)

  return eval_fn


def latent_span(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir,
                val: balls_trajectories.TrajectorySet, indices: np.ndarray, predict: Any,
                learner: Any) -> dict[str, dict[str, list[float]]]:
  """Per variant, per seed: how far P's inputs lie outside the abstract f's span
  (``balls_eval.latent_span``), the abstract f read from the abstract stage's checkpoint.

  Returns ``{variant: {'ball_slots': [S], 'background_slot': [S]}}``.
  """
  f = abstract_params(workdir)['encoder']
  kernel, bias = np.asarray(f['kernel']), np.asarray(f['bias'])  # [F, D], [D]
  span = {}
  for v in learner.variants:
    per_seed = [balls_eval.latent_span(predict, learner.model_params(v, s), val,
                                       config.data.history, indices, 32, kernel, bias)
                for s in range(learner.num_seeds)]
    span[v] = {k: [x[k] for x in per_seed] for k in ('ball_slots', 'background_slot')}
  return span


def run(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir, *,
        log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any] | None:
  """Trains every variant x seed, scores each on validation; returns result.json."""
  out_dir = workdir.stage_dir('natural')
  return workdir_lib.cached_result(storage.join(out_dir, 'result.json'),
                                   lambda: _train_and_evaluate(config, workdir, log_fn, say))


def _train_and_evaluate(config, workdir, log_fn, say):
  nc, history = config.natural, config.data.history
  out_dir = workdir.stage_dir('natural')
  export = checkpointing.wait_for_export(
      storage.join(workdir.stage_dir('abstract'), 'processor'), nc.export_timeout_s,
      poll_s=min(5.0, nc.export_timeout_s), log=say)
  train = data_stage.load_split(config, workdir, balls_trajectories.TRAIN)
  val = data_stage.load_split(config, workdir, balls_trajectories.VAL)
  start = time.perf_counter()
  batches = make_iterator(config, train)
  trained = abstract_params(workdir)
  learner = make_learner(config, export, batches, storage.join(out_dir, 'checkpoints'),
                         logging_lib.with_prefix(log_fn, 'natural/'), trained['encoder'])
  batches.skip_to(learner.global_step)
  say(f'natural: {len(learner.variants)} variants x {learner.num_seeds} seeds in lockstep, '
      f'{nc.num_steps} steps of batch {nc.batch_size}')
  try:
    learner.run(nc.num_steps, progress_label='natural balls',
                eval_fn=make_training_eval(config, val, learner,
                                           log_fn if jax.process_index() == 0 else None),
                eval_every=nc.eval_every)
  finally:
    learner.close()
  if jax.process_index() != 0:
    return None
  seconds = time.perf_counter() - start
  evaluate = make_evaluator(config, val)
  predict = balls_natural_learning.make_predict_fn(learner.model)
  scores = {v: [evaluate(predict, learner.model_params(v, s))
                 for s in range(learner.num_seeds)] for v in learner.variants}
  mse = {v: [x['mse'] for x in values] for v, values in scores.items()}
  indices = balls_trajectories.eval_indices(val.window_count(history), nc.eval_windows)
  example = val.frames[0, :history + ROLLOUT_FIGURE_STEPS]
  rollouts = {v: balls_eval.natural_rollout(predict, learner.model_params(v, 0),
                                            example[:history], ROLLOUT_FIGURE_STEPS)
              for v in learner.variants}
  workdir_lib.atomic_write_npz(storage.join(out_dir, 'rollout_example.npz'), true=example,
                               **{f'{v}_frames': r['frames'] for v, r in rollouts.items()},
                               **{f'{v}_masks': r['masks'] for v, r in rollouts.items()})
  fingerprints = learner.fingerprints.tolist()
  span = latent_span(config, workdir, val, indices, predict, learner)
  result = {'mse': mse, 'fg_ari': {v: [x['fg_ari'] for x in xs] for v, xs in scores.items()},
            'mask_entropy': {v: [x['mask_entropy'] for x in xs] for v, xs in scores.items()},
            'position_rmse': {v: [x['position_rmse'] for x in xs] for v, xs in scores.items()},
            'latent_outside_abstract_span': span,
            'slot_latents': nc.slot_latents,
            'n_eval_windows': int(len(indices)), 'train_steps': nc.num_steps,
            'copy_last_mse': balls_eval.copy_last_frame_mse(val, history, indices),
            'train_seconds': round(seconds, 2), 'fingerprints': fingerprints,
            'identical_batches': len(set(fingerprints)) == 1,
            'resumed_from': learner.resumed_from, 'learner_processes': jax.process_count(),
            'learner_devices': jax.device_count()}
  result['rendered_mse'] = rendered_references(config, workdir, val, indices, trained)
  if nc.oracle_steps:
    result['oracle'] = train_oracle(config, train, val, indices, export, trained['encoder'],
                                    log_fn, say)
  if log_fn is not None:
    log_fn({f'eval/natural/{v}/seed_{s}/{k}': value for v, values in scores.items()
            for s, x in enumerate(values) for k, value in x.items()}, nc.num_steps)
  summary = ', '.join(f'{v} {np.mean(x):.3e} ± {np.std(x):.1e}' for v, x in mse.items())
  say(f'natural: validation MSE over {len(indices)} windows: {summary}, copy-last-frame '
      f'control {result["copy_last_mse"]:.3e} ({seconds:.0f} s); identical batches: '
      f'{result["identical_batches"]}')
  return result


def rendered_references(config: config_lib.BallsConfig, workdir: workdir_lib.WorkDir,
                        val: balls_trajectories.TrajectorySet, indices: np.ndarray,
                        trained: Any) -> dict[str, float]:
  """``balls_eval.rendered_prediction_mse`` of the trained abstract model on ``indices``."""
  spec = balls_abstract_learning.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_abstract_learning.make_abstract_model(spec, config.sim.displacement_scale)
  return balls_eval.rendered_prediction_mse(model, trained, val, config.data.history, indices,
                                            256, config.sim.image_size)


def train_oracle(config: config_lib.BallsConfig, train: balls_trajectories.TrajectorySet,
                 val: balls_trajectories.TrajectorySet, indices: np.ndarray, export: str,
                 abstract_encoder: Any, log_fn: LogFn | None,
                 say: Callable[[str], None]) -> dict[str, Any]:
  """Trains the oracle's variants x seeds (``natural.oracle_steps`` updates, the natural
  models' batch sequence) and scores them on ``indices``; returns their result entry."""
  nc = config.natural
  start = time.perf_counter()
  learner = balls_natural_learning.BallsOracleLearner(
      nc, processor_export=export, abstract_encoder=abstract_encoder,
      num_balls=config.sim.num_balls, image_size=config.sim.image_size,
      displacement_scale=config.sim.displacement_scale, history=config.data.history,
      seed=config.seed, log_fn=logging_lib.with_prefix(log_fn, 'natural/oracle/'),
      # Process 0 alone, on its own devices, the whole batch: a one-process run's batches.
      iterator=balls_trajectories.WindowBatches(train, config.data.history, nc.batch_size,
                                                config.seed + 1),
      devices=jax.local_devices())
  try:
    learner.run(nc.oracle_steps, progress_label='oracle balls')
  finally:
    learner.close()
  seconds = time.perf_counter() - start
  predict = balls_natural_learning.make_oracle_predict_fn(learner.model)
  scores = {v: [balls_eval.evaluate_natural(predict, learner.model_params(v, s), val,
                                            config.data.history, indices, 32,
                                            config.sim.image_size, input_key='history')
                for s in range(learner.num_seeds)] for v in learner.variants}
  summary = ', '.join(f'{v} {np.mean([x["mse"] for x in xs]):.3e}' for v, xs in scores.items())
  say(f'oracle: validation MSE {summary} ({seconds:.0f} s)')
  return {'mse': {v: [x['mse'] for x in xs] for v, xs in scores.items()},
          'fg_ari': {v: [x['fg_ari'] for x in xs] for v, xs in scores.items()},
          'train_steps': nc.oracle_steps, 'train_seconds': round(seconds, 2),
          'identical_batches': len(set(learner.fingerprints.tolist())) == 1}
