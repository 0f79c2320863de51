"""Tests for rmr_dist.networks.atari_natural: trunk sizes and pixel coverage, slot maps, readouts,
the f~-P-g~ pixel model."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.learning import atari_abstract as abstract_learning
from rmr_dist.networks import atari_natural
from rmr_dist.networks import processors

SPEC16 = processors.ModelSpec('mpnn', latent_size=16, hidden_size=16)


def frames(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), np.uint8)


def test_trunk_output_shape():
  # 'small' (AtariARI at 84x84): 84 -> (84-8)//4+1 = 20 -> (20-4)//2+1 = 9 -> 9-3+1 = 7.
  assert atari_natural.trunk_output_shape(84, 84, 'small') == (7, 7)
  # 'full' at 210x160, padded to 220x172: 220 -> 54 -> 26 -> 12; 172 -> 42 -> 20 -> 9.
  assert atari_natural.covered_size(210, 'full') == 220
  assert atari_natural.covered_size(160, 'full') == 172
  assert atari_natural.trunk_output_shape(210, 160, 'full') == (12, 9)
  # 64 does not tile the 'small' trunk ((64-8)//4+1 = 15, (15-4) % 2 = 1); 68 does.
  assert atari_natural.covered_size(64, 'small') == 68
  assert atari_natural.trunk_output_shape(84, 64, 'small') == (7, 5)
  assert atari_natural.min_side('small') == 36 and atari_natural.min_side('full') == 44
  assert atari_natural.trunk_output_shape(36, 36, 'small') == (1, 1)
  with pytest.raises(ValueError, match='side of 20 pixels is too small.*at least 36'):
    atari_natural.trunk_output_shape(20, 84, 'small')
  with pytest.raises(ValueError, match="trunk='huge'"):
    atari_natural.trunk_output_shape(84, 84, 'huge')


def unseen_pixels(height: int, width: int, trunk: str, stack: int = 1) -> np.ndarray:
  """[H, W] bool: the pixels with exactly zero gradient of f~'s output, with every kernel and
  bias made positive and linear maps (no sigmoid to saturate), so that no ReLU is off: zero
  then means outside every receptive field.
  """
  encoder = atari_natural.AtariEncoder(trunk=trunk, latent_size=4, map_activation='none')
  shape = (1,) + ((stack,) if stack > 1 else ()) + (height, width, 3)
  params = encoder.init(jax.random.PRNGKey(0), np.zeros(shape, np.uint8))['params']
  params = jax.tree_util.tree_map(lambda p: jnp.abs(p) + 0.01, params)
  grad = jax.grad(lambda x: jnp.sum(encoder.apply({'params': params}, x)))(
      jnp.full(shape, 128.0, jnp.float32))
  grad = np.abs(np.asarray(grad)).reshape((-1, height, width, 3)).sum(axis=(0, 3))  # [H, W]
  return grad == 0


def config_frame_sizes() -> list[tuple[str, int, int, str, int]]:
  """(variant, H, W, trunk, frame_stack) of every configs/atari.py variant."""
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  out = []
  for variant in atari_configs.VARIANTS:
    c = config_lib.load_atari_config(atari_configs.get_config(variant))
    out.append((variant, c.env.frame_height, c.env.frame_width, c.natural.trunk,
                c.natural.frame_stack))
  return out


@pytest.mark.parametrize('variant,height,width,trunk,stack', config_frame_sizes())
def test_every_pixel_of_every_config_reaches_the_encoder(variant, height, width, trunk, stack):
  unseen = unseen_pixels(height, width, trunk, stack)
  assert not unseen.any(), (variant, np.argwhere(unseen)[:5])


def test_coverage_check_sees_what_valid_padding_leaves_out():
  """The check itself: without the padding the 'full' trunk never sees rows 204-209 and
  columns 156-159 of a 210x160 frame (so a trunk that missed pixels would fail the test)."""
  layers = atari_natural.TRUNKS['full']
  x = jnp.zeros((1, 210, 160, 1))
  def valid_trunk(x):
    for _, kernel, stride in layers:
      x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, kernel, kernel, 1),
                                (1, stride, stride, 1), 'VALID')
    return jnp.sum(x)
  unseen = np.asarray(jax.grad(valid_trunk)(x))[0, :, :, 0] == 0
  assert set(np.flatnonzero(unseen.all(axis=1))) == set(range(204, 210))
  assert set(np.flatnonzero(unseen.all(axis=0))) == set(range(156, 160))
  assert not unseen_pixels(210, 160, 'full').any()


@pytest.mark.parametrize('height,width,trunk,local', [(210, 160, 'full', (12, 9)),
                                                      (84, 84, 'small', (7, 7))])
@pytest.mark.parametrize('maps_per_slot', [1, 2])
def test_encoder_shapes(height, width, trunk, local, maps_per_slot):
  encoder = atari_natural.AtariEncoder(maps_per_slot=maps_per_slot, trunk=trunk)
  x = frames(2, height, width)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  z = encoder.apply({'params': params}, x)
  chex.assert_shape(z, (2, 128, 64))
  assert z.dtype == jnp.float32
  channels = atari_natural.TRUNKS[trunk][-1][0]
  chex.assert_shape(params['slot_maps']['kernel'], (1, 1, channels, 128 * maps_per_slot))
  h, w = local
  chex.assert_shape(params['projection']['kernel'], (maps_per_slot * h * w, 64))


def test_bits_readout_is_the_abstract_encoder_on_soft_bits():
  """readout='bits': 8 sigmoid bits per slot, then the abstract encoder f (RamEncoder, named
  ram_encoder) -- the abstract model's params['encoder'] plugs in unchanged."""
  encoder = atari_natural.AtariEncoder(latent_size=16, readout='bits', slot_embedding=True)
  x = frames(2, 84, 84)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  abstract = abstract_learning.make_model(SPEC16).init(
      jax.random.PRNGKey(1), np.zeros((1, 128, 8), np.float32),
      np.zeros((1, 18), np.float32))['params']['encoder']
  shapes = lambda t: jax.tree_util.tree_map(np.shape, t)
  assert shapes(params['ram_encoder']) == shapes(abstract)
  plugged = atari_natural.plug_abstract_encoder(params, abstract, 'bits', True)
  z = np.asarray(encoder.apply({'params': plugged}, x))  # [2, S, 16]
  # z - e_k = W sigma(bits) + b: inside the span of f's projection around its bias.
  inner = z - abstract['slot_embedding'] - abstract['projection']['bias']  # [2, S, 16]
  kernel = abstract['projection']['kernel']  # [8, 16]
  coef, *_ = np.linalg.lstsq(kernel.T, inner.reshape(-1, 16).T, rcond=None)  # [8, 2S]
  np.testing.assert_allclose(kernel.T @ coef, inner.reshape(-1, 16).T, atol=1e-4)
  assert (coef > -1e-4).all() and (coef < 1 + 1e-4).all()  # soft bits in [0, 1]
  with pytest.raises(ValueError, match='readout'):
    atari_natural.AtariEncoder(readout='pixels')


def test_each_slot_reads_its_own_maps():
  """1x1 channel k*m + j is slot k's map j: changing slot 5's kernel columns moves slot 5
  only; and slots differ at initialisation."""
  m = 2
  encoder = atari_natural.AtariEncoder(maps_per_slot=m)
  x = frames(3, 84, 84, seed=1)
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
  encoder = atari_natural.AtariEncoder()
  old, new = frames(2, 84, 84, seed=1), frames(2, 84, 84, seed=2)
  stack = np.stack([old, new], axis=1)  # [2, 2, 84, 84, 3]
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
  encoder = atari_natural.AtariEncoder()
  x = frames(1, 84, 84)
  params = encoder.init(jax.random.PRNGKey(0), x)['params']
  np.testing.assert_allclose(encoder.apply({'params': params}, x),
                             encoder.apply({'params': params}, x.astype(np.float32)),
                             rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match='map_activation'):
    atari_natural.AtariEncoder(map_activation='tanh')


def make_model(maps_per_slot: int = 1) -> atari_natural.NaturalModel:
  return atari_natural.NaturalModel(processor=processors.make_spec_processor(SPEC16),
                                    maps_per_slot=maps_per_slot, latent_size=16)


@pytest.mark.parametrize('jit', [False, True])
def test_model_is_decoder_of_processor_of_encoder(jit):
  model = make_model()
  x = frames(2, 84, 84)
  action = np.eye(18, dtype=np.float32)[[3, 7]]
  params = model.init(jax.random.PRNGKey(0), x, action)['params']
  assert set(params) == {'encoder', 'processor', 'decoder'}
  apply = jax.jit(model.apply) if jit else model.apply
  z_pred, z = apply({'params': params}, x, action)
  chex.assert_shape([z_pred, z], (2, 128, 16))
  z_manual = atari_natural.AtariEncoder(latent_size=16).apply({'params': params['encoder']}, x)
  p_out = processors.make_spec_processor(SPEC16).apply(
      {'params': params['processor']}, z_manual, action)
  g_out = atari_natural.LatentDecoder(16).apply({'params': params['decoder']}, p_out)
  np.testing.assert_allclose(z, z_manual, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(z_pred, g_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(model.apply({'params': params}, x, method='encode'), z,
                             rtol=1e-5, atol=1e-5)


def test_abstract_processor_plugs_in():
  """The natural model's processor subtree is the abstract model's: same tree, same shapes,
  so an export is used as ``params['processor']`` unchanged."""
  x, action = frames(1, 84, 84), np.eye(18, dtype=np.float32)[[0]]
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
  x, action = frames(2, 84, 84), np.eye(18, dtype=np.float32)[[0, 1]]
  params = model.init(jax.random.PRNGKey(0), x, action)['params']
  encode_fn = atari_natural.make_encode_fn(maps_per_slot=2, latent_size=16)
  np.testing.assert_allclose(jax.jit(encode_fn)(params['encoder'], x),
                             model.apply({'params': params}, x, method='encode'),
                             rtol=1e-5, atol=1e-5)


def test_slot_embedding_keeps_p_equivariant_and_makes_slots_distinguishable():
  """With the slot embedding, two slots whose maps are identical get different latents, and P
  stays permutation-equivariant over slots (the embedding lives in f~, not in P)."""
  model = atari_natural.NaturalModel(processor=processors.make_spec_processor(SPEC16),
                                     latent_size=16, slot_embedding=True)
  x, action = frames(2, 84, 84), np.eye(18, dtype=np.float32)[[0, 3]]
  params = model.init(jax.random.PRNGKey(0), x, action)['params']
  assert params['encoder']['slot_embedding'].shape == (atari_natural.NUM_SLOTS, 16)
  # Give slots 0 and 1 the same 1x1-conv detector: without the embedding they coincide.
  enc = jax.tree_util.tree_map(np.array, params['encoder'])
  kernel = enc['slot_maps']['kernel']  # [1, 1, 128, S]
  kernel[..., 1] = kernel[..., 0]
  enc['slot_maps']['bias'][1] = enc['slot_maps']['bias'][0]
  z = np.asarray(atari_natural.make_encode_fn(1, 16, slot_embedding=True)(enc, x))  # [2, S, 16]
  without = {k: v for k, v in enc.items() if k != 'slot_embedding'}
  z0 = np.asarray(atari_natural.make_encode_fn(1, 16, slot_embedding=False)(without, x))
  np.testing.assert_allclose(z0[:, 0], z0[:, 1], rtol=1e-6)
  assert np.abs(z[:, 0] - z[:, 1]).min() > 1e-3
  np.testing.assert_allclose(z - z0, np.broadcast_to(enc['slot_embedding'], z.shape),
                             rtol=1e-5, atol=1e-5)
  # P(perm(z)) == perm(P(z)).
  perm = np.random.default_rng(0).permutation(atari_natural.NUM_SLOTS)
  transition = lambda zz: model.apply({'params': params}, zz, action, method='transition')
  chex.assert_trees_all_close(transition(z[:, perm]), transition(z)[:, perm], rtol=1e-4,
                              atol=1e-4)
