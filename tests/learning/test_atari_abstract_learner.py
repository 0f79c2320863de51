"""Tests for rmr_dist.learning.atari_abstract: learning, 1 == 2 devices, resume, NaN stop.

Everything runs on a SYNTHETIC RAM task built here with numpy (no ALE, no Reverb): a fixed
random background RAM whose "active" slots 3, 5, 7, 9, 11, 13 hold random bytes, and

  slot 3 (a counter):        += 1 (mod 256) when the action is 2,
  slot 7 (a shadow copy):    := slot 5,
  slot 9 (an input latch):   := 16 * action (the action id in the high nibble),
  every other slot:          unchanged.

Actions are drawn from 0..3 so each rule fires often. The copy baseline is right on the
unchanged slots, on slot 3 three times in four and on slots 7 and 9 almost never.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rmr_dist import checkpointing
from rmr_dist import losses
from rmr_dist.evaluation import atari_metrics
from rmr_dist.learning import atari_abstract as learning
from rmr_dist.networks import processors
from rmr_dist.networks.atari_abstract import bits_to_bytes, bytes_to_bits


ACTIVE = np.array([3, 5, 7, 9, 11, 13])
BACKGROUND = np.random.default_rng(0).integers(0, 255, 128).astype(np.uint8)  # never 255
SPEC = processors.ModelSpec('mpnn', latent_size=16, hidden_size=16)


def transitions(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  """n synthetic transitions as a learner batch (module docstring)."""
  ram = np.tile(BACKGROUND, (n, 1))  # [n, 128]
  ram[:, ACTIVE] = rng.integers(0, 256, (n, ACTIVE.size))
  action = rng.integers(0, 4, n)  # [n]
  nxt = ram.copy()
  nxt[action == 2, 3] += 1  # uint8: wraps at 256
  nxt[:, 7] = ram[:, 5]
  nxt[:, 9] = 16 * action
  return {'ram_t': ram, 'action': np.eye(18, dtype=np.uint8)[action], 'ram_tp1': nxt}


def batches(batch_size: int, start: int = 0, seed: int = 1):
  """Batch i depends only on (seed, i), so a resumed run can pick up at batch `start`."""
  for i in itertools.count(start):
    yield transitions(np.random.default_rng([seed, i]), batch_size)


def make_learner(iterator, checkpoint_dir=None, devices=None, learning_rate=1e-3, **kwargs):
  kwargs = {'save_every': 2, 'keep': 3, **kwargs}
  return learning.AbstractLearner(SPEC, learning_rate=learning_rate, seed=0, iterator=iterator,
                                  checkpoint_dir=checkpoint_dir, devices=devices, **kwargs)


def assert_trees_equal(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


@pytest.mark.slow
def test_training_lowers_loss_and_beats_copy_baseline():
  """A short real run (2 devices) on the synthetic task.

  Scored as Table 2 is: slot accuracy of ``losses.predict`` (PREDICTED mask) over the
  high-entropy slots of the held-out targets, which here are exactly the 6 active slots.
  """
  logged = []
  learner = make_learner(batches(16), learning_rate=1e-2, log_every=20,
                         log_fn=lambda m, step: logged.append((step, m)))
  losses_seen = [learner.step()['loss'] for _ in range(10)]
  learner.run(80)
  losses_seen += [learner.step()['loss'] for _ in range(10)]
  assert learner.global_step == 90
  assert np.mean(losses_seen[-10:]) < 0.75 * np.mean(losses_seen[:10])
  assert [s for s, _ in logged] == [20, 40, 60, 80]
  assert {'loss', 'bit_loss', 'mask_loss', 'grad_norm', 'steps_per_s'} <= set(logged[0][1])

  held_out = transitions(np.random.default_rng(12345), 512)
  x_bits = bytes_to_bits(held_out['ram_t'])  # [T, 128, 8]
  out = learning.make_model(SPEC).apply({'params': learner.params}, x_bits,
                                        held_out['action'].astype(np.float32))
  predicted = np.asarray(bits_to_bytes(losses.predict(out.bit_logits, out.mask_logits, x_bits)))
  scored = atari_metrics.high_entropy_slots(held_out['ram_tp1'])  # [128]
  np.testing.assert_array_equal(np.flatnonzero(scored), ACTIVE)
  model_acc = atari_metrics.slot_accuracy(predicted, held_out['ram_tp1'], scored)
  copy_acc = atari_metrics.slot_accuracy(held_out['ram_t'], held_out['ram_tp1'], scored)
  assert model_acc > copy_acc + 0.05, (model_acc, copy_acc)


def test_one_device_equals_two_devices():
  """3 updates on B=8 in one device == 3 updates on 2 x 4 with the pmean-ed step."""
  assert jax.local_device_count() >= 2, 'tests/conftest.py forces 2 CPU devices'
  one = make_learner(batches(8), devices=jax.local_devices()[:1])
  two = make_learner(batches(8), devices=jax.local_devices()[:2])
  for _ in range(3):
    m1, m2 = one.step(), two.step()
    for key in m1:
      np.testing.assert_allclose(m1[key], m2[key], rtol=1e-5, atol=1e-6, err_msg=key)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-5),
                         one.params, two.params)
  np.testing.assert_array_equal(one.state.rng, two.state.rng)
  assert int(one.state.step) == int(two.state.step) == 3


def test_naive_pmean_of_abstract_loss_would_differ():
  """Why update() shares the bit-loss denominator: averaging per-half abstract_loss
  gradients is NOT the full-batch gradient when the halves hold different change counts."""
  model = learning.make_model(SPEC)
  state = learning.init_state(model, optax.adam(1e-3), jax.random.PRNGKey(0))
  batch = transitions(np.random.default_rng(7), 8)
  batch['ram_tp1'][:4, 11] ^= 1  # extra changes in the first half only

  def grad(b):
    x, y = bytes_to_bits(b['ram_t']), bytes_to_bits(b['ram_tp1'])

    def loss(p):
      out = model.apply({'params': p}, x, jnp.asarray(b['action'], jnp.float32))
      return losses.abstract_loss(out.bit_logits, out.mask_logits, x, y)[0]

    return jax.jit(jax.grad(loss))(state.params)

  halves = [jax.tree_util.tree_map(lambda v, s=s: v[s], batch) for s in (slice(0, 4),
                                                                         slice(4, 8))]
  naive = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, grad(halves[0]), grad(halves[1]))
  full = grad(batch)
  diff = max(float(np.max(np.abs(a - b))) for a, b in
             zip(jax.tree_util.tree_leaves(naive), jax.tree_util.tree_leaves(full)))
  assert diff > 1e-3


def test_resume_after_restart_matches_uninterrupted_run(tmp_path):
  ckpt = str(tmp_path / 'ckpt')
  first = make_learner(batches(8), checkpoint_dir=ckpt)
  first.run(4)  # saves at steps 2 and 4
  saved = first.state
  first.close()
  del first  # the "killed" learner

  resumed = make_learner(batches(8, start=4), checkpoint_dir=ckpt)
  assert resumed.global_step == 4
  assert_trees_equal(resumed.state, saved)  # params, Adam state, step, rng
  resumed.run(5)

  straight = make_learner(batches(8))
  straight.run(5)
  assert resumed.global_step == straight.global_step == 5
  assert_trees_equal(resumed.state, straight.state)
  assert (checkpointing.make_checkpoint_manager(ckpt, max_to_keep=3).latest_step() == 5)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, patch_traced):
  """A uint8 batch cannot hold a NaN, so the test patches the loss: a batch whose slot 0 is
  255 in every row (the background never is) turns the loss, and through it the gradients
  and the updated params, into NaN. It is served for step 4, a save step."""
  real_loss = losses.abstract_loss

  def poisoned_loss(bit_logits, mask_logits, x_bits, y_bits):
    loss, m = real_loss(bit_logits, mask_logits, x_bits, y_bits)
    factor = jnp.where(jnp.all(x_bits[:, 0, :] == 1), jnp.nan, 1.0)
    return loss * factor, dict(m, loss=m['loss'] * factor, bit_loss=m['bit_loss'] * factor,
                               mask_loss=m['mask_loss'] * factor)

  patch_traced(losses, 'abstract_loss', poisoned_loss)

  def poisoned_batches():
    for i, batch in enumerate(batches(8)):
      if i == 3:
        batch['ram_t'][:, 0] = 255
      yield batch

  ckpt = str(tmp_path / 'ckpt')
  learner = make_learner(poisoned_batches(), checkpoint_dir=ckpt)
  with pytest.raises(FloatingPointError, match=r'step 4 .*last good checkpoint: step 2'):
    learner.run(10)
  assert np.isnan(np.asarray(learner.params['decoder']['projection']['kernel'])).any()
  learner.close()

  restarted = make_learner(batches(8, start=2), checkpoint_dir=ckpt)
  assert restarted.global_step == 2
  assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(restarted.params))


def test_logs_learning_rate_and_prints_progress(capsys):
  logged = []
  learner = make_learner(batches(8), learning_rate=3e-4, log_every=2,
                         log_fn=lambda m, step: logged.append((step, m)))
  learner.run(4, progress_label='abstract pong/mpnn')
  assert [step for step, _ in logged] == [2, 4]
  assert all(m['learning_rate'] == pytest.approx(3e-4) for _, m in logged)
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith('abstract pong/mpnn')]
  assert len(lines) == 2
  assert lines[-1].startswith('abstract pong/mpnn: step 4/4, ')
  assert 'steps/s' in lines[-1] and 'ETA 0s' in lines[-1]
  assert f'loss {logged[-1][1]["loss"]:.4g}' in lines[-1]


def test_progress_without_log_fn_and_silent_by_default(capsys):
  make_learner(batches(8), log_every=2).run(2)
  assert capsys.readouterr().out == ''
  make_learner(batches(8), log_every=2).run(2, progress_label='abstract x')
  assert capsys.readouterr().out.startswith('abstract x: step 2/2')

