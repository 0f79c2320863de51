"""Bouncing-balls natural learner (paper section 3, Appendix A): RMR and its controls in lockstep.

``g~(P(f~(x)))`` on frames (``networks.balls.BallsNaturalModel``), per-pixel MSE on the next
frame (``losses.frame_mse``). Batches ``{'frames': [B, T_hist, H, W, 3], 'target_frame':
[B, H, W, 3]}`` uint8. As in the Atari natural learner (``learning.atari_natural``; both build on
``learning.lockstep``), the V variants x S seeds are M models stacked on a leading axis and
trained by ONE vmapped step on ONE batch:

  'rmr'         P is the abstract export (``learning.balls_abstract``), frozen (stop_gradient
                in the loss and -0.0 updates from ``lockstep.freeze_processor``):
                bit-identical to the export throughout;
  'end_to_end'  the same pipeline with P initialised fresh and trained (the baseline);
  'rmr_random_p'  RMR through a frozen P that was never trained: seed s's fresh P (the
                end-to-end model's starting P), frozen like RMR's (the control for "the
                pre-training is what helps"; ``lockstep.stack_models`` keeps it).

With ``slot_latents='abstract_f'`` the abstract f is part of the pipeline too
(``networks.balls``): RMR takes the trained f with P (``abstract_encoder``, from the abstract
stage) and freezes both, 'rmr_random_p' freezes seed s's fresh f with its fresh P, and
end-to-end trains both (:func:`frozen_paths`).

Autoencoding warm-start (``natural.autoencode_steps``, a departure from App. A, which trains
next-frame prediction from the start): the first updates train f~, the projection (with
'abstract_f' slot latents: the appearance Dense) and g~ to reconstruct the LAST INPUT frame with
P bypassed (``skip_processor``: g~ decodes f~'s latents directly, or zeros in place of P's
output); the next-frame objective through P takes over after them from a fresh Adam state,
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

Oracle (:class:`BallsOracleLearner`, the upper reference for "using P"): the abstract f on
the TRUE positions (``history``), P, and g~ alone learned (``networks.balls.BallsOracleModel``),
the same variants x seeds in lockstep on the same batch sequence, with the same warm-start
(drawing the last input frame, P's output replaced by zeros) and schedule: 'rmr' through the
trained f and P, 'rmr_random_p' through seed s's fresh ones, 'end_to_end' learning them too.
Only the oracle reads positions; the natural learner reads frames alone (``_FINGERPRINTED``).
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
from rmr_dist.learning import lockstep
from rmr_dist.learning import optimizers
from rmr_dist.learning.loop import Batch, Metrics
from rmr_dist.networks import balls as balls_net
from rmr_dist.networks import broadcast_decoder
from rmr_dist.networks import processors
from rmr_dist.networks import slot_attention

VARIANTS = config_lib.BALLS_VARIANTS  # ('rmr', 'end_to_end', 'rmr_random_p')
_FINGERPRINTED = ('frames', 'target_frame')  # all the natural learner reads of a batch
_ORACLE_KEYS = ('history',) + _FINGERPRINTED  # all the oracle reads (true positions too)


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
  return balls_net.BallsNaturalModel(
      encoder=encoder, processor=processors.make_spec_processor(spec),
      decoder=_make_decoder(
          config, image_size, displacement_scale,
          spec.latent_size if config.readout_init == 'zeros' else 0),  # P's output leads z
      latent_size=spec.latent_size, processor_graph=config.processor_graph,
      slot_latents=config.slot_latents, appearance_input=config.appearance,
      appearance_size=config.slot_size if config.appearance == 'last_slot'
      else spec.latent_size)


def _make_decoder(config: config_lib.BallsNaturalConfig, image_size: int,
                  displacement_scale: float, zero_inputs: int = 0
                  ) -> broadcast_decoder.BroadcastDecoder:
  """g~: the broadcast decoder of the natural and oracle models (``zero_inputs``: leading
  latent features whose weights start at zero)."""
  return broadcast_decoder.BroadcastDecoder(
      image_size=image_size, channels=config.decoder_channels,
      num_layers=config.decoder_layers, position_scale=config.position_scale,
      displacement_scale=displacement_scale, zero_inputs=zero_inputs)


def frozen_paths(model: nn.Module) -> tuple[tuple[str, ...], ...]:
  """The subtrees the frozen variants keep fixed: P, and the abstract f where the model has
  one (``abstract_encoder``: 'abstract_f' slot latents, or the oracle)."""
  reads_f = (isinstance(model, balls_net.BallsOracleModel)
             or getattr(model, 'slot_latents', 'projection') == 'abstract_f')
  return (('processor',), ('abstract_encoder',)) if reads_f else (('processor',),)


def plug_abstract_encoder(stacked: Any, variants: Sequence[str], num_seeds: int,
                          abstract_encoder: Any) -> Any:
  """``stacked`` with the export variants' (RMR's) ``abstract_encoder`` set to the trained f.

  Args:
    stacked: params with leaves [V * S, ...] and an ``abstract_encoder`` subtree.
    variants: model-axis variants.
    num_seeds: S.
    abstract_encoder: ``params['encoder']`` of the abstract model (``kernel`` [2T, D],
      ``bias`` [D]).

  Raises:
    ValueError: its tree or shapes do not fit.
  """
  fresh = jax.tree_util.tree_map(lambda x: np.shape(x)[1:], stacked['abstract_encoder'])
  given = jax.tree_util.tree_map(np.shape, abstract_encoder)
  if fresh != given:
    raise ValueError(f'The abstract f does not fit the natural model\'s: given {given}, '
                     f'model {fresh}')
  rows = [lockstep.model_index(variants, num_seeds, v, s) for v in variants
          if v in lockstep.EXPORT_VARIANTS for s in range(num_seeds)]

  def plug(stack, leaf):
    stack = np.array(stack)
    stack[rows] = np.asarray(leaf, stack.dtype)
    return stack

  return dict(stacked, abstract_encoder=jax.tree_util.tree_map(
      plug, stacked['abstract_encoder'], abstract_encoder))


def check_variants(variants: Sequence[str]) -> tuple[str, ...]:
  """``variants`` as a tuple; ValueError naming a bad or repeated one."""
  variants = tuple(variants)
  if not variants or len(set(variants)) != len(variants) or set(variants) - set(VARIANTS):
    raise ValueError(f'variants={variants!r}: need distinct variants from {VARIANTS}')
  return variants


def init_natural_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       rng: jax.Array, *, variants: Sequence[str], num_seeds: int,
                       processor_params: Any, history: int, image_size: int,
                       abstract_encoder: Any = None) -> BallsNaturalState:
  """Stacked initial parameters of variants x seeds (seed s: same f~, g~ in every variant).

  ``abstract_encoder``: the trained abstract f (``params['encoder']`` of the abstract model)
  for RMR, where the model reads one (``slot_latents='abstract_f'``); None leaves every
  variant seed s's fresh f (benchmarks; :class:`BallsNaturalLearner` requires it).

  Raises:
    ValueError: the export's (or f's) tree or shapes do not fit the model.
  """
  init_rng, state_rng = jax.random.split(rng)
  frames = jnp.zeros((1, history, image_size, image_size, 3), jnp.uint8)
  init = _shared_jit(model, 'init')
  per_seed = [jax.device_get(init(jax.random.fold_in(init_rng, s), frames))
              for s in range(num_seeds)]
  stacked = lockstep.stack_models(per_seed, variants, processor_params)
  if abstract_encoder is not None and 'abstract_encoder' in stacked:
    stacked = plug_abstract_encoder(stacked, variants, num_seeds, abstract_encoder)
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
    trainable: [] bool; False freezes P (and the abstract f; :func:`frozen_paths`) by
      stop_gradient.
    fingerprint: [] uint32 running fingerprint.
    slot_key: PRNGKey of Slot Attention's initial-slot noise (shared by paired models).
    inputs: ``frames`` [b, T_hist, H, W, 3], ``target_frame`` [b, H, W, 3] uint8.
    row_offset: global index of this shard's first row.
    model: the natural model.
    autoencode: the warm-start objective (P bypassed, the target the LAST INPUT frame;
      module docstring) instead of the next frame.
    axis_name: pmap axis (fingerprint sum over shards), or None.
  """
  fingerprint = lockstep.accumulate_fingerprint(
      fingerprint, lockstep.batch_fingerprint(inputs, row_offset, axis_name,
                                              keys=_FINGERPRINTED))

  # Slot Attention's initial-slot noise, drawn per GLOBAL row: 1 device == N devices.
  rows = row_offset + jnp.arange(inputs['frames'].shape[0])  # [b]
  shape = (model.encoder.num_slots, model.encoder.slot_size)
  noise = jax.vmap(lambda r: jax.random.normal(jax.random.fold_in(slot_key, r), shape))(rows)

  target = inputs['frames'][:, -1] if autoencode else inputs['target_frame']

  def objective(p):
    p = lockstep.stop_frozen(p, trainable, frozen_paths(model))
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
  trainable = jnp.asarray(lockstep.processor_trainable(variants, num_seeds))  # [M]
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
  grads, metrics, fingerprint = lockstep.per_model(
      step_fn, (state.params, trainable, state.fingerprint, slot_keys), inputs, row_offset)
  return _apply_grads(state, grads, metrics, fingerprint, rng, optimizer=optimizer,
                      restart_step=restart_step, axis_name=axis_name)


def _apply_grads(state: BallsNaturalState, grads: Any, metrics: Metrics,
                 fingerprint: jax.Array, rng: jax.Array, *,
                 optimizer: optax.GradientTransformation, restart_step: int = 0,
                 axis_name: str | None = None) -> tuple[BallsNaturalState, Metrics]:
  """The lockstep update's second half: pmean over devices, the optimiser, the new state."""
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


def oracle_model_step(params: Any, trainable: jax.Array, fingerprint: jax.Array,
                      inputs: Batch, row_offset: jax.Array, *, model: nn.Module,
                      autoencode: bool = False, axis_name: str | None = None
                      ) -> tuple[Any, Metrics, jax.Array]:
  """One oracle model's gradient, loss and fingerprint (vmapped over the model axis).

  Args:
    params: ONE oracle model's params.
    trainable: [] bool; False freezes f and P (stop_gradient).
    fingerprint: [] uint32 running fingerprint (of the frames).
    inputs: ``history`` [b, T_hist, N, 2] float32 true positions, ``frames``
      [b, T_hist, H, W, 3] and ``target_frame`` [b, H, W, 3] uint8.
    row_offset: global index of this shard's first row.
    model: the oracle model.
    autoencode: the warm-start objective, as the natural models' (P bypassed, the target the
      last input frame).
    axis_name: pmap axis (fingerprint sum over shards), or None.
  """
  fingerprint = lockstep.accumulate_fingerprint(
      fingerprint, lockstep.batch_fingerprint(inputs, row_offset, axis_name,
                                              keys=_FINGERPRINTED))
  target = inputs['frames'][:, -1] if autoencode else inputs['target_frame']

  def objective(p):
    p = lockstep.stop_frozen(p, trainable, frozen_paths(model))
    out = model.apply({'params': p}, inputs['history'], skip_processor=autoencode)
    return losses.frame_mse(out['recon'], target)

  loss, grads = jax.value_and_grad(objective)(params)
  return grads, {'loss': loss}, fingerprint


def oracle_update(state: BallsNaturalState, batch: Batch, *, model: nn.Module,
                  optimizer: optax.GradientTransformation, variants: Sequence[str],
                  autoencode: bool = False, restart_step: int = 0,
                  axis_name: str | None = None) -> tuple[BallsNaturalState, Metrics]:
  """One lockstep step of every oracle model on one batch; pure, jit- and pmap-able.

  ``autoencode`` and ``restart_step`` (static): the warm-start, as :func:`natural_update`.

  Returns:
    ``(new_state, metrics)``: ``loss`` [M] and ``grad_norm`` [M].
  """
  num_models = jax.tree_util.tree_leaves(state.params)[0].shape[0]
  trainable = jnp.asarray(lockstep.processor_trainable(
      variants, num_models // len(variants)))  # [M]
  rng, _ = jax.random.split(state.rng)
  inputs = {'history': jnp.asarray(batch['history'], jnp.float32),
            **{k: jnp.asarray(batch[k]) for k in _FINGERPRINTED}}
  row_offset = (jnp.zeros((), jnp.int32) if axis_name is None
                else jax.lax.axis_index(axis_name) * inputs['history'].shape[0])
  step_fn = functools.partial(oracle_model_step, model=model, autoencode=autoencode,
                              axis_name=axis_name)
  grads, metrics, fingerprint = lockstep.per_model(
      step_fn, (state.params, trainable, state.fingerprint), inputs, row_offset)
  return _apply_grads(state, grads, metrics, fingerprint, rng, optimizer=optimizer,
                      restart_step=restart_step, axis_name=axis_name)


class _WarmStartLearner(lockstep.LockstepLearner):
  """What the natural and oracle learners share: the warm-start's update for its steps and
  the schedule's restart after it, one model's params, per-model scalars."""

  _autoencode_steps: int
  _autoencode_update: Callable | None
  _model: nn.Module

  def _setup_warm_start(self, update: Callable, autoencode_steps: int) -> None:
    """Call after ``_setup``: the pmapped warm-start update (``update`` with
    ``autoencode=True``) for the first ``autoencode_steps`` updates."""
    self._autoencode_steps = autoencode_steps
    self._autoencode_update = (self._pmap(functools.partial(update, autoencode=True))
                               if autoencode_steps else None)

  def _update_for_step(self, step: int) -> Callable:
    return self._autoencode_update if step < self._autoencode_steps else self._update

  @property
  def model(self) -> nn.Module:
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
    index = lockstep.model_index(self._variants, self._num_seeds, variant, seed)
    return jax.tree_util.tree_map(lambda x: np.asarray(x[index]), self.params)

  def _scalars(self, metrics: dict[str, np.ndarray]) -> dict[str, float]:
    scalars = lockstep.flatten_metrics(metrics, self._variants, self._num_seeds)
    scalars['learning_rate'] = self.learning_rate
    return scalars


class BallsNaturalLearner(_WarmStartLearner):
  """RMR and its controls x seeds in lockstep from one batch iterator, pmapped over devices.

  Resumable from ``checkpoint_dir``; a non-finite loss in any model raises
  ``FloatingPointError`` naming the models, before anything is saved.

  Args:
    config: the natural section of the balls config.
    processor_export: the abstract export; RMR freezes it, its spec gives every model's P.
    abstract_encoder: the trained abstract f (``params['encoder']`` of the abstract model);
      required when RMR reads it (``config.slot_latents == 'abstract_f'``).
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
    ValueError: RMR reads the abstract f and none was given.
  """
  _name = 'Balls natural learner'

  def __init__(self, config: config_lib.BallsNaturalConfig, *, processor_export: str,
               image_size: int, displacement_scale: float, history: int, seed: int,
               iterator: Iterator[Batch],
               checkpoint_dir: str | None,
               log_fn: Callable[[dict, int], None] | None = None,
               devices: Sequence[jax.Device] | None = None,
               abstract_encoder: Any = None):
    self._variants = check_variants(config.variants)
    self._num_seeds = config.num_seeds
    self._schedule = optimizers.make_schedule(config.learning_rate, config.warmup_steps,
                                              config.decay_rate, config.decay_steps,
                                              config.lr_decay)
    spec_dict, processor_params = checkpointing.restore_processor(processor_export)
    self._spec = processors.ModelSpec.from_dict(spec_dict)
    self._model = make_natural_model(config, self._spec, image_size, displacement_scale)
    if (config.slot_latents == 'abstract_f' and abstract_encoder is None
        and set(self._variants) & set(lockstep.EXPORT_VARIANTS)):
      raise ValueError("slot_latents='abstract_f': RMR needs the trained abstract f "
                       '(abstract_encoder=params["encoder"] of the abstract model).')
    self._optimizer = lockstep.make_optimizer(
        self._schedule, self._variants, self._num_seeds, config.grad_clip_norm,
        paths=frozen_paths(self._model))
    state = init_natural_state(
        self._model, self._optimizer, jax.random.PRNGKey(seed), variants=self._variants,
        num_seeds=self._num_seeds, processor_params=processor_params, history=history,
        image_size=image_size, abstract_encoder=abstract_encoder)
    update = functools.partial(natural_update, model=self._model, optimizer=self._optimizer,
                               variants=self._variants)
    self._setup(state, functools.partial(update, restart_step=config.autoencode_steps),
                iterator=iterator, batch_keys=_FINGERPRINTED, checkpoint_dir=checkpoint_dir,
                keep=config.keep_checkpoints, save_every=config.save_every, log_fn=log_fn,
                log_every=config.log_every, devices=devices,
                restore_fn=lockstep.restore_state)
    self._setup_warm_start(update, config.autoencode_steps)

  def _save_state(self, step: int, state: BallsNaturalState) -> None:
    lockstep.save_state(self._manager, step, state)


def make_predict_fn(model: balls_net.BallsNaturalModel) -> Callable[[Any, np.ndarray], dict]:
  """A jitted deterministic forward pass: ``fn(params, frames [B, T_hist, H, W, 3]) -> dict``
  (one per model in a process: :func:`_shared_jit`)."""
  return _shared_jit(model, 'predict')


def make_oracle_model(config: config_lib.BallsNaturalConfig, spec: processors.ModelSpec,
                      image_size: int, displacement_scale: float
                      ) -> balls_net.BallsOracleModel:
  """The oracle: the abstract f on true positions, the processor of ``spec``, the natural
  model's g~ (:func:`make_natural_model`'s decoder)."""
  return balls_net.BallsOracleModel(
      processor=processors.make_spec_processor(spec),
      decoder=_make_decoder(config, image_size, displacement_scale),
      latent_size=spec.latent_size, appearance_size=config.slot_size)


class BallsOracleLearner(_WarmStartLearner):
  """The oracle's variants x seeds in lockstep (module docstring), pmapped over devices.

  Trained as the natural models are (the same warm-start, schedule and restart) over
  ``config.oracle_steps`` updates; not checkpointed (it takes a fraction of the natural
  learner's time).

  Args:
    config: the natural section of the balls config.
    processor_export: the abstract export (RMR's P; its spec gives every model's P).
    abstract_encoder: the trained abstract f (RMR's f).
    num_balls: N.
    image_size: frame side.
    displacement_scale: S of the sim.
    history: T_hist.
    seed: seeds initialisation (seed s: the same g~ in every variant).
    iterator: yields batches with ``history`` and ``target_frame``.
    log_fn: ``log_fn(scalars, step)`` with ``'<variant>/seed_<s>/<metric>'`` keys.
    devices: devices to pmap over (default: all local).
  """
  _name = 'Balls oracle learner'

  def __init__(self, config: config_lib.BallsNaturalConfig, *, processor_export: str,
               abstract_encoder: Any, num_balls: int, image_size: int,
               displacement_scale: float, history: int, seed: int, iterator: Iterator[Batch],
               log_fn: Callable[[dict, int], None] | None = None,
               devices: Sequence[jax.Device] | None = None):
    self._variants = check_variants(config.variants)
    self._num_seeds = config.num_seeds
    self._schedule = optimizers.make_schedule(config.learning_rate, config.warmup_steps,
                                              config.decay_rate, config.decay_steps,
                                              config.lr_decay)
    spec_dict, processor_params = checkpointing.restore_processor(processor_export)
    self._model = make_oracle_model(config, processors.ModelSpec.from_dict(spec_dict),
                                    image_size, displacement_scale)
    self._optimizer = lockstep.make_optimizer(
        self._schedule, self._variants, self._num_seeds, config.grad_clip_norm,
        paths=frozen_paths(self._model))
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
    positions = jnp.zeros((1, history, num_balls, 2), jnp.float32)
    init = _shared_jit(self._model, 'init')
    per_seed = [jax.device_get(init(jax.random.fold_in(init_rng, s), positions))
                for s in range(self._num_seeds)]
    stacked = lockstep.stack_models(per_seed, self._variants, processor_params)
    stacked = plug_abstract_encoder(stacked, self._variants, self._num_seeds, abstract_encoder)
    state = BallsNaturalState(
        params=stacked, opt_state=self._optimizer.init(stacked), step=np.zeros((), np.int32),
        rng=jax.device_get(state_rng),
        fingerprint=np.zeros((len(self._variants) * self._num_seeds,), np.uint32))
    update = functools.partial(oracle_update, model=self._model, optimizer=self._optimizer,
                               variants=self._variants)
    self._setup(state, functools.partial(update, restart_step=config.autoencode_steps),
                iterator=iterator, batch_keys=_ORACLE_KEYS, checkpoint_dir=None, keep=1,
                save_every=0, log_fn=log_fn, log_every=config.log_every, devices=devices)
    self._setup_warm_start(update, config.autoencode_steps)


def make_oracle_predict_fn(model: balls_net.BallsOracleModel
                           ) -> Callable[[Any, np.ndarray], dict]:
  """A jitted forward pass: ``fn(params, history [B, T_hist, N, 2]) -> dict`` (one per model
  in a process: :func:`_shared_jit`)."""
  return _shared_jit(model, 'predict')


def _shared_jit(model: nn.Module, kind: str) -> Callable[..., Any]:
  """``kind``'s jitted function of ``model``, one per model in a process
  (``lockstep.jit_per_model``), so the stage's training evaluation, final evaluation and
  rollouts, the ladder tool and the oracle reuse one compiled executable per input shape:

  - 'init': ``fn(key, inputs) -> params``; the natural model draws its slot noise from
    ``key`` too (``{'params': key, 'slots': key}``), the oracle has none;
  - 'predict': ``fn(params, inputs) -> dict``, deterministic for the natural model.
  """
  makers = {'init': _jit_init, 'predict': _jit_predict}
  if kind not in makers:
    raise ValueError(f'Unknown jitted function {kind!r}; valid: {", ".join(makers)}')
  return lockstep.jit_per_model(makers[kind], model)


def _jit_init(model: nn.Module) -> Callable[..., Any]:
  natural = isinstance(model, balls_net.BallsNaturalModel)
  rngs = (lambda k: {'params': k, 'slots': k}) if natural else (lambda k: k)
  return jax.jit(lambda key, inputs: model.init(rngs(key), inputs)['params'])


def _jit_predict(model: nn.Module) -> Callable[..., Any]:
  kwargs = {'deterministic': True} if isinstance(model, balls_net.BallsNaturalModel) else {}
  return jax.jit(lambda params, inputs: model.apply({'params': params}, inputs, **kwargs))
