"""Bouncing-balls natural learner (paper section 3, Appendix A): RMR and end-to-end in lockstep.

``g~(P(f~(x)))`` on frames (``networks.balls.BallsNaturalModel``), per-pixel MSE on the next
frame (``losses.frame_mse``). Batches ``{'frames': [B, T_hist, H, W, 3], 'target_frame':
[B, H, W, 3]}`` uint8. As in the Atari natural learner (``learning.natural``), the V variants
x S seeds are M models stacked on a leading axis and trained by ONE vmapped step on ONE batch:

  'rmr'         P is the abstract export (``learning.balls_abstract``), frozen (stop_gradient
                in the loss and -0.0 updates from ``natural.freeze_processor``):
                bit-identical to the export throughout;
  'end_to_end'  the same pipeline with P initialised fresh and trained (the baseline).

Autoencoding warm-start (``natural.autoencode_steps``, a departure from App. A, which trains
next-frame prediction from the start): the first updates train f~, the projection and g~ to
reconstruct the LAST INPUT frame with P bypassed (``skip_processor``: g~ decodes f~'s latents
directly); the next-frame objective through P takes over after them from a fresh Adam state,
its schedule (warm-up, decay) restarting: the moments of the autoencoding gradients do not
fit the new objective, whose first gradients are large (P's output is new to g~). P is not
used in the warm-start, so paired models get identical updates and leave it with identical
f~, g~ (the comparison stays paired); P itself (trained or frozen) is untouched. Why:
trained through the frozen P from the start, slot masks that found the balls depended on the
seed (README, "Bouncing balls"); after the warm-start the slots already sit on the balls when
P enters.

Seed s gives every variant the same f~ and g~ initialisation and the same Slot Attention
initial-slot noise at every step, so within a pair only the processor differs. Each model
folds a fingerprint of the arrays its loss reads into ``state.fingerprint``: equal
fingerprints show the paired models consumed the same batches in the same order.
:func:`make_predict_fn` gives the deterministic forward pass that ``evaluation.balls_eval``
scores.
"""

from __future__ import annotations

import functools
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
from rmr_dist.learning import optimizers
from rmr_dist.learning.loop import Batch, Metrics
from rmr_dist.networks import balls as balls_net
from rmr_dist.networks import broadcast_decoder
from rmr_dist.networks import processors
from rmr_dist.networks import slot_attention

VARIANTS = config_lib.BALLS_VARIANTS  # ('rmr', 'end_to_end')
_FINGERPRINTED = ('frames', 'target_frame')


class BallsNaturalState(NamedTuple):
  """Lockstep state; params / opt-state leaves have a leading model axis [M]."""
  params: Any  # {'encoder', 'projection', 'processor', 'decoder'}, leaves [M, ...]
  opt_state: optax.OptState
  step: jax.Array  # [] int32
  rng: jax.Array  # [2] uint32, split once per update (Slot Attention initial slots)
  fingerprint: jax.Array  # [M] uint32


def make_natural_model(config: config_lib.BallsNaturalConfig, spec: processors.ModelSpec,
                       image_size: int, displacement_scale: float
                       ) -> balls_net.BallsNaturalModel:
  """Slot Attention f~, the processor of ``spec``, broadcast decoder g~.

  ``displacement_scale``: S of the sim (``SimConfig.displacement_scale``), the same as the
  abstract model's, so positions reach P's latents on the abstract f's scale.
  """
  encoder = slot_attention.SlotAttentionEncoder(
      num_slots=config.num_slots, slot_size=config.slot_size,
      cnn_channels=config.encoder_channels, kernel_size=config.encoder_kernel,
      num_conv_layers=config.encoder_layers, num_iterations=config.slot_iterations,
      mlp_hidden_size=2 * config.slot_size, slot_init=config.slot_init,
      attention_locality=config.attention_locality)
  decoder = broadcast_decoder.BroadcastDecoder(
      image_size=image_size, channels=config.decoder_channels,
      num_layers=config.decoder_layers, position_scale=config.position_scale,
      displacement_scale=displacement_scale)
  return balls_net.BallsNaturalModel(
      encoder=encoder, processor=processors.make_spec_processor(spec), decoder=decoder,
      latent_size=spec.latent_size, processor_graph=config.processor_graph)


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
                       model: nn.Module, autoencode: bool = False,
                       axis_name: str | None = None) -> tuple[Any, Metrics, jax.Array]:
  """One model's gradient, loss and fingerprint (vmapped over the model axis).

  Args:
    params: ONE model's params.
    trainable: [] bool; False freezes P (stop_gradient).
    fingerprint: [] uint32 running fingerprint.
    slot_key: PRNGKey of Slot Attention's initial-slot noise (shared by paired models).
    inputs: ``frames`` [b, T_hist, H, W, 3], ``target_frame`` [b, H, W, 3] uint8.
    row_offset: global index of this shard's first row.
    model: the natural model.
    autoencode: the warm-start objective (P bypassed, the target the LAST INPUT frame;
      module docstring) instead of the next frame.
    axis_name: pmap axis (fingerprint sum over shards), or None.
  """
  fingerprint = natural_learning.accumulate_fingerprint(
      fingerprint, natural_learning.batch_fingerprint(inputs, row_offset, axis_name,
                                                      keys=_FINGERPRINTED))

  # Slot Attention's initial-slot noise, drawn per GLOBAL row: 1 device == N devices.
  rows = row_offset + jnp.arange(inputs['frames'].shape[0])  # [b]
  shape = (model.encoder.num_slots, model.encoder.slot_size)
  noise = jax.vmap(lambda r: jax.random.normal(jax.random.fold_in(slot_key, r), shape))(rows)

  target = inputs['frames'][:, -1] if autoencode else inputs['target_frame']

  def objective(p):
    frozen_or_not = lambda x: jnp.where(trainable, x, jax.lax.stop_gradient(x))
    p = dict(p, processor=jax.tree_util.tree_map(frozen_or_not, p['processor']))
    out = model.apply({'params': p}, inputs['frames'], slot_noise=noise,
                      skip_processor=autoencode)
    return losses.frame_mse(out['recon'], target)

  loss, grads = jax.value_and_grad(objective)(params)
  return grads, {'loss': loss}, fingerprint


def natural_update(state: BallsNaturalState, batch: Batch, *, model: nn.Module,
                   optimizer: optax.GradientTransformation, variants: Sequence[str],
                   autoencode: bool = False, restart_step: int = 0,
                   axis_name: str | None = None) -> tuple[BallsNaturalState, Metrics]:
  """One lockstep step of all M models on one batch; pure, jit- and pmap-able.

  ``autoencode`` (static): a warm-start update (module docstring). ``restart_step`` (static,
  0: never): the update with ``state.step == restart_step`` first resets the optimiser state
  (Adam's moments and its schedule's count), as the first next-frame update after the
  warm-start does. (Two functions, not a ``lax.cond`` on the step: under ``vmap`` and ``grad``
  XLA:CPU ran such a conditional several times slower than either branch.)

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
  seed_of_model = jnp.arange(num_models) % num_seeds  # [M]
  slot_keys = jax.vmap(lambda s: jax.random.fold_in(step_key, s))(seed_of_model)  # [M, 2]
  step_fn = functools.partial(natural_model_step, model=model, autoencode=autoencode,
                              axis_name=axis_name)
  grads, metrics, fingerprint = jax.vmap(step_fn, in_axes=(0, 0, 0, 0, None, None))(
      state.params, trainable, state.fingerprint, slot_keys, inputs, row_offset)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)
  metrics = dict(metrics, grad_norm=jax.vmap(optax.global_norm)(grads))
  opt_state = state.opt_state
  if restart_step:  # the next-frame phase starts from a fresh Adam state and schedule
    fresh = optimizer.init(state.params)
    restart = state.step == restart_step
    opt_state = jax.tree_util.tree_map(lambda f, o: jnp.where(restart, f, o), fresh, opt_state)
  updates, opt_state = optimizer.update(grads, opt_state, state.params)
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
    displacement_scale: S of the sim (``make_natural_model``).
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
               image_size: int, displacement_scale: float, history: int, seed: int,
               iterator: Iterator[Batch],
               checkpoint_dir: str | None,
               log_fn: Callable[[dict, int], None] | None = None,
               devices: Sequence[jax.Device] | None = None):
    self._variants = check_variants(config.variants)
    self._num_seeds = config.num_seeds
    self._autoencode_steps = config.autoencode_steps
    self._schedule = optimizers.make_schedule(config.learning_rate, config.warmup_steps,
                                              config.decay_rate, config.decay_steps,
                                              config.lr_decay)
    spec_dict, processor_params = checkpointing.restore_processor(processor_export)
    self._spec = processors.ModelSpec.from_dict(spec_dict)
    self._model = make_natural_model(config, self._spec, image_size, displacement_scale)
    self._optimizer = natural_learning.make_optimizer(self._schedule, self._variants,
                                                      self._num_seeds, config.grad_clip_norm)
    state = init_natural_state(
        self._model, self._optimizer, jax.random.PRNGKey(seed), variants=self._variants,
        num_seeds=self._num_seeds, processor_params=processor_params, history=history,
        image_size=image_size)
    update = functools.partial(natural_update, model=self._model, optimizer=self._optimizer,
                               variants=self._variants)
    self._setup(state, functools.partial(update, restart_step=config.autoencode_steps),
                iterator=iterator, batch_keys=_FINGERPRINTED, checkpoint_dir=checkpoint_dir,
                keep=config.keep_checkpoints, save_every=config.save_every, log_fn=log_fn,
                log_every=config.log_every, devices=devices,
                restore_fn=natural_learning.restore_state)
    self._autoencode_update = (self._pmap(functools.partial(update, autoencode=True))
                               if config.autoencode_steps else None)

  def _update_for_step(self, step: int) -> Callable:
    return self._autoencode_update if step < self._autoencode_steps else self._update

  @property
  def model(self) -> balls_net.BallsNaturalModel:
    return self._model

  @property
  def learning_rate(self) -> float:
    """The rate of the next update (the schedule restarts with the next-frame phase)."""
    step = self._step
    if self._autoencode_steps and step >= self._autoencode_steps:
      step -= self._autoencode_steps
    return float(self._schedule(step))

  def model_params(self, variant: str, seed: int) -> Any:
    """One model's full params (host numpy)."""
    index = natural_learning.model_index(self._variants, self._num_seeds, variant, seed)
    return jax.tree_util.tree_map(lambda x: np.asarray(x[index]), self.params)

  def _save_state(self, step: int, state: BallsNaturalState) -> None:
    natural_learning.save_state(self._manager, step, state)

  def _scalars(self, metrics: dict[str, np.ndarray]) -> dict[str, float]:
    scalars = natural_learning.flatten_metrics(metrics, self._variants, self._num_seeds)
    scalars['learning_rate'] = self.learning_rate
    return scalars


def make_predict_fn(model: balls_net.BallsNaturalModel) -> Callable[[Any, np.ndarray], dict]:
  """A jitted deterministic forward pass: ``fn(params, frames [B, T_hist, H, W, 3]) -> dict``."""
  return jax.jit(lambda params, frames: model.apply({'params': params}, frames,
                                                    deterministic=True))
