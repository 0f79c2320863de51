"""Bouncing-balls report: balls.csv / balls.md beside the controls and the paper's numbers.

balls.csv has one row per (stage, variant, seed):

  abstract_1step       1-step next-position MSE (positions normalised to the box)
  abstract_rollout<k>  MSE at step k of an autoregressive rollout, k = 1 .. R
  natural_1step        per-pixel next-frame MSE (frames in [0, 1]) of each natural model, with
                       the FG-ARI of its slot masks, the share of its ball slots' P inputs
                       outside the abstract f's span and its slot position error (learned
                       variants only); the oracle rows ('oracle' through the trained f and
                       P, 'oracle_random_p' through untrained ones, 'oracle_end_to_end'
                       learning them; true positions in); 'rendered_abstract' /
                       'rendered_const_velocity': the exact renderer at the abstract model's /
                       constant velocity's next positions

Controls, scored by the same code on the same windows: 'copy_last' predicts the newest input
state / frame; 'const_velocity' extrapolates the last velocity (abstract only). balls.md puts
each learned model beside its control (the ratio must be below 1 for the model to count), the
natural variants' FG-ARI and latent-span share, paired differences over seeds with 95%
intervals (RMR against end-to-end and against RMR through an untrained P; the oracle against
end-to-end and against its own end-to-end and untrained-P rows), the seeds a 16% difference needs
(`statistics.seeds_for_power`), and the paper's numbers.

Written atomically. Figures use matplotlib's object API on an Agg canvas.

Several runs (e.g. ``configs/balls.py:study`` at several root seeds) pool into one balls.md
table, run i's seed s counted as seed 1000 i + s (:func:`pool_rows`)::

  python -m rmr_dist.evaluation.balls_report runs/balls-study-*/report/balls.csv
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import statistics
from rmr_dist.evaluation.report_files import csv_text, save_figure

COLUMNS = ('stage', 'variant', 'seed', 'mse', 'fg_ari', 'latent_span', 'position_rmse')
ORACLE_NAMES = {'rmr': 'oracle', 'rmr_random_p': 'oracle_random_p',
                'end_to_end': 'oracle_end_to_end'}  # oracle variant -> its balls.csv row
# Paired comparisons of natural 1-step MSE over seeds (first minus second).
PAIRS = (('rmr', 'end_to_end'), ('rmr', 'rmr_random_p'), ('oracle', 'end_to_end'),
         ('oracle', 'oracle_end_to_end'), ('oracle', 'oracle_random_p'))
EFFECT = 0.16  # the paper's RMR gain over end-to-end (7.94e-4 vs 9.47e-4): the power target
FOUND_ARI = 0.95  # FG-ARI from which a model's slots count as having found the balls
# Paper section 3: (mean, std) of the MSE; std None where the paper gives one run.
PAPER = {('abstract_1step', 'mpnn'): (4.59e-4, None),
         ('natural_1step', 'rmr'): (7.94e-4, 0.41e-4),
         ('natural_1step', 'end_to_end'): (9.47e-4, 0.24e-4)}
CONTROL = {'abstract': 'const_velocity', 'natural': 'copy_last'}


def rows(abstract: dict[str, Any] | None, natural: dict[str, Any] | None,
         seed: int) -> list[dict[str, Any]]:
  """The balls.csv rows from the stages' result.json contents (either may be None)."""
  out = []

  def add(stage, variant, s, mse, fg_ari=None):
    out.append({'stage': stage, 'variant': variant, 'seed': s, 'mse': mse,
                'fg_ari': '' if fg_ari is None else fg_ari})

  if abstract is not None:
    add('abstract_1step', 'mpnn', seed, abstract['mse_1step'])
    add('abstract_1step', 'copy_last', seed, abstract['copy_last_mse_1step'])
    if 'const_velocity_mse_1step' in abstract:
      add('abstract_1step', 'const_velocity', seed, abstract['const_velocity_mse_1step'])
    for k, mse in enumerate(abstract['rollout_mse'], start=1):
      add(f'abstract_rollout{k}', 'mpnn', seed, mse)
      if 'const_velocity_rollout_mse' in abstract:
        add(f'abstract_rollout{k}', 'const_velocity', seed,
            abstract['const_velocity_rollout_mse'][k - 1])
  if natural is not None:
    fg_ari = natural.get('fg_ari', {})
    span = natural.get('latent_outside_abstract_span', {})
    position = natural.get('position_rmse', {})
    for variant, values in natural['mse'].items():
      for s, v in enumerate(values):
        add('natural_1step', variant, s, v, fg_ari[variant][s] if variant in fg_ari else None)
        out[-1]['latent_span'] = span[variant]['ball_slots'][s] if variant in span else ''
        out[-1]['position_rmse'] = position[variant][s] if variant in position else ''
    oracle = natural.get('oracle')
    if oracle is not None:
      for variant, values in oracle['mse'].items():
        for s, v in enumerate(values):
          add('natural_1step', ORACLE_NAMES[variant], s, v, oracle['fg_ari'][variant][s])
    for name, mse in natural.get('rendered_mse', {}).items():
      if name != 'true':  # the renderer against itself (~0): a check, kept in result.json
        add('natural_1step', f'rendered_{name}', seed, mse)
    add('natural_1step', 'copy_last', seed, natural['copy_last_mse'])
  for r in out:
    r.setdefault('latent_span', '')
    r.setdefault('position_rmse', '')
  return out


def paired_markdown(groups: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
  """The paired differences of :data:`PAIRS` present in ``groups`` (natural 1-step MSE), with
  95% t-intervals, and the seeds that 80% power against a difference of :data:`EFFECT` x
  the second variant's mean would need at p < 0.05, given the measured spread; each over
  every seed, then (a secondary reading) over the seeds where both variants' slots found
  the balls (FG-ARI >= :data:`FOUND_ARI`)."""
  lines = ['\nPaired differences of natural 1-step MSE over seeds (first minus second; '
           'negative: the first is better), 95% t-intervals; seeds for 80% power at p < 0.05 '
           f'against a difference of {EFFECT:.0%} of the second\'s mean, given the measured '
           'spread of the differences. "found": only the seeds where both variants\' slots '
           f'found the balls (FG-ARI ≥ {FOUND_ARI}; a secondary reading, conditioned on an '
           'outcome):\n',
           '"lower on": seeds where the first is lower; "signed-rank p": Wilcoxon\'s exact '
           'two-sided test of the same differences, a secondary reading robust to one seed\'s '
           'failure dominating the spread.\n',
           '| comparison | seeds | mean difference [95% CI] | relative | t | p | seeds for '
           f'{EFFECT:.0%} | lower on | signed-rank p |', '|---|---|---|---|---|---|---|---|---|']
  for first, second in PAIRS:
    a, b = groups.get(('natural_1step', first)), groups.get(('natural_1step', second))
    if not a or not b or len(a) != len(b):
      continue
    a, b = sorted(a, key=lambda r: r['seed']), sorted(b, key=lambda r: r['seed'])
    lines.append(_paired_row(f'{first} − {second}', a, b))
    found = [(x, y) for x, y in zip(a, b) if min(_ari(x), _ari(y)) >= FOUND_ARI]
    if len(found) < len(a):
      lines.append(_paired_row(f'{first} − {second}, found', [x for x, _ in found],
                               [y for _, y in found]))
  return '\n'.join(lines) + '\n' if len(lines) > 3 else ''


def _ari(row: dict[str, Any]) -> float:
  return float('nan') if row['fg_ari'] == '' else float(row['fg_ari'])


def _paired_row(label: str, a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> str:
  """One row of :func:`paired_markdown`: ``a``, ``b`` the two variants' rows, seed-aligned."""
  if not a:
    return f'| {label} | 0 | — | — | — | — | — | — | — |'
  x, y = [float(r['mse']) for r in a], [float(r['mse']) for r in b]
  d = statistics.paired_difference(x, y)
  base = float(np.mean(y))
  need = (statistics.seeds_for_power(EFFECT * base, float(np.std(np.subtract(x, y), ddof=1)))
          if len(x) > 1 else '—')
  rank = statistics.signed_rank(x, y)
  return (f'| {label} | {len(x)} | {d["mean_diff"]:+.2e} [{d["ci_low"]:+.2e}, '
          f'{d["ci_high"]:+.2e}] | {d["mean_diff"] / base:+.1%} | {d["t"]:.2f} '
          f'| {d["p_value"]:.3g} | {need} | {rank["below"]:.0f} of {len(x)} '
          f'| {rank["p_value"]:.3g} |')


def _fmt(mean: float, std: float | None, digits: str = '.3e') -> str:
  return f'{mean:{digits}}' if std is None else f'{mean:{digits}} ± {std:.1e}'


def _stats(values: Sequence[float]) -> tuple[float, float | None]:
  values = [float(v) for v in values if v != '' and not math.isnan(float(v))]
  if not values:
    return float('nan'), None
  return float(np.mean(values)), (float(np.std(values)) if len(values) > 1 else None)


def markdown(table_rows: Sequence[dict[str, Any]]) -> str:
  """Per (stage, variant): seeds, MSE mean ± std, ratio to the stage's control, FG-ARI, paper;
  then the paired t-test of RMR against end-to-end (natural MSE, per seed)."""
  groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
  for r in table_rows:
    groups.setdefault((r['stage'], r['variant']), []).append(r)
  lines = ['| stage | variant | seeds | MSE (mean ± std) | ÷ control | FG-ARI | latent span '
           '| paper MSE |', '|---|---|---|---|---|---|---|---|']
  for (stage, variant), group in groups.items():
    mean, std = _stats([r['mse'] for r in group])
    control = groups.get((stage, CONTROL[stage.split('_')[0]]))
    ratio = '—'
    if control is not None and variant != CONTROL[stage.split('_')[0]]:
      ratio = f'{mean / _stats([r["mse"] for r in control])[0]:.3f}'
    ari_mean, ari_std = _stats([r['fg_ari'] for r in group])
    ari = '—' if math.isnan(ari_mean) else _fmt(ari_mean, ari_std, '.3f')
    span_mean, span_std = _stats([r.get('latent_span', '') for r in group])
    span = '—' if math.isnan(span_mean) else _fmt(span_mean, span_std, '.3f')
    paper = PAPER.get((stage, variant))
    lines.append(f'| {stage} | {variant} | {len(group)} | {_fmt(mean, std)} | {ratio} | {ari} '
                 f'| {span} | {_fmt(*paper) if paper else "—"} |')
  rmr = groups.get(('natural_1step', 'rmr'))
  e2e = groups.get(('natural_1step', 'end_to_end'))
  text = '\n'.join(lines) + '\n'
  text += ('\nControls: abstract rows against constant velocity, natural rows against copying '
           'the last frame, on the same validation windows; a ratio below 1 beats the control. '
           'Latent span: the share of the ball slots\' P input outside the abstract f\'s span '
           '(below).\n')
  if rmr and e2e and len(rmr) == len(e2e):
    test = statistics.paired_ttest([r['mse'] for r in sorted(rmr, key=lambda r: r['seed'])],
                                   [r['mse'] for r in sorted(e2e, key=lambda r: r['seed'])])
    better = 'lower (better)' if test['mean_diff'] < 0 else 'higher (worse)'
    text += (f'\nRMR vs end-to-end, natural 1-step MSE paired over {int(test["n"])} seeds: RMR '
             f'is {better} by {abs(test["mean_diff"]):.3e} on average (t = {test["t"]:.2f}, '
             f'two-sided p = {test["p_value"]:.3g}).\n')
  return text + paired_markdown(groups)


def span_markdown(span: dict[str, dict[str, Sequence[float]]], latent_size: int,
                  features: int) -> str:
  """A table of where each natural variant's P inputs lie against the abstract f's span
  (``balls_eval.latent_span``; per variant, mean ± std over seeds)."""
  lines = [f'\nShare of P\'s input (slot latent minus the abstract f\'s bias) outside the '
           f'{features}-dim span of the abstract f, where the frozen P was trained (0: inside; '
           f'a random direction: {1 - features / latent_size:.3f}):\n',
           '| variant | ball slots | background slot |', '|---|---|---|']
  for variant, parts in span.items():
    cells = [_fmt(*_stats(parts[k]), '.3f') for k in ('ball_slots', 'background_slot')]
    lines.append(f'| {variant} | {cells[0]} | {cells[1]} |')
  return '\n'.join(lines) + '\n'


def write_tables(report_dir: str, table_rows: Sequence[dict[str, Any]]) -> dict[str, str]:
  """Writes balls.csv and balls.md; returns their paths."""
  paths = {name: storage.join(report_dir, name) for name in ('balls.csv', 'balls.md')}
  workdir_lib.atomic_write_text(paths['balls.csv'], csv_text(COLUMNS, table_rows))
  workdir_lib.atomic_write_text(paths['balls.md'], markdown(table_rows))
  return paths


def plot_abstract_rollout(path: str, predicted: np.ndarray, true: np.ndarray, history: int,
                          rollout_mse: Sequence[float]) -> str:
  """Predicted vs true trajectories of one rollout, and the error curve over all rollouts.

  Args:
    path: PNG to write.
    predicted: [R, N, 2] the rollout's predictions.
    true: [history + R, N, 2] the true states (input window, then the future).
    history: input states.
    rollout_mse: [R] validation MSE at each rollout step.
  """
  storage.makedirs(storage.dirname(path))
  fig = Figure(figsize=(9.0, 4.2))
  ax = fig.add_subplot(1, 2, 1)
  colours = [f'C{i % 10}' for i in range(true.shape[1])]
  for i, c in enumerate(colours):
    ax.plot(true[:history, i, 0], true[:history, i, 1], 'o-', color=c, ms=3, alpha=0.5)
    ax.plot(true[history - 1:, i, 0], true[history - 1:, i, 1], '-', color=c, lw=1)
    path_pred = np.concatenate([true[history - 1:history, i], predicted[:, i]])
    ax.plot(path_pred[:, 0], path_pred[:, 1], 'x--', color=c, ms=4, lw=1)
  ax.set(xlim=(0, 1), ylim=(0, 1), aspect='equal',
         title=f'{len(predicted)}-step rollout: true (—) vs predicted (x--)')
  ax = fig.add_subplot(1, 2, 2)
  ax.plot(np.arange(1, len(rollout_mse) + 1), rollout_mse, 'o-')
  ax.set(yscale='log', xlabel='rollout step', ylabel='validation MSE',
         title='autoregressive rollout error')
  save_figure(fig, path)
  return path


def plot_natural_rollout(path: str, example: dict[str, np.ndarray], history: int,
                         variants: Sequence[str]) -> str:
  """A strip like the paper's Figure 3 for each variant (seed 0).

  Rows per variant: the input frames (green border) then the predicted frames, fed back
  autoregressively; below them the ground truth; then the slot masks of the first prediction.

  Args:
    path: PNG to write.
    example: ``true`` [history + R, H, W, 3] and per variant ``<v>_frames`` [R, H, W, 3],
      ``<v>_masks`` [R, K, H, W].
    history: input frames.
    variants: which variants to show.
  """
  storage.makedirs(storage.dirname(path))
  true = example['true']
  steps = len(true) - history
  num_slots = example[f'{variants[0]}_masks'].shape[1]
  cols = max(history + steps, num_slots)
  fig = Figure(figsize=(1.1 * cols, 1.15 * 3 * len(variants)))
  for v_index, variant in enumerate(variants):
    base = 3 * v_index * cols
    preds = example[f'{variant}_frames']
    masks = example[f'{variant}_masks'][0]  # [K, H, W]
    for t in range(history + steps):
      ax = fig.add_subplot(3 * len(variants), cols, base + t + 1)
      ax.imshow(true[t] if t < history else preds[t - history])
      if t < history:
        for spine in ax.spines.values():
          spine.set(color='limegreen', linewidth=3)
      ax.set(xticks=[], yticks=[])
      if t == 0:
        ax.set_ylabel(f'{variant}', fontsize=8)
      ax = fig.add_subplot(3 * len(variants), cols, base + cols + t + 1)
      ax.imshow(true[t])
      ax.set(xticks=[], yticks=[])
      if t == 0:
        ax.set_ylabel('truth', fontsize=8)
    for k in range(num_slots):
      ax = fig.add_subplot(3 * len(variants), cols, base + 2 * cols + k + 1)
      ax.imshow(masks[k], cmap='gray', vmin=0, vmax=1)
      ax.set(xticks=[], yticks=[])
      if k == 0:
        ax.set_ylabel('masks', fontsize=8)
  save_figure(fig, path)
  return path


def plot_seed_pairs(path: str, table_rows: Sequence[dict[str, Any]]) -> str:
  """Natural 1-step MSE ÷ copy-last of every learned variant (natural and oracle), one line
  per seed across the variants (the pairing), the renders' and copy-last's levels dashed.

  Args:
    path: PNG to write.
    table_rows: the balls.csv rows (:func:`rows`).
  """
  natural = [r for r in table_rows if r['stage'] == 'natural_1step']
  copy_last = next(float(r['mse']) for r in natural if r['variant'] == 'copy_last')
  references = [r for r in natural if r['variant'].startswith('rendered_')]
  learned = [r for r in natural if r['variant'] != 'copy_last' and r not in references]
  order = ('rmr', 'rmr_random_p', 'end_to_end', 'oracle', 'oracle_random_p',
           'oracle_end_to_end')
  variants = sorted(dict.fromkeys(r['variant'] for r in learned),
                    key=lambda v: order.index(v) if v in order else len(order))
  storage.makedirs(storage.dirname(path))
  fig = Figure(figsize=(1.3 * len(variants) + 2.5, 4.0))
  ax = fig.add_subplot(1, 1, 1)
  for seed in sorted({r['seed'] for r in learned}):
    ratio = {r['variant']: float(r['mse']) / copy_last for r in learned if r['seed'] == seed}
    xs = [i for i, v in enumerate(variants) if v in ratio]
    ax.plot(xs, [ratio[variants[i]] for i in xs], 'o-', color='grey', alpha=0.5, ms=4)
  for i, v in enumerate(variants):
    mean = np.mean([float(r['mse']) for r in learned if r['variant'] == v]) / copy_last
    ax.plot([i - 0.25, i + 0.25], [mean, mean], 'k-', lw=2)
  for j, r in enumerate(references):
    ax.axhline(float(r['mse']) / copy_last, ls='--', color=f'C{j}', lw=1,
               label=r['variant'])
  ax.set_xticks(range(len(variants)))
  ax.set_xticklabels(variants, rotation=30, ha='right', fontsize=8)
  ax.set(ylabel='next-frame MSE ÷ copy-last', title='natural 1-step MSE per seed (lines: a seed)')
  if references:
    ax.legend(fontsize=7)
  save_figure(fig, path)
  return path


def pool_rows(tables: Sequence[str]) -> list[dict[str, Any]]:
  """Several runs' balls.csv texts as one table: run i's seed s becomes seed 1000 i + s (runs
  at different root seeds: each pair stays within its run)."""
  out = []
  for i, text in enumerate(tables):
    for r in csv.DictReader(io.StringIO(text)):
      out.append(dict(r, seed=1000 * i + int(r['seed'])))
  return out


def main(argv: Sequence[str]) -> None:
  """Prints the balls.md table and paired differences of the balls.csv files in ``argv[1:]``."""
  if len(argv) < 2:
    raise SystemExit('usage: python -m rmr_dist.evaluation.balls_report BALLS_CSV...')
  print(markdown(pool_rows([storage.read_text(path) for path in argv[1:]])))


if __name__ == '__main__':
  main(sys.argv)
