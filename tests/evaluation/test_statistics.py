"""Tests for rmr_dist.evaluation.statistics: paired t-test by hand and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from rmr_dist.evaluation import statistics


def test_paired_ttest_by_hand():
  rmr = [0.5, 0.6, 0.7]
  cswm = [0.4, 0.45, 0.5]
  # d = rmr - cswm = [0.10, 0.15, 0.20], n = 3
  # mean(d) = 0.15
  # sd(d) (ddof=1) = sqrt((0.05^2 + 0 + 0.05^2) / 2) = 0.05
  # t = 0.15 / (0.05 / sqrt(3)) = 3 sqrt(3) = 5.196152...
  # df = 2, where the t survival function is closed-form: sf(t) = (1 - t / sqrt(t^2 + 2)) / 2,
  # so the two-sided p = 1 - t / sqrt(t^2 + 2) = 1 - sqrt(27 / 29) = 0.035098...
  out = statistics.paired_ttest(rmr, cswm)
  t = 3 * math.sqrt(3)
  assert out['t'] == pytest.approx(t, rel=1e-9)
  assert out['p_value'] == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-9)
  assert out['p_value'] == pytest.approx(2 * scipy.stats.t.sf(t, df=2), rel=1e-9)
  assert out['mean_diff'] == pytest.approx(0.15, rel=1e-12)
  assert out['n'] == 3


def test_paired_ttest_matches_formula_on_five_seeds():
  rng = np.random.default_rng(0)
  cswm = rng.uniform(0.5, 0.7, 5)
  rmr = cswm + rng.normal(0.02, 0.01, 5)
  d = rmr - cswm
  t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
  out = statistics.paired_ttest(list(rmr), list(cswm))
  assert out['t'] == pytest.approx(t, rel=1e-9)
  assert out['p_value'] == pytest.approx(2 * scipy.stats.t.sf(abs(t), df=4), rel=1e-9)
  # Sign: swapping the arguments flips t, keeps p.
  swapped = statistics.paired_ttest(list(cswm), list(rmr))
  assert swapped['t'] == pytest.approx(-t) and swapped['p_value'] == pytest.approx(out['p_value'])


def test_paired_ttest_edge_cases():
  single = statistics.paired_ttest([0.7], [0.5])
  assert math.isnan(single['t']) and math.isnan(single['p_value'])
  assert single['mean_diff'] == pytest.approx(0.2) and single['n'] == 1
  same = statistics.paired_ttest([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])  # indistinguishable
  assert math.isnan(same['p_value']) and math.isnan(same['t']) and same['mean_diff'] == 0.0
  shifted = statistics.paired_ttest([0.75, 0.5, 0.25], [0.5, 0.25, 0.0])  # d = 0.25 exactly
  assert shifted['p_value'] == 0.0 and shifted['t'] == math.inf
  lower = statistics.paired_ttest([0.5, 0.25], [0.75, 0.5])
  assert lower['p_value'] == 0.0 and lower['t'] == -math.inf
  with pytest.raises(ValueError):
    statistics.paired_ttest([0.1, 0.2], [0.1])


def test_summarise():
  out = statistics.summarise({'rmr': [0.5, 0.6, 0.7], 'cswm': [0.4], 'none': []})
  assert out['rmr']['mean'] == pytest.approx(0.6)
  assert out['rmr']['std'] == pytest.approx(0.1)  # ddof=1: sqrt((0.01 + 0 + 0.01) / 2)
  assert out['rmr']['n'] == 3
  assert out['cswm'] == {'mean': 0.4, 'std': 0.0, 'n': 1.0}
  assert math.isnan(out['none']['mean']) and math.isnan(out['none']['std'])


def test_paired_difference_interval_by_hand():
  # d = [0.10, 0.15, 0.20]: mean 0.15, sd 0.05, n = 3; t_{2, 0.975} = 4.302652729911275
  # (tables), so the 95% interval is 0.15 +- 4.3026527 * 0.05 / sqrt(3).
  out = statistics.paired_difference([0.5, 0.6, 0.7], [0.4, 0.45, 0.5])
  half = 4.302652729911275 * 0.05 / math.sqrt(3)
  assert out['mean_diff'] == pytest.approx(0.15)
  assert (out['ci_low'], out['ci_high']) == pytest.approx((0.15 - half, 0.15 + half))
  assert out['p_value'] == pytest.approx(1 - math.sqrt(27 / 29))  # paired_ttest's
  narrow = statistics.paired_difference([0.5, 0.6, 0.7], [0.4, 0.45, 0.5], confidence=0.5)
  assert narrow['ci_high'] - narrow['ci_low'] < 2 * half
  constant = statistics.paired_difference([0.5, 0.6], [0.4, 0.5])  # sd 0: the point
  assert constant['ci_low'] == pytest.approx(0.1) and constant['ci_high'] == pytest.approx(0.1)
  one = statistics.paired_difference([0.5], [0.4])
  assert math.isnan(one['ci_low']) and math.isnan(one['ci_high'])


def test_paired_power_and_seeds_on_hand_computed_examples():
  """Two-sided paired t-test, alpha 0.05. d = effect / sd = 1 with 10 seeds: t has 9 degrees
  of freedom, noncentrality sqrt(10) = 3.162, critical value t_{9, 0.975} = 2.262, and
  P(t' > 2.262) = 0.803 (plus a negligible lower tail); 9 seeds: noncentrality 3, critical
  2.306, power 0.748 (a Monte Carlo of 400,000 tests: 0.749). So 10 seeds are needed
  (Cohen's tables: n = 10 at d = 1). At d = 0.5 the normal approximation
  ((1.960 + 0.842) / 0.5)^2 = 31.4 rounds up to 32, and the t-test needs 34."""
  assert statistics.paired_power(10, 1.0, 1.0) == pytest.approx(0.803, abs=1e-3)
  assert statistics.paired_power(9, 1.0, 1.0) == pytest.approx(0.748, abs=1e-3)
  assert statistics.seeds_for_power(1.0, 1.0) == 10
  assert statistics.seeds_for_power(2e-4, 4e-4) == 34  # d = 0.5: units cancel
  assert statistics.seeds_for_power(-1.0, 1.0) == 10  # either direction
  assert statistics.paired_power(200, 0.0, 1.0) == pytest.approx(0.05, abs=1e-3)
  assert math.isnan(statistics.paired_power(1, 1.0, 1.0))


def test_detectable_difference_inverts_the_power():
  """The smallest difference the paired test detects with power 0.8: 0.996 sd at 10 seeds
  (just under 1.0, whose power is 0.803 above), larger with fewer seeds, scaling with sd, 0
  without spread and undefined below 2 seeds."""
  d10 = statistics.detectable_difference(10, 1.0)
  assert d10 == pytest.approx(0.996, abs=1e-3)
  assert statistics.paired_power(10, d10, 1.0) == pytest.approx(0.8, abs=1e-6)
  assert statistics.detectable_difference(10, 0.02) == pytest.approx(0.02 * d10, rel=1e-6)
  assert statistics.detectable_difference(4, 1.0) > statistics.detectable_difference(8, 1.0) > d10
  assert statistics.detectable_difference(5, 0.0) == 0.0
  assert math.isnan(statistics.detectable_difference(1, 1.0))


def test_signed_rank_on_hand_computed_examples():
  # Six differences all negative: of the 2^6 equally likely sign patterns under H0, only
  # all-negative and all-positive are as extreme, so the exact two-sided p is 2 / 64.
  r = statistics.signed_rank([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.5, 3.0, 3.1, 8.0, 5.2, 9.0])
  assert (r['below'], r['above'], r['n']) == (6.0, 0.0, 6.0)
  assert r['p_value'] == pytest.approx(2 / 64)
  # Differences -1, +2, -3, -4 (ranks 1, 2, 3, 4): W+ = 2; patterns with W+ <= 2 are {}, {1},
  # {2}, and by symmetry W+ >= 8 three more: p = 6 / 16.
  r = statistics.signed_rank([0.0, 2.0, 0.0, 0.0], [1.0, 0.0, 3.0, 4.0])
  assert (r['below'], r['above']) == (3.0, 1.0)
  assert r['p_value'] == pytest.approx(6 / 16)
  assert math.isnan(statistics.signed_rank([1.0, 2.0], [1.0, 2.0])['p_value'])
