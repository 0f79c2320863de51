"""The lockstep machinery shared by the Atari and balls natural learners (learning/lockstep.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.learning import lockstep


def test_per_model_in_sequence_computes_what_vmap_computes():
  """`lockstep.per_model`: the models one after another give each model's own result, as vmap
  does (a convolution of per-model weights over per-model activations, and a mapped flag)."""
  rng = np.random.default_rng(0)
  weights = jnp.asarray(rng.normal(size=(3, 3, 3, 2, 4)), jnp.float32)  # [M, kh, kw, in, out]
  scale = jnp.asarray([1.0, -2.0, 0.5], jnp.float32)  # [M]
  batch = jnp.asarray(rng.normal(size=(5, 8, 8, 2)), jnp.float32)  # shared [B, H, W, in]

  def step(w, s, x):
    h = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    h = jax.lax.conv_general_dilated(h * s, jnp.swapaxes(w, 2, 3), (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return {'out': h, 'sum': jnp.sum(h)}

  together = lockstep.per_model(step, (weights, scale), batch)
  apart = lockstep.per_model(step, (weights, scale), batch, over_models='sequence')
  for i in range(3):
    alone = step(weights[i], scale[i], batch)
    for k in ('out', 'sum'):
      np.testing.assert_allclose(apart[k][i], alone[k], rtol=1e-5, atol=1e-4)
      np.testing.assert_allclose(together[k][i], alone[k], rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match="over_models='loop'"):
    lockstep.per_model(step, (weights, scale), batch, over_models='loop')


def _jit_apply(model):
  return jax.jit(model.apply)


def test_jit_per_model_builds_one_function_per_model():
  """Equal Flax modules share one jitted function; a module with other fields gets its own."""
  first = lockstep.jit_per_model(_jit_apply, nn.Dense(3))
  assert lockstep.jit_per_model(_jit_apply, nn.Dense(3)) is first
  assert lockstep.jit_per_model(_jit_apply, nn.Dense(4)) is not first
