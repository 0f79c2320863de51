"""Seed statistics for Table 1: paired t-tests of RMR vs C-SWM, t-intervals of paired
differences and mean/std summaries.

The paper feeds identical batches to both models for each of five seeds, so each seed gives a
PAIR of probe F1s and the comparison is a paired (dependent-samples) two-sided t-test on the
per-seed differences ``d_i = rmr_i - cswm_i``:

    t = mean(d) / (sd(d) / sqrt(n)),   sd with ddof=1,   p = 2 * P(T_{n-1} > |t|).

Edge cases (where `scipy.stats.ttest_rel` would warn or return NaN):
  * n < 2: no variance estimate; t = p = NaN.
  * every difference is exactly 0: the two variants are indistinguishable; t = p = NaN.
  * sd(d) = 0 but the (constant) difference is nonzero: the difference is the same on every
    seed, which is as certain as a paired test can get; t = +-inf and p = 0.0.
A NaN p-value is never significant.

`paired_difference` adds the t-interval of the mean difference,
``mean(d) +- t_{n-1, (1 + confidence) / 2} * sd(d) / sqrt(n)`` (NaN for n < 2; the point
``[mean(d), mean(d)]`` when sd(d) = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.stats


def paired_ttest(rmr: Sequence[float], cswm: Sequence[float]) -> dict[str, float]:
  """Two-sided paired t-test of RMR against C-SWM over seeds.

  Args:
    rmr: per-seed scores of RMR, [n].
    cswm: per-seed scores of C-SWM on the same seeds, same order, [n].

  Returns:
    ``t``, ``p_value``, ``mean_diff`` (mean of rmr - cswm) and ``n`` (as float); see the
    module docstring for the n < 2 and zero-variance conventions.
  """
  a = np.asarray(rmr, np.float64)
  b = np.asarray(cswm, np.float64)
  if a.ndim != 1 or a.shape != b.shape:
    raise ValueError(f'expected two equal-length 1-d sequences, got {a.shape} and {b.shape}')
  n = a.size
  d = a - b  # [n]
  mean_diff = float(d.mean()) if n else float('nan')
  out = {'t': float('nan'), 'p_value': float('nan'), 'mean_diff': mean_diff, 'n': float(n)}
  if n < 2 or np.all(d == 0):
    return out
  if np.all(d == d[0]):  # constant nonzero difference: sd(d) = 0
    out.update(t=math.copysign(math.inf, d[0]), p_value=0.0)
    return out
  result = scipy.stats.ttest_rel(a, b)  # two-sided by default
  out.update(t=float(result.statistic), p_value=float(result.pvalue))
  return out


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95
                      ) -> dict[str, float]:
  """Mean of the per-seed differences ``a_i - b_i`` with its two-sided t-interval and test.

  Args:
    a: per-seed scores of one variant, [n].
    b: per-seed scores of the other on the same seeds, same order, [n].
    confidence: the interval's coverage.

  Returns:
    ``mean_diff``, ``ci_low``, ``ci_high``, ``t``, ``p_value`` (`paired_ttest`) and ``n``.
  """
  out = paired_ttest(a, b)
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)  # [n]
  n = d.size
  if n < 2:
    return {**out, 'ci_low': float('nan'), 'ci_high': float('nan')}
  half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df=n - 1) * d.std(ddof=1) / math.sqrt(n))
  return {**out, 'ci_low': out['mean_diff'] - half, 'ci_high': out['mean_diff'] + half}


def summarise(per_seed: dict[str, Sequence[float]]) -> dict[str, dict[str, float]]:
  """Mean and standard deviation over seeds of each variant.

  Args:
    per_seed: {variant: [score per seed]}.

  Returns:
    {variant: {mean, std, n}}; std uses ddof=1 when n > 1 and is 0.0 for a single seed;
    mean and std are NaN when there is no seed.
  """
  out = {}
  for name, values in per_seed.items():
    v = np.asarray(values, np.float64)
    n = v.size
    mean = float(v.mean()) if n else float('nan')
    std = float(v.std(ddof=1)) if n > 1 else (0.0 if n == 1 else float('nan'))
    out[name] = {'mean': mean, 'std': std, 'n': float(n)}
  return out
