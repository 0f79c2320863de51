"""Tests for rmr_dist.networks.balls: the abstract and natural bouncing-balls models."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.networks import balls
from rmr_dist.networks import broadcast_decoder
from rmr_dist.networks import slot_attention
from rmr_dist.networks.processors import MPNN

pytestmark = pytest.mark.fast_compile  # few updates of small models: compiling dominates

B, T, N = 2, 3, 4  # batch, history length, balls
LATENT = 16
K, SLOT, CHANNELS, SIZE = 3, 8, 8, 16  # tiny natural model: 3 slots, 16x16 images


def _processor():
  return MPNN(hidden_size=16, num_steps=2, aggregation='mean')


def _abstract_init(history):
  model = balls.BallsAbstractModel(_processor(), latent_size=LATENT)
  return model, model.init(jax.random.PRNGKey(0), history)


def _encoder():
  return slot_attention.SlotAttentionEncoder(num_slots=K, slot_size=SLOT, cnn_channels=CHANNELS,
                                             kernel_size=3, num_conv_layers=2, num_iterations=2,
                                             mlp_hidden_size=16)


def _decoder():
  return broadcast_decoder.BroadcastDecoder(image_size=SIZE, channels=CHANNELS, num_layers=2,
                                            displacement_scale=0.05)


def _frames(seed=0, t=T):
  return jax.random.randint(jax.random.PRNGKey(seed), (B, t, SIZE, SIZE, 3), 0, 256
                            ).astype(jnp.uint8)


def test_abstract_shape_and_jit_agree():
  history = jax.random.uniform(jax.random.PRNGKey(1), (B, T, N, 2))
  model, params = _abstract_init(history)
  assert set(params['params']) == {'encoder', 'processor', 'decoder'}
  out = model.apply(params, history)
  chex.assert_shape(out, (B, N, 2))
  np.testing.assert_allclose(jax.jit(model.apply)(params, history), out, rtol=1e-5, atol=1e-6)


def test_history_features_are_positions_and_scaled_steps():
  history = jnp.array([[[[0.1, 0.2]], [[0.2, 0.2]], [[0.4, 0.1]]]])  # [1, T=3, N=1, 2]
  features = balls.history_features(history, displacement_scale=0.1)  # [1, 1, 6]
  np.testing.assert_allclose(features[0, 0], [-0.2, -0.8, 2.0, -1.0, 1.0, 0.0], atol=1e-6)


def test_abstract_is_permutation_equivariant_over_balls():
  history = jax.random.uniform(jax.random.PRNGKey(2), (B, T, N, 2))
  model, params = _abstract_init(history)
  perm = np.array([2, 0, 3, 1])
  out = model.apply(params, history)
  out_perm = model.apply(params, history[:, :, perm])
  np.testing.assert_allclose(out_perm, out[:, perm], rtol=1e-5, atol=1e-6)


def test_natural_model_shapes_and_processor_subtree_matches_abstract():
  model = balls.BallsNaturalModel(_encoder(), _processor(), _decoder(), latent_size=LATENT)
  frames = _frames(seed=8)
  params = model.init({'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)},
                      frames)
  assert set(params['params']) == {'encoder', 'projection', 'processor', 'decoder'}
  out = jax.jit(model.apply, static_argnames='deterministic')(params, frames,
                                                             deterministic=True)
  chex.assert_shape(out['recon'], (B, SIZE, SIZE, 3))
  chex.assert_shape(out['masks'], (B, K, SIZE, SIZE, 1))
  chex.assert_shape(out['rgb'], (B, K, SIZE, SIZE, 3))
  chex.assert_shape(out['latents'], (B, K, LATENT))
  chex.assert_shape(out['next_latents'], (B, K, LATENT))
  chex.assert_shape(out['attention'], (B, T, K, SIZE * SIZE))
  chex.assert_shape(out['slot_positions'], (B, T, K, 2))
  assert out['recon'].dtype == jnp.float32
  # Untrained, every slot is drawn where the encoder found it in the last input frame.
  np.testing.assert_allclose(out['positions'], out['slot_positions'][:, -1], atol=1e-6)

  # An abstract export plugs into the natural model: same tree, same leaf shapes.
  _, abstract_params = _abstract_init(jnp.zeros((B, T, N, 2)))
  natural_proc = params['params']['processor']
  abstract_proc = abstract_params['params']['processor']
  assert (jax.tree_util.tree_structure(natural_proc)
          == jax.tree_util.tree_structure(abstract_proc))
  chex.assert_trees_all_equal_shapes(natural_proc, abstract_proc)
  swapped = {'params': {**params['params'], 'processor': abstract_proc}}
  chex.assert_shape(model.apply(swapped, frames, deterministic=True)['recon'],
                    (B, SIZE, SIZE, 3))


def test_objects_adjacency_cuts_off_the_slot_with_most_attention():
  attention = jnp.array([[[0.1, 0.1, 0.0, 0.0],   # slot 0: mass 0.2
                          [0.8, 0.8, 0.9, 0.9],   # slot 1: the background (mass 3.4)
                          [0.1, 0.1, 0.1, 0.1]]])  # [1, K=3, L=4]
  mask = np.asarray(balls.objects_adjacency(attention))[0]
  np.testing.assert_array_equal(mask, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_objects_graph_hides_the_background_from_the_ball_slots():
  """With processor_graph='objects', P's outputs for the ball slots do not depend on the
  background slot's latent; with 'all' they do."""
  frames = _frames(seed=3)
  outs = {}
  for graph in ('all', 'objects'):
    model = balls.BallsNaturalModel(_encoder(), _processor(), _decoder(), latent_size=LATENT,
                                    processor_graph=graph)
    params = model.init({'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)},
                        frames)
    out = model.apply(params, frames, deterministic=True)
    background = np.asarray(jnp.argmax(jnp.sum(out['attention'][:, -1], axis=-1), axis=-1))
    proc = lambda z: model.processor.apply({'params': params['params']['processor']}, z,
                                           jnp.zeros((B, 0)), **(
                                               {} if graph == 'all' else
                                               {'adjacency_mask': balls.objects_adjacency(
                                                   out['attention'][:, -1])}))
    z = out['latents']
    np.testing.assert_allclose(proc(z), out['next_latents'], rtol=1e-5, atol=1e-5)
    bumped = z.at[np.arange(B), background].add(1.0)  # change only the background latent
    others = np.ones((B, K), bool)
    others[np.arange(B), background] = False
    outs[graph] = np.abs(np.asarray(proc(bumped) - proc(z)))[others].max()
  assert outs['objects'] < 1e-6 < outs['all'], outs


def test_abstract_f_slot_latents_are_the_abstract_f_of_the_slot_positions():
  """slot_latents='abstract_f': P's input is exactly f(history_features(f~'s slot positions)),
  with f's params the abstract model's encoder structure; g~ reads P's output and the slot
  appearance; the warm-start (skip_processor) gives g~ zeros in place of P's output."""
  decoder = _decoder()
  model = balls.BallsNaturalModel(_encoder(), _processor(), decoder, latent_size=LATENT,
                                  slot_latents='abstract_f', appearance_size=5)
  frames = _frames(seed=4)
  params = model.init({'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)},
                      frames)
  assert set(params['params']) == {'encoder', 'abstract_encoder', 'appearance', 'processor',
                                    'decoder'}
  _, abstract_params = _abstract_init(jnp.zeros((B, T, N, 2)))
  f = abstract_params['params']['encoder']
  chex.assert_trees_all_equal_shapes(params['params']['abstract_encoder'], f)
  params = {'params': {**params['params'], 'abstract_encoder': f}}
  out = model.apply(params, frames, deterministic=True)
  features = balls.history_features(out['slot_positions'], decoder.displacement_scale)
  np.testing.assert_allclose(out['latents'], features @ f['kernel'] + f['bias'], rtol=1e-5,
                             atol=1e-5)
  chex.assert_shape(out['next_latents'], (B, K, LATENT))
  chex.assert_shape(params['params']['decoder']['latent']['kernel'], (LATENT + 5, CHANNELS))
  warm = model.apply(params, frames, deterministic=True, skip_processor=True)
  np.testing.assert_array_equal(warm['next_latents'], 0.0)


def test_zero_readout_leaves_the_warm_start_decoder_unchanged_when_p_enters():
  """readout_init='zeros' (decoder zero_inputs = latent size): at initialisation g~'s weights
  on P's output are zero and the rest are drawn for their own fan-in, so the frame drawn with
  P's output equals the warm-start's (zeros in its place) while P's output is far from zero;
  the gradient then reaches those weights."""
  zero = broadcast_decoder.BroadcastDecoder(image_size=SIZE, channels=CHANNELS, num_layers=2,
                                            displacement_scale=0.05, zero_inputs=LATENT)
  model = balls.BallsNaturalModel(_encoder(), _processor(), zero, latent_size=LATENT,
                                  slot_latents='abstract_f', appearance_size=5)
  frames = _frames(seed=5)
  keys = {'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)}
  params = model.init(keys, frames)
  kernel = params['params']['decoder']['latent']['kernel']  # [LATENT + 5, CHANNELS]
  np.testing.assert_array_equal(kernel[:LATENT], 0.0)
  assert np.all(np.any(kernel[LATENT:] != 0.0, axis=1))
  default = balls.BallsNaturalModel(_encoder(), _processor(), _decoder(), latent_size=LATENT,
                                    slot_latents='abstract_f', appearance_size=5).init(
                                        keys, frames)['params']['decoder']['latent']['kernel']
  assert np.all(np.any(default[:LATENT] != 0.0, axis=1))
  # The other rows are drawn for a fan-in of 5 (lecun normal), not of LATENT + 5.
  assert np.std(kernel[LATENT:]) > 1.5 * np.std(default[LATENT:])
  out = model.apply(params, frames, deterministic=True)
  warm = model.apply(params, frames, deterministic=True, skip_processor=True)
  assert float(jnp.min(jnp.abs(out['next_latents']).sum(-1))) > 1e-3
  np.testing.assert_allclose(out['recon'], warm['recon'], rtol=1e-6, atol=1e-6)
  grad = jax.grad(lambda p: jnp.sum(jnp.square(model.apply(
      {'params': p}, frames, deterministic=True)['recon'] - 0.5)))(params['params'])
  assert float(jnp.abs(grad['decoder']['latent']['kernel'][:LATENT]).max()) > 0.0


def test_history_appearance_reads_what_the_projection_reads():
  """appearance_input='history': g~'s slot features beside P's output are a Dense of the
  projection's input (the slot's T vectors and its position features)."""
  decoder = _decoder()
  model = balls.BallsNaturalModel(_encoder(), _processor(), decoder, latent_size=LATENT,
                                  slot_latents='abstract_f', appearance_size=LATENT,
                                  appearance_input='history')
  frames = _frames(seed=6)
  params = model.init({'params': jax.random.PRNGKey(0), 'slots': jax.random.PRNGKey(1)},
                      frames)
  kernel = params['params']['appearance']['kernel']
  chex.assert_shape(kernel, (T * SLOT + 2 * T, LATENT))
  out, state = model.apply(params, frames, deterministic=True,
                           capture_intermediates=True, mutable=['intermediates'])
  slots = state['intermediates']['encoder']['__call__'][0]['slots']  # [B, T, K, S]
  x = jnp.concatenate([jnp.transpose(slots, (0, 2, 1, 3)).reshape(B, K, T * SLOT),
                       balls.history_features(out['slot_positions'],
                                              decoder.displacement_scale)], axis=-1)
  appearance = state['intermediates']['appearance']['__call__'][0]
  np.testing.assert_allclose(appearance, x @ kernel + params['params']['appearance']['bias'],
                             rtol=1e-5, atol=1e-5)


def test_oracle_model_reads_true_positions_through_f_and_p():
  decoder = _decoder()
  model = balls.BallsOracleModel(_processor(), decoder, latent_size=LATENT, appearance_size=4)
  history = jax.random.uniform(jax.random.PRNGKey(5), (B, T, N, 2))
  params = model.init(jax.random.PRNGKey(0), history)
  assert set(params['params']) == {'abstract_encoder', 'processor', 'ball_appearance',
                                   'background', 'decoder'}
  out = jax.jit(model.apply)(params, history)
  chex.assert_shape(out['recon'], (B, SIZE, SIZE, 3))
  chex.assert_shape(out['masks'], (B, N + 1, SIZE, SIZE, 1))
  f = params['params']['abstract_encoder']
  features = balls.history_features(history, decoder.displacement_scale)
  np.testing.assert_allclose(out['latents'], features @ f['kernel'] + f['bias'], rtol=1e-5,
                             atol=1e-5)
  # Untrained, each ball is drawn at its last true position, the background at the centre.
  np.testing.assert_allclose(out['positions'][:, :N], history[:, -1], atol=1e-6)
  np.testing.assert_allclose(out['positions'][:, N], 0.5, atol=1e-6)
