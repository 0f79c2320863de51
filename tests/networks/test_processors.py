"""Tests for rmr_dist.networks.processors: shapes, the split first layer, equivariance, Deep Sets,
ModelSpec."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.networks import processors

A = 18  # actions


def _inputs(b: int, n: int, h: int, seed: int = 0):
  kz, ka = jax.random.split(jax.random.PRNGKey(seed))
  z = jax.random.normal(kz, (b, n, h))  # [B, N, H]
  action = jax.nn.one_hot(jax.random.randint(ka, (b,), 0, A), A)  # [B, A]
  return z, action


@pytest.mark.parametrize('name', ['mpnn', 'deepsets', 'mlp'])
@pytest.mark.parametrize('n', [1, 8])
@pytest.mark.parametrize('jit', [False, True])
def test_shapes(name, n, jit):
  model = processors.make_processor(name, hidden_size=16)
  z, action = _inputs(3, n, 16)
  params = model.init(jax.random.PRNGKey(1), z, action)
  apply = jax.jit(model.apply) if jit else model.apply
  out = apply(params, z, action)
  chex.assert_shape(out, (3, n, 16))
  chex.assert_tree_all_finite(out)


def test_full_size_shape():
  """The paper's size: 128 slots x 64 features, 16,384 edges per sample, batch 2."""
  model = processors.make_processor('mpnn', hidden_size=64)
  z, action = _inputs(2, 128, 64)
  params = model.init(jax.random.PRNGKey(1), z, action)
  out = jax.jit(model.apply)(params, z, action)
  chex.assert_shape(out, (2, 128, 64))
  chex.assert_tree_all_finite(out)


def test_make_processor_rejects_unknown_name():
  with pytest.raises(ValueError, match=r"'gat'.*deepsets.*mlp.*mpnn"):
    processors.make_processor('gat')


@pytest.mark.parametrize('kwargs', [{'aggregation': 'median'}, {'adjacency': 'ring'},
                                    {'num_steps': 0}])
def test_mpnn_rejects_bad_attributes(kwargs):
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    processors.MPNN(**kwargs)


def _naive_mpnn(params, z, action, aggregation, num_steps, residual=True):
  """Reference MPNN in float64 numpy that DOES form the [B, N, N, 2(H+A)] edge inputs."""
  relu = lambda v: np.maximum(v, 0.0)
  dense = lambda p, v: v @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'], np.float64)
  h = np.asarray(z, np.float64)
  a = np.asarray(action, np.float64)
  b, n, _ = h.shape
  for step in range(num_steps):
    p = params['params'][f'step_{step}']
    x = np.concatenate([h, np.broadcast_to(a[:, None], (b, n, a.shape[-1]))], -1)  # [B,N,D]
    d = x.shape[-1]
    x_i = np.broadcast_to(x[:, :, None, :], (b, n, n, d))  # receiver
    x_j = np.broadcast_to(x[:, None, :, :], (b, n, n, d))  # sender
    edges = np.concatenate([x_i, x_j], -1)  # [B, N, N, 2D]
    m = relu(dense(p['message_0'], edges))
    m = relu(dense(p['message_1'], m))
    m = dense(p['message_2'], m)  # [B, N, N, F]
    agg = {'sum': m.sum(2), 'mean': m.mean(2), 'max': m.max(2)}[aggregation]
    u = relu(dense(p['update_0'], np.concatenate([x, agg], -1)))
    u = dense(p['update_1'], u)
    h = h + u if residual else u
  return h


@pytest.mark.parametrize('aggregation', ['sum', 'mean', 'max'])
def test_split_first_layer_equals_naive_concatenation(aggregation):
  model = processors.MPNN(hidden_size=6, num_steps=2, aggregation=aggregation)
  z, action = _inputs(2, 5, 4)
  params = model.init(jax.random.PRNGKey(2), z, action)
  # The first message layer has the parameters of a Dense on the concatenation.
  chex.assert_shape(params['params']['step_0']['message_0']['kernel'], (2 * (4 + A), 6))
  # Full float32 matmuls: accelerators default to TF32/bf16 passes, which differ by ~1e-3.
  with jax.default_matmul_precision('float32'):
    out = model.apply(params, z, action)
  expected = _naive_mpnn(params, z, action, aggregation, num_steps=2)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name,kwargs', [
    ('mpnn', {'aggregation': 'sum'}),
    ('mpnn', {'aggregation': 'mean'}),
    ('mpnn', {'aggregation': 'max', 'num_steps': 2}),
    ('deepsets', {}),
])
def test_permutation_equivariance(name, kwargs):
  model = processors.make_processor(name, hidden_size=16, **kwargs)
  z, action = _inputs(2, 8, 16)
  params = model.init(jax.random.PRNGKey(3), z, action)
  perm = np.random.default_rng(0).permutation(8)
  out = model.apply(params, z, action)  # [B, N, H]
  out_of_permuted = model.apply(params, z[:, perm], action)
  np.testing.assert_allclose(out_of_permuted, out[:, perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('aggregation', ['sum', 'mean', 'max'])
def test_deepsets_is_mpnn_with_identity_adjacency(aggregation):
  deepsets = processors.DeepSets(hidden_size=16, num_steps=2, aggregation=aggregation)
  mpnn = processors.MPNN(hidden_size=16, num_steps=2, aggregation=aggregation)
  z, action = _inputs(2, 8, 16)
  params = deepsets.init(jax.random.PRNGKey(4), z, action)
  # Same class, same parameter tree.
  mpnn_params = mpnn.init(jax.random.PRNGKey(5), z, action)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(mpnn_params)
  out = deepsets.apply(params, z, action)
  masked = mpnn.apply(params, z, action, adjacency_mask=jnp.eye(8))
  np.testing.assert_allclose(out, masked, rtol=1e-5, atol=1e-6)


def test_deepsets_nodes_do_not_interact():
  model = processors.DeepSets(hidden_size=16, aggregation='sum')
  z, action = _inputs(2, 8, 16)
  params = model.init(jax.random.PRNGKey(6), z, action)
  out = model.apply(params, z, action)
  out_changed = model.apply(params, z.at[:, 3].add(5.0), action)
  untouched = np.arange(8) != 3
  np.testing.assert_array_equal(out_changed[:, untouched], out[:, untouched])
  assert not np.allclose(out_changed[:, 3], out[:, 3])


@pytest.mark.parametrize('aggregation', ['sum', 'mean', 'max'])
def test_all_ones_mask_equals_full_graph(aggregation):
  model = processors.MPNN(hidden_size=16, aggregation=aggregation)
  z, action = _inputs(2, 8, 16)
  params = model.init(jax.random.PRNGKey(7), z, action)
  np.testing.assert_allclose(model.apply(params, z, action, adjacency_mask=jnp.ones((8, 8))),
                             model.apply(params, z, action), rtol=1e-6, atol=1e-6)


def test_mpnn_messages_reach_other_nodes():
  model = processors.MPNN(hidden_size=16, aggregation='sum')
  z, action = _inputs(2, 8, 16)
  params = model.init(jax.random.PRNGKey(8), z, action)
  out = model.apply(params, z, action)
  out_changed = model.apply(params, z.at[:, 3].add(5.0), action)
  assert not np.allclose(out_changed[:, 0], out[:, 0])


def test_adjacency_mask_needs_full_adjacency():
  model = processors.DeepSets(hidden_size=16)
  z, action = _inputs(1, 4, 16)
  params = model.init(jax.random.PRNGKey(9), z, action)
  with pytest.raises(ValueError, match='adjacency_mask'):
    model.apply(params, z, action, adjacency_mask=jnp.eye(4))


@pytest.mark.parametrize('name', ['mpnn', 'deepsets', 'mlp'])
def test_action_changes_output(name):
  model = processors.make_processor(name, hidden_size=16)
  z, action = _inputs(1, 4, 16)
  params = model.init(jax.random.PRNGKey(10), z, action)
  other = jnp.roll(action, 1, axis=-1)
  assert not np.allclose(model.apply(params, z, action), model.apply(params, z, other))


def test_model_spec_round_trip_and_unknown_key():
  spec = processors.ModelSpec('mpnn', latent_size=16, hidden_size=16)
  assert processors.ModelSpec.from_dict(spec.to_dict()) == spec
  with pytest.raises(ValueError, match='latent_dim'):
    processors.ModelSpec.from_dict({'processor': 'mpnn', 'latent_dim': 3})
  with pytest.raises(ValueError, match='processor'):
    processors.ModelSpec('transformer')
