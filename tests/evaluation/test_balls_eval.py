"""Tests for rmr_dist.evaluation.balls_eval: abstract and natural validation errors, rollouts."""

import jax
import numpy as np
import pytest

from rmr_dist.evaluation import balls_eval
from rmr_dist.learning import balls_abstract
from rmr_dist.learning import balls_natural
from rmr_dist.envs import balls_trajectories

pytestmark = pytest.mark.fast_compile  # few updates of small models: compiling dominates

HISTORY = 3


@pytest.fixture(name='config')
def _config(balls_config):
  return balls_config


@pytest.fixture(name='data')
def _data(balls_data):
  return balls_data


def test_evaluate_abstract_counts_every_window_and_rollout_step(config, data):
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_abstract.make_abstract_model(spec)
  params = model.init(jax.random.PRNGKey(0), data.positions[:2, :HISTORY])['params']
  result = balls_eval.evaluate_abstract(model, params, data, HISTORY, 3, batch_size=5)
  assert result['n_windows'] == data.window_count(HISTORY)
  assert len(result['rollout_mse']) == 3
  np.testing.assert_allclose(result['rollout_mse'][0], result['mse_1step'], rtol=0.5)


def _untrained_natural_model(config, data):
  """(params, jitted predict) of the test config's natural model at initialisation."""
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  model = balls_natural.make_natural_model(config.natural, spec, config.sim.image_size,
                                          config.sim.displacement_scale)
  key = jax.random.PRNGKey(0)
  params = model.init({'params': key, 'slots': key}, data.frames[:1, :HISTORY])['params']
  return params, balls_natural.make_predict_fn(model)


def test_evaluate_natural_and_rollout(config, data):
  params, predict = _untrained_natural_model(config, data)
  scores = balls_eval.evaluate_natural(predict, params, data, HISTORY, np.arange(5),
                                       batch_size=2)
  assert 0.0 < scores['mse'] < 1.0
  assert -1.0 <= scores['fg_ari'] <= 1.0
  assert 0.0 <= scores['mask_entropy'] <= np.log(config.natural.num_slots) + 1e-6
  roll = balls_eval.natural_rollout(predict, params, data.frames[0, :HISTORY], steps=2)
  assert roll['frames'].shape == (2,) + data.frames.shape[2:] and roll['frames'].dtype == np.uint8
  np.testing.assert_allclose(roll['masks'].sum(axis=1), 1.0, rtol=1e-5)


def test_fixed_size_chunks_pad_the_last_chunk_with_its_final_index():
  chunks = list(balls_eval.fixed_size_chunks(np.array([4, 5, 6, 7, 8]), 2))
  assert [(c.tolist(), n) for c, n in chunks] == [([4, 5], 2), ([6, 7], 2), ([8, 8], 1)]
  assert [(c.tolist(), n) for c, n in balls_eval.fixed_size_chunks(np.array([3, 9]), 64)] == [
      ([3, 9], 2)]


def test_padded_evaluation_scores_the_real_windows_alone_with_one_compiled_shape(config, data):
  """5 windows in chunks of 2 (the last padded) score what one chunk of 5 scores, and the
  jitted predict sees a single batch shape per call."""
  params, predict = _untrained_natural_model(config, data)
  shapes = []

  def recording(p, frames):
    shapes.append(frames.shape[0])
    return predict(p, frames)

  index = np.arange(5)
  chunked = balls_eval.evaluate_natural(recording, params, data, HISTORY, index, 2)
  assert shapes == [2, 2, 2]
  whole = balls_eval.evaluate_natural(predict, params, data, HISTORY, index, 5)
  for k in ('mse', 'fg_ari', 'mask_entropy', 'position_rmse'):
    np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-5, err_msg=k)
  f = params['abstract_encoder']  # the span P's inputs are measured against
  span = [balls_eval.latent_span(predict, params, data, HISTORY, index, b, f['kernel'],
                                 f['bias']) for b in (2, 5)]
  for k in ('ball_slots', 'background_slot'):
    np.testing.assert_allclose(span[0][k], span[1][k], rtol=1e-5, err_msg=k)


def test_copy_last_frame_mse_on_hand_values():
  # One trajectory of 3 one-pixel frames; history 1 gives windows (0 -> 1) and (1 -> 2).
  frames = np.array([0, 255, 255], np.uint8).reshape(1, 3, 1, 1, 1) * np.ones(3, np.uint8)
  data = balls_trajectories.TrajectorySet(positions=np.zeros((1, 3, 1, 2), np.float32),
                                          frames=frames, radii=np.zeros((1, 1), np.float32))
  # Window 0 predicts 0 for 255 (squared error 1 per channel), window 1 predicts 255 for 255.
  assert balls_eval.copy_last_frame_mse(data, 1, np.array([0])) == 1.0
  assert balls_eval.copy_last_frame_mse(data, 1, np.array([1])) == 0.0
  assert balls_eval.copy_last_frame_mse(data, 1, np.array([0, 1])) == 0.5


def test_constant_velocity_control_is_exact_on_straight_lines(config):
  """One ball moving at constant velocity: the control is exact at every rollout step, copy-last
  is off by the velocity (squared, per coordinate)."""
  t = np.arange(12, dtype=np.float32)
  positions = np.stack([0.1 + 0.01 * t, 0.5 + 0.02 * t], -1)[None, :, None]  # [1, 12, 1, 2]
  data = balls_trajectories.TrajectorySet(positions=positions, frames=np.zeros((1, 12, 8, 8, 3),
                                                                               np.uint8),
                                          radii=np.full((1, 1), 0.05, np.float32))
  spec = balls_abstract.abstract_spec(config.abstract, 1)
  model = balls_abstract.make_abstract_model(spec)
  params = model.init(jax.random.PRNGKey(0), positions[:, :HISTORY])['params']
  result = balls_eval.evaluate_abstract(model, params, data, HISTORY, 4, batch_size=4)
  assert result['const_velocity_mse_1step'] < 1e-12
  np.testing.assert_allclose(result['const_velocity_rollout_mse'], 0.0, atol=1e-12)
  np.testing.assert_allclose(result['copy_last_mse_1step'], (0.01 ** 2 + 0.02 ** 2) / 2,
                             rtol=1e-4)


def test_outside_span_fraction_is_zero_in_the_span_and_one_orthogonal_to_it():
  rng = np.random.default_rng(0)
  kernel, bias = rng.normal(size=(6, 32)), rng.normal(size=32)  # the abstract f: z = h W + b
  inside = rng.normal(size=(5, 6)) @ kernel + bias  # [5, 32]
  np.testing.assert_allclose(balls_eval.outside_span_fraction(inside, kernel, bias), 0,
                             atol=1e-12)
  basis, _ = np.linalg.qr(kernel.T)
  direction = rng.normal(size=32)
  orthogonal = direction - basis @ (basis.T @ direction)
  np.testing.assert_allclose(
      balls_eval.outside_span_fraction(bias + orthogonal, kernel, bias), 1.0, rtol=1e-9)
  # Random directions: about 1 - F/D outside.
  spread = balls_eval.outside_span_fraction(bias + rng.normal(size=(2000, 32)), kernel, bias)
  assert abs(spread.mean() - (1 - 6 / 32)) < 0.02


def test_nearest_slot_sq_error_leaves_out_the_background_slot():
  slots = np.array([[[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]])  # [1, K=3, 2]
  attention = np.array([[[0.2, 0.0], [0.9, 0.9], [0.1, 0.3]]])  # slot 1 has the most
  balls = np.array([[[0.1, 0.2], [0.6, 0.6]]])  # [1, N=2, 2]
  # Ball 0: slot 0 at 0.1 (0.01); ball 1: slot 2 (0.09 + 0.09), not the background (0.02).
  np.testing.assert_allclose(balls_eval.nearest_slot_sq_error(slots, attention, balls),
                             [0.01, 0.18], rtol=1e-9)


def test_rendered_prediction_mse_is_zero_for_exact_positions(config):
  """One ball on a straight line, frames from the renderer: the truth and constant velocity
  render the target exactly; an untrained abstract model does not."""
  from rmr_dist.envs import balls as balls_env
  t = np.arange(8, dtype=np.float32)
  positions = np.stack([0.3 + 0.02 * t, 0.4 + 0.01 * t], -1)[None, :, None]  # [1, 8, 1, 2]
  radii = np.full((1, 1), 0.1, np.float32)
  frames = balls_env.render_frames(positions[0], radii[0], 16)[None]
  data = balls_trajectories.TrajectorySet(positions=positions, frames=frames, radii=radii)
  spec = balls_abstract.abstract_spec(config.abstract, 1)
  model = balls_abstract.make_abstract_model(spec, 0.02)
  params = model.init(jax.random.PRNGKey(0), positions[:, :HISTORY])['params']
  mse = balls_eval.rendered_prediction_mse(model, params, data, HISTORY,
                                           np.arange(data.window_count(HISTORY)), 2, 16)
  assert mse['true'] == 0.0
  assert mse['const_velocity'] < 1e-6
  assert mse['abstract'] > 1e-4
