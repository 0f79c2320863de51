"""Tests for rmr_dist.evaluation.atari_metrics on tiny hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rmr_dist.evaluation import atari_metrics
from rmr_dist.networks.atari_abstract import bytes_to_bits


def test_entropy_is_in_nats():
  assert atari_metrics.ENTROPY_LOG_BASE == math.e
  assert atari_metrics.ENTROPY_THRESHOLD == 0.6


def test_slot_entropy_and_filter_by_hand():
  ram = np.array([[5, 0, 0, 0],
                  [5, 1, 0, 1],
                  [5, 0, 0, 2],
                  [5, 1, 1, 3]], np.uint8)  # [T=4, S=4]
  # slot 0: constant                     -> 0
  # slot 1: {0: 1/2, 1: 1/2}             -> ln 2 = 0.6931  > 0.6, kept
  # slot 2: {0: 3/4, 1: 1/4}             -> -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623 < 0.6, dropped
  #         (in bits it would be 0.8113 and kept: the base matters)
  # slot 3: four values, 1/4 each        -> ln 4 = 1.3863, kept
  expected = [0.0, math.log(2), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), math.log(4)]
  np.testing.assert_allclose(atari_metrics.slot_entropy(ram), expected, rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(atari_metrics.high_entropy_slots(ram), [False, True, False, True])


def test_slot_accuracy_by_hand():
  true = np.array([[1, 2, 3],
                   [4, 5, 6]], np.uint8)
  pred = np.array([[1, 9, 3],
                   [4, 5, 7]], np.uint8)  # 7 vs 6: one bit off, the whole slot is wrong
  mask = np.array([True, False, True])
  # Scored pairs: (0,0) right, (0,2) right, (1,0) right, (1,2) wrong -> 3/4.
  # (Slot 1 is wrong at t=0 but not scored.)
  assert atari_metrics.slot_accuracy(pred, true, mask) == 0.75
  # All slots: wrong only at (0,1) and (1,2) -> 4/6.
  assert atari_metrics.slot_accuracy(pred, true, np.ones(3, bool)) == 4 / 6
  assert math.isnan(atari_metrics.slot_accuracy(pred, true, np.zeros(3, bool)))


def test_bit_f1_by_hand_is_micro_averaged():
  true = np.zeros((2, 2, 8), np.float32)  # [T=2, S=2, 8]
  pred = np.zeros((2, 2, 8), np.float32)
  true[0, 0] = [1, 1, 0, 0, 1, 0, 0, 0]
  pred[0, 0] = [1, 0, 1, 0, 1, 0, 0, 0]  # TP 2 (bits 0, 4), FP 1 (bit 2), FN 1 (bit 1)
  true[1, 0] = [1, 0, 0, 0, 0, 0, 0, 0]
  pred[1, 0] = [1, 0, 0, 0, 0, 0, 0, 0]  # TP 1
  pred[:, 1] = 1.0  # slot 1 all wrong, but not scored
  mask = np.array([True, False])
  # Micro: TP 3, FP 1, FN 1 -> F1 = 2*3 / (2*3 + 1 + 1) = 6/8 = 0.75.
  # (Macro over transitions would give (2/3 + 1) / 2 = 0.8333.)
  assert atari_metrics.bit_f1(pred, true, mask) == 0.75


def test_bit_f1_from_bytes_by_hand():
  true = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
  pred = np.array([[1, 9, 3], [4, 5, 7]], np.uint8)
  # Scored bytes (slots 0, 2): 1/1 -> TP 1; 3/3 -> TP 2; 4/4 -> TP 1;
  # 7 (0b111) vs 6 (0b110) -> TP 2, FP 1. F1 = 2*6 / (2*6 + 1 + 0) = 12/13.
  f1 = atari_metrics.bit_f1(bytes_to_bits(pred), bytes_to_bits(true), np.array([True, False, True]))
  assert f1 == pytest.approx(12 / 13, abs=1e-15)


def test_bit_f1_without_positives():
  zeros = np.zeros((1, 2, 8))
  one_fp = zeros.copy()
  one_fp[0, 0, 3] = 1.0
  assert atari_metrics.bit_f1(zeros, zeros, np.ones(2, bool)) == 1.0
  assert atari_metrics.bit_f1(one_fp, zeros, np.ones(2, bool)) == 0.0
  assert atari_metrics.bit_f1(one_fp, zeros, np.array([False, True])) == 1.0  # FP not scored


def test_table2_metrics_filters_on_target_entropy():
  rng = np.random.default_rng(0)
  true = np.zeros((50, 128), np.uint8)
  true[:, 7] = rng.integers(0, 256, 50)  # the only high-entropy slot
  pred = true.copy()
  pred[:, 0] = 3  # errors on a constant slot: filtered out
  pred[:25, 7] ^= 1  # half of slot 7 wrong by one bit
  out = atari_metrics.table2_metrics(pred, true)
  assert out['num_slots'] == 1.0
  assert out['slot_accuracy'] == 0.5
  assert 0.0 < out['bit_f1'] < 1.0


def test_bit_f1_per_slot_scores_each_slot_alone_and_pools_back_to_the_micro_f1():
  true = np.zeros((2, 3, 8), np.uint8)
  pred = np.zeros((2, 3, 8), np.uint8)
  true[:, 0, :2] = 1
  pred[:, 0, :2] = 1  # slot 0: perfect
  true[0, 2, 0] = 1
  pred[1, 2, 0] = 1  # slot 2: one false positive, one false negative -> F1 0
  true[:, 1, 3] = 1  # slot 1 is not selected
  per_slot = atari_metrics.bit_f1_per_slot(pred, true, np.array([True, False, True]))
  assert per_slot == {0: 1.0, 2: 0.0}
  assert atari_metrics.bit_f1(pred, true, np.array([True, False, True])) == 2 * 4 / (2 * 4 + 2)
  with pytest.raises(ValueError, match='slot_mask'):
    atari_metrics.bit_f1_per_slot(pred, true, np.ones((2, 3), bool))
