"""Natural-model learning tests that can fail: on a tiny fixed set of windows of real
simulated balls, a few hundred lockstep updates bring RMR's next-frame MSE well below copying
the last frame, with slot masks that find the balls (FG-ARI); and the oracle learns more through
a trained processor than through an untrained one.

Whether RMR gains from the pre-trained P over an untrained P is a claim about a distribution
over seeds, answered by the balls study (docs/experiments/balls.md: 8 of 8 paired seeds), not
by one tiny run: at this size and budget the sign of that difference changed with the seed of
this setup (its episodes, initialisations and batches) and, on this seed, with the floating-point
reduction order (one device and single-threaded Eigen instead of two devices reversed it), so an
assertion on it would not hold on every CPU. RMR's margin below copy-last and its FG-ARI held on
every seed tried.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rmr_dist.envs import balls as balls_env
from rmr_dist.evaluation import balls_eval
from rmr_dist.learning import balls_abstract
from rmr_dist.learning import balls_natural
from rmr_dist.learning import lockstep
from rmr_dist.learning import optimizers
from rmr_dist.envs import balls_trajectories
from tests.conftest import make_balls_abstract_learner

pytestmark = pytest.mark.slow

HISTORY, SIZE, STEPS = 3, 24, 300


def test_rmr_learns_below_copy_last_with_slots_that_find_the_balls(balls_config, tmp_path):
  """On a tiny fixed set of real simulated balls, with the default aligned latents, the natural
  stage's learner (warm-start, then next-frame through the frozen pre-trained P) brings RMR well
  below copying the last frame, with slot masks that find the balls."""
  sim = balls_config.sim
  size = sim.image_size
  simulator = balls_env.BallsSimulator(
      num_balls=sim.num_balls, radius_range=(sim.radius_min, sim.radius_max),
      speed_range=(sim.speed_min, sim.speed_max))
  positions = np.stack([simulator.episode(seed, 12).positions for seed in range(12)])
  radii = np.full((len(positions), sim.num_balls), sim.radius_max, np.float32)  # [E, N]
  frames = np.stack([balls_env.render_frames(p, r, size) for p, r in zip(positions, radii)])
  data = balls_trajectories.TrajectorySet(positions=positions.astype(np.float32), frames=frames,
                                          radii=radii)
  config = dataclasses.replace(balls_config, abstract=dataclasses.replace(
      balls_config.abstract, latent_size=32, hidden_size=32))
  abstract = make_balls_abstract_learner(config, data, None)
  abstract.run(400)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  natural = dataclasses.replace(
      config.natural, variants=('rmr',), num_seeds=1, slot_size=32, encoder_channels=16,
      decoder_channels=32, slot_iterations=3, num_steps=STEPS, autoencode_steps=STEPS // 4,
      batch_size=16, decay_steps=STEPS - STEPS // 4 - config.natural.warmup_steps)
  assert natural.slot_latents == 'abstract_f' and natural.readout_init == 'zeros'
  learner = balls_natural.BallsNaturalLearner(
      natural, processor_export=export, image_size=size,
      displacement_scale=sim.displacement_scale, history=HISTORY, seed=0,
      iterator=balls_trajectories.WindowBatches(data, HISTORY, 16, seed=3), checkpoint_dir=None,
      abstract_encoder=abstract.params['encoder'])
  metrics = learner.run(STEPS)
  assert np.isfinite(metrics['loss']).all()
  index = np.arange(data.window_count(HISTORY))  # 108 windows, the training set
  predict = balls_natural.make_predict_fn(learner.model)
  scores = balls_eval.evaluate_natural(predict, learner.model_params('rmr', 0), data, HISTORY,
                                       index, 64, size)
  learner.close()
  copy_last = balls_eval.copy_last_frame_mse(data, HISTORY, index)
  assert scores['mse'] < 0.6 * copy_last, (scores, copy_last)
  assert scores['fg_ari'] > 0.9, scores


def test_oracle_through_the_trained_processor_beats_an_untrained_one(balls_config):
  """The upper reference of "using P" can fail: on real simulated balls, g~ learned through
  the trained abstract f and P (true positions in) predicts the next frame better than g~
  learned through an untrained f and P of the same architecture, on the same batches."""
  sim = balls_config.sim
  simulator = balls_env.BallsSimulator(
      num_balls=sim.num_balls, radius_range=(sim.radius_min, sim.radius_max),
      speed_range=(sim.speed_min, sim.speed_max))
  positions = np.stack([simulator.episode(seed, 12).positions for seed in range(12)])
  radii = np.full((len(positions), sim.num_balls), sim.radius_max, np.float32)
  frames = np.stack([balls_env.render_frames(p, r, SIZE) for p, r in zip(positions, radii)])
  data = balls_trajectories.TrajectorySet(positions=positions.astype(np.float32), frames=frames,
                                          radii=radii)
  scale = sim.displacement_scale
  spec = balls_abstract.abstract_spec(dataclasses.replace(
      balls_config.abstract, latent_size=32, hidden_size=32), sim.num_balls)
  abstract_model = balls_abstract.make_abstract_model(spec, scale)
  abstract_params = abstract_model.init(jax.random.PRNGKey(1), data.positions[:1, :HISTORY])
  optimizer = optax.adam(3e-3)
  opt_state = optimizer.init(abstract_params)
  windows = data.windows(np.arange(data.window_count(HISTORY)), HISTORY)  # 108 windows

  @jax.jit
  def abstract_step(params, opt_state):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(jnp.square(
        abstract_model.apply(p, windows['history']) - windows['target'])))(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  for _ in range(400):
    abstract_params, opt_state, _ = abstract_step(abstract_params, opt_state)

  variants = ('rmr', 'rmr_random_p')
  natural = dataclasses.replace(balls_config.natural, variants=variants, num_seeds=1,
                                decoder_channels=32, slot_size=16)
  model = balls_natural.make_oracle_model(natural, spec, SIZE, scale)
  schedule = optimizers.make_schedule(3e-3, 20, 0.05, 280, 'cosine')
  optimizer = lockstep.make_optimizer(schedule, variants, 1, 1.0,
                                      paths=balls_natural.frozen_paths(model))
  per_seed = [model.init(jax.random.PRNGKey(0), windows['history'][:1])['params']]
  params = lockstep.stack_models(per_seed, variants,
                                 abstract_params['params']['processor'])
  params = balls_natural.plug_abstract_encoder(params, variants, 1,
                                               abstract_params['params']['encoder'])
  state = balls_natural.BallsNaturalState(
      params=params, opt_state=optimizer.init(params), step=np.zeros((), np.int32),
      rng=jax.random.PRNGKey(2), fingerprint=np.zeros((2,), np.uint32))
  update = jax.jit(functools.partial(balls_natural.oracle_update, model=model,
                                     optimizer=optimizer, variants=variants))
  batches = balls_trajectories.WindowBatches(data, HISTORY, 16, seed=3)
  for _ in range(300):
    state, metrics = update(state, next(batches))
  predict = balls_natural.make_oracle_predict_fn(model)
  mse = [balls_eval.evaluate_natural(predict, jax.tree_util.tree_map(lambda x: x[i],
                                                                     state.params),
                                     data, HISTORY, np.arange(len(windows['target'])), 64,
                                     SIZE, input_key='history')['mse'] for i in range(2)]
  assert np.isfinite(metrics['loss']).all()
  assert mse[0] < 0.9 * mse[1], mse
