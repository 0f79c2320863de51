"""Tests for rmr_dist.learning.balls_natural: lockstep RMR / end-to-end, frozen export, resume."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from rmr_dist import checkpointing
from rmr_dist.learning import balls_natural
from rmr_dist.learning import lockstep
from rmr_dist.envs import balls_trajectories
from tests.conftest import make_balls_abstract_learner

pytestmark = pytest.mark.fast_compile  # few updates of small models: compiling dominates

HISTORY = 3


@pytest.fixture(name='config')
def _config(balls_config):
  return balls_config


@pytest.fixture(name='data')
def _data(balls_data):
  return balls_data


_abstract_learner = make_balls_abstract_learner


def test_natural_lockstep_freezes_rmr_processor(config, data, tmp_path):
  abstract = _abstract_learner(config, data, None)
  abstract.run(1)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  _, exported = checkpointing.restore_processor(export)
  natural = dataclasses.replace(config.natural, autoencode_steps=0)  # P in every update
  learner = balls_natural.BallsNaturalLearner(
      natural, processor_export=export, image_size=config.sim.image_size,
      displacement_scale=config.sim.displacement_scale, history=HISTORY, seed=0,
      iterator=balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2),
      checkpoint_dir=str(tmp_path / 'natural'), abstract_encoder=abstract.params['encoder'])
  before = learner.model_params('end_to_end', 0)
  random_before = [learner.model_params('rmr_random_p', s)['processor']
                   for s in range(config.natural.num_seeds)]
  metrics = learner.run(3)
  assert metrics['loss'].shape == (len(config.natural.variants) * config.natural.num_seeds,)
  for s in range(config.natural.num_seeds):
    rmr = learner.model_params('rmr', s)['processor']
    for a, b in zip(jax.tree_util.tree_leaves(rmr), jax.tree_util.tree_leaves(exported)):
      np.testing.assert_array_equal(a, b)  # bit-identical to the export
    # The untrained-P control: bit-identical to its fresh P (the end-to-end model's start)
    # before and after training, and not the export.
    random_p = learner.model_params('rmr_random_p', s)['processor']
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(random_p), leaves(random_before[s])):
      np.testing.assert_array_equal(a, b)
    if s == 0:
      for a, b in zip(leaves(random_p), leaves(before['processor'])):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(random_p), leaves(exported)))
  moved = learner.model_params('end_to_end', 0)['processor']
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(moved), jax.tree_util.tree_leaves(before['processor'])))
  assert len(set(learner.fingerprints.tolist())) == 1  # every model saw the same batches
  learner.close()
  resumed = balls_natural.BallsNaturalLearner(
      natural, processor_export=export, image_size=config.sim.image_size,
      displacement_scale=config.sim.displacement_scale, history=HISTORY, seed=0,
      iterator=balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2),
      checkpoint_dir=str(tmp_path / 'natural'), abstract_encoder=abstract.params['encoder'])
  assert resumed.global_step == 3
  np.testing.assert_array_equal(resumed.fingerprints, learner.fingerprints)


def test_natural_learner_names_a_missing_export(config, data, tmp_path):
  with pytest.raises(checkpointing.CheckpointError, match='no_such_export'):
    balls_natural.BallsNaturalLearner(
        config.natural, processor_export=str(tmp_path / 'no_such_export'),
        image_size=config.sim.image_size,
        displacement_scale=config.sim.displacement_scale, history=HISTORY, seed=0,
        iterator=balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2), checkpoint_dir=None)


def test_natural_update_one_device_equals_two(config, data, tmp_path):
  """The lockstep update on one device equals the same batch split over two (slot noise is
  drawn per global row, gradients and metrics are pmeaned)."""
  from rmr_dist.learning.loop import replicate, shard_batch, unreplicate
  abstract = _abstract_learner(config, data, None)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  spec_dict, processor_params = checkpointing.restore_processor(export)
  spec = balls_natural.processors.ModelSpec.from_dict(spec_dict)
  # 'sampled' initial slots: the noise must be drawn per global row to agree.
  natural = dataclasses.replace(config.natural, slot_init='sampled')
  model = balls_natural.make_natural_model(natural, spec, config.sim.image_size,
                                          config.sim.displacement_scale)
  variants = config.natural.variants
  # Plain SGD with rate 1, so each parameter moves by exactly minus its gradient (Adam's first
  # step, lr * g / (|g| + eps), would blow rounding-level gradients up to O(lr) steps; the
  # mask-logit and slot LayerNorm biases have gradients that vanish mathematically).
  optimizer = optax.chain(optax.sgd(1.0), lockstep.freeze_processor(
      lockstep.processor_trainable(variants, config.natural.num_seeds)))
  state = balls_natural.init_natural_state(
      model, optimizer, jax.random.PRNGKey(0), variants=variants,
      num_seeds=config.natural.num_seeds, processor_params=processor_params, history=HISTORY,
      image_size=config.sim.image_size)
  w = data.windows(np.arange(4), HISTORY)
  batch = {'frames': w['frames'], 'target_frame': w['target_frame']}
  one, m1 = jax.jit(lambda s, b: balls_natural.natural_update(
      s, b, model=model, optimizer=optimizer, variants=variants))(state, batch)
  devices = jax.local_devices()[:2]
  two, m2 = jax.pmap(lambda s, b: balls_natural.natural_update(
      s, b, model=model, optimizer=optimizer, variants=variants, axis_name='d'),
      axis_name='d', devices=devices)(replicate(state, devices), shard_batch(batch, 2))
  np.testing.assert_allclose(np.asarray(m1['loss']), np.asarray(m2['loss'][0]), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(m1['grad_norm']), np.asarray(m2['grad_norm'][0]),
                             rtol=1e-4)
  np.testing.assert_array_equal(np.asarray(one.fingerprint), np.asarray(two.fingerprint[0]))
  # The same step: every parameter moved by the same minus-gradient.
  for (path, a), b, before in zip(jax.tree_util.tree_leaves_with_path(one.params),
                                  jax.tree_util.tree_leaves(unreplicate(two.params)),
                                  jax.tree_util.tree_leaves(state.params)):
    np.testing.assert_allclose(np.asarray(a) - before, np.asarray(b) - before, rtol=1e-3,
                               atol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_autoencoding_warm_start_keeps_pairs_equal_and_leaves_p_alone(config, data, tmp_path):
  """During the warm-start P is bypassed: paired models get identical f~ / g~ updates and no
  P moves; afterwards the next-frame objective runs through P (end-to-end P moves)."""
  abstract = _abstract_learner(config, data, None)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  natural = dataclasses.replace(config.natural, autoencode_steps=2, num_seeds=1)
  learner = balls_natural.BallsNaturalLearner(
      natural, processor_export=export, image_size=config.sim.image_size,
      displacement_scale=config.sim.displacement_scale, history=HISTORY, seed=0,
      iterator=balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2), checkpoint_dir=None,
      abstract_encoder=abstract.params['encoder'])
  start = learner.model_params('end_to_end', 0)
  learner.run(2)
  rmr, e2e = learner.model_params('rmr', 0), learner.model_params('end_to_end', 0)
  assert natural.slot_latents == 'abstract_f'  # The default: g~ reads 'appearance' beside P.
  for part in ('encoder', 'appearance', 'decoder'):
    leaves = zip(jax.tree_util.tree_leaves(rmr[part]), jax.tree_util.tree_leaves(e2e[part]),
                 jax.tree_util.tree_leaves(start[part]))
    moved = False
    for a, b, s in leaves:
      np.testing.assert_array_equal(a, b)
      moved = moved or not np.array_equal(a, s)
    assert moved, part
  for a, b in zip(jax.tree_util.tree_leaves(e2e['processor']),
                  jax.tree_util.tree_leaves(start['processor'])):
    np.testing.assert_array_equal(a, b)  # P unused in the warm-start
  # The next-frame phase: its first rate is 0 (warm-up); g~'s weights on P's output start at
  # zero (readout_init='zeros'), so they move at the next update and P at the one after.
  learner.run(5)
  e2e = learner.model_params('end_to_end', 0)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(e2e['processor']), jax.tree_util.tree_leaves(start['processor'])))
  learner.close()


def _poisoned(batches):
  """The batches with every true position replaced by NaN (frames untouched)."""
  for batch in batches:
    yield dict(batch, history=np.full_like(batch['history'], np.nan),
               target=np.full_like(batch['target'], np.nan))


def test_abstract_f_alignment_reads_no_true_positions(config, data, tmp_path):
  """slot_latents='abstract_f': f~'s positions go through the frozen abstract f into P. No
  true position of a natural frame is read in training: with every position NaN-poisoned the
  learner trains to the very same parameters, all finite; RMR's f and P stay the export's."""
  abstract = _abstract_learner(config, data, None)
  abstract.run(1)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  f = abstract.params['encoder']
  # No warm-start (it bypasses P and f): every update goes through the alignment path, and
  # each learner compiles one update instead of two.
  natural = dataclasses.replace(config.natural, slot_latents='abstract_f', num_seeds=1,
                                processor_graph='objects', autoencode_steps=0, num_steps=2)
  params = {}
  for name, poison in (('clean', False), ('poisoned', True)):
    batches = balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2)
    learner = balls_natural.BallsNaturalLearner(
        natural, processor_export=export, image_size=config.sim.image_size,
        displacement_scale=config.sim.displacement_scale, history=HISTORY, seed=0,
        iterator=_poisoned(batches) if poison else batches, checkpoint_dir=None,
        abstract_encoder=f)
    metrics = learner.run(natural.num_steps)
    assert np.isfinite(metrics['loss']).all()
    params[name] = learner.params
    rmr = learner.model_params('rmr', 0)
    for a, b in zip(jax.tree_util.tree_leaves(rmr['abstract_encoder']),
                    jax.tree_util.tree_leaves(f)):
      np.testing.assert_array_equal(a, b)
    learner.close()
  for a, b in zip(jax.tree_util.tree_leaves(params['clean']),
                  jax.tree_util.tree_leaves(params['poisoned'])):
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match='abstract f'):
    balls_natural.BallsNaturalLearner(
        natural, processor_export=export, image_size=config.sim.image_size,
        displacement_scale=config.sim.displacement_scale, history=HISTORY, seed=0,
        iterator=balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2), checkpoint_dir=None)


def test_oracle_learner_trains_g_alone_through_frozen_f_and_p(config, data, tmp_path):
  abstract = _abstract_learner(config, data, None)
  abstract.run(1)
  export = abstract.export_processor(str(tmp_path / 'processor'))
  _, exported = checkpointing.restore_processor(export)
  f = abstract.params['encoder']
  natural = dataclasses.replace(config.natural, num_seeds=1)
  learner = balls_natural.BallsOracleLearner(
      natural, processor_export=export, abstract_encoder=f, num_balls=config.sim.num_balls,
      image_size=config.sim.image_size, displacement_scale=config.sim.displacement_scale,
      history=HISTORY, seed=0, iterator=balls_trajectories.WindowBatches(data, HISTORY, 4, seed=2))
  start = {v: learner.model_params(v, 0) for v in learner.variants}
  metrics = learner.run(config.natural.num_steps)  # the warm-start, then P in use
  assert np.isfinite(metrics['loss']).all()
  assert len(set(learner.fingerprints.tolist())) == 1
  leaves = jax.tree_util.tree_leaves
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(leaves(a), leaves(b)))
  for v in learner.variants:
    p = learner.model_params(v, 0)
    frozen = v != 'end_to_end'
    assert same(p['processor'], start[v]['processor']) == frozen, v
    assert same(p['abstract_encoder'], start[v]['abstract_encoder']) == frozen, v
    assert not same(p['decoder'], start[v]['decoder']), v
  rmr = learner.model_params('rmr', 0)
  assert same(rmr['processor'], exported) and same(rmr['abstract_encoder'], f)
  assert not same(learner.model_params('rmr_random_p', 0)['processor'], exported)
