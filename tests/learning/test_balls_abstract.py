"""Tests for rmr_dist.learning.balls_abstract: 1 == 2 devices, resume, export, rollout."""

import jax
import numpy as np
import optax
import pytest

from rmr_dist import checkpointing
from rmr_dist.learning import balls_abstract
from rmr_dist.learning.loop import TrainState
from rmr_dist.learning.loop import replicate, shard_batch, unreplicate
from tests.conftest import make_balls_abstract_learner

HISTORY = 3


@pytest.fixture(name='config')
def _config(balls_config):
  return balls_config


@pytest.fixture(name='data')
def _data(balls_data):
  return balls_data


_abstract_learner = make_balls_abstract_learner


@pytest.mark.parametrize('input_noise', [0.0, 2e-3])
def test_abstract_update_one_device_equals_two(config, data, input_noise):
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_abstract.make_abstract_model(spec)
  optimizer = optax.adam(1e-3)
  batch = data.windows(np.arange(8), HISTORY, frames=False)
  params = model.init(jax.random.PRNGKey(0), batch['history'])['params']
  state = TrainState(params, optimizer.init(params), np.zeros((), np.int32),
                     jax.random.PRNGKey(1))
  one, m1 = jax.jit(lambda s, b: balls_abstract.abstract_update(
      s, b, model=model, optimizer=optimizer, input_noise=input_noise))(state, batch)
  devices = jax.local_devices()[:2]
  assert len(devices) == 2
  two, m2 = jax.pmap(lambda s, b: balls_abstract.abstract_update(
      s, b, model=model, optimizer=optimizer, axis_name='d', input_noise=input_noise),
      axis_name='d',
      devices=devices)(replicate(state, devices), shard_batch(batch, 2))
  np.testing.assert_allclose(float(m1['loss']), float(m2['loss'][0]), rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(one.params),
                  jax.tree_util.tree_leaves(unreplicate(two.params))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_abstract_learner_resumes_and_exports(config, data, tmp_path):
  learner = _abstract_learner(config, data, str(tmp_path / 'ckpt'))
  learner.run(4)
  saved = learner.params
  learner.close()
  resumed = _abstract_learner(config, data, str(tmp_path / 'ckpt'), seed=7)
  assert resumed.global_step == 4
  for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  resumed.run(6)
  assert resumed.global_step == 6
  path = resumed.export_processor(str(tmp_path / 'processor'))
  spec, params = checkpointing.restore_processor(path)
  assert spec['action_size'] == 0 and spec['num_slots'] == config.sim.num_balls
  for a, b in zip(jax.tree_util.tree_leaves(params),
                  jax.tree_util.tree_leaves(resumed.params['processor'])):
    np.testing.assert_array_equal(a, b)


def test_rollout_step_one_is_the_one_step_prediction(config, data):
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_abstract.make_abstract_model(spec)
  history = data.positions[:2, :HISTORY]
  params = model.init(jax.random.PRNGKey(0), history)['params']
  roll = np.asarray(balls_abstract.rollout(model, params, history, 3))  # [2, 3, N, 2]
  np.testing.assert_allclose(roll[:, 0], model.apply({'params': params}, history), rtol=1e-6)
  window = np.concatenate([history[:, 1:], roll[:, :1]], axis=1)
  np.testing.assert_allclose(roll[:, 1], model.apply({'params': params}, window), rtol=1e-5,
                             atol=1e-6)


def test_model_predicts_a_residual_from_the_last_position(config):
  """f reads positions and scaled steps; g is a scaled displacement: with g's weights zeroed,
  the prediction is exactly the last input position (copy-last)."""
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_abstract.make_abstract_model(spec, displacement_scale=0.01)
  history = np.random.default_rng(0).random((2, HISTORY, config.sim.num_balls, 2),
                                            dtype=np.float32)
  params = model.init(jax.random.PRNGKey(0), history)['params']
  params = dict(params, decoder=jax.tree_util.tree_map(np.zeros_like, params['decoder']))
  np.testing.assert_allclose(model.apply({'params': params}, history), history[:, -1],
                             atol=1e-7)
