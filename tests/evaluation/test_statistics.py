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
