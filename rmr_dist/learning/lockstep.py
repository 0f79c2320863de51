"""Lockstep training: V variants x S seeds of one model, stacked and trained on identical batches.

Domain-free machinery shared by the Atari natural learner (``learning.atari_natural``) and the
bouncing-balls natural learner and oracle (``learning.balls_natural``); each of those defines its
model, its per-model loss and its variants, and uses this module for the rest.

Stacking. The M = V * S models' parameters are stacked on a leading model axis, variant-major
(model i = variant ``i // S``, seed ``i % S``: :func:`model_index`). A learner's update runs its
per-model gradient under ``jax.vmap`` over that axis (:func:`per_model`) with the batch as an
UNMAPPED input, so every model reads the very same arrays: a paired comparison (RMR vs its control,
seed by seed) is paired by construction. :func:`stack_models` builds the stacked initial
parameters: seed s of every variant starts from the same fresh parameters, and the export variants
(``EXPORT_VARIANTS``) take the pre-trained processor export instead of their fresh P.

Variants. ``FROZEN_VARIANTS`` keep their processor (and any other frozen subtree) fixed;
``EXPORT_VARIANTS`` get theirs from the abstract stage's export; every other variant (C-SWM,
end-to-end) trains its P from its fresh initialisation. 'rmr_random_p' is frozen but not
exported: RMR through seed s's never-trained P.

Freezing, exactly (the subtrees of ``paths``, by default ``(('processor',),)``): (1) a model's
loss sees its params through :func:`stop_frozen`, ``where(trainable, x, stop_gradient(x))``,
so a frozen model's gradient there is exactly 0; (2) the optimiser (:func:`make_optimizer`)
ends with :func:`freeze_processor`, which replaces those updates of frozen models by -0.0, and
``p + (-0.0) == p`` bitwise for every float p (also p = -0.0, which ``p + 0.0`` would flip).

Fingerprint. Each model folds a fingerprint of the exact arrays its loss reads into its
``fingerprint`` [M] uint32 (:func:`batch_fingerprint`, :func:`accumulate_fingerprint`: an
integer hash, exact and order-independent within a batch, order-dependent across steps, equal
on 1 and N devices). Equal fingerprints show the models consumed the same batches in the same
order; under vmap with an unmapped batch the hash is evaluated once and shared.

Checkpoints (:func:`save_state`, :func:`restore_state`) hold a learner's whole NamedTuple state
(fingerprint included); :class:`LockstepLearner` is the ``PmapLearner`` both learners extend.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from rmr_dist import checkpointing
from rmr_dist.learning import optimizers
from rmr_dist.learning.loop import Batch, Metrics, PmapLearner, unreplicate

FROZEN_VARIANTS = ('rmr', 'rmr_random_p')  # variants whose processor is frozen
EXPORT_VARIANTS = ('rmr',)  # variants whose frozen processor is the pre-trained export
OVER_MODELS = ('vmap', 'sequence')  # how :func:`per_model` runs the models
_FNV_PRIME = 0x01000193
# A lockstep learner's NamedTuple state (``params``, ``opt_state``, ``step``, ``rng``,
# ``fingerprint``; leaves of params / opt_state [M, ...]).
StateT = TypeVar('StateT', bound=tuple)

def model_index(variants: Sequence[str], num_seeds: int, variant: str, seed: int) -> int:
  """Position of (variant, seed) on the stacked model axis: ``variants.index(v) * S + seed``."""
  if variant not in variants or not 0 <= seed < num_seeds:
    raise ValueError(f'No model ({variant!r}, seed {seed}); variants {tuple(variants)}, '
                     f'seeds 0..{num_seeds - 1}')
  return tuple(variants).index(variant) * num_seeds + seed


def processor_trainable(variants: Sequence[str], num_seeds: int) -> np.ndarray:
  """[M] bool: False for the models whose processor is frozen (RMR), True otherwise."""
  return np.repeat([v not in FROZEN_VARIANTS for v in variants], num_seeds)


def map_frozen(fn: Callable[[jax.Array], jax.Array], tree: Any,
               paths: Sequence[tuple[str, ...]]) -> Any:
  """``tree`` with ``fn`` applied to the leaves under any of ``paths`` (dict-key prefixes)."""
  def visit(path, leaf):
    keys = tuple(getattr(k, 'key', k) for k in path)
    return fn(leaf) if any(keys[:len(p)] == tuple(p) for p in paths) else leaf
  return jax.tree_util.tree_map_with_path(visit, tree)


def stop_frozen(params: Any, trainable: jax.Array, paths: Sequence[tuple[str, ...]]) -> Any:
  """ONE model's params as its loss should see them: where ``trainable`` is False, the
  subtrees under ``paths`` pass through ``stop_gradient`` (so their gradient is exactly 0)."""
  return map_frozen(lambda x: jnp.where(trainable, x, jax.lax.stop_gradient(x)), params, paths)


def freeze_processor(trainable: np.ndarray,
                     paths: Sequence[tuple[str, ...]] = (('processor',),)
                     ) -> optax.GradientTransformation:
  """Masks the updates under ``paths`` (default: the processor) of the frozen models
  (``trainable[i] == False``).

  Acts on the STACKED tree (leaves [M, ...]): a frozen model's updates there become -0.0, the
  exact identity of ``optax.apply_updates`` (``p + -0.0 == p`` bitwise).
  """
  trainable = np.asarray(trainable, bool)  # [M]

  def mask(u):
    keep = trainable.reshape((-1,) + (1,) * (u.ndim - 1))  # [M, 1, ...]
    return jnp.where(keep, u, jnp.asarray(-0.0, u.dtype))

  def update_fn(updates, state, params=None):
    del params
    return map_frozen(mask, updates, paths), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(learning_rate: float | optax.Schedule, variants: Sequence[str],
                   num_seeds: int, clip_norm: float = 0.0,
                   paths: Sequence[tuple[str, ...]] = (('processor',),)
                   ) -> optax.GradientTransformation:
  """Adam on the stacked tree (element-wise, so each model is its own Adam), then freezing.

  Args:
    learning_rate: a rate or a schedule (`optimizers.make_schedule`).
    variants: model-axis variants.
    num_seeds: seeds per variant.
    clip_norm: clip each model's gradient norm to this first (0: no clipping).
    paths: the subtrees frozen models keep fixed (the learner's ``frozen_paths``).
  """
  schedule = (learning_rate if callable(learning_rate)
              else optimizers.make_schedule(float(learning_rate)))
  return _make_optimizer(schedule, tuple(variants), int(num_seeds), float(clip_norm),
                         tuple(tuple(p) for p in paths))


@functools.lru_cache(maxsize=64)
def _make_optimizer(schedule: optax.Schedule, variants: tuple[str, ...], num_seeds: int,
                    clip_norm: float, paths: tuple[tuple[str, ...], ...]
                    ) -> optax.GradientTransformation:
  """`make_optimizer`'s transformation, one object per settings (and schedule object), so that
  learners built alike in one process share their compiled update (`loop.PmapLearner`)."""
  return optax.chain(optimizers.make_adam(schedule, clip_norm, per_model=True),
                     freeze_processor(processor_trainable(variants, num_seeds), paths))


def jit_per_model(make: Callable[[nn.Module], Callable[..., Any]], model: nn.Module
                  ) -> Callable[..., Any]:
  """``make(model)`` (a jitted function of ``model``), built once per (make, model) in a
  process: Flax modules compare by their fields, so learners, controls and evaluations built
  alike reuse one compiled executable per input shape. A model with an unhashable field gets a
  function of its own. ``make`` must be a module-level function (its identity is the key)."""
  try:
    return _cached_jit(make, model)
  except TypeError:
    return make(model)


@functools.lru_cache(maxsize=32)
def _cached_jit(make: Callable[[nn.Module], Callable[..., Any]], model: nn.Module
                ) -> Callable[..., Any]:
  return make(model)


def stack_models(per_seed: Sequence[Any], variants: Sequence[str], processor_params: Any,
                 export_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Any:
  """Stacks variants x seeds of initial params on a leading model axis (variant-major).

  Seed s of every variant starts from ``per_seed[s]``; the export variants' (RMR's) processor
  is replaced by ``processor_params``, then ``export_fn`` (if given) puts the export's other
  parts into their params. The other variants keep seed s's fresh ones ('rmr_random_p': frozen
  by the optimiser).

  Args:
    per_seed: S fresh param trees (dicts with a 'processor' subtree), one per seed.
    variants: the variants, in model-axis order.
    processor_params: the exported processor.
    export_fn: ``params -> params`` of an export variant's model, e.g. plugging in the
      exported abstract encoder (``learning.atari_natural.stack_models``); may raise ValueError.

  Returns:
    The stacked tree, leaves [V * S, ...] numpy.

  Raises:
    ValueError: the export's tree or shapes do not fit the model's processor.
  """
  fresh = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), per_seed[0]['processor'])
  given = jax.tree_util.tree_map(lambda x: (np.shape(x), np.asarray(x).dtype), processor_params)
  if fresh != given:
    raise ValueError('The processor export does not fit the natural model\'s processor: '
                     f'export {given}, model {fresh}')
  models = []
  for variant in variants:
    for params in per_seed:
      params = dict(params)
      if variant in EXPORT_VARIANTS:
        params['processor'] = processor_params
        if export_fn is not None:
          params = export_fn(params)
      models.append(params)
  return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *models)


def per_model(step_fn: Callable[..., Any], mapped: Sequence[Any], *shared: Any,
              over_models: str = 'vmap') -> Any:
  """``step_fn(*mapped_i, *shared)`` for every model i, outputs stacked on a leading model axis.

  Args:
    step_fn: one model's step.
    mapped: trees with the model axis leading ([M, ...]: params, flags, fingerprints).
    *shared: what every model reads unchanged (the batch).
    over_models: 'vmap' (the default): the models side by side, ``jax.vmap``; 'sequence': one
      after another, the step traced once per model. Each model computes the same either way.
      Under vmap a convolution of per-model weights over per-model activations is one grouped
      convolution, which XLA:CPU runs far slower than the same convolutions one model at a
      time; 'sequence' compiles M copies of the step instead (``python -m rmr_dist.bench
      natural --over-models=both`` times the two side by side; ``natural.over_models`` picks
      it for the Atari learner).
  """
  if over_models == 'sequence':
    num = jax.tree_util.tree_leaves(mapped)[0].shape[0]
    outs = [step_fn(*jax.tree_util.tree_map(lambda x, i=i: x[i], tuple(mapped)), *shared)
            for i in range(num)]
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)
  if over_models != 'vmap':
    raise ValueError(f'over_models={over_models!r}; valid: {OVER_MODELS}')
  return jax.vmap(step_fn, in_axes=(0,) * len(mapped) + (None,) * len(shared))(*mapped, *shared)


# ---------------------------------------------------------------------------------------------
# Batch fingerprint: sum_rows h_row(global row) * sum_cols h_col(col) * value (mod 2^32) per
# array, exact integer arithmetic, so equal on 1 and N devices (psum of the shards' sums).
# ---------------------------------------------------------------------------------------------

def _hash_u32(i: jax.Array) -> jax.Array:
  """An odd pseudo-random uint32 per uint32 index (murmur-style mixing)."""
  h = i * jnp.uint32(0x9E3779B1)
  h = h ^ (h >> jnp.uint32(15))
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> jnp.uint32(13))
  return h | jnp.uint32(1)


def batch_fingerprint(inputs: Batch, row_offset: jax.Array | int = 0,
                      axis_name: str | None = None, *, keys: Sequence[str]) -> jax.Array:
  """uint32 hash of the consumed arrays (``keys``) of a batch (or device shard).

  Args:
    inputs: integer arrays [b, ...], at least those named by ``keys``.
    row_offset: global index of this shard's first row.
    axis_name: pmap axis to sum the shards over, or None.
    keys: the arrays to hash: all that the learner's loss reads of a batch.

  Returns:
    [] uint32, the same for the whole batch on 1 device and for its shards on N devices.
  """
  total = jnp.uint32(0)
  for salt, key in enumerate(keys, start=1):
    x = jnp.asarray(inputs[key])
    x = x.reshape(x.shape[0], -1).astype(jnp.uint32)  # [b, F]
    cols = _hash_u32(jnp.arange(x.shape[1], dtype=jnp.uint32) ^ jnp.uint32(salt << 24))  # [F]
    rows = jnp.arange(x.shape[0], dtype=jnp.uint32) + jnp.asarray(row_offset, jnp.uint32)
    rows = _hash_u32(rows ^ jnp.uint32((salt + 8) << 24))  # [b]
    total = total + jnp.sum(jnp.sum(x * cols, axis=1, dtype=jnp.uint32) * rows,
                            dtype=jnp.uint32)
  if axis_name is not None:
    total = jax.lax.psum(total, axis_name)
  return total


def accumulate_fingerprint(running: jax.Array, batch_fp: jax.Array) -> jax.Array:
  """Folds one batch's fingerprint into the running one (order-sensitive, FNV-style)."""
  running, batch_fp = jnp.asarray(running, jnp.uint32), jnp.asarray(batch_fp, jnp.uint32)
  return (running ^ batch_fp) * jnp.uint32(_FNV_PRIME)


# ---------------------------------------------------------------------------------------------
# Checkpoints of a lockstep learner's whole NamedTuple state (fingerprint included), in an Orbax
# manager from checkpointing.make_checkpoint_manager (atomic, asynchronous saves).
# ---------------------------------------------------------------------------------------------

def save_state(manager: ocp.CheckpointManager, step: int, state: StateT) -> bool:
  """Saves the UNREPLICATED state at ``step``; returns whether Orbax started a save."""
  return manager.save(step, args=ocp.args.StandardSave(jax.device_get(state._asdict())))


def restore_state(manager: ocp.CheckpointManager, target: StateT) -> StateT | None:
  """The newest saved state, shaped like ``target`` (and of its NamedTuple type); None when
  there is none.

  Raises:
    checkpointing.CheckpointError: it does not fit ``target`` (names the checkpoint).
  """
  step = manager.latest_step()
  if step is None:
    return None
  where = os.path.join(str(manager.directory), str(step))
  target_tree = jax.device_get(target._asdict())
  try:
    tree = manager.restore(step, args=ocp.args.StandardRestore(target_tree))
  except (ValueError, KeyError, TypeError) as e:
    raise checkpointing.CheckpointError(
        f'Natural learner checkpoint {where!r} does not fit the learner state: {e}') from e
  shape = lambda x: tuple(np.shape(x))
  if (jax.tree_util.tree_structure(tree) != jax.tree_util.tree_structure(target_tree) or
      jax.tree_util.tree_leaves(jax.tree_util.tree_map(shape, tree)) !=
      jax.tree_util.tree_leaves(jax.tree_util.tree_map(shape, target_tree))):
    raise checkpointing.CheckpointError(
        f'Natural learner checkpoint {where!r} does not fit the learner state (variants, '
        'seeds, model sizes, frame size or processor differ).')
  return type(target)(**tree)


def flatten_metrics(metrics: Metrics, variants: Sequence[str], num_seeds: int
                    ) -> dict[str, float]:
  """{key: [M]} -> {'<variant>/seed_<s>/<key>': float} (TensorBoard scalars)."""
  return {f'{v}/seed_{s}/{key}': float(values[model_index(variants, num_seeds, v, s)])
          for key, values in metrics.items() for v in variants for s in range(num_seeds)}


def check_lockstep_metrics(metrics: Metrics, variants: Sequence[str], num_seeds: int,
                           step: int, where: str, who: str) -> dict[str, np.ndarray]:
  """Brings a lockstep learner's metrics ([M] each) to the host and checks them.

  Args:
    metrics: replicated device metrics with at least ``loss`` and ``grad_norm``.
    variants: model-axis variants.
    num_seeds: seeds per variant.
    step: the learner's step (for the message).
    where: the last good checkpoint (for the message).
    who: the learner's name (for the message).

  Raises:
    FloatingPointError: naming the models whose loss or gradient norm is not finite.
  """
  metrics = {k: np.asarray(v) for k, v in jax.device_get(unreplicate(metrics)).items()}
  finite = np.isfinite(metrics['loss']) & np.isfinite(metrics['grad_norm'])  # [M]
  if not finite.all():
    bad = [f'{v}/seed_{s}' for v in variants for s in range(num_seeds)
           if not finite[model_index(variants, num_seeds, v, s)]]
    raise FloatingPointError(
        f'{who}: non-finite loss detected at step {step} in models {bad} '
        f'(loss={metrics["loss"].tolist()}, grad_norm={metrics["grad_norm"].tolist()}); '
        f'the bad state was not saved; {where}.')
  return metrics


class LockstepLearner(PmapLearner):
  """A PmapLearner whose state stacks variants x seeds on a leading model axis, trained in
  lockstep on identical batches (this module's and ``learning.balls_natural``'s learners).

  Subclasses set ``_variants``, ``_num_seeds`` and a ``fingerprint`` [M] field in the state.
  """

  _variants: tuple[str, ...]
  _num_seeds: int
  _name = 'Natural learner'  # Names the learner in error messages.

  @property
  def variants(self) -> tuple[str, ...]:
    return self._variants

  @property
  def num_seeds(self) -> int:
    return self._num_seeds

  @property
  def fingerprints(self) -> np.ndarray:
    """[M] uint32 running fingerprints of the batches each model consumed."""
    return np.asarray(jax.device_get(unreplicate(self._state.fingerprint)))

  def _check(self, metrics: Metrics) -> dict[str, np.ndarray]:
    """Brings metrics ([M] each) to the host; FloatingPointError if any is not finite."""
    return check_lockstep_metrics(metrics, self._variants, self._num_seeds, self._step,
                                  self._where_last_good(), self._name)
