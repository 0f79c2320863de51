"""FG-ARI on hand-made segmentations."""

import numpy as np
import pytest

from rmr_dist.evaluation import segmentation


def _three_objects():
  seg = np.zeros((1, 6, 6), np.int64)
  seg[0, :2, :2], seg[0, 3:, :3], seg[0, 4:, 4:] = 1, 2, 3
  return seg


def test_perfect_segmentation_scores_one_up_to_relabelling():
  seg = _three_objects()
  masks = np.zeros((1, 4, 6, 6))
  for slot, obj in ((3, 0), (0, 1), (2, 2), (1, 3)):  # any slot order
    masks[0, slot][seg[0] == obj] = 1.0
  assert segmentation.fg_ari(seg, masks)[0] == pytest.approx(1.0)


def test_uniform_masks_score_zero():
  seg = _three_objects()
  assert segmentation.fg_ari(seg, np.full((1, 4, 6, 6), 0.25))[0] == pytest.approx(0.0)


def test_random_masks_score_about_zero():
  rng = np.random.default_rng(0)
  seg = rng.integers(1, 5, (1, 64, 64))
  scores = segmentation.fg_ari(seg, rng.random((1, 5, 64, 64)))
  assert abs(scores[0]) < 0.01


def test_hand_computed_ari_and_background_is_ignored():
  # true [0 0 1 1], pred [0 0 0 1]: index 1, rows 2, cols 3, expected 1, best 2.5 -> 0.
  assert segmentation.adjusted_rand_index([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.0)
  # true [0 0 0 1 1 1], pred [0 0 1 1 1 1]: index 4, rows 6, cols 7, expected 42/15.
  expected = 42 / 15
  assert segmentation.adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == \
      pytest.approx((4 - expected) / (6.5 - expected))
  seg = np.array([[[0, 0, 1, 2]]])  # background pixels carry the slot that is wrong there
  masks = np.zeros((1, 3, 1, 4))
  masks[0, 0, 0, :2], masks[0, 1, 0, 2], masks[0, 2, 0, 3] = 1, 1, 1
  assert segmentation.fg_ari(seg, masks)[0] == pytest.approx(1.0)
  assert np.isnan(segmentation.fg_ari(np.zeros((1, 2, 2), int), np.ones((1, 2, 2, 2)))[0])
