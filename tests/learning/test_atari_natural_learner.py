"""Tests for rmr_dist.learning.atari_natural: freezing, lockstep batches, 1 == 2 devices, resume.

Random 84x64 frames (the 'small' trunk pads them to 84x68), 2 seeds x ('rmr', 'cswm'), and
all three variants where the abstract encoder is involved, batch 4, latent and hidden 16. The
RMR processor (and the abstract encoder f) come from an export written with
``checkpointing.export_processor`` from an abstract model.
"""

from __future__ import annotations

import itertools
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rmr_dist import checkpointing
from rmr_dist.learning import atari_abstract as abstract_learning
from rmr_dist.learning import lockstep
from rmr_dist.learning import loop
from rmr_dist.learning import atari_natural as learning
from rmr_dist.networks import atari_natural as natural_net
from rmr_dist.networks import processors

SPEC16 = processors.ModelSpec('mpnn', latent_size=16, hidden_size=16)
FRAME_SHAPE = (84, 64)
VARIANTS = ('rmr', 'cswm')
NUM_SEEDS = 2


def export(path: str, spec: processors.ModelSpec = SPEC16, seed: int = 7) -> str:
  """A processor export (with its abstract encoder) of an initialised abstract model."""
  state = abstract_learning.init_state(abstract_learning.make_model(spec), optax.adam(1e-3),
                                       jax.random.PRNGKey(seed))
  params = jax.device_get(state.params)
  return checkpointing.export_processor(path, params['processor'], spec.to_dict(),
                                        encoder_params=params['encoder'])


@pytest.fixture(scope='module')
def processor_export(tmp_path_factory) -> str:
  return export(str(tmp_path_factory.mktemp('abstract') / 'processor'))


def make_batch(rng: np.random.Generator, n: int = 4) -> dict[str, np.ndarray]:
  shape = (n,) + FRAME_SHAPE + (3,)
  return {'frame_t': rng.integers(0, 256, shape, np.uint8),
          'action': np.eye(18, dtype=np.uint8)[rng.integers(0, 18, n)],
          'frame_tp1': rng.integers(0, 256, shape, np.uint8),
          'ram_t': rng.integers(0, 256, (n, 128), np.uint8)}


def batches(start: int = 0, seed: int = 1, n: int = 4):
  """Batch i depends only on (seed, i), so a resumed run can pick up at batch `start`."""
  for i in itertools.count(start):
    yield make_batch(np.random.default_rng([seed, i]), n)


def make_learner(export_path, iterator, checkpoint_dir=None, devices=None, **kwargs):
  kwargs = {'save_every': 2, 'keep': 3, 'latent_size': 16, **kwargs}
  return learning.NaturalLearner(
      processor_export=export_path, variants=VARIANTS, num_seeds=NUM_SEEDS, maps_per_slot=1,
      learning_rate=1e-3, seed=0, iterator=iterator, checkpoint_dir=checkpoint_dir,
      devices=devices, frame_shape=FRAME_SHAPE, **kwargs)


def assert_trees_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def model_slice(tree, i):
  return jax.tree_util.tree_map(lambda x: np.asarray(x)[i], tree)


def test_frozen_rmr_processor_is_bit_identical_cswm_processor_trains(processor_export):
  """The pure update, jitted on one device: 6 steps. RMR's P never moves (bit for bit),
  C-SWM's does; every model's f~ and g~ learn and the loss falls."""
  _, exported = checkpointing.restore_processor(processor_export)
  model = natural_net.NaturalModel(processor=processors.make_spec_processor(SPEC16),
                                   latent_size=16)
  optimizer = lockstep.make_optimizer(1e-3, VARIANTS, NUM_SEEDS)
  state = learning.init_state(model, optimizer, jax.random.PRNGKey(0), variants=VARIANTS,
                              num_seeds=NUM_SEEDS, processor_params=exported,
                              frame_shape=FRAME_SHAPE)
  initial = jax.device_get(state.params)
  step = jax.jit(lambda s, b: learning.update(s, b, model=model, optimizer=optimizer,
                                              variants=VARIANTS))
  batch = make_batch(np.random.default_rng(0))
  loss = []
  for _ in range(6):
    state, metrics = step(state, batch)
    assert metrics['loss'].shape == (4,)
    loss.append(np.asarray(metrics['loss']))
  params = jax.device_get(state.params)
  for v, s in itertools.product(VARIANTS, range(NUM_SEEDS)):
    i = lockstep.model_index(VARIANTS, NUM_SEEDS, v, s)
    processor = model_slice(params['processor'], i)
    if v == 'rmr':
      assert_trees_equal(processor, exported)
      # Adam never saw a processor gradient: its moments are still exactly zero.
      mu = model_slice(state.opt_state[0][0].mu['processor'], i)
      assert all(not np.any(x) for x in jax.tree_util.tree_leaves(mu))
    else:
      assert not leaves_equal(processor, model_slice(initial['processor'], i))
    for part in ('encoder', 'decoder'):
      assert not leaves_equal(model_slice(params[part], i), model_slice(initial[part], i))
  assert np.all(loss[-1] < loss[0])
  # Seed s starts RMR and C-SWM from the same f~ and g~ (a tight pair).
  for part in ('encoder', 'decoder'):
    assert leaves_equal(model_slice(initial[part], 0), model_slice(initial[part], 2))
    assert not leaves_equal(model_slice(initial[part], 0), model_slice(initial[part], 1))


@pytest.mark.parametrize('readout', ['bits', 'latent'])
def test_rmr_takes_the_abstract_encoder_frozen_random_p_keeps_its_fresh_one(processor_export,
                                                                           readout):
  """Three variants, f~ with the abstract f's parts (readout 'bits': f itself; 'latent': its
  slot embedding). RMR: P and those parts are the export's and stay bit-identical;
  'rmr_random_p': P and those parts are seed s's fresh ones (C-SWM's start, not the export's)
  and stay bit-identical; C-SWM trains both."""
  variants = ('rmr', 'cswm', 'rmr_random_p')
  _, exported = checkpointing.restore_processor(processor_export)
  exported_f = checkpointing.restore_abstract_encoder(processor_export)
  model = natural_net.NaturalModel(processor=processors.make_spec_processor(SPEC16),
                                   latent_size=16, readout=readout, slot_embedding=True)
  paths = learning.frozen_paths(readout, True)
  part = ('ram_encoder' if readout == 'bits' else 'slot_embedding')
  assert paths == (('processor',), ('encoder', part))
  optimizer = lockstep.make_optimizer(1e-3, variants, NUM_SEEDS, paths=paths)
  state = learning.init_state(model, optimizer, jax.random.PRNGKey(0), variants=variants,
                              num_seeds=NUM_SEEDS, processor_params=exported,
                              frame_shape=FRAME_SHAPE, abstract_encoder=exported_f)
  initial = jax.device_get(state.params)
  step = jax.jit(lambda s, b: learning.update(s, b, model=model, optimizer=optimizer,
                                              variants=variants, loss='infonce'))
  for i in range(4):
    state, _ = step(state, make_batch(np.random.default_rng(i)))
  params = jax.device_get(state.params)
  want_f = exported_f if readout == 'bits' else exported_f['slot_embedding']
  for s in range(NUM_SEEDS):
    rmr, cswm, rand = (lockstep.model_index(variants, NUM_SEEDS, v, s) for v in variants)
    f_of = lambda tree, i: model_slice(tree['encoder'][part], i)
    # RMR: the export's P and f, bit for bit, before and after the updates.
    assert_trees_equal(model_slice(params['processor'], rmr), exported)
    assert_trees_equal(f_of(params, rmr), want_f)
    # Random P: its fresh P and f (C-SWM's initial ones), unmoved, and not the export's.
    assert_trees_equal(model_slice(params['processor'], rand),
                       model_slice(initial['processor'], cswm))
    assert_trees_equal(f_of(params, rand), f_of(initial, cswm))
    assert not leaves_equal(model_slice(params['processor'], rand), exported)
    assert not leaves_equal(f_of(params, rand), want_f)
    # C-SWM trains them; every model's other f~ parts learn.
    assert not leaves_equal(model_slice(params['processor'], cswm),
                            model_slice(initial['processor'], cswm))
    assert not leaves_equal(f_of(params, cswm), f_of(initial, cswm))
    for i in (rmr, cswm, rand):
      assert not leaves_equal(model_slice(params['encoder']['slot_maps'], i),
                              model_slice(initial['encoder']['slot_maps'], i))


def test_export_without_abstract_encoder_is_refused_where_rmr_needs_it(tmp_path):
  state = abstract_learning.init_state(abstract_learning.make_model(SPEC16), optax.adam(1e-3),
                                       jax.random.PRNGKey(0))
  bare = checkpointing.export_processor(str(tmp_path / 'bare'),
                                        jax.device_get(state.params['processor']),
                                        SPEC16.to_dict())
  with pytest.raises(ValueError, match='carries no abstract encoder.*re-run the abstract stage'):
    make_learner(bare, batches(), readout='bits', slot_embedding=True)


def test_freeze_processor_update_is_the_exact_identity():
  """Even with a (leaked) non-zero gradient, a frozen processor keeps every bit, the sign of
  -0.0 included; the trainable model's processor and every encoder move."""
  params = {'processor': {'w': np.array([[-0.0, 1.5], [-0.0, 1.5]], np.float32)},
            'encoder': {'w': np.zeros((2, 2), np.float32)}}
  grads = jax.tree_util.tree_map(np.ones_like, params)
  optimizer = lockstep.make_optimizer(0.1, ('rmr', 'cswm'), num_seeds=1)  # model 0 frozen
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  new = jax.device_get(optax.apply_updates(params, updates))
  frozen = new['processor']['w'][0]
  assert frozen.tobytes() == params['processor']['w'][0].tobytes()
  assert np.signbit(frozen[0])
  assert not np.array_equal(new['processor']['w'][1], params['processor']['w'][1])
  assert np.all(new['encoder']['w'] != 0)


def test_encoder_gradient_flows_through_the_frozen_processor():
  """stop_gradient only zeroes P's own gradient: f~ and g~ get the same gradient, through P,
  whether P is frozen or not."""
  model = natural_net.NaturalModel(processor=processors.make_spec_processor(SPEC16),
                                   latent_size=16)
  batch = make_batch(np.random.default_rng(3))
  params = model.init(jax.random.PRNGKey(0), batch['frame_t'], batch['action'])['params']
  inputs, offset = learning.lockstep_inputs(batch, jax.random.PRNGKey(1))

  def grads(trainable):
    return learning.model_step(params, jnp.asarray(trainable), jnp.uint32(0), inputs, offset,
                               model=model, hinge=1.0, sigma=0.5)[0]

  frozen, trained = grads(False), grads(True)
  assert all(not np.any(g) for g in jax.tree_util.tree_leaves(frozen['processor']))
  assert any(np.any(g) for g in jax.tree_util.tree_leaves(trained['processor']))
  for part in ('encoder', 'decoder'):
    jax.tree_util.tree_map(np.testing.assert_array_equal, frozen[part], trained[part])


def test_all_models_consumed_identical_batches(processor_export):
  learner = make_learner(processor_export, batches())
  rng = jnp.asarray(learner.state.rng)
  learner.run(3)
  fingerprints = learner.fingerprints
  assert fingerprints.shape == (4,) and fingerprints.dtype == np.uint32
  assert len(set(fingerprints.tolist())) == 1
  # It is the fingerprint of exactly these 3 batches, with these negatives, in this order.
  expected = jnp.uint32(0)
  for batch in itertools.islice(batches(), 3):
    rng, perm_key = jax.random.split(rng)
    inputs, offset = learning.lockstep_inputs(batch, perm_key)
    expected = lockstep.accumulate_fingerprint(
        expected, lockstep.batch_fingerprint(inputs, offset, keys=learning.FINGERPRINTED))
  assert int(fingerprints[0]) == int(expected)
  # Sensitive to one pixel and to the order of batches.
  a, b = (learning.lockstep_inputs(x, jax.random.PRNGKey(0))[0]
          for x in itertools.islice(batches(), 2))
  a2 = dict(a, frame_tp1=np.array(a['frame_tp1']))
  a2['frame_tp1'][2, 40, 30, 1] ^= 1
  fa, fb, fa2 = (int(lockstep.batch_fingerprint(x, keys=learning.FINGERPRINTED))
                 for x in (a, b, a2))
  assert len({fa, fb, fa2}) == 3
  ab = lockstep.accumulate_fingerprint(lockstep.accumulate_fingerprint(jnp.uint32(0), fa), fb)
  ba = lockstep.accumulate_fingerprint(lockstep.accumulate_fingerprint(jnp.uint32(0), fb), fa)
  assert int(ab) != int(ba)
  learner.close()


@pytest.mark.parametrize(
    'loss,action_negatives,over_models',
    [(loss, 0, 'vmap') for loss in learning.LOSSES] + [('infonce', 3, 'vmap'),
                                                        ('infonce', 0, 'sequence')],
    ids=list(learning.LOSSES) + ['infonce_actions', 'infonce_sequence'])
def test_one_device_equals_two_devices(processor_export, loss, action_negatives, over_models):
  """3 lockstep updates on B=4 on one device == on 2 x 2 (pmean-ed gradients; the hinge's
  global negative permutation, InfoNCE's candidates from the global batch, the action
  contrast's other actions drawn from the global batch); 'sequence': the 2 devices run the
  models one after another, the one device side by side (vmap)."""
  assert jax.local_device_count() >= 2, 'tests/conftest.py forces 2 CPU devices'
  kwargs = dict(loss=loss, action_negatives=action_negatives)
  one = make_learner(processor_export, batches(), devices=jax.local_devices()[:1], **kwargs)
  two = make_learner(processor_export, batches(), devices=jax.local_devices()[:2],
                     over_models=over_models, **kwargs)
  for _ in range(3):
    m1, m2 = one.step(), two.step()
    if action_negatives:  # the action contrast ran, on rows with other actions
      assert set(m1) >= {'action_loss', 'action_accuracy'}
      assert np.all(np.asarray(m1['action_loss']) > 0), m1['action_loss']
    for key in m1:
      np.testing.assert_allclose(m1[key], m2[key], rtol=1e-5, atol=1e-5, err_msg=key)
    # Every step starts both from the same state: Adam turns a near-zero gradient summed in
    # another order into a step of either sign (up to the learning rate), and at the kinks of
    # ReLU and max aggregation such a parameter difference moves later gradients by more than
    # float rounding. What must hold is that one update is the same on 1 and 2 devices.
    two._state = loop.replicate(one.state, jax.local_devices()[:2])  # pylint: disable=protected-access
  # Float sums in another order (InfoNCE's candidates mix both devices' rows) can flip the
  # Adam step (up to the learning rate, 1e-3) of a few parameters whose gradient is near 0;
  # a wrong gradient would move most parameters by about a step.
  diff = np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel() for a, b in zip(
      jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(two.params))])
  assert np.quantile(diff, 0.999) <= 1e-5, np.quantile(diff, 0.999)
  np.testing.assert_array_equal(one.fingerprints, two.fingerprints)
  np.testing.assert_array_equal(one.state.rng, two.state.rng)


def test_resume_after_restart_matches_uninterrupted_run(tmp_path, processor_export):
  ckpt = str(tmp_path / 'ckpt')
  logged = []
  first = make_learner(processor_export, batches(), checkpoint_dir=ckpt, log_every=1,
                       log_fn=lambda m, step: logged.append((step, m)))
  first.run(2)  # saves at step 2
  saved = first.state
  first.close()
  del first
  assert [s for s, _ in logged] == [1, 2]
  assert {'rmr/seed_0/loss', 'cswm/seed_1/negative_energy', 'steps_per_s'} <= set(logged[0][1])

  resumed = make_learner(processor_export, batches(start=2), checkpoint_dir=ckpt)
  assert resumed.global_step == 2
  assert_trees_equal(resumed.state, saved)  # params, Adam state, step, rng, fingerprints
  resumed.run(3)
  straight = make_learner(processor_export, batches())
  straight.run(3)
  assert resumed.global_step == straight.global_step == 3
  assert_trees_equal(resumed.state, straight.state)
  # The encoder of one model, for the probes.
  enc = resumed.encoder_params('cswm', 1)
  assert_trees_equal(enc, model_slice(straight.params['encoder'], 3))
  z = natural_net.make_encode_fn(1, 16)(enc, make_batch(np.random.default_rng(0))['frame_t'])
  assert z.shape == (4, 128, 16)
  resumed.close()


@pytest.mark.parametrize('export_latent,model_latent', [(16, 64), (64, 16)])
def test_export_of_another_latent_size_is_refused(tmp_path, export_latent, model_latent):
  spec = processors.ModelSpec('mpnn', latent_size=export_latent, hidden_size=16)
  path = export(str(tmp_path / f'processor{export_latent}'), spec)
  with pytest.raises(checkpointing.CheckpointError) as err:
    make_learner(path, batches(), latent_size=model_latent)
  message = str(err.value)
  assert path in message
  assert f'latent_size: stored {export_latent}, expected {model_latent}' in message


def test_wait_for_export(tmp_path):
  path = str(tmp_path / 'processor')
  lines = []
  with pytest.raises(TimeoutError, match=str(path)):
    checkpointing.wait_for_export(path, timeout_s=0.2, poll_s=0.05, log=lines.append)
  assert len(lines) == 1 and path in lines[0]
  writer = threading.Timer(0.3, export, args=(path,))
  writer.start()
  start = time.monotonic()
  assert checkpointing.wait_for_export(path, timeout_s=30, poll_s=0.05,
                                                 log=lines.append) == path
  writer.join()
  assert time.monotonic() - start < 30
  assert checkpointing.wait_for_export(path, timeout_s=0, log=lines.append) == path
  assert len(lines) == 2  # no line when the export is already there


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, processor_export,
                                                              patch_traced):
  """A uint8 batch cannot hold a NaN, so the test patches the per-model step: a batch whose
  frame_t is all 255 (random frames never are) makes every loss and gradient NaN. It is
  served for step 4, a save step."""
  real_step = learning.model_step

  def poisoned_step(params, trainable, fingerprint, inputs, row_offset, **kwargs):
    grads, metrics, fingerprint = real_step(params, trainable, fingerprint, inputs,
                                            row_offset, **kwargs)
    poison = jnp.where(jnp.all(inputs['frame_t'] == 255), jnp.nan, 1.0)
    grads = jax.tree_util.tree_map(lambda g: g * poison, grads)
    return grads, dict(metrics, loss=metrics['loss'] * poison), fingerprint

  patch_traced(learning, 'model_step', poisoned_step)

  def poisoned_batches():
    for i, batch in enumerate(batches()):
      if i == 3:
        batch['frame_t'][:] = 255
      yield batch

  ckpt = str(tmp_path / 'ckpt')
  learner = make_learner(processor_export, poisoned_batches(), checkpoint_dir=ckpt)
  with pytest.raises(FloatingPointError,
                     match=r"step 4 in models \['rmr/seed_0'.*last good checkpoint: step 2"):
    learner.run(10)
  learner.close()
  restarted = make_learner(processor_export, batches(start=2), checkpoint_dir=ckpt)
  assert restarted.global_step == 2
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(restarted.params))


def test_logs_learning_rate_and_mean_loss_progress(processor_export, capsys):
  logged = []
  learner = make_learner(processor_export, batches(), log_every=1,
                         log_fn=lambda m, step: logged.append((step, m)))
  learner.run(1, progress_label='natural pong f100')
  (step, scalars), = logged
  assert step == 1 and scalars['learning_rate'] == pytest.approx(1e-3)
  losses = [v for k, v in scalars.items() if k.endswith('/loss')]
  assert len(losses) == len(VARIANTS) * NUM_SEEDS
  line = capsys.readouterr().out.strip().splitlines()[-1]
  assert line.startswith('natural pong f100: step 1/1, ')
  assert f'loss {np.mean(losses):.4g} (mean of 4 models)' in line


@pytest.mark.parametrize('slot_embedding', [False, True])
def test_initial_encoder_params_are_the_learners_start(processor_export, slot_embedding):
  """The untrained-encoder control is exactly every variant's seed-s f~ before any update;
  RMR's differs only in the slot embedding, which is the abstract f's (a per-slot constant)."""
  learner = make_learner(processor_export, batches(), slot_embedding=slot_embedding)
  initial = learning.initial_encoder_params(learner.model, 0, NUM_SEEDS, FRAME_SHAPE)
  assert sorted(initial) == list(range(NUM_SEEDS))
  exported_f = checkpointing.restore_abstract_encoder(processor_export)
  for v in VARIANTS:
    for s in range(NUM_SEEDS):
      want = dict(initial[s])
      if v == 'rmr' and slot_embedding:
        want['slot_embedding'] = exported_f['slot_embedding']
      assert_trees_equal(learner.encoder_params(v, s), want)
  assert ('slot_embedding' in initial[0]) == slot_embedding
  learner.close()


def test_palette_batches_enter_the_step_as_their_exact_rgb():
  from rmr_dist.envs import atari_palette
  rng = np.random.default_rng(0)
  index = {k: rng.integers(0, 256, (4, 210, 160), dtype=np.uint8) for k in ('frame_t', 'frame_tp1')}
  action = np.eye(18, dtype=np.uint8)[rng.integers(0, 18, 4)]
  key = jax.random.PRNGKey(3)
  fn = jax.jit(learning.lockstep_inputs)
  from_index, _ = fn(dict(index, action=action), key)
  from_rgb, _ = fn({k: atari_palette.to_rgb(v) for k, v in index.items()} | {'action': action}, key)
  for name in ('frame_t', 'frame_tp1', 'frame_neg'):
    assert from_index[name].shape == (4, 210, 160, 3)
    np.testing.assert_array_equal(np.asarray(from_index[name]), np.asarray(from_rgb[name]))


def test_learners_built_alike_share_one_compiled_update_with_the_same_results(
    processor_export):
  """`loop.PmapLearner` gives learners with the same model, optimiser settings and devices one
  pmapped update (compiled once per process, e.g. for every data fraction a learner group
  trains); it computes what a freshly compiled one does, and other settings get their own."""
  loop.clear_update_cache()
  first = make_learner(processor_export, batches())
  assert make_learner(processor_export, batches())._update is first._update
  assert make_learner(processor_export, batches(), sigma=0.25)._update is not first._update
  first.run(3)
  loop.clear_update_cache()
  fresh = make_learner(processor_export, batches())
  assert fresh._update is not first._update
  fresh.run(3)
  assert_trees_equal(first.params, fresh.params)
  np.testing.assert_array_equal(first.fingerprints, fresh.fingerprints)


def test_action_contrast_waits_for_action_start(processor_export):
  """Before `action_start` the action contrast has weight 0: the updates equal those without
  it (its metrics are still reported); from `action_start` on it moves the models; and
  `action_sigma` sets its energy scale."""
  plain = make_learner(processor_export, batches(), loss='infonce')
  later = make_learner(processor_export, batches(), loss='infonce', action_negatives=3,
                       action_start=2)
  for step in range(3):
    m_plain, m_later = plain.step(), later.step()
    assert np.all(np.asarray(m_later['action_loss']) > 0)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
        jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(later.params)))
    if step < 2:  # updates 0 and 1: the same InfoNCE step (up to float rounding)
      np.testing.assert_allclose(m_later['loss'], m_plain['loss'], rtol=1e-5)
      assert diff < 1e-6, (step, diff)
    else:  # update 2 adds the action contrast: a loss of its own, parameters moved apart
      assert np.all(np.asarray(m_later['loss']) > np.asarray(m_plain['loss']))
      assert diff > 1e-5, diff
  # Its own energy scale reaches the contrast: at the same first step (the same parameters)
  # its loss differs from the one at the InfoNCE's scale.
  scaled = make_learner(processor_export, batches(), loss='infonce', action_negatives=3,
                        action_start=2, action_sigma=3.0)
  unscaled = make_learner(processor_export, batches(), loss='infonce', action_negatives=3,
                          action_start=2)
  first_unscaled, first_scaled = unscaled.step(), scaled.step()
  np.testing.assert_allclose(first_scaled['accuracy'], first_unscaled['accuracy'])
  assert not np.allclose(first_scaled['action_loss'], first_unscaled['action_loss'])
  for learner in (plain, later, scaled, unscaled):
    learner.close()

