"""Tests for rmr_dist.networks.slot_attention: Slot Attention and the multi-image encoder."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.networks import slot_attention

B, T = 2, 3  # batch, images per sequence
K, SLOT, CHANNELS, SIZE = 3, 8, 8, 16  # tiny encoder: 3 slots, 16x16 images


def _encoder(slot_init='sampled'):
  return slot_attention.SlotAttentionEncoder(num_slots=K, slot_size=SLOT, cnn_channels=CHANNELS,
                                             kernel_size=3, num_conv_layers=2, num_iterations=2,
                                             mlp_hidden_size=16, slot_init=slot_init)


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


def test_pixel_centres_follow_the_renderer():
  centres = slot_attention.pixel_centres(4, 8).reshape(4, 8, 2)
  np.testing.assert_allclose(centres[0, 0], [0.5 / 8, 1 - 0.5 / 4])  # top-left pixel
  np.testing.assert_allclose(centres[3, 7], [7.5 / 8, 0.5 / 4])  # bottom-right pixel
  np.testing.assert_allclose(centres[..., 0].mean(), 0.5)


def test_slot_attention_encoder_shapes_and_randomness():
  encoder = _encoder()
  frames = _frames()
  params = encoder.init({'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)},
                        frames)
  apply = jax.jit(encoder.apply, static_argnames='deterministic')
  out = apply(params, frames, rngs={'slots': jax.random.PRNGKey(5)})
  slots, attention = out['slots'], out['attention']
  chex.assert_shape(slots, (B, T, K, SLOT))
  chex.assert_shape(out['positions'], (B, T, K, 2))
  chex.assert_shape(attention, (B, T, K, SIZE * SIZE))
  np.testing.assert_allclose(attention.sum(axis=2), np.ones((B, T, SIZE * SIZE)), rtol=1e-5)
  # A slot's position is the centre of mass of its attention, inside the box.
  weights = attention / attention.sum(axis=-1, keepdims=True)
  centres = slot_attention.pixel_centres(SIZE, SIZE)
  np.testing.assert_allclose(out['positions'], weights @ centres, rtol=1e-5, atol=1e-6)
  assert np.all((out['positions'] > 0) & (out['positions'] < 1))

  # deterministic=True needs no rng and repeats itself; its slots are not all equal.
  det_a = apply(params, frames, deterministic=True)['slots']
  det_b = apply(params, frames, deterministic=True)['slots']
  np.testing.assert_array_equal(det_a, det_b)
  assert not np.allclose(det_a[:, :, 0], det_a[:, :, 1])

  # Different 'slots' rngs give different slots.
  other = apply(params, frames, rngs={'slots': jax.random.PRNGKey(6)})['slots']
  assert not np.allclose(slots, other)


def test_learned_initial_slots_need_no_rng_and_differ_per_slot():
  encoder = _encoder('learned')
  frames = _frames()
  params = encoder.init(jax.random.PRNGKey(0), frames)
  assert params['params']['slots_init'].shape == (1, K, SLOT)
  assert 'slots_mu' not in params['params']
  out = jax.jit(encoder.apply)(params, frames)
  np.testing.assert_array_equal(out['slots'], jax.jit(encoder.apply)(params, frames)['slots'])
  assert not np.allclose(out['slots'][:, :, 0], out['slots'][:, :, 1])


def test_slot_attention_encoder_rejects_an_unknown_slot_init():
  with pytest.raises(ValueError, match="slot_init='random'"):
    _encoder('random').init(jax.random.PRNGKey(0), _frames())


def test_attention_locality_keeps_slots_apart_on_a_blank_image():
  """On a featureless image only the locality term tells slots apart: with it, each slot's
  attention stays around its own start on the circle (radius 0.3); without it, the slots
  gather near the middle."""
  blank = jnp.zeros((B, 1, SIZE, SIZE, 3), jnp.uint8)
  spread = []
  for strength in (0.0, 12.0):
    encoder = slot_attention.SlotAttentionEncoder(
        num_slots=K, slot_size=SLOT, cnn_channels=CHANNELS, kernel_size=3, num_conv_layers=2,
        num_iterations=2, mlp_hidden_size=16, attention_locality=strength)
    params = encoder.init(jax.random.PRNGKey(0), blank)
    positions = encoder.apply(params, blank)['positions'][:, 0]  # [B, K, 2]
    spread.append(float(np.mean(np.linalg.norm(positions - positions.mean(1, keepdims=True),
                                               axis=-1))))
  assert spread[1] > 0.15 and spread[1] > 2 * spread[0], spread
