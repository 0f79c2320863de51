"""Tests for rmr_dist.networks.natural: trunk sizes, slot maps, the f~-P-g~ pixel model."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.learning import abstract as abstract_learning
from rmr_dist.networks import natural
from rmr_dist.networks import processors

SPEC16 = processors.ModelSpec('mpnn', latent_size=16, hidden_size=16)


def frames(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), np.uint8)


def test_trunk_output_shape():
  # 210: (210-8)//4+1 = 51, (51-4)//2+1 = 24, (24-4)//2+1 = 11;
  # 160: (160-8)//4+1 = 39, (39-4)//2+1 = 18, (18-4)//2+1 = 8.
  assert natural.trunk_output_shape(210, 160) == (11, 8)
  # 84 -> 20 -> 9 -> 3; 64 -> 15 -> 6 -> 2.
  assert natural.trunk_output_shape(84, 64) == (3, 2)
  assert natural.trunk_output_shape(44, 44) == (1, 1)
  with pytest.raises(ValueError, match='42x32 are too small'):
    natural.trunk_output_shape(42, 32)


@pytest.mark.parametrize('height,width,local', [(210, 160, (11, 8)), (84, 64, (3, 2))])
@pytest.mark.parametrize('maps_per_slot', [1, 2])
def test_encoder_shapes(height, width, local, maps_per_slot):
  encoder = natural.AtariEncoder(maps_per_slot=maps_per_slot)
  x = frames(2, height, width)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  z = encoder.apply({'params': params}, x)
  chex.assert_shape(z, (2, 128, 64))
  assert z.dtype == jnp.float32
  chex.assert_shape(params['conv_2']['kernel'], (4, 4, 64, 128))  # 128-channel local map
  chex.assert_shape(params['slot_maps']['kernel'], (1, 1, 128, 128 * maps_per_slot))
  h, w = local
  chex.assert_shape(params['projection']['kernel'], (maps_per_slot * h * w, 64))


def test_each_slot_reads_its_own_maps():
  """1x1 channel k*m + j is slot k's map j: changing slot 5's kernel columns moves slot 5
  only; and slots differ at initialisation."""
  m = 2
  encoder = natural.AtariEncoder(maps_per_slot=m)
  x = frames(3, 84, 64, seed=1)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  z = encoder.apply({'params': params}, x)  # [3, 128, 64]
  kernel = np.array(params['slot_maps']['kernel'])
  kernel[..., 5 * m:5 * m + m] += 1.0
  moved = encoder.apply({'params': {**params, 'slot_maps': {**params['slot_maps'],
                                                            'kernel': kernel}}}, x)
  changed = np.any(np.abs(np.asarray(moved - z)) > 1e-6, axis=(0, 2))  # [128]
  np.testing.assert_array_equal(np.flatnonzero(changed), [5])
  assert float(jnp.min(jnp.std(z, axis=1))) > 0  # slots are not copies of each other


def test_frame_stacks_enter_the_trunk_as_channels_newest_last():
  """[B, K, H, W, 3] stacks are the K frames' 3K channels: the first convolution reads all of
  them (so the older frame moves z), and a stack equals its channel concatenation."""
  encoder = natural.AtariEncoder()
  old, new = frames(2, 84, 64, seed=1), frames(2, 84, 64, seed=2)
  stack = np.stack([old, new], axis=1)  # [2, 2, 84, 64, 3]
  params = encoder.init(jax.random.PRNGKey(0), stack)['params']
  chex.assert_shape(params['conv_0']['kernel'], (8, 8, 6, 32))
  z = encoder.apply({'params': params}, stack)
  chex.assert_shape(z, (2, 128, 64))
  np.testing.assert_allclose(z, encoder.apply({'params': params},
                                              np.concatenate([old, new], axis=-1)),
                             rtol=1e-6, atol=1e-6)
  moved = encoder.apply({'params': params}, np.stack([new, new], axis=1))
  assert float(jnp.max(jnp.abs(moved - z))) > 0


def test_uint8_frames_are_scaled_inside():
  encoder = natural.AtariEncoder()
  x = frames(1, 84, 64)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  np.testing.assert_allclose(encoder.apply({'params': params}, x),
                             encoder.apply({'params': params}, x.astype(np.float32)),
                             rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match='map_activation'):
    natural.AtariEncoder(map_activation='tanh')


def make_model(maps_per_slot: int = 1) -> natural.NaturalModel:
  return natural.NaturalModel(processor=processors.make_spec_processor(SPEC16),
                              maps_per_slot=maps_per_slot, latent_size=16)


@pytest.mark.parametrize('jit', [False, True])
def test_model_is_decoder_of_processor_of_encoder(jit):
  model = make_model()
  x = frames(2, 84, 64)
  action = np.eye(18, dtype=np.float32)[[3, 7]]
  params = model.init(jax.random.PRNGKey(0), x, action)['params']
  assert set(params) == {'encoder', 'processor', 'decoder'}
  apply = jax.jit(model.apply) if jit else model.apply
  z_pred, z = apply({'params': params}, x, action)
  chex.assert_shape([z_pred, z], (2, 128, 16))
  z_manual = natural.AtariEncoder(latent_size=16).apply({'params': params['encoder']}, x)
  p_out = processors.make_spec_processor(SPEC16).apply(
      {'params': params['processor']}, z_manual, action)
  g_out = natural.LatentDecoder(16).apply({'params': params['decoder']}, p_out)
  np.testing.assert_allclose(z, z_manual, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(z_pred, g_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(model.apply({'params': params}, x, method='encode'), z,
                             rtol=1e-5, atol=1e-5)


def test_abstract_processor_plugs_in():
  """The natural model's processor subtree is the abstract model's: same tree, same shapes,
  so an export is used as ``params['processor']`` unchanged."""
  x, action = frames(1, 84, 64), np.eye(18, dtype=np.float32)[[0]]
  natural_params = make_model().init(jax.random.PRNGKey(0), x, action)['params']
  abstract_params = abstract_learning.make_model(SPEC16).init(
      jax.random.PRNGKey(1), np.zeros((1, 128, 8), np.float32), action)['params']
  shapes = lambda t: jax.tree_util.tree_map(np.shape, t)
  assert shapes(natural_params['processor']) == shapes(abstract_params['processor'])
  plugged = {**natural_params, 'processor': abstract_params['processor']}
  z_pred, _ = make_model().apply({'params': plugged}, x, action)
  assert np.isfinite(np.asarray(z_pred)).all()


def test_make_encode_fn_matches_the_model_encoder():
  model = make_model(maps_per_slot=2)
  x, action = frames(2, 84, 64), np.eye(18, dtype=np.float32)[[0, 1]]
  params = model.init(jax.random.PRNGKey(0), x, action)['params']
  encode_fn = natural.make_encode_fn(maps_per_slot=2, latent_size=16)
  np.testing.assert_allclose(jax.jit(encode_fn)(params['encoder'], x),
                             model.apply({'params': params}, x, method='encode'),
                             rtol=1e-5, atol=1e-5)


def test_slot_embedding_keeps_p_equivariant_and_makes_slots_distinguishable():
  """With the slot embedding, two slots whose maps are identical get different latents, and P
  stays permutation-equivariant over slots (the embedding lives in f~, not in P)."""
  model = natural.NaturalModel(processor=processors.make_spec_processor(SPEC16), latent_size=16,
                               slot_embedding=True)
  x, action = frames(2, 84, 64), np.eye(18, dtype=np.float32)[[0, 3]]
  params = model.init(jax.random.PRNGKey(0), x, action)['params']
  assert params['encoder']['slot_embedding'].shape == (natural.NUM_SLOTS, 16)
  # Give slots 0 and 1 the same 1x1-conv detector: without the embedding they coincide.
  enc = jax.tree_util.tree_map(np.array, params['encoder'])
  kernel = enc['slot_maps']['kernel']  # [1, 1, 128, S]
  kernel[..., 1] = kernel[..., 0]
  enc['slot_maps']['bias'][1] = enc['slot_maps']['bias'][0]
  z = np.asarray(natural.make_encode_fn(1, 16, slot_embedding=True)(enc, x))  # [2, S, 16]
  without = {k: v for k, v in enc.items() if k != 'slot_embedding'}
  z0 = np.asarray(natural.make_encode_fn(1, 16, slot_embedding=False)(without, x))
  np.testing.assert_allclose(z0[:, 0], z0[:, 1], rtol=1e-6)
  assert np.abs(z[:, 0] - z[:, 1]).min() > 1e-3
  np.testing.assert_allclose(z - z0, np.broadcast_to(enc['slot_embedding'], z.shape),
                             rtol=1e-5, atol=1e-5)
  # P(perm(z)) == perm(P(z)).
  perm = np.random.default_rng(0).permutation(natural.NUM_SLOTS)
  transition = lambda zz: model.apply({'params': params}, zz, action, method='transition')
  chex.assert_trees_all_close(transition(z[:, perm]), transition(z)[:, perm], rtol=1e-4,
                              atol=1e-4)
