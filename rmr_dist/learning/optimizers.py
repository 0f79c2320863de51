"""Optimisers of the learners: Adam with a warm-up + decay schedule and gradient clipping.

Two schedules, both rising linearly from 0 over `warmup_steps`:

  'exponential' (Slot Attention's, Locatello et al., 2020; google-research `slot_attention`):
      lr(step) = learning_rate * min(1, step / warmup_steps) * decay_rate ** (step / decay_steps)
    (their setting: 4e-4, 10k warm-up steps, halved every 100k);
  'cosine': after the warm-up, a half cosine from learning_rate down to
      decay_rate * learning_rate over the next `decay_steps` steps, then flat.

`warmup_steps=0` and `decay_rate=1` give a constant rate. Clipping bounds the global gradient norm (SAVi clips at
0.05). For the lockstep learners, whose parameters stack M models on a leading axis, clipping is
per model (`clip_per_model`), so one model's large gradient never scales another's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


DECAYS = ('exponential', 'cosine')


@functools.lru_cache(maxsize=64)
def make_schedule(learning_rate: float, warmup_steps: int = 0, decay_rate: float = 1.0,
                  decay_steps: int = 1, decay: str = 'exponential') -> optax.Schedule:
  """`step -> learning rate` (module docstring).

  The same arguments give the same (pure) function object, so that learners built with the same
  settings in one process build equal optimisers and reuse one compiled update
  (`loop.PmapLearner`).
  """
  if decay not in DECAYS:
    raise ValueError(f'decay={decay!r}; valid: {DECAYS}')

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warmup = jnp.minimum(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    if decay == 'exponential':
      return learning_rate * warmup * decay_rate ** (step / decay_steps)
    done = jnp.clip((step - warmup_steps) / decay_steps, 0.0, 1.0)
    cosine = decay_rate + (1.0 - decay_rate) * 0.5 * (1.0 + jnp.cos(jnp.pi * done))
    return learning_rate * warmup * cosine

  return schedule


def clip_per_model(max_norm: float) -> optax.GradientTransformation:
  """Scales each model's updates (leaves [M, ...]) so its own global norm is <= `max_norm`."""

  def update_fn(updates, state, params=None):
    del params
    leaves = jax.tree_util.tree_leaves(updates)
    sq = sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in leaves)  # [M]
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(jnp.sqrt(sq), 1e-12))  # [M]
    scaled = jax.tree_util.tree_map(
        lambda x: x * scale.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype), updates)
    return scaled, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_adam(schedule: optax.Schedule, clip_norm: float = 0.0,
              per_model: bool = False) -> optax.GradientTransformation:
  """Adam on `schedule`, after clipping the gradient norm to `clip_norm` (0: no clipping).

  Args:
    schedule: from `make_schedule`.
    clip_norm: the largest global gradient norm (per model with `per_model`).
    per_model: the tree stacks models on a leading axis (lockstep learners).
  """
  adam = optax.adam(schedule)
  if clip_norm <= 0:
    return adam  # Unchained: the optimiser state keeps Adam's own layout.
  clip = clip_per_model(clip_norm) if per_model else optax.clip_by_global_norm(clip_norm)
  return optax.chain(clip, adam)
