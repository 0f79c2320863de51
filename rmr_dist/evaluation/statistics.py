"""Seed statistics for Table 1: paired t-tests of RMR vs C-SWM, t-intervals of paired
differences, mean/std summaries and the paired test's power (seeds needed, smallest detectable
difference).

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

`signed_rank` is a secondary, distribution-free reading of the same pairs (Wilcoxon's
signed-rank test, exact for n <= 50): where a few seeds fail in a way that dwarfs the others'
differences (e.g. a slot model that loses a ball), the t-test's spread is that failure's, while
the signed-rank test asks whether the differences lean one way.
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


def signed_rank(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """Two-sided Wilcoxon signed-rank test of the per-seed differences ``a_i - b_i``.

  Args:
    a: per-seed scores of one variant, [n].
    b: per-seed scores of the other on the same seeds, same order, [n].

  Returns:
    ``below`` (seeds with a_i < b_i), ``above`` (a_i > b_i), ``n`` and ``p_value`` (exact for
    n <= 50 without ties or zero differences, else scipy's normal approximation; NaN when
    every difference is 0 or n < 1).
  """
  d = np.asarray(a, np.float64) - np.asarray(b, np.float64)  # [n]
  if d.ndim != 1 or np.shape(a) != np.shape(b):
    raise ValueError(f'expected two equal-length 1-d sequences, got {np.shape(a)} and '
                     f'{np.shape(b)}')
  out = {'below': float(np.sum(d < 0)), 'above': float(np.sum(d > 0)), 'n': float(d.size),
         'p_value': float('nan')}
  if d.size and np.any(d != 0):
    out['p_value'] = float(scipy.stats.wilcoxon(d).pvalue)
  return out


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


def paired_power(n: int, effect: float, sd: float, alpha: float = 0.05) -> float:
  """Power of the two-sided paired t-test over ``n`` seeds at level ``alpha``.

  The per-seed differences are taken as normal with mean ``effect`` and standard deviation
  ``sd``: t is noncentral t with n - 1 degrees of freedom and noncentrality
  ``effect / sd * sqrt(n)``; the power is ``P(|t| > t_{n-1, 1 - alpha/2})``.
  """
  if n < 2:
    return float('nan')
  df, nc = n - 1, abs(effect) / sd * math.sqrt(n)
  crit = scipy.stats.t.ppf(1 - alpha / 2, df)
  return float(scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df, nc))


def seeds_for_power(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8,
                    max_seeds: int = 10_000) -> int:
  """The fewest seeds whose paired t-test detects a mean difference ``effect`` at level
  ``alpha`` with probability ``power`` (:func:`paired_power`), given the per-seed differences'
  standard deviation ``sd``; ``max_seeds`` if even that many do not.

  Example: effect = sd (Cohen's d = 1), alpha 0.05, power 0.8: 10 seeds (power 0.803; 9
  give 0.748).
  """
  if sd <= 0:
    return 2
  for n in range(2, max_seeds + 1):
    if paired_power(n, effect, sd, alpha) >= power:
      return n
  return max_seeds

def detectable_difference(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
  """The smallest mean paired difference that the two-sided paired t-test over ``n`` seeds
  detects at level ``alpha`` with probability ``power`` (:func:`paired_power`), given the
  per-seed differences' standard deviation ``sd``; NaN for n < 2 or an undefined ``sd``.

  Example: n = 10, sd = 1: 0.996 (an effect of 1.0 has power 0.803 there, 9 seeds 0.748).
  """
  if not alpha < power < 1:
    raise ValueError(f'power={power} must be in (alpha={alpha}, 1)')
  if n < 2 or not math.isfinite(sd):
    return float('nan')
  if sd <= 0:
    return 0.0
  low, high = 0.0, sd
  while paired_power(n, high, sd, alpha) < power:
    high *= 2
  for _ in range(60):  # Bisection: power rises with the effect.
    mid = (low + high) / 2
    low, high = (mid, high) if paired_power(n, mid, sd, alpha) < power else (low, mid)
  return high
