"""Tests for rmr_dist.networks.atari_abstract: bit packing, masks, copy baseline, the f-P-g
model."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.evaluation import atari_metrics
from rmr_dist.networks import atari_abstract
from rmr_dist.networks.processors import make_processor


def test_bit_order_is_most_significant_first():
  bits = atari_abstract.bytes_to_bits(np.array([0b10000001, 0b00000010, 255, 0], np.uint8))
  np.testing.assert_array_equal(bits, [[1, 0, 0, 0, 0, 0, 0, 1],
                                       [0, 0, 0, 0, 0, 0, 1, 0],
                                       [1] * 8,
                                       [0] * 8])
  assert bits.dtype == np.float32


def test_bytes_to_bits_round_trip_numpy_and_jax():
  ram = np.arange(256, dtype=np.uint8).reshape(2, 128)  # every byte value once
  bits = atari_abstract.bytes_to_bits(ram)
  assert isinstance(bits, np.ndarray) and bits.shape == (2, 128, 8)
  np.testing.assert_array_equal(atari_abstract.bits_to_bytes(bits), ram)
  jax_bits = atari_abstract.bytes_to_bits(jnp.asarray(ram))
  assert isinstance(jax_bits, jax.Array)
  np.testing.assert_array_equal(jax_bits, bits)
  packed = jax.jit(atari_abstract.bits_to_bytes)(jax_bits)
  assert packed.dtype == jnp.uint8
  np.testing.assert_array_equal(packed, ram)


def test_combine_overwrites_only_masked_slots():
  x = np.array([[[0, 0, 0, 0, 0, 0, 0, 1],
                 [1, 1, 1, 1, 0, 0, 0, 0]]], np.float32)  # [1, 2, 8]
  logits = np.where(np.array([[[1, 0, 1, 0, 1, 0, 1, 0],
                               [0, 1, 0, 1, 0, 1, 0, 1]]]) > 0, 3.0, -3.0)
  out = atari_abstract.combine(x, logits, np.array([[True, False]]))
  np.testing.assert_array_equal(out[0, 0], [1, 0, 1, 0, 1, 0, 1, 0])  # predicted
  np.testing.assert_array_equal(out[0, 1], x[0, 1])  # copied


def test_copy_baseline_is_perfect_on_a_sequence_without_changes():
  ram = np.random.default_rng(0).integers(0, 256, size=128, dtype=np.uint8)
  x = np.tile(ram, (10, 1))  # [T=10, 128]: RAM never changes, y = x
  y_pred = atari_abstract.copy_baseline(atari_abstract.bytes_to_bits(x), action=None)
  pred_bytes = np.asarray(atari_abstract.bits_to_bytes(y_pred))
  all_slots = np.ones(128, bool)
  assert atari_metrics.slot_accuracy(pred_bytes, x, all_slots) == 1.0
  assert atari_metrics.bit_f1(np.asarray(y_pred), atari_abstract.bytes_to_bits(x), all_slots) == 1.0


def _model_inputs(b, s, seed=0):
  rng = np.random.default_rng(seed)
  x_bits = atari_abstract.bytes_to_bits(rng.integers(0, 256, (b, s), dtype=np.uint8))  # [B, S, 8]
  num_actions = atari_abstract.NUM_ACTIONS
  action = jax.nn.one_hot(rng.integers(0, num_actions, b), num_actions)
  return x_bits, action


@pytest.mark.parametrize('name', ['mpnn', 'deepsets', 'mlp'])
def test_model_shapes_and_parameter_tree(name):
  model = atari_abstract.AbstractModel(processor=make_processor(name, hidden_size=16),
                                       num_slots=8, latent_size=16)
  x_bits, action = _model_inputs(3, 8)
  params = model.init(jax.random.PRNGKey(0), x_bits, action)
  assert set(params['params']) == {'encoder', 'processor', 'decoder'}
  assert params['params']['encoder']['slot_embedding'].shape == (8, 16)
  out = jax.jit(model.apply)(params, x_bits, action)
  chex.assert_shape(out.bit_logits, (3, 8, 8))
  chex.assert_shape(out.mask_logits, (3, 8))
  # The processor subtree alone drives the processor.
  processor = make_processor(name, hidden_size=16)
  z = jnp.ones((3, 8, 16))
  processor.apply({'params': params['params']['processor']}, z, action)


def test_full_size_model():
  model = atari_abstract.AbstractModel(processor=make_processor('mpnn'))  # 128 slots x 64
  x_bits, action = _model_inputs(2, 128)
  params = model.init(jax.random.PRNGKey(0), x_bits, action)
  out = jax.jit(model.apply)(params, x_bits, action)
  chex.assert_shape(out.bit_logits, (2, 128, 8))
  chex.assert_shape(out.mask_logits, (2, 128))


@pytest.mark.parametrize('name', ['mpnn', 'deepsets'])
def test_model_without_slot_embedding_is_permutation_equivariant(name):
  model = atari_abstract.AbstractModel(processor=make_processor(name, hidden_size=16),
                                       num_slots=8, latent_size=16, slot_embedding=False)
  x_bits, action = _model_inputs(2, 8)
  params = model.init(jax.random.PRNGKey(1), x_bits, action)
  assert 'slot_embedding' not in params['params']['encoder']
  perm = np.random.default_rng(1).permutation(8)
  out = model.apply(params, x_bits, action)
  out_p = model.apply(params, x_bits[:, perm], action)
  np.testing.assert_allclose(out_p.bit_logits, out.bit_logits[:, perm], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out_p.mask_logits, out.mask_logits[:, perm], rtol=1e-5, atol=1e-5)


def test_slot_embedding_tells_equal_slots_apart():
  model = atari_abstract.AbstractModel(processor=make_processor('mpnn', hidden_size=16),
                                       num_slots=8, latent_size=16)
  x_bits = jnp.zeros((1, 8, 8))  # every slot holds the same byte
  action = jax.nn.one_hot(jnp.array([0]), atari_abstract.NUM_ACTIONS)
  params = model.init(jax.random.PRNGKey(2), x_bits, action)
  logits = model.apply(params, x_bits, action).bit_logits[0]  # [8, 8]
  assert not np.allclose(logits[0], logits[1])


def test_model_rejects_wrong_slot_count():
  model = atari_abstract.AbstractModel(processor=make_processor('deepsets', hidden_size=16),
                                       num_slots=8, latent_size=16)
  x_bits, action = _model_inputs(1, 7)
  with pytest.raises(ValueError, match='8 slots'):
    model.init(jax.random.PRNGKey(0), x_bits, action)
