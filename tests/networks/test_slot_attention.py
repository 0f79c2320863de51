"""Tests for rmr_dist.networks.slot_attention: Slot Attention and the multi-image encoder."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rmr_dist.networks import slot_attention

B, T = 2, 3  # batch, images per sequence
K, SLOT, CHANNELS, SIZE = 3, 8, 8, 16  # tiny encoder: 3 slots, 16x16 images


def _encoder():
  return slot_attention.SlotAttentionEncoder(num_slots=K, slot_size=SLOT, cnn_channels=CHANNELS,
                                             kernel_size=3, num_conv_layers=2, num_iterations=2,
                                             mlp_hidden_size=16)


def _frames(seed=0, t=T):
  return jax.random.randint(jax.random.PRNGKey(seed), (B, t, SIZE, SIZE, 3), 0, 256
                            ).astype(jnp.uint8)


def test_slot_attention_shapes_and_attention_sums_to_one_over_slots():
  inputs = jax.random.normal(jax.random.PRNGKey(3), (B, 10, 6))  # [B, L, D]
  slots = jax.random.normal(jax.random.PRNGKey(4), (B, K, SLOT))
  module = slot_attention.SlotAttention(num_iterations=2, slot_size=SLOT, mlp_hidden_size=16)
  params = module.init(jax.random.PRNGKey(0), inputs, slots)
  new_slots, attention = module.apply(params, inputs, slots)
  chex.assert_shape(new_slots, (B, K, SLOT))
  chex.assert_shape(attention, (B, K, 10))
  np.testing.assert_allclose(attention.sum(axis=1), np.ones((B, 10)), rtol=1e-5)


def test_slot_attention_encoder_shapes_and_randomness():
  encoder = _encoder()
  frames = _frames()
  params = encoder.init({'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)},
                        frames)
  apply = jax.jit(encoder.apply, static_argnames='deterministic')
  slots, attention = apply(params, frames, rngs={'slots': jax.random.PRNGKey(5)})
  chex.assert_shape(slots, (B, T, K, SLOT))
  chex.assert_shape(attention, (B, T, K, SIZE * SIZE))
  np.testing.assert_allclose(attention.sum(axis=2), np.ones((B, T, SIZE * SIZE)), rtol=1e-5)

  # deterministic=True needs no rng and repeats itself; its slots are not all equal.
  det_a, _ = apply(params, frames, deterministic=True)
  det_b, _ = apply(params, frames, deterministic=True)
  np.testing.assert_array_equal(det_a, det_b)
  assert not np.allclose(det_a[:, :, 0], det_a[:, :, 1])

  # Different 'slots' rngs give different slots.
  other, _ = apply(params, frames, rngs={'slots': jax.random.PRNGKey(6)})
  assert not np.allclose(slots, other)
