"""Tests for rmr_dist.networks.broadcast_decoder: shapes, masks, compositing, size checks."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

from rmr_dist.networks import broadcast_decoder

B, K, LATENT, CHANNELS, SIZE = 2, 3, 16, 8, 16  # tiny decoder: 3 slots, 16x16 images


def _decoder():
  return broadcast_decoder.BroadcastDecoder(image_size=SIZE, broadcast_size=4, channels=CHANNELS,
                                            kernel_size=3, num_layers=3)


def test_broadcast_decoder_shapes_masks_and_composite():
  decoder = _decoder()
  z = jax.random.normal(jax.random.PRNGKey(7), (B, K, LATENT))
  params = decoder.init(jax.random.PRNGKey(0), z)
  out = decoder.apply(params, z)
  chex.assert_shape(out['recon'], (B, SIZE, SIZE, 3))
  chex.assert_shape(out['masks'], (B, K, SIZE, SIZE, 1))
  chex.assert_shape(out['rgb'], (B, K, SIZE, SIZE, 3))
  np.testing.assert_allclose(out['masks'].sum(axis=1), np.ones((B, SIZE, SIZE, 1)), rtol=1e-5)
  np.testing.assert_allclose(out['recon'], np.sum(np.asarray(out['masks'] * out['rgb']), axis=1),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('image_size, broadcast_size, num_layers',
                         [(48, 8, 5), (20, 8, 5), (64, 8, 2), (4, 8, 5)])
def test_broadcast_decoder_rejects_bad_sizes(image_size, broadcast_size, num_layers):
  with pytest.raises(ValueError):
    broadcast_decoder.BroadcastDecoder(image_size=image_size, broadcast_size=broadcast_size,
                                       num_layers=num_layers)
