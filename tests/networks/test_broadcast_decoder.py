"""Tests for rmr_dist.networks.broadcast_decoder: shapes, masks, compositing, slot positions."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rmr_dist.networks import broadcast_decoder

B, K, LATENT, CHANNELS, SIZE = 2, 3, 16, 8, 16  # tiny decoder: 3 slots, 16x16 images


def _decoder():
  return broadcast_decoder.BroadcastDecoder(image_size=SIZE, channels=CHANNELS, num_layers=2,
                                            position_scale=8.0, displacement_scale=0.05)


def _inputs():
  z = jax.random.normal(jax.random.PRNGKey(7), (B, K, LATENT))
  anchor = jax.random.uniform(jax.random.PRNGKey(8), (B, K, 2))
  return z, anchor


def test_broadcast_decoder_shapes_masks_and_composite():
  decoder = _decoder()
  z, anchor = _inputs()
  params = decoder.init(jax.random.PRNGKey(0), z, anchor)
  out = decoder.apply(params, z, anchor)
  chex.assert_shape(out['recon'], (B, SIZE, SIZE, 3))
  chex.assert_shape(out['masks'], (B, K, SIZE, SIZE, 1))
  chex.assert_shape(out['rgb'], (B, K, SIZE, SIZE, 3))
  chex.assert_shape(out['positions'], (B, K, 2))
  np.testing.assert_allclose(out['masks'].sum(axis=1), np.ones((B, SIZE, SIZE, 1)), rtol=1e-5)
  # rgb lives in [-1, 1] scale; recon is the composite mapped to [0, 1].
  composite = np.sum(np.asarray(out['masks'] * out['rgb']), axis=1)
  np.testing.assert_allclose(out['recon'], (composite + 1) / 2, rtol=1e-5, atol=1e-6)
  # Untrained, every slot is drawn at its anchor (the displacement layer starts at zero).
  np.testing.assert_allclose(out['positions'], anchor, atol=1e-6)


def test_a_slot_drawing_moves_with_its_position():
  """The decoder works in slot-centred coordinates: shifting a slot's anchor by a whole number
  of pixels shifts its RGB and mask logits by as many pixels."""
  decoder = _decoder()
  z, _ = _inputs()
  anchor = jnp.full((B, K, 2), 0.5)
  params = decoder.init(jax.random.PRNGKey(0), z, anchor)
  shift = jnp.array([2.0 / SIZE, 0.0])  # two pixels to the right
  base = decoder.apply(params, z, anchor)['rgb']
  moved = decoder.apply(params, z, anchor + shift)['rgb']
  np.testing.assert_allclose(moved[:, :, :, 2:], base[:, :, :, :-2], rtol=1e-4, atol=1e-5)
  assert not np.allclose(moved, base)
