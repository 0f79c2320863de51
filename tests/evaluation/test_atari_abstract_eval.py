"""Tests for rmr_dist.evaluation.atari_abstract_eval: exact abstract evaluation over the episode
store."""

import numpy as np
import pytest

from rmr_dist.evaluation import atari_abstract_eval
from rmr_dist.replay import atari_episode_store


def _write(store, head, episode, ram, split='val'):
  t = len(ram) - 1
  store.write(atari_episode_store.Episode(ram=np.asarray(ram, np.uint8),
                                          action=np.arange(t, dtype=np.int32) % 18,
                                          reward=np.zeros(t, np.float32),
                                          frames=np.zeros((t + 1, 2, 2, 3), np.uint8)),
              game='pong', split=split, head=head, episode_index=episode)


def test_load_transitions_order_and_alignment(tmp_path):
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  ram_a = np.arange(4)[:, None].repeat(128, 1)  # RAM value t at step t
  ram_b = 100 + np.arange(3)[:, None].repeat(128, 1)
  _write(store, head=1, episode=0, ram=ram_b)
  _write(store, head=0, episode=1, ram=ram_a)
  _write(store, head=0, episode=0, ram=ram_a, split='train')  # not evaluated
  data = atari_abstract_eval.load_transitions(store, 'pong')
  np.testing.assert_array_equal(data.ram_t[:, 0], [0, 1, 2, 100, 101])
  np.testing.assert_array_equal(data.ram_tp1[:, 0], [1, 2, 3, 101, 102])
  np.testing.assert_array_equal(data.action, [0, 1, 2, 0, 1])


def test_missing_validation_data_names_the_store(tmp_path):
  with pytest.raises(FileNotFoundError, match='No val episodes of .pong.'):
    atari_abstract_eval.load_transitions(atari_episode_store.EpisodeStore(str(tmp_path)), 'pong')


def test_copy_baseline_scores_all_unchanged_slots_and_misses_changed_ones(tmp_path):
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  rng = np.random.default_rng(0)
  ram = np.repeat(rng.integers(0, 256, (1, 128)), 41, axis=0)
  # Slots 0..3 take random values every step (high entropy); the rest never change.
  ram[:, :4] = rng.integers(0, 256, (41, 4))
  _write(store, 0, 0, ram)
  data = atari_abstract_eval.load_transitions(store, 'pong')
  row = atari_abstract_eval.evaluate(None, None, data, 16)
  assert row['n_eval_slots'] == 4 and row['n_eval_transitions'] == 40
  # Copying is right exactly when a random slot repeats its value.
  same = (ram[1:, :4] == ram[:-1, :4]).mean()
  assert row['slot_acc'] == pytest.approx(same)


def test_episode_scores_split_the_overall_score_by_episode(tmp_path):
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  rng = np.random.default_rng(1)
  lengths = (30, 11, 20)  # transitions per episode
  base = rng.integers(0, 256, (1, 128))  # Slots 4.. never change (not scored).
  for head, t in enumerate(lengths):
    ram = np.repeat(base, t + 1, axis=0)
    ram[:, :4] = rng.integers(0, 4, (t + 1, 4))  # a few repeats, so copying is sometimes right
    _write(store, head, 0, ram)
  data = atari_abstract_eval.load_transitions(store, 'pong')
  np.testing.assert_array_equal(data.episode_lengths, lengths)
  row = atari_abstract_eval.evaluate(None, None, data, 16)
  assert len(row['episode_slot_acc']) == 3
  # Episode e's copy accuracy on the 4 scored slots, and their transition-weighted mean.
  bounds = np.concatenate([[0], np.cumsum(lengths)])
  want = [(data.ram_t[a:b, :4] == data.ram_tp1[a:b, :4]).mean()
          for a, b in zip(bounds[:-1], bounds[1:])]
  np.testing.assert_allclose(row['episode_slot_acc'], want)
  assert np.average(row['episode_slot_acc'], weights=lengths) == pytest.approx(row['slot_acc'])
