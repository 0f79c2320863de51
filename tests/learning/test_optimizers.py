"""The warm-up + decay schedule and per-model gradient clipping."""

import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.learning import optimizers


def test_schedule_warms_up_then_decays():
  schedule = optimizers.make_schedule(4e-4, warmup_steps=100, decay_rate=0.5, decay_steps=1000)
  assert float(schedule(0)) == 0.0
  assert float(schedule(50)) == pytest.approx(4e-4 * 0.5 * 0.5 ** 0.05, rel=1e-5)
  assert float(schedule(100)) == pytest.approx(4e-4 * 0.5 ** 0.1, rel=1e-5)
  assert float(schedule(1000)) == pytest.approx(2e-4, rel=1e-5)
  assert float(schedule(2000)) == pytest.approx(1e-4, rel=1e-5)
  cosine = optimizers.make_schedule(1e-3, warmup_steps=10, decay_rate=0.01, decay_steps=100,
                                    decay='cosine')
  assert float(cosine(5)) == pytest.approx(5e-4)
  assert float(cosine(10)) == pytest.approx(1e-3)
  assert float(cosine(60)) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5), rel=1e-5)
  assert float(cosine(110)) == float(cosine(500)) == pytest.approx(1e-5, rel=1e-4)
  constant = optimizers.make_schedule(1e-3)
  assert float(constant(0)) == float(constant(10_000)) == pytest.approx(1e-3)


def test_clip_per_model_scales_each_model_alone():
  updates = {'a': jnp.array([[3.0, 0.0], [0.3, 0.0]]), 'b': jnp.array([[4.0], [0.4]])}  # norms 5, 0.5
  clipped, _ = optimizers.clip_per_model(1.0).update(updates, optimizers.clip_per_model(1.0)
                                                     .init(updates))
  np.testing.assert_allclose(clipped['a'], [[0.6, 0.0], [0.3, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(clipped['b'], [[0.8], [0.4]], rtol=1e-6)  # model 1 unchanged


def test_make_adam_first_step_follows_the_schedule():
  schedule = optimizers.make_schedule(1e-2, warmup_steps=2)
  opt = optimizers.make_adam(schedule, clip_norm=0.1)
  params = {'w': jnp.array([1.0])}
  state = opt.init(params)
  updates, state = opt.update({'w': jnp.array([5.0])}, state, params)
  assert float(updates['w'][0]) == 0.0  # step 0 of the warm-up: rate 0
  updates, state = opt.update({'w': jnp.array([5.0])}, state, params)
  assert float(updates['w'][0]) == pytest.approx(-0.5e-2, rel=1e-3)  # Adam: -lr * sign
