"""The bouncing-balls learners: pmapped steps, resume, processor export and freezing."""

import jax
import numpy as np
import optax
import pytest

from configs import balls as balls_configs
from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist.learning import balls as balls_learning
from rmr_dist.learning.abstract import TrainState
from rmr_dist.learning.loop import replicate, shard_batch, unreplicate
from rmr_dist.replay import balls_data

HISTORY = 3


@pytest.fixture(scope='module')
def config():
  return config_lib.load_balls_config(balls_configs.get_config('test'))


@pytest.fixture(scope='module')
def data(config):
  """Random trajectories shaped like the test config's (the learners only need the shapes)."""
  rng = np.random.default_rng(0)
  n, size, frames = config.sim.num_balls, config.sim.image_size, config.data.episode_frames
  return balls_data.TrajectorySet(
      positions=rng.random((4, frames, n, 2), dtype=np.float32),
      frames=rng.integers(0, 256, (4, frames, size, size, 3), dtype=np.uint8),
      radii=np.full((4, n), 0.05, np.float32))


def _abstract_learner(config, data, checkpoint_dir, seed=0):
  spec = balls_learning.abstract_spec(config.abstract, config.sim.num_balls)
  return balls_learning.BallsAbstractLearner(
      spec, history=HISTORY, learning_rate=1e-3, seed=seed,
      iterator=balls_data.WindowBatches(data, HISTORY, 8, seed=1, frames=False),
      checkpoint_dir=checkpoint_dir, save_every=2, keep=2)


def test_abstract_update_one_device_equals_two(config, data):
  spec = balls_learning.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_learning.make_abstract_model(spec)
  optimizer = optax.adam(1e-3)
  batch = data.windows(np.arange(8), HISTORY, frames=False)
  params = model.init(jax.random.PRNGKey(0), batch['history'])['params']
  state = TrainState(params, optimizer.init(params), np.zeros((), np.int32),
                     jax.random.PRNGKey(1))
  one, m1 = jax.jit(lambda s, b: balls_learning.abstract_update(
      s, b, model=model, optimizer=optimizer))(state, batch)
  devices = jax.local_devices()[:2]
  assert len(devices) == 2
  two, m2 = jax.pmap(lambda s, b: balls_learning.abstract_update(
      s, b, model=model, optimizer=optimizer, axis_name='d'), axis_name='d',
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
  spec = balls_learning.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_learning.make_abstract_model(spec)
  history = data.positions[:2, :HISTORY]
  params = model.init(jax.random.PRNGKey(0), history)['params']
  roll = np.asarray(balls_learning.rollout(model, params, history, 3))  # [2, 3, N, 2]
  np.testing.assert_allclose(roll[:, 0], model.apply({'params': params}, history), rtol=1e-6)
  window = np.concatenate([history[:, 1:], roll[:, :1]], axis=1)
  np.testing.assert_allclose(roll[:, 1], model.apply({'params': params}, window), rtol=1e-5,
                             atol=1e-6)
  result = balls_learning.evaluate_abstract(model, params, data, HISTORY, 3, batch_size=5)
  assert result['n_windows'] == data.window_count(HISTORY)
  assert len(result['rollout_mse']) == 3
  np.testing.assert_allclose(result['rollout_mse'][0], result['mse_1step'], rtol=0.5)


def test_natural_lockstep_freezes_rmr_processor(config, data, tmp_path):
  abstract = _abstract_learner(config, data, None)
  abstract.run(1)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  _, exported = checkpointing.restore_processor(export)
  learner = balls_learning.BallsNaturalLearner(
      config.natural, processor_export=export, image_size=config.sim.image_size,
      history=HISTORY, seed=0, iterator=balls_data.WindowBatches(data, HISTORY, 4, seed=2),
      checkpoint_dir=str(tmp_path / 'natural'))
  before = learner.model_params('end_to_end', 0)
  metrics = learner.run(3)
  assert metrics['loss'].shape == (2 * config.natural.num_seeds,)
  for s in range(config.natural.num_seeds):
    rmr = learner.model_params('rmr', s)['processor']
    for a, b in zip(jax.tree_util.tree_leaves(rmr), jax.tree_util.tree_leaves(exported)):
      np.testing.assert_array_equal(a, b)  # bit-identical to the export
  moved = learner.model_params('end_to_end', 0)['processor']
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(moved), jax.tree_util.tree_leaves(before['processor'])))
  assert len(set(learner.fingerprints.tolist())) == 1  # every model saw the same batches
  learner.close()
  resumed = balls_learning.BallsNaturalLearner(
      config.natural, processor_export=export, image_size=config.sim.image_size,
      history=HISTORY, seed=0, iterator=balls_data.WindowBatches(data, HISTORY, 4, seed=2),
      checkpoint_dir=str(tmp_path / 'natural'))
  assert resumed.global_step == 3
  np.testing.assert_array_equal(resumed.fingerprints, learner.fingerprints)
  predict = balls_learning.make_predict_fn(resumed.model)
  mse = balls_learning.evaluate_natural(predict, resumed.model_params('rmr', 0), data,
                                        HISTORY, np.arange(5), batch_size=2)
  assert 0.0 < mse < 1.0
  roll = balls_learning.natural_rollout(predict, resumed.model_params('rmr', 0),
                                        data.frames[0, :HISTORY], steps=2)
  assert roll['frames'].shape == (2,) + data.frames.shape[2:] and roll['frames'].dtype == np.uint8
  np.testing.assert_allclose(roll['masks'].sum(axis=1), 1.0, rtol=1e-5)


def test_natural_learner_names_a_missing_export(config, data, tmp_path):
  with pytest.raises(checkpointing.CheckpointError, match='no_such_export'):
    balls_learning.BallsNaturalLearner(
        config.natural, processor_export=str(tmp_path / 'no_such_export'),
        image_size=config.sim.image_size, history=HISTORY, seed=0,
        iterator=balls_data.WindowBatches(data, HISTORY, 4, seed=2), checkpoint_dir=None)


def test_window_batches_depend_only_on_seed_and_index(data):
  a = balls_data.WindowBatches(data, HISTORY, 4, seed=3)
  first = [next(a) for _ in range(3)]
  b = balls_data.WindowBatches(data, HISTORY, 4, seed=3)
  b.skip_to(2)  # A learner resumed at step 2 gets batch 2 next.
  resumed = next(b)
  for key in first[2]:
    np.testing.assert_array_equal(resumed[key], first[2][key])
  assert first[2]['frames'].shape == (4, HISTORY) + data.frames.shape[2:]
  assert first[2]['target'].shape == (4,) + data.positions.shape[2:]
  assert not np.array_equal(first[0]['target'], first[1]['target'])
