"""Tests for rmr_dist.evaluation.atari_probes: bit and byte linear probes on frozen embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist.evaluation import atari_ram_labels, atari_metrics, atari_probes
from rmr_dist.networks.atari_abstract import bytes_to_bits

_FAST = dict(steps=150, batch_size=4096, learning_rate=0.05, weight_decay=0.0, seed=0)
_NUM_RANDOM_SLOTS = 12


def _synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """RAM with 12 random slots (the rest 0) and embeddings linear in their bits plus noise.

  Returns:
    emb [n, 12 * 8 + 16] float32 (±1 per bit + N(0, 0.3) noise, then 16 pure-noise features),
    ram [n, 128] uint8.
  """
  ram = np.zeros((n, 128), np.uint8)
  ram[:, :_NUM_RANDOM_SLOTS] = rng.integers(0, 256, (n, _NUM_RANDOM_SLOTS))
  bits = bytes_to_bits(ram[:, :_NUM_RANDOM_SLOTS]).reshape(n, -1)  # [n, 96]
  signal = 2.0 * bits - 1.0 + 0.3 * rng.standard_normal(bits.shape)
  emb = np.concatenate([signal, rng.standard_normal((n, 16))], axis=1)
  return emb.astype(np.float32), ram


@pytest.fixture(scope='module')
def data():
  rng = np.random.default_rng(0)
  train_emb, train_ram = _synthetic(512, rng)
  val_emb, val_ram = _synthetic(256, rng)
  return train_emb, train_ram, val_emb, val_ram


@pytest.fixture(scope='module')
def bit_params(data):
  train_emb, train_ram, _, _ = data
  return atari_probes.train_bit_probes(train_emb, train_ram, **_FAST)


def test_bit_probe_learns_linear_task(data, bit_params):
  _, _, val_emb, val_ram = data
  assert val_emb.shape[1] == 112 and bit_params.w.shape == (112, 1024)
  assert bit_params.mean.shape == bit_params.std.shape == (112,)
  out = atari_probes.evaluate_bit_probes(bit_params, val_emb, val_ram)
  assert out['num_slots'] == _NUM_RANDOM_SLOTS  # only the random slots pass 0.6 nats
  assert out['bit_f1'] > 0.97
  assert out['slot_accuracy'] > 0.8
  pred = atari_probes.predict_bits(bit_params, val_emb)
  assert pred.shape == (256, 128, 8) and pred.dtype == np.uint8
  assert set(np.unique(pred)) <= {0, 1}


def test_bit_probe_is_deterministic_under_seed(data):
  train_emb, train_ram, _, _ = data
  kw = dict(_FAST, steps=20, batch_size=64)
  a = atari_probes.train_bit_probes(train_emb, train_ram, **kw)
  b = atari_probes.train_bit_probes(train_emb, train_ram, **kw)
  c = atari_probes.train_bit_probes(train_emb, train_ram, **dict(kw, seed=1))
  np.testing.assert_array_equal(np.asarray(a.w), np.asarray(b.w))
  np.testing.assert_array_equal(np.asarray(a.b), np.asarray(b.b))
  assert not np.array_equal(np.asarray(a.w), np.asarray(c.w))  # a different minibatch order


def test_standardisation_uses_train_statistics(data, bit_params):
  train_emb = data[0]
  np.testing.assert_allclose(np.asarray(bit_params.mean), train_emb.mean(0), atol=1e-5)
  np.testing.assert_allclose(np.asarray(bit_params.std), train_emb.std(0), rtol=1e-4)


def test_only_high_entropy_slots_are_scored(data, bit_params):
  _, _, val_emb, val_ram = data
  # Slot 100 is 0 in training, so the probe predicts 0 there; make it a constant 255 in the
  # validation RAM. Constant -> entropy 0 -> filtered out -> the score does not move.
  shifted = val_ram.copy()
  shifted[:, 100] = 255
  before = atari_probes.evaluate_bit_probes(bit_params, val_emb, val_ram)
  after = atari_probes.evaluate_bit_probes(bit_params, val_emb, shifted)
  assert after == before
  # Scoring every slot instead would count the 8 * 256 missed bits of slot 100.
  pred = atari_probes.predict_bits(bit_params, val_emb)
  all_slots = atari_metrics.bit_f1(pred, bytes_to_bits(shifted), np.ones(128, bool))
  assert all_slots < after['bit_f1'] - 0.05


def test_frozen_embeddings_batches_and_flattens():
  key = jax.random.PRNGKey(0)
  params = {'w': jax.random.normal(key, (12, 4 * 3))}
  frames = np.arange(7 * 2 * 2 * 3, dtype=np.uint8).reshape(7, 2, 2, 3)

  def encode_fn(p, x):  # [B, 2, 2, 3] uint8 -> [B, 4 slots, 3]
    flat = x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0  # [B, 12]
    return (flat @ p['w']).reshape(x.shape[0], 4, 3)

  before = np.asarray(params['w']).copy()
  emb = atari_probes.frozen_embeddings(encode_fn, params, frames, batch_size=3)  # 7 = 3 + 3 + 1
  assert emb.shape == (7, 12) and emb.dtype == np.float32
  expected = np.asarray(encode_fn(params, jnp.asarray(frames))).reshape(7, 12)
  np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(params['w']), before)  # never updated


def test_weighted_f1_by_hand():
  true = np.array([0, 0, 0, 1, 1, 2])
  pred = np.array([0, 0, 3, 1, 2, 2])
  # class 0 (support 3): TP 2, FP 0, FN 1 -> 2*2 / (4 + 0 + 1) = 0.8
  # class 1 (support 2): TP 1, FP 0, FN 1 -> 2 / (2 + 0 + 1) = 2/3
  # class 2 (support 1): TP 1, FP 1, FN 0 -> 2 / (2 + 1 + 0) = 2/3
  # class 3 appears only in pred: support 0, weight 0.
  # weighted = (3 * 0.8 + 2 * 2/3 + 1 * 2/3) / 6 = (2.4 + 2) / 6 = 0.7333...
  assert atari_probes.weighted_f1(pred, true) == pytest.approx(4.4 / 6, abs=1e-12)
  assert atari_probes.weighted_f1(true, true) == 1.0
  assert np.isnan(atari_probes.weighted_f1(np.array([], int), np.array([], int)))


def test_byte_probes_pong():
  rng = np.random.default_rng(1)
  labels = atari_ram_labels.ATARIARI_LABELS['pong']

  def make(n):
    ram = np.zeros((n, 128), np.uint8)
    for name, idx in labels.items():
      if name != 'player_x':  # player_x stays constant -> dropped by the entropy filter
        ram[:, idx] = rng.integers(10, 14, n)  # 4 values: entropy ~ ln 4 > 0.6
    onehot = np.concatenate([np.eye(4)[ram[:, i] - 10] for i in sorted(labels.values())
                             if i != labels['player_x']], axis=1)  # [n, 7 * 4]
    return (onehot + 0.1 * rng.standard_normal(onehot.shape)).astype(np.float32), ram

  train_emb, train_ram = make(400)
  val_emb, val_ram = make(200)
  bp = atari_probes.train_byte_probes(train_emb, train_ram, 'pong', **dict(_FAST, steps=200))
  assert bp is not None and 'player_x' not in bp.variables and len(bp.variables) == 7
  assert bp.params.w.shape == (28, 7 * 256)
  out = atari_probes.evaluate_byte_probes(bp, val_emb, val_ram)
  assert out['num_variables'] == 7 and set(out['f1']) == set(bp.variables)
  assert out['mean_f1'] > 0.95
  assert out['mean_f1'] == pytest.approx(np.mean(list(out['f1'].values())))
  # AtariARI's summary: per category, then across categories.
  assert list(out['category_f1']) == ['agent_localization', 'small_object_localization',
                                      'other_localization', 'score_clock_lives_display']
  assert out['category_f1']['small_object_localization'] == pytest.approx(
      (out['f1']['ball_x'] + out['f1']['ball_y']) / 2)
  assert out['across_categories_f1'] == pytest.approx(np.mean(list(out['category_f1'].values())))
  assert atari_probes.train_byte_probes(train_emb, train_ram, 'no_such_game', **_FAST) is None
  assert atari_probes.evaluate_byte_probes(None, val_emb, val_ram) is None
  # Whitened onto principal components first, as the probe stage fits them.
  bp = atari_probes.train_byte_probes(train_emb, train_ram, 'pong', max_components=20,
                                      **dict(_FAST, steps=200))
  assert bp.params.proj.shape == (28, 20)
  assert atari_probes.evaluate_byte_probes(bp, val_emb, val_ram)['mean_f1'] > 0.95


def test_early_stopping_converges_on_a_separable_problem_and_stops(data):
  train_emb, train_ram, val_emb, val_ram = data
  mask = atari_metrics.high_entropy_slots(val_ram)
  fitted, info = atari_probes.fit_bit_probes(
      train_emb, train_ram, steps=5000, batch_size=64, learning_rate=0.01, weight_decay=0.0,
      seed=0,
      early_stopping=atari_probes.EarlyStopping(val_fraction=0.2, eval_every=10, patience=3),
      max_components=256, slots=mask)  # rank 112 < 256: every component kept
  assert info.stopped_early and info.steps < 5000 and 0 < info.best_step <= info.steps
  assert info.steps - info.best_step == 3 * 10  # stopped after `patience` evaluations
  assert len(info.val_index) == round(0.2 * len(train_ram))
  assert not set(info.fit_index) & set(info.val_index)
  assert fitted.proj.shape == (train_emb.shape[1], 112) and fitted.w.shape == (112, 8 * 12)
  assert atari_probes.evaluate_bit_probes(fitted, val_emb, val_ram)['bit_f1'] > 0.97
  # Bits of unfitted slots are predicted 0.
  assert not atari_probes.predict_bits(fitted, val_emb)[:, ~mask].any()


def test_majority_control_hand_computed():
  # Slot 0 takes 0x0F in 3 of 4 train frames, so the majority predicts 0x0F for it.
  train = np.zeros((4, 128), np.uint8)
  train[:3, 0] = 0x0F
  val = np.zeros((4, 128), np.uint8)
  val[:, 0] = [0x0F, 0xF0, 0x0F, 0x03]  # entropy > 0.6 nats: slot 0 alone is scored
  out = atari_probes.majority_bit_f1(train, val)
  assert out['num_slots'] == 1
  # Predicted 1s: 4 frames x 4 low bits = 16. True 1s: 4 + 4 + 4 + 2 = 14; TP = 4 + 0 + 4 + 2.
  assert out['bit_f1'] == pytest.approx(2 * 10 / (2 * 10 + 6 + 4))
  assert out['slot_accuracy'] == pytest.approx(0.5)


def test_byte_majority_control_hand_computed():
  # Pong's ball_x (RAM 49) varies over 4 values, ball_y (54) is constant and filtered out (its
  # label entropy is 0 < 0.6 nats), as the byte probes filter it.
  train = np.zeros((6, 128), np.uint8)
  train[:, 49] = [7, 7, 7, 3, 5, 9]
  train[:, 54] = 11
  val = np.zeros((4, 128), np.uint8)
  val[:, 49] = [7, 3, 7, 5]
  out = atari_probes.majority_byte_f1(train, val, 'pong')
  assert out['num_variables'] == 1 and set(out['f1']) == {'ball_x'}
  # Predicting 7 everywhere: class 7 has TP 2, FP 2, FN 0 (F1 2/3, weight 2 of 4); classes 3
  # and 5 have F1 0.
  assert out['mean_f1'] == pytest.approx(0.5 * 2 / 3)
  assert atari_probes.majority_byte_f1(train, val, 'no_such_game') is None


def test_byte_f1_is_averaged_within_then_across_categories_by_hand():
  # Pong: ball_x (RAM 49) and ball_y (54) are small-object positions, player_y (51) the agent's;
  # every other labelled byte is constant (label entropy 0 < 0.6 nats: not probed).
  train = np.zeros((6, 128), np.uint8)
  train[:, 49] = [7, 7, 7, 3, 5, 9]  # majority 7
  train[:, 54] = [1, 1, 2, 2, 2, 3]  # majority 2
  train[:, 51] = [4, 4, 4, 4, 8, 8]  # majority 4 (entropy 0.637 nats)
  val = np.zeros((4, 128), np.uint8)
  val[:, 49] = [7, 3, 7, 5]
  val[:, 54] = [2, 2, 2, 1]
  val[:, 51] = [4, 4, 8, 8]
  out = atari_probes.majority_byte_f1(train, val, 'pong')
  # ball_x, predicting 7: class 7 (support 2) TP 2, FP 2 -> F1 2/3; classes 3, 5 F1 0.
  # ball_y, predicting 2: class 2 (support 3) TP 3, FP 1 -> F1 6/7; class 1 F1 0.
  # player_y, predicting 4: class 4 (support 2) TP 2, FP 2 -> F1 2/3; class 8 F1 0.
  f1 = {'ball_x': 2 * (2 / 3) / 4, 'ball_y': 3 * (6 / 7) / 4, 'player_y': 2 * (2 / 3) / 4}
  assert out['f1'] == pytest.approx(f1)
  small = (f1['ball_x'] + f1['ball_y']) / 2  # 41/84
  assert out['category_f1'] == pytest.approx({'agent_localization': 1 / 3,
                                              'small_object_localization': small})
  assert small == pytest.approx(41 / 84)
  assert out['across_categories_f1'] == pytest.approx((41 / 84 + 1 / 3) / 2)  # 69/168
  assert out['mean_f1'] == pytest.approx(55 / 126)  # the plain mean over the 3 variables
  # The same averaging on its own, categories given.
  per_category, across = atari_probes.category_f1(
      {'a': 0.2, 'b': 0.4, 'c': 0.9}, {'a': 'misc', 'b': 'misc', 'c': 'agent_localization'})
  assert per_category == pytest.approx({'agent_localization': 0.9, 'misc': 0.3})
  assert list(per_category) == ['agent_localization', 'misc']
  assert across == pytest.approx(0.6)


def test_split_by_episode_holds_out_whole_episodes():
  groups = np.repeat([3, 5, 8, 9, 11, 12, 20], [30, 10, 25, 40, 5, 15, 25])  # 150 frames
  fit, val = atari_probes.split_indices(len(groups), 0.2, seed=1, groups=groups)
  assert not set(groups[fit]) & set(groups[val])  # no episode in both parts
  assert sorted(np.concatenate([fit, val])) == list(range(150))
  assert abs(len(val) - 0.2 * 150) <= 20  # about val_fraction of the frames, in episodes
  again = atari_probes.split_indices(len(groups), 0.2, seed=1, groups=groups)
  assert all(np.array_equal(a, b) for a, b in zip((fit, val), again))
  # Every seed keeps both parts non-empty.
  for seed in range(20):
    fit, val = atari_probes.split_indices(len(groups), 0.2, seed=seed, groups=groups)
    assert len(fit) and len(val) and not set(groups[fit]) & set(groups[val])
  with pytest.raises(ValueError, match='>= 2 episodes'):
    atari_probes.split_indices(10, 0.2, seed=0, groups=np.zeros(10, int))


def test_probe_early_stopping_holds_out_whole_episodes(data):
  train_emb, train_ram, _, _ = data
  episode = np.arange(len(train_ram)) // 40  # 13 "episodes" of 40 consecutive frames
  _, info = atari_probes.fit_bit_probes(
      train_emb, train_ram, steps=20, batch_size=64, learning_rate=0.01, weight_decay=0.0,
      seed=0,
      early_stopping=atari_probes.EarlyStopping(val_fraction=0.2, eval_every=10, patience=3),
      groups=episode)
  assert len(info.val_index) and not set(episode[info.fit_index]) & set(episode[info.val_index])
  assert len(info.fit_index) + len(info.val_index) == len(train_ram)
  with pytest.raises(ValueError, match='groups must be'):
    atari_probes.fit_bit_probes(train_emb, train_ram, steps=2, batch_size=64, learning_rate=0.01,
                                weight_decay=0.0, seed=0, groups=episode[:10],
                                early_stopping=atari_probes.EarlyStopping(val_fraction=0.2))
