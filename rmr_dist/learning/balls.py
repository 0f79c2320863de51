"""Bouncing-balls learners (paper section 3, Appendix A): pure pmapped steps and their loops.

Abstract: ``g(P(f(x)))`` on positions (``networks.balls.BallsAbstractModel``), MSE on the next
positions, Adam. Batches ``{'history': [B, T_hist, N, 2], 'target': [B, N, 2]}`` float32.
The loss is a per-example mean over equal shards, so the pmean of the devices' gradients is the
full-batch gradient (1 device == N devices). P is exported alone (``checkpointing``) with a
``ModelSpec`` whose ``action_size`` is 0 and ``num_slots`` the number of balls.

Natural: ``g~(P(f~(x)))`` on frames (``networks.balls.BallsNaturalModel``), per-pixel MSE on
the next frame. Batches ``{'frames': [B, T_hist, H, W, 3], 'target_frame': [B, H, W, 3]}``
uint8. As in the Atari natural learner (``learning.natural``), the V variants x S seeds are M
models stacked on a leading axis and trained by ONE vmapped step on ONE batch:

  'rmr'         P is the abstract export, frozen (stop_gradient in the loss and -0.0 updates
                from ``natural.freeze_processor``): bit-identical to the export throughout;
  'end_to_end'  the same pipeline with P initialised fresh and trained (the baseline).

Seed s gives every variant the same f~ and g~ initialisation and the same Slot Attention
initial-slot noise at every step, so within a pair only the processor differs. Each model
folds a fingerprint of the arrays its loss reads into ``state.fingerprint``: equal
fingerprints show the paired models consumed the same batches in the same order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import losses
from rmr_dist.learning import natural as natural_learning
from rmr_dist.learning.abstract import TrainState
from rmr_dist.learning.loop import Batch, Metrics, PmapLearner, replicate, shard_batch
from rmr_dist.learning.loop import unreplicate
from rmr_dist.networks import balls as balls_net
from rmr_dist.networks import broadcast_decoder
from rmr_dist.networks import processors
from rmr_dist.networks import slot_attention
from rmr_dist.replay import balls_data

VARIANTS = config_lib.BALLS_VARIANTS  # ('rmr', 'end_to_end')
_FINGERPRINTED = ('frames', 'target_frame')


# ---------------------------------------------------------------------------------------------
# Abstract: positions.
# ---------------------------------------------------------------------------------------------


def abstract_spec(config: config_lib.BallsAbstractConfig, num_balls: int
                  ) -> processors.ModelSpec:
  """The processor spec of the balls MPNN (no action, ``num_balls`` nodes)."""
  return processors.ModelSpec(
      processor='mpnn', latent_size=config.latent_size, hidden_size=config.hidden_size,
      num_message_steps=config.num_message_steps, aggregation=config.aggregation,
      slot_embedding=False, num_slots=num_balls, action_size=0)


def make_abstract_model(spec: processors.ModelSpec) -> balls_net.BallsAbstractModel:
  """``g(P(f(x)))`` for ``spec``."""
  return balls_net.BallsAbstractModel(processor=processors.make_spec_processor(spec),
                                      latent_size=spec.latent_size)


def abstract_update(state: TrainState, batch: Batch, *, model: nn.Module,
                    optimizer: optax.GradientTransformation, axis_name: str | None = None
                    ) -> tuple[TrainState, Metrics]:
  """One Adam step on the next-position MSE; pure, jit- and pmap-able.

  Args:
    state: the current state (per device under pmap).
    batch: ``history`` [B, T_hist, N, 2], ``target`` [B, N, 2] (this device's shard).
    model: the abstract model.
    optimizer: the optax optimiser.
    axis_name: the pmap axis to average over, or None on one device.

  Returns:
    ``(new_state, metrics)``: ``loss`` (MSE of the batch before the update) and ``grad_norm``.
  """
  history = jnp.asarray(batch['history'], jnp.float32)  # [B, T_hist, N, 2]
  target = jnp.asarray(batch['target'], jnp.float32)  # [B, N, 2]

  def objective(params):
    return jnp.mean(jnp.square(model.apply({'params': params}, history) - target))

  loss, grads = jax.value_and_grad(objective)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    loss = jax.lax.pmean(loss, axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  rng, _ = jax.random.split(state.rng)
  return (TrainState(params=params, opt_state=opt_state, step=state.step + 1, rng=rng),
          {'loss': loss, 'grad_norm': optax.global_norm(grads)})


class BallsAbstractLearner(PmapLearner):
  """Trains the balls abstract model from a batch iterator, pmapped over local devices.

  Resumable from ``checkpoint_dir`` (full state: params, Adam, step, key); a non-finite loss
  raises ``FloatingPointError`` before anything is saved.

  Args:
    spec: from :func:`abstract_spec`.
    history: T_hist, input states per window.
    learning_rate: Adam's learning rate.
    seed: seeds initialisation.
    iterator: yields batches (module docstring), batch size divisible by the devices.
    checkpoint_dir: Orbax checkpoint directory, or None.
    save_every: save period in steps.
    keep: checkpoints kept.
    log_fn: ``log_fn(scalars, step)`` every ``log_every`` steps.
    log_every: logging period.
    devices: devices to pmap over (default: all local).
  """

  def __init__(self, spec: processors.ModelSpec, *, history: int, learning_rate: float,
               seed: int, iterator: Iterator[Batch], checkpoint_dir: str | None,
               save_every: int, keep: int,
               log_fn: Callable[[dict, int], None] | None = None, log_every: int = 100,
               devices: Sequence[jax.Device] | None = None):
    self._spec = spec
    self._iterator = iter(iterator)
    self._save_every, self._log_fn, self._log_every = save_every, log_fn, log_every
    self._devices = list(devices or jax.local_devices())
    self._model = make_abstract_model(spec)
    self._learning_rate = learning_rate
    self._optimizer = optax.adam(learning_rate)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
    dummy = jnp.zeros((1, history, spec.num_slots, 2), jnp.float32)
    params = jax.device_get(self._model.init(init_rng, dummy)['params'])
    state = TrainState(params=params, opt_state=self._optimizer.init(params),
                       step=np.zeros((), np.int32), rng=jax.device_get(state_rng))
    self._manager = None
    if checkpoint_dir is not None:
      self._manager = checkpointing.make_checkpoint_manager(checkpoint_dir, max_to_keep=keep)
      restored = checkpointing.restore_learner_state(self._manager, state)
      if restored is not None:
        state, _ = restored
    self._step = int(state.step)
    self._state = replicate(state, self._devices)
    self._update = jax.pmap(
        functools.partial(abstract_update, model=self._model, optimizer=self._optimizer,
                          axis_name='devices'),
        axis_name='devices', devices=self._devices, donate_argnums=(0,))

  @property
  def model(self) -> balls_net.BallsAbstractModel:
    return self._model

  def _dispatch(self) -> Metrics:
    batch = next(self._iterator)
    batch = {k: batch[k] for k in ('history', 'target')}
    self._state, metrics = self._update(self._state, shard_batch(batch, len(self._devices)))
    self._step += 1
    return metrics

  def _check(self, metrics: Metrics) -> dict[str, float]:
    metrics = {k: float(v) for k, v in jax.device_get(unreplicate(metrics)).items()}
    if not (math.isfinite(metrics['loss']) and math.isfinite(metrics['grad_norm'])):
      raise FloatingPointError(
          f'Balls abstract learner: non-finite loss at step {self._step} ({metrics}); the bad '
          f'state was not saved; {self._where_last_good()}.')
    return metrics

  def _save_state(self, step: int, state: TrainState) -> None:
    checkpointing.save_learner_state(self._manager, step, state)

  def _scalars(self, metrics: dict[str, float]) -> dict[str, float]:
    return dict(metrics, learning_rate=self._learning_rate)

  def export_processor(self, path: str) -> str:
    """Writes the processor export (params of P + spec); replaces an older one atomically."""
    return checkpointing.export_processor(path, self.params['processor'], self._spec.to_dict(),
                                          overwrite=True)


@functools.partial(jax.jit, static_argnames=('model', 'steps'))
def rollout(model: nn.Module, params: Any, history: jax.Array, steps: int) -> jax.Array:
  """Autoregressive rollout: each prediction becomes the newest input state.

  Args:
    model: the abstract model.
    params: its params.
    history: [B, T_hist, N, 2] the true input window.
    steps: R, predictions to make.

  Returns:
    [B, R, N, 2] predicted positions (step 1 is the ordinary 1-step prediction).
  """

  def body(window, _):
    pred = model.apply({'params': params}, window)  # [B, N, 2]
    return jnp.concatenate([window[:, 1:], pred[:, None]], axis=1), pred

  _, preds = jax.lax.scan(body, jnp.asarray(history, jnp.float32), None, length=steps)
  return jnp.swapaxes(preds, 0, 1)  # [B, R, N, 2]


def evaluate_abstract(model: nn.Module, params: Any, data: balls_data.TrajectorySet,
                      history: int, rollout_steps: int, batch_size: int) -> dict[str, Any]:
  """Exact validation errors over all windows and all rollout starts.

  Args:
    model: the abstract model.
    params: its params.
    data: the validation trajectories.
    history: T_hist.
    rollout_steps: R.
    batch_size: windows per forward pass.

  Returns:
    ``mse_1step`` (mean over every window, ball and coordinate), ``rollout_mse`` [R] (MSE at
    each rollout step over every start with R true future states), ``copy_last_mse_1step``
    (the baseline that predicts the newest input state), ``n_windows``, ``n_rollouts``.
  """
  positions = data.positions  # [E, T, N, 2]
  num_episodes, length = positions.shape[:2]
  starts = length - history - rollout_steps + 1
  if starts < 1:
    raise ValueError(f'episode_frames={length} is too short for history={history} plus a '
                     f'{rollout_steps}-step rollout')
  total = data.window_count(history)
  se_sum, count = 0.0, 0
  for start in range(0, total, batch_size):
    w = data.windows(np.arange(start, min(start + batch_size, total)), history, frames=False)
    pred = np.asarray(rollout(model, params, w['history'], 1))[:, 0]  # [b, N, 2]
    se_sum += float(np.sum(np.square(pred - w['target'], dtype=np.float64)))
    count += pred.size
  roll_se = np.zeros(rollout_steps)
  inputs = np.stack([positions[:, s:s + history] for s in range(starts)], 1)  # [E, S, h, N, 2]
  truth = np.stack([positions[:, s + history:s + history + rollout_steps]
                    for s in range(starts)], 1)  # [E, S, R, N, 2]
  inputs = inputs.reshape((-1,) + inputs.shape[2:])
  truth = truth.reshape((-1,) + truth.shape[2:])
  for start in range(0, len(inputs), batch_size):
    pred = np.asarray(rollout(model, params, inputs[start:start + batch_size], rollout_steps))
    roll_se += np.sum(np.square(pred - truth[start:start + batch_size], dtype=np.float64),
                      axis=(0, 2, 3))
  per_step = roll_se / (len(inputs) * truth.shape[2] * truth.shape[3])
  last = positions[:, history - 1:-1]  # [E, T - history, N, 2] the newest input state
  copy_mse = float(np.mean(np.square(positions[:, history:] - last, dtype=np.float64)))
  return {'mse_1step': se_sum / count, 'rollout_mse': per_step.tolist(),
          'copy_last_mse_1step': copy_mse,
          'n_windows': total, 'n_rollouts': int(len(inputs)),
          'n_episodes': int(num_episodes)}


# ---------------------------------------------------------------------------------------------
# Natural: frames, RMR and end-to-end x seeds in lockstep.
# ---------------------------------------------------------------------------------------------


class BallsNaturalState(NamedTuple):
  """Lockstep state; params / opt-state leaves have a leading model axis [M]."""
  params: Any  # {'encoder', 'projection', 'processor', 'decoder'}, leaves [M, ...]
  opt_state: optax.OptState
  step: jax.Array  # [] int32
  rng: jax.Array  # [2] uint32, split once per update (Slot Attention initial slots)
  fingerprint: jax.Array  # [M] uint32


def make_natural_model(config: config_lib.BallsNaturalConfig, spec: processors.ModelSpec,
                       image_size: int) -> balls_net.BallsNaturalModel:
  """Slot Attention f~, the processor of ``spec``, broadcast decoder g~."""
  encoder = slot_attention.SlotAttentionEncoder(
      num_slots=config.num_slots, slot_size=config.slot_size,
      cnn_channels=config.encoder_channels, kernel_size=config.encoder_kernel,
      num_conv_layers=config.encoder_layers, num_iterations=config.slot_iterations,
      mlp_hidden_size=2 * config.slot_size)
  decoder = broadcast_decoder.BroadcastDecoder(
      image_size=image_size, broadcast_size=config.broadcast_size,
      channels=config.decoder_channels, kernel_size=config.decoder_kernel)
  return balls_net.BallsNaturalModel(
      encoder=encoder, processor=processors.make_spec_processor(spec), decoder=decoder,
      latent_size=spec.latent_size)


def check_variants(variants: Sequence[str]) -> tuple[str, ...]:
  """``variants`` as a tuple; ValueError naming a bad or repeated one."""
  variants = tuple(variants)
  if not variants or len(set(variants)) != len(variants) or set(variants) - set(VARIANTS):
    raise ValueError(f'variants={variants!r}: need distinct variants from {VARIANTS}')
  return variants


def init_natural_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       rng: jax.Array, *, variants: Sequence[str], num_seeds: int,
                       processor_params: Any, history: int, image_size: int
                       ) -> BallsNaturalState:
  """Stacked initial parameters of variants x seeds (seed s: same f~, g~ in every variant).

  Raises:
    ValueError: the export's tree or shapes do not fit the model's processor.
  """
  init_rng, state_rng = jax.random.split(rng)
  frames = jnp.zeros((1, history, image_size, image_size, 3), jnp.uint8)
  init = jax.jit(lambda k: model.init({'params': k, 'slots': k}, frames)['params'])
  per_seed = [jax.device_get(init(jax.random.fold_in(init_rng, s))) for s in range(num_seeds)]
  stacked = natural_learning.stack_models(per_seed, variants, processor_params)
  return BallsNaturalState(params=stacked, opt_state=optimizer.init(stacked),
                           step=np.zeros((), np.int32), rng=jax.device_get(state_rng),
                           fingerprint=np.zeros((len(variants) * num_seeds,), np.uint32))


def natural_model_step(params: Any, trainable: jax.Array, fingerprint: jax.Array,
                       slot_key: jax.Array, inputs: Batch, row_offset: jax.Array, *,
                       model: nn.Module, axis_name: str | None = None
                       ) -> tuple[Any, Metrics, jax.Array]:
  """One model's gradient, loss and fingerprint (vmapped over the model axis).

  Args:
    params: ONE model's params.
    trainable: [] bool; False freezes P (stop_gradient).
    fingerprint: [] uint32 running fingerprint.
    slot_key: PRNGKey of Slot Attention's initial-slot noise (shared by paired models).
    inputs: ``frames`` [b, T_hist, H, W, 3], ``target_frame`` [b, H, W, 3] uint8.
    row_offset: global index of this shard's first row.
    model: the natural model.
    axis_name: pmap axis (fingerprint sum over shards), or None.
  """
  fingerprint = natural_learning.accumulate_fingerprint(
      fingerprint, natural_learning.batch_fingerprint(inputs, row_offset, axis_name,
                                                      keys=_FINGERPRINTED))

  def objective(p):
    frozen_or_not = lambda x: jnp.where(trainable, x, jax.lax.stop_gradient(x))
    p = dict(p, processor=jax.tree_util.tree_map(frozen_or_not, p['processor']))
    out = model.apply({'params': p}, inputs['frames'], rngs={'slots': slot_key})
    return losses.frame_mse(out['recon'], inputs['target_frame'])

  loss, grads = jax.value_and_grad(objective)(params)
  return grads, {'loss': loss}, fingerprint


def natural_update(state: BallsNaturalState, batch: Batch, *, model: nn.Module,
                   optimizer: optax.GradientTransformation, variants: Sequence[str],
                   axis_name: str | None = None) -> tuple[BallsNaturalState, Metrics]:
  """One lockstep step of all M models on one batch; pure, jit- and pmap-able.

  Returns:
    ``(new_state, metrics)``: ``loss`` [M] (per-pixel MSE of the batch before the update) and
    ``grad_norm`` [M].
  """
  num_models = jax.tree_util.tree_leaves(state.params)[0].shape[0]
  num_seeds = num_models // len(variants)
  trainable = jnp.asarray(natural_learning.processor_trainable(variants, num_seeds))  # [M]
  rng, step_key = jax.random.split(state.rng)
  inputs = {k: jnp.asarray(batch[k]) for k in _FINGERPRINTED}
  b = inputs['frames'].shape[0]
  if axis_name is None:
    row_offset = jnp.zeros((), jnp.int32)
  else:
    row_offset = jax.lax.axis_index(axis_name) * b
    step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))
  seed_of_model = jnp.arange(num_models) % num_seeds  # [M]
  slot_keys = jax.vmap(lambda s: jax.random.fold_in(step_key, s))(seed_of_model)  # [M, 2]
  step_fn = functools.partial(natural_model_step, model=model, axis_name=axis_name)
  grads, metrics, fingerprint = jax.vmap(step_fn, in_axes=(0, 0, 0, 0, None, None))(
      state.params, trainable, state.fingerprint, slot_keys, inputs, row_offset)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)
  metrics = dict(metrics, grad_norm=jax.vmap(optax.global_norm)(grads))
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return BallsNaturalState(params=params, opt_state=opt_state, step=state.step + 1, rng=rng,
                           fingerprint=fingerprint), metrics


class BallsNaturalLearner(natural_learning.LockstepLearner):
  """RMR and end-to-end x seeds in lockstep from one batch iterator, pmapped over devices.

  Resumable from ``checkpoint_dir``; a non-finite loss in any model raises
  ``FloatingPointError`` naming the models, before anything is saved.

  Args:
    config: the natural section of the balls config.
    processor_export: the abstract export; RMR freezes it, its spec gives every model's P.
    image_size: frame side.
    history: T_hist.
    seed: seeds initialisation and the slot noise.
    iterator: yields batches (module docstring).
    checkpoint_dir: Orbax checkpoint directory, or None.
    log_fn: ``log_fn(scalars, step)`` with ``'<variant>/seed_<s>/<metric>'`` keys.
    devices: devices to pmap over (default: all local).

  Raises:
    checkpointing.CheckpointError: missing or invalid export, or a checkpoint that does not
      fit (the message names the path).
  """
  _name = 'Balls natural learner'

  def __init__(self, config: config_lib.BallsNaturalConfig, *, processor_export: str,
               image_size: int, history: int, seed: int, iterator: Iterator[Batch],
               checkpoint_dir: str | None,
               log_fn: Callable[[dict, int], None] | None = None,
               devices: Sequence[jax.Device] | None = None):
    self._variants = check_variants(config.variants)
    self._num_seeds = config.num_seeds
    self._iterator = iter(iterator)
    self._save_every, self._log_fn, self._log_every = (config.save_every, log_fn,
                                                       config.log_every)
    self._learning_rate = config.learning_rate
    self._devices = list(devices or jax.local_devices())
    spec_dict, processor_params = checkpointing.restore_processor(processor_export)
    self._spec = processors.ModelSpec.from_dict(spec_dict)
    self._model = make_natural_model(config, self._spec, image_size)
    self._optimizer = natural_learning.make_optimizer(config.learning_rate, self._variants,
                                                      self._num_seeds)
    state = init_natural_state(
        self._model, self._optimizer, jax.random.PRNGKey(seed), variants=self._variants,
        num_seeds=self._num_seeds, processor_params=processor_params, history=history,
        image_size=image_size)
    self._manager = None
    if checkpoint_dir is not None:
      self._manager = checkpointing.make_checkpoint_manager(checkpoint_dir,
                                                            max_to_keep=config.keep_checkpoints)
      restored = natural_learning.restore_state(self._manager, state)
      if restored is not None:
        state = restored
    self._step = int(state.step)
    self._state = replicate(state, self._devices)
    self._update = jax.pmap(
        functools.partial(natural_update, model=self._model, optimizer=self._optimizer,
                          variants=self._variants, axis_name='devices'),
        axis_name='devices', devices=self._devices, donate_argnums=(0,))

  @property
  def model(self) -> balls_net.BallsNaturalModel:
    return self._model

  def model_params(self, variant: str, seed: int) -> Any:
    """One model's full params (host numpy)."""
    index = natural_learning.model_index(self._variants, self._num_seeds, variant, seed)
    return jax.tree_util.tree_map(lambda x: np.asarray(x[index]), self.params)

  def _dispatch(self) -> Metrics:
    batch = next(self._iterator)
    batch = {k: batch[k] for k in _FINGERPRINTED}
    self._state, metrics = self._update(self._state, shard_batch(batch, len(self._devices)))
    self._step += 1
    return metrics

  def _save_state(self, step: int, state: BallsNaturalState) -> None:
    natural_learning.save_state(self._manager, step, state)

  def _scalars(self, metrics: dict[str, np.ndarray]) -> dict[str, float]:
    scalars = natural_learning.flatten_metrics(metrics, self._variants, self._num_seeds)
    scalars['learning_rate'] = self._learning_rate
    return scalars


def make_predict_fn(model: balls_net.BallsNaturalModel) -> Callable[[Any, np.ndarray], dict]:
  """A jitted deterministic forward pass: ``fn(params, frames [B, T_hist, H, W, 3]) -> dict``."""
  return jax.jit(lambda params, frames: model.apply({'params': params}, frames,
                                                    deterministic=True))


def evaluate_natural(predict_fn: Callable[[Any, np.ndarray], dict], params: Any,
                     data: balls_data.TrajectorySet, history: int, indices: np.ndarray,
                     batch_size: int) -> float:
  """Per-pixel MSE (frames in [0, 1]) of one model's next-frame predictions on ``indices``."""
  se_sum, count = 0.0, 0
  for start in range(0, len(indices), batch_size):
    w = data.windows(indices[start:start + batch_size], history)
    recon = np.asarray(predict_fn(params, w['frames'])['recon'], np.float64)  # [b, H, W, 3]
    se_sum += float(np.sum(np.square(recon - w['target_frame'] / 255.0)))
    count += recon.size
  return se_sum / count


def copy_last_frame_mse(data: balls_data.TrajectorySet, history: int,
                        indices: np.ndarray) -> float:
  """Per-pixel MSE of predicting the newest input frame as the next (a no-learning baseline)."""
  w = data.windows(indices, history)
  diff = w['frames'][:, -1].astype(np.float64) - w['target_frame']
  return float(np.mean(np.square(diff / 255.0)))


def natural_rollout(predict_fn: Callable[[Any, np.ndarray], dict], params: Any,
                    frames: np.ndarray, steps: int) -> dict[str, np.ndarray]:
  """Autoregressive frame rollout from one true window (predictions fed back as inputs).

  Args:
    predict_fn: from :func:`make_predict_fn`.
    params: one model's params.
    frames: [T_hist, H, W, 3] uint8, the true input frames.
    steps: predictions to make.

  Returns:
    ``frames`` [steps, H, W, 3] uint8 predictions and ``masks`` [steps, K, H, W] float32.
  """
  window = np.asarray(frames)[None]  # [1, T_hist, H, W, 3]
  preds, masks = [], []
  for _ in range(steps):
    out = predict_fn(params, window)
    frame = np.clip(np.asarray(out['recon'][0]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    preds.append(frame)
    masks.append(np.asarray(out['masks'][0, ..., 0]))
    window = np.concatenate([window[:, 1:], frame[None, None]], axis=1)
  return {'frames': np.stack(preds), 'masks': np.stack(masks)}
