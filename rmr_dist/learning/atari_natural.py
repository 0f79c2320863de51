"""Natural (pixel) learner: RMR and C-SWM x seeds, trained in lockstep on identical batches.

Every model is ``g~(P(f~(x), a))`` (``rmr_dist.networks.atari_natural``) trained with C-SWM's
contrastive loss (``rmr_dist.losses.contrastive_loss``; paper section 4, natural pipeline) or,
with ``loss='infonce'``, with InfoNCE over the batch's next frames (``losses.infonce_loss``),
or with ``loss='slot_infonce'``, the same slot by slot (``losses.slot_infonce_loss``).

Variants (``VARIANTS``):
  'rmr'           P is the pre-trained abstract processor export, FROZEN: its gradient is
                  stopped in the forward pass and the optimiser's update for it is masked, so
                  it stays bit-identical to the export. f~ still learns THROUGH the frozen P.
                  The parts of f~ that are the abstract encoder f (its slot embedding; with the
                  'bits' readout f itself: ``natural_net.abstract_encoder_paths``) come from
                  the export too and are frozen with P.
  'cswm'          the same architecture, P and those parts of f~ initialised fresh and trained
                  (C-SWM: it has no abstract model, so nothing of one is given to it).
  'rmr_random_p'  RMR through a processor (and abstract-encoder parts) of the same architecture
                  that was never trained: seed s's fresh initialisation (C-SWM's starting P),
                  frozen. The control for "the pre-training is what helps".

Lockstep (its domain-free machinery, ``rmr_dist.learning.lockstep``: stacking, freezing,
fingerprints, the optimiser, checkpoints, the learner base). The V variants x S seeds are
M = V * S models whose parameters are stacked on a leading model axis (model i = variant
``i // S``, seed ``i % S``). One :func:`update` trains all of them with ``jax.vmap`` over that
axis on ONE batch and ONE negative permutation (the batch is an unmapped vmap input), so the
paired comparison of paper Table 1 is paired by construction. Seed s gives the SAME f~ and g~
initialisation to every variant (and C-SWM's P its own initialisation), so within a pair only
the processor differs.

Fingerprint. Each model's per-model function also folds a fingerprint of the exact arrays its
loss reads (``FINGERPRINTED``: frames, actions, negative indices; an integer hash, exact and
order-independent within a batch, order-dependent across steps) into ``state.fingerprint`` [M]
uint32. Equal fingerprints show the models consumed the same batches in the same order; under
vmap with an unmapped batch the hash is evaluated once and shared, and if models were ever fed
different data (a mapped batch) their fingerprints would differ.

Batches, from any iterator of numpy dicts (the natural Reverb table's 'ram_t' is ignored)::

    {'frame_t':   [B, H, W, 3] uint8,   frame before the step (RGB, or [B, 210, 160] ALE
                                        palette indices, rebuilt to RGB inside the step)
     'action':    [B, 18]      uint8,   one-hot action
     'frame_tp1': [B, H, W, 3] uint8}   frame after the step (the same)

1 device == N devices. The loss is a per-example mean, so the pmean of equal shards' gradients
is the full-batch gradient. The negative permutation is over the GLOBAL batch: each device
all-gathers the (uint8) current frames, picks the negatives of its own rows and encodes them
itself, so no latent (and no gradient) crosses devices. InfoNCE likewise: each device gathers
every next frame of the global batch and encodes all of them as its rows' candidates.

Freezing, exactly (the processor and f~'s abstract-encoder parts, :func:`frozen_paths`): (1) the
per-model loss sees ``where(trainable, x, stop_gradient(x))`` for each, so a frozen model's
gradient there is exactly 0; (2) the optimiser ends with ``lockstep.freeze_processor``, which
replaces those updates of frozen models by -0.0, and ``p + (-0.0) == p`` bitwise for every
float p (also p = -0.0, which ``p + 0.0`` would flip).
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
from rmr_dist import losses
from rmr_dist.envs import atari_palette
from rmr_dist.learning import lockstep
from rmr_dist.learning import optimizers
from rmr_dist.learning.loop import Batch, Metrics
from rmr_dist.networks import atari_natural as natural_net
from rmr_dist.networks import processors


VARIANTS = ('rmr', 'cswm', 'rmr_random_p')
# 'hinge': C-SWM's contrastive hinge (the paper's); 'infonce': softmax over the batch's next
# frames (``rmr_dist.losses.infonce_loss``); 'slot_infonce': the same per slot
# (``rmr_dist.losses.slot_infonce_loss``). Equal to ``rmr_dist.config.NATURAL_LOSSES``.
LOSSES = ('hinge', 'infonce', 'slot_infonce')
INFONCE_LOSSES = ('infonce', 'slot_infonce')  # contrast against every next frame of the batch
# What the 'hinge' loss reads of a batch, fingerprinted (the InfoNCE losses: the first three).
FINGERPRINTED = ('frame_t', 'action', 'frame_tp1', 'negative_index')


class NaturalTrainState(NamedTuple):
  """Lockstep learner state; every params / opt-state leaf has a leading model axis [M]."""
  params: Any  # {'encoder', 'processor', 'decoder'}, leaves [M, ...]
  opt_state: optax.OptState
  step: jax.Array  # [] int32, updates applied so far
  rng: jax.Array  # [2] uint32 PRNGKey, split once per update (negative permutation)
  fingerprint: jax.Array  # [M] uint32, running hash of the batches each model consumed


def check_variants(variants: Sequence[str]) -> tuple[str, ...]:
  """Returns ``variants`` as a tuple; ValueError naming a bad or repeated one."""
  variants = tuple(variants)
  bad = [v for v in variants if v not in VARIANTS]
  if bad or not variants or len(set(variants)) != len(variants):
    raise ValueError(f'variants={variants!r}: need distinct variants from {VARIANTS}')
  return variants


def frozen_paths(readout: str = 'latent', slot_embedding: bool = False
                 ) -> tuple[tuple[str, ...], ...]:
  """The subtrees a frozen model keeps fixed: ``('processor',)`` and f~'s abstract-encoder
  parts (``('encoder', ...)``, :func:`natural_net.abstract_encoder_paths`)."""
  return (('processor',),) + tuple(
      ('encoder',) + path for path in natural_net.abstract_encoder_paths(readout, slot_embedding))


def stack_models(per_seed: Sequence[Any], variants: Sequence[str], processor_params: Any,
                 abstract_encoder: Any = None, readout: str = 'latent',
                 slot_embedding: bool = False) -> Any:
  """``lockstep.stack_models`` with f~'s abstract-encoder parts of the export variants (RMR's)
  replaced by ``abstract_encoder`` too. 'rmr_random_p' keeps seed s's fresh ones (frozen by
  the optimiser).

  Args:
    per_seed: S fresh param trees, one per seed.
    variants: the variants, in model-axis order.
    processor_params: the exported processor.
    abstract_encoder: the exported abstract encoder f (``params['encoder']`` of the abstract
      model), or None when the export has none (then f~ keeps its fresh parts; only allowed
      when f~ has no such parts).
    readout: f~'s readout; with ``slot_embedding``, which parts of f~ are f's.

  Returns:
    The stacked tree, leaves [V * S, ...] numpy.

  Raises:
    ValueError: the export's tree or shapes do not fit the model's processor or encoder.
  """
  needs_encoder = bool(natural_net.abstract_encoder_paths(readout, slot_embedding))

  def plug_export(params: dict[str, Any]) -> dict[str, Any]:
    if not needs_encoder:
      return params
    if abstract_encoder is None:
      raise ValueError('The processor export carries no abstract encoder, which RMR\'s f~ '
                       f'needs with readout={readout!r}, slot_embedding={slot_embedding}: '
                       're-run the abstract stage to re-export it.')
    return dict(params, encoder=natural_net.plug_abstract_encoder(
        params['encoder'], abstract_encoder, readout, slot_embedding))

  return lockstep.stack_models(per_seed, variants, processor_params, plug_export)


def init_per_seed(model: nn.Module, init_rng: jax.Array, num_seeds: int,
                  frame_shape: tuple[int, int], frame_stack: int = 1) -> list[Any]:
  """Seed s's fresh params (host numpy), initialised from ``fold_in(init_rng, s)``, for
  inputs of ``frame_stack`` frames of ``frame_shape``."""
  stack = (frame_stack,) if frame_stack > 1 else ()
  frames = jnp.zeros((1,) + stack + tuple(frame_shape) + (3,), jnp.uint8)
  action = jnp.zeros((1, natural_net.NUM_ACTIONS), jnp.float32)
  init = lockstep.jit_per_model(_jit_init, model)
  return [jax.device_get(init(jax.random.fold_in(init_rng, s), frames, action)['params'])
          for s in range(num_seeds)]


def _jit_init(model: nn.Module) -> Callable[..., Any]:
  """``jax.jit(model.init)``; through ``lockstep.jit_per_model``, one per model, so the learner,
  the untrained-encoder control and the ceiling of one process compile it once."""
  return jax.jit(model.init)


def initial_encoder_params(model: nn.Module, seed: int, num_seeds: int,
                           frame_shape: tuple[int, int], frame_stack: int = 1
                           ) -> dict[int, Any]:
  """The untrained f~ of every seed: exactly what :class:`NaturalLearner` (root ``seed``)
  starts every variant's seed s from, before any update (the untrained-encoder control).

  Returns:
    {s: encoder params (host numpy)}.
  """
  init_rng, _ = jax.random.split(jax.random.PRNGKey(seed))
  return {s: params['encoder']
          for s, params in enumerate(init_per_seed(model, init_rng, num_seeds, frame_shape,
                                                   frame_stack))}


def make_model(spec: processors.ModelSpec, *, maps_per_slot: int,
               latent_size: int = natural_net.LATENT_SIZE, map_activation: str = 'sigmoid',
               slot_embedding: bool = False, trunk: str = 'small', readout: str = 'latent'
               ) -> natural_net.NaturalModel:
  """The natural model around the processor that ``spec`` (the export's spec) describes."""
  return natural_net.NaturalModel(
      processor=processors.make_spec_processor(spec), maps_per_slot=maps_per_slot,
      latent_size=latent_size, map_activation=map_activation, slot_embedding=slot_embedding,
      trunk=trunk, readout=readout)


def init_state(model: nn.Module, optimizer: optax.GradientTransformation, rng: jax.Array, *,
               variants: Sequence[str], num_seeds: int, processor_params: Any,
               frame_shape: tuple[int, int], frame_stack: int = 1,
               abstract_encoder: Any = None) -> NaturalTrainState:
  """Initialises the stacked parameters of all variants x seeds and the optimiser state.

  Args:
    model: the natural model.
    optimizer: from ``lockstep.make_optimizer``.
    rng: PRNGKey; split into the init key and the state's key. Seed s initialises from
      ``fold_in(init_key, s)``, the same f~ and g~ for every variant.
    variants: e.g. ('rmr', 'cswm').
    num_seeds: S.
    processor_params: the exported processor (every RMR model's P).
    frame_shape: (H, W) of the frames.
    frame_stack: K, frames per input (K > 1: inputs [B, K, H, W, 3]).
    abstract_encoder: the exported abstract encoder f (RMR's f~ takes its parts), or None.

  Returns:
    A state at step 0 with leaves [M, ...], M = len(variants) * num_seeds.

  Raises:
    ValueError: the export's tree or shapes do not fit the model's processor.
  """
  init_rng, state_rng = jax.random.split(rng)
  per_seed = init_per_seed(model, init_rng, num_seeds, frame_shape, frame_stack)
  stacked = stack_models(per_seed, variants, processor_params, abstract_encoder,
                         model.readout, model.slot_embedding)
  return NaturalTrainState(params=stacked, opt_state=optimizer.init(stacked),
                           step=jnp.zeros((), jnp.int32), rng=state_rng,
                           fingerprint=jnp.zeros((len(variants) * num_seeds,), jnp.uint32))


# ---------------------------------------------------------------------------------------------
# The train step.
# ---------------------------------------------------------------------------------------------


def check_loss(loss: str, action_negatives: int = 0) -> None:
  """Raises ValueError for a loss not in ``LOSSES``, or an action contrast without InfoNCE."""
  if loss not in LOSSES:
    raise ValueError(f'loss={loss!r}; valid: {LOSSES}')
  if action_negatives and loss not in INFONCE_LOSSES:
    raise ValueError(f'action_negatives={action_negatives} needs an InfoNCE loss '
                     f'{INFONCE_LOSSES}, not {loss!r}')


def lockstep_inputs(batch: Batch, perm_key: jax.Array, axis_name: str | None = None,
                    loss: str = 'hinge', action_negatives: int = 0) -> tuple[Batch, jax.Array]:
  """This device's rows with their negatives: what every model consumes this step.

  Args:
    batch: this device's shard, ``frame_t`` / ``frame_tp1`` [b, H, W, 3] (or [b, K, H, W, 3]
      stacks; [b, (K,) 210, 160] palette indices), ``action`` [b, 18].
    perm_key: PRNGKey of the global negative permutation (used by the hinge loss).
    axis_name: pmap axis (the global batch is the concatenation of the shards), or None.
    loss: one of ``LOSSES``: which negatives to gather (the InfoNCE losses share theirs).
    action_negatives: K > 0 (InfoNCE losses): also K other actions per row, the actions of
      rows ``perm_k[i]`` of the global batch under K further permutations.

  Returns:
    ``(inputs, row_offset)``: inputs ``frame_t``, ``action``, ``frame_tp1`` [b, ...] and,
    for 'hinge', ``frame_neg`` [b, H, W, 3] (``frame_t`` of row ``perm[i]`` of the global
    batch) and ``negative_index`` [b] (those ``perm[i]``); for the InfoNCE losses,
    ``frame_tp1_all`` [B, H, W, 3] (every next frame of the global batch) and
    ``positive_index`` [b] (each row's own place in it), and with ``action_negatives`` K,
    ``action_neg`` [K, b, 18] and ``action_valid`` [b, 1 + K] (True for the action taken and
    for each other action that differs from it); row_offset the global index of this shard's
    first row.
  """
  # Palette-index frames ([b, 210, 160]) become RGB here; RGB frames pass through.
  frame_t = atari_palette.to_rgb_jnp(batch['frame_t'])  # [b, H, W, 3]
  frame_tp1 = atari_palette.to_rgb_jnp(batch['frame_tp1'])  # [b, H, W, 3]
  b = frame_t.shape[0]

  def gather(x):  # [b, ...] -> [B, ...], the global batch
    return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)

  row_offset = (jnp.zeros((), jnp.int32) if axis_name is None
                else jax.lax.axis_index(axis_name) * b)
  inputs = {'frame_t': frame_t, 'action': jnp.asarray(batch['action']), 'frame_tp1': frame_tp1}
  if loss in INFONCE_LOSSES:
    inputs['frame_tp1_all'] = gather(frame_tp1)  # [B, H, W, 3]
    inputs['positive_index'] = row_offset + jnp.arange(b, dtype=jnp.int32)  # [b]
    if action_negatives:
      actions_all = gather(inputs['action'])  # [B, 18]
      keys = jax.random.split(jax.random.fold_in(perm_key, 1), action_negatives)  # [K, 2]
      perms = jax.vmap(lambda k: losses.negative_permutation(k, actions_all.shape[0]))(keys)
      index = jax.lax.dynamic_slice_in_dim(perms, row_offset, b, axis=1)  # [K, b]
      inputs['action_neg'] = actions_all[index]  # [K, b, 18]
      taken = jnp.argmax(inputs['action'], axis=-1)  # [b]
      other = jnp.argmax(inputs['action_neg'], axis=-1).T != taken[:, None]  # [b, K]
      inputs['action_valid'] = jnp.concatenate([jnp.ones((b, 1), bool), other], axis=1)
    return inputs, row_offset
  frames_all = gather(frame_t)  # [B, H, W, 3]
  perm = losses.negative_permutation(perm_key, frames_all.shape[0])  # [B]
  negative_index = jax.lax.dynamic_slice_in_dim(perm, row_offset, b)  # [b]
  inputs.update(frame_neg=frames_all[negative_index], negative_index=negative_index)
  return inputs, row_offset


def model_step(params: Any, trainable: jax.Array, fingerprint: jax.Array, inputs: Batch,
               row_offset: jax.Array, *, model: nn.Module, hinge: float, sigma: float,
               axis_name: str | None = None, loss: str = 'hinge',
               paths: Sequence[tuple[str, ...]] = (('processor',),),
               action_sigma: float = 0.0) -> tuple[Any, Metrics, jax.Array]:
  """One model's gradient and fingerprint on the lockstep inputs (vmapped over models).

  Args:
    params: ONE model's params (no model axis).
    trainable: [] bool, False freezes the subtrees under ``paths`` (stop_gradient).
    fingerprint: [] uint32, this model's running fingerprint.
    inputs: from :func:`lockstep_inputs`. With ``action_neg`` in it (InfoNCE losses),
      ``losses.action_infonce_loss`` is added to the loss, weighted by
      ``inputs['action_weight']`` ([] float, set by :func:`update`), at energy scale
      ``action_sigma``.
    row_offset: from :func:`lockstep_inputs`.
    model: the natural model.
    hinge: contrastive margin ('hinge' loss).
    sigma: energy scale.
    axis_name: pmap axis (for the fingerprint's sum over shards), or None.
    loss: 'hinge' (C-SWM's, with ``frame_neg``), or 'infonce' / 'slot_infonce' (over
      ``frame_tp1_all``).
    paths: the subtrees a frozen model keeps fixed (:func:`frozen_paths`).
    action_sigma: the action contrast's energy scale (0: ``sigma``).

  Returns:
    ``(grads, metrics, fingerprint)``: this device's gradient, scalar loss metrics of this
    device's rows and the updated fingerprint.
  """
  keys = FINGERPRINTED if loss == 'hinge' else FINGERPRINTED[:3]
  fingerprint = lockstep.accumulate_fingerprint(
      fingerprint, lockstep.batch_fingerprint(inputs, row_offset, axis_name, keys=keys))

  def objective(p):
    p = lockstep.stop_frozen(p, trainable, paths)
    if loss in INFONCE_LOSSES:
      b = inputs['frame_t'].shape[0]
      frames = jnp.concatenate([inputs['frame_t'], inputs['frame_tp1_all']])  # [b + B, ...]
      z_all = model.apply({'params': p}, frames, method='encode')  # [b + B, S, H]
      z, z_next_all = z_all[:b], z_all[b:]
      z_pred = model.apply({'params': p}, z, inputs['action'], method='transition')
      loss_fn = losses.infonce_loss if loss == 'infonce' else losses.slot_infonce_loss
      value, metrics = loss_fn(z_pred, z_next_all, inputs['positive_index'], sigma=sigma)
      if 'action_neg' not in inputs:
        return value, metrics
      z_other = jax.vmap(lambda a: model.apply({'params': p}, z, a, method='transition'))(
          inputs['action_neg'])  # [K, b, S, H]
      z_pred_actions = jnp.concatenate([z_pred[:, None], jnp.swapaxes(z_other, 0, 1)],
                                       axis=1)  # [b, 1 + K, S, H]
      z_next = z_next_all[inputs['positive_index']]  # [b, S, H]
      action_value, action_metrics = losses.action_infonce_loss(
          z_pred_actions, z_next, inputs['action_valid'], sigma=action_sigma or sigma)
      value = value + inputs['action_weight'] * action_value
      return value, dict(metrics, **action_metrics, loss=value)
    frames = jnp.concatenate([inputs['frame_t'], inputs['frame_tp1'], inputs['frame_neg']])
    z_all = model.apply({'params': p}, frames, method='encode')  # [3b, S, H]
    z, z_next, z_neg = jnp.split(z_all, 3)  # [b, S, H] each
    z_pred = model.apply({'params': p}, z, inputs['action'], method='transition')  # [b, S, H]
    return losses.contrastive_loss_with_negatives(z_pred, z_next, z, z_neg, hinge=hinge,
                                                  sigma=sigma)

  grads, metrics = jax.grad(objective, has_aux=True)(params)
  return grads, metrics, fingerprint


def update(state: NaturalTrainState, batch: Batch, *, model: nn.Module,
           optimizer: optax.GradientTransformation, variants: Sequence[str],
           axis_name: str | None = None, hinge: float = 1.0, sigma: float = 0.5,
           loss: str = 'hinge', action_negatives: int = 0, action_weight: float = 1.0,
           action_start: int = 0, action_sigma: float = 0.0, over_models: str = 'vmap'
           ) -> tuple[NaturalTrainState, Metrics]:
  """One lockstep step of all M models on one batch; pure, jit- and pmap-able.

  Args:
    state: the stacked state (per device under pmap).
    batch: ``frame_t`` / ``frame_tp1`` [B, H, W, 3] uint8 RGB or [B, 210, 160] uint8 ALE palette
      indices (rebuilt to RGB in the step), ``action`` [B, 18] one-hot (this
      device's shard under pmap); other keys are ignored.
    model: the natural model.
    optimizer: from ``lockstep.make_optimizer`` (same ``variants`` and seed count).
    variants: the variants, in the order the model axis stacks them.
    axis_name: the pmap axis to average over, or None on one device.
    hinge: contrastive margin ('hinge' loss).
    sigma: energy scale.
    loss: 'hinge' (C-SWM's, the paper's), 'infonce' or 'slot_infonce' (``LOSSES``).
    action_negatives: K > 0 (InfoNCE losses only): add ``losses.action_infonce_loss`` over K
      other actions per row (:func:`lockstep_inputs`), weighted by ``action_weight``; the
      metrics then include ``action_loss`` and ``action_accuracy`` and ``loss`` is the sum.
    action_weight: see ``action_negatives``.
    action_start: the action contrast's weight is 0 in the updates before this one (the frame
      InfoNCE first leaves its initial plateau, where its gradient is orders of magnitude
      smaller than the action contrast's).
    action_sigma: the action contrast's energy scale (0: ``sigma``; a larger one keeps its
      softmax from saturating where the energies are in the hundreds).
    over_models: how the models run, side by side ('vmap') or one after another
      ('sequence'): ``lockstep.per_model``.

  Returns:
    ``(new_state, metrics)``: metrics [M] each -- ``loss``, ``positive_energy``,
    ``negative_energy`` and ``negative_loss`` ('hinge') or ``accuracy`` (InfoNCE) (of the
    whole batch, before the update) and ``grad_norm`` (of each model's averaged gradient).
  """
  num_models = jax.tree_util.tree_leaves(state.params)[0].shape[0]
  if num_models % len(variants):
    raise ValueError(f'{num_models} stacked models do not split into variants {variants}')
  trainable = jnp.asarray(  # [M]
      lockstep.processor_trainable(variants, num_models // len(variants)))
  rng, perm_key = jax.random.split(state.rng)
  check_loss(loss, action_negatives)
  inputs, row_offset = lockstep_inputs(batch, perm_key, axis_name, loss, action_negatives)
  if action_negatives:
    inputs['action_weight'] = jnp.where(state.step >= action_start, action_weight, 0.0)
  step_fn = functools.partial(model_step, model=model, hinge=hinge, sigma=sigma,
                              axis_name=axis_name, loss=loss, action_sigma=action_sigma,
                              paths=frozen_paths(model.readout, model.slot_embedding))
  # The batch is shared: every model reads the very same arrays.
  grads, metrics, fingerprint = lockstep.per_model(
      step_fn, (state.params, trainable, state.fingerprint), inputs, row_offset,
      over_models=over_models)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)  # equal shards: exact for per-example means
  metrics = dict(metrics, grad_norm=jax.vmap(optax.global_norm)(grads))  # [M] each
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return NaturalTrainState(params=params, opt_state=opt_state, step=state.step + 1, rng=rng,
                           fingerprint=fingerprint), metrics


# ---------------------------------------------------------------------------------------------
# Reading the encoders of a lockstep checkpoint (``lockstep.save_state``) back.
# ---------------------------------------------------------------------------------------------


def restore_encoder_params(checkpoint_dir: str, variants: Sequence[str],
                           num_seeds: int) -> dict[tuple[str, int], Any]:
  """f~'s params of every model in the newest lockstep checkpoint, without building a learner.

  Args:
    checkpoint_dir: the natural learner's Orbax directory.
    variants: its variants, in model-axis order.
    num_seeds: its seeds per variant.

  Returns:
    {(variant, seed): encoder params (host numpy)}, variant-major.

  Raises:
    checkpointing.CheckpointError: no checkpoint, or one with another number of models.
  """
  step, tree = checkpointing.restore_latest_tree(checkpoint_dir)
  encoder = tree['params']['encoder']
  stacked = jax.tree_util.tree_leaves(encoder)[0].shape[0]
  if stacked != len(variants) * num_seeds:
    raise checkpointing.CheckpointError(
        f'Natural checkpoint {checkpoint_dir}/{step} stacks {stacked} models, not '
        f'{len(variants)} variants x {num_seeds} seeds.')
  return {(v, s): jax.tree_util.tree_map(
      lambda x, i=lockstep.model_index(variants, num_seeds, v, s): np.asarray(x[i]), encoder)
          for v in variants for s in range(num_seeds)}


class NaturalLearner(lockstep.LockstepLearner):
  """Trains RMR and C-SWM x seeds in lockstep from one batch iterator, pmapped over devices.

  Resumable: with ``checkpoint_dir`` holding a checkpoint, the full stacked state (params,
  Adam state, step, key, fingerprints) is restored and :meth:`run` does only the remaining
  steps. A non-finite loss or gradient norm in any model raises ``FloatingPointError`` (naming
  the step, the models and the last good checkpoint) before anything is saved; the learner is
  then unusable (build a new one to resume from the last good checkpoint).

  Args:
    processor_export: the abstract processor export (``checkpointing.export_processor``); RMR
      freezes it, and its spec gives the architecture of every model's P.
    variants: which of 'rmr', 'cswm' to train, in model-axis order.
    num_seeds: S, seeds per variant.
    maps_per_slot: m of the encoder.
    learning_rate: Adam's learning rate.
    seed: seeds initialisation (seed s of every variant shares f~, g~) and the negatives.
    iterator: yields batches (module docstring) of a batch size divisible by the devices.
    checkpoint_dir: Orbax checkpoint directory, or None for no checkpoints.
    save_every: save every this many steps (and at the end of :meth:`run`).
    keep: checkpoints to keep.
    log_fn: called as ``log_fn(scalars, step)`` every ``log_every`` steps, scalars
      ``'<variant>/seed_<s>/<metric>'`` plus ``'learning_rate'`` and ``'steps_per_s'``.
    log_every: logging period in steps.
    devices: devices to pmap over (default: all devices; a process feeds its local ones).
    frame_shape: (H, W) of the frames (210, 160 for Atari).
    latent_size: features per slot; the export must have the same (else CheckpointError).
    hinge: contrastive margin (C-SWM: 1.0).
    sigma: energy scale (C-SWM: 0.5).
    loss: 'hinge' (C-SWM's, the paper's), 'infonce' or 'slot_infonce' (``LOSSES``).
    map_activation: f~'s per-slot map activation (``natural_net.AtariEncoder``).
    slot_embedding: give f~'s slots a slot-index embedding (RMR: the abstract f's, frozen).
    trunk: f~'s trunk (``natural_net.TRUNKS``).
    readout: f~'s readout, 'latent' or 'bits' (``natural_net.AtariEncoder``).
    frame_stack: K, frames per encoder input (K > 1: the batches' frames are [B, K, H, W, 3]
      stacks of the K most recent frames, ``rmr_dist.replay.atari_store_batches``).
    action_negatives: other actions per row in the action contrast (0: none; InfoNCE losses
      only; :func:`update`).
    action_weight: the action contrast's weight in the loss.
    action_start: updates before the action contrast starts.
    action_sigma: the action contrast's energy scale (0: ``sigma``).
    over_models: ``lockstep.per_model``'s: 'vmap' or 'sequence'.

  Raises:
    checkpointing.CheckpointError: the export is missing, invalid, or of another latent size
      (the message names its path); or a checkpoint in ``checkpoint_dir`` does not fit.
  """

  def __init__(self, *, processor_export: str, variants: Sequence[str] = VARIANTS,
               num_seeds: int, maps_per_slot: int, learning_rate: float, seed: int,
               iterator: Iterator[Batch], checkpoint_dir: str | None, save_every: int,
               keep: int, log_fn: Callable[[dict, int], None] | None = None,
               log_every: int = 50, devices: Sequence[jax.Device] | None = None,
               frame_shape: tuple[int, int] = (210, 160),
               latent_size: int = natural_net.LATENT_SIZE, hinge: float = 1.0,
               sigma: float = 0.5, loss: str = 'hinge', map_activation: str = 'sigmoid',
               slot_embedding: bool = False, frame_stack: int = 1, trunk: str = 'small',
               readout: str = 'latent', action_negatives: int = 0, action_weight: float = 1.0,
               action_start: int = 0, action_sigma: float = 0.0,
               over_models: str = 'vmap'):
    self._variants = check_variants(variants)
    check_loss(loss, action_negatives)
    if num_seeds < 1:
      raise ValueError(f'num_seeds={num_seeds} must be >= 1')
    self._num_seeds = num_seeds
    spec_dict, processor_params = checkpointing.restore_processor(
        processor_export, expected_spec={'latent_size': latent_size})
    self._spec = processors.ModelSpec.from_dict(spec_dict)
    self._model = make_model(self._spec, maps_per_slot=maps_per_slot, latent_size=latent_size,
                             map_activation=map_activation, slot_embedding=slot_embedding,
                             trunk=trunk, readout=readout)
    abstract_encoder = (checkpointing.restore_abstract_encoder(processor_export)
                        if natural_net.abstract_encoder_paths(readout, slot_embedding) else None)
    paths = frozen_paths(readout, slot_embedding)
    self._schedule = optimizers.make_schedule(float(learning_rate))
    self._optimizer = lockstep.make_optimizer(self._schedule, self._variants, num_seeds,
                                              paths=paths)
    state = jax.device_get(init_state(
        self._model, self._optimizer, jax.random.PRNGKey(seed), variants=self._variants,
        num_seeds=num_seeds, processor_params=processor_params, frame_shape=frame_shape,
        frame_stack=frame_stack, abstract_encoder=abstract_encoder))
    self._setup(state, functools.partial(update, model=self._model, optimizer=self._optimizer,
                                         variants=self._variants, hinge=hinge, sigma=sigma,
                                         loss=loss, action_negatives=action_negatives,
                                         action_weight=action_weight,
                                         action_start=action_start,
                                         action_sigma=action_sigma, over_models=over_models),
                iterator=iterator, batch_keys=('frame_t', 'action', 'frame_tp1'),
                checkpoint_dir=checkpoint_dir, keep=keep, save_every=save_every,
                log_fn=log_fn, log_every=log_every, devices=devices,
                restore_fn=lockstep.restore_state)

  @property
  def model(self) -> natural_net.NaturalModel:
    return self._model

  @property
  def spec(self) -> processors.ModelSpec:
    """The processor's spec (from the export)."""
    return self._spec

  def encoder_params(self, variant: str, seed: int) -> Any:
    """f~'s params of one model (host numpy), for ``natural_net.make_encode_fn``."""
    index = lockstep.model_index(self._variants, self._num_seeds, variant, seed)
    return jax.tree_util.tree_map(lambda x: np.asarray(x[0, index]),
                                  jax.device_get(self._state.params['encoder']))

  def _save_state(self, step: int, state: NaturalTrainState) -> None:
    lockstep.save_state(self._manager, step, state)

  def _scalars(self, metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return dict(lockstep.flatten_metrics(metrics, self._variants, self._num_seeds),
                learning_rate=self.learning_rate)
