"""Bouncing-balls report: balls.csv / balls.md beside the controls and the paper's numbers.

balls.csv has one row per (stage, variant, seed):

  abstract_1step       1-step next-position MSE (positions normalised to the box)
  abstract_rollout<k>  MSE at step k of an autoregressive rollout, k = 1 .. R
  natural_1step        per-pixel next-frame MSE (frames in [0, 1]) of each natural model, with
                       the FG-ARI of its slot masks (learned variants only)

Controls, scored by the same code on the same windows: 'copy_last' predicts the newest input
state / frame; 'const_velocity' extrapolates the last velocity (abstract only). balls.md puts
each learned model beside its control (the ratio must be below 1 for the model to count), the
natural variants' FG-ARI, a paired t-test of RMR against end-to-end over seeds, and the paper's
numbers.

Written atomically. Figures use matplotlib's object API on an Agg canvas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import statistics
from rmr_dist.evaluation.table1 import csv_text, save_figure

COLUMNS = ('stage', 'variant', 'seed', 'mse', 'fg_ari')
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
    for variant, values in natural['mse'].items():
      for s, v in enumerate(values):
        add('natural_1step', variant, s, v, fg_ari[variant][s] if variant in fg_ari else None)
    add('natural_1step', 'copy_last', seed, natural['copy_last_mse'])
  return out


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
  lines = ['| stage | variant | seeds | MSE (mean ± std) | ÷ control | FG-ARI | paper MSE |',
           '|---|---|---|---|---|---|---|']
  for (stage, variant), group in groups.items():
    mean, std = _stats([r['mse'] for r in group])
    control = groups.get((stage, CONTROL[stage.split('_')[0]]))
    ratio = '—'
    if control is not None and variant != CONTROL[stage.split('_')[0]]:
      ratio = f'{mean / _stats([r["mse"] for r in control])[0]:.3f}'
    ari_mean, ari_std = _stats([r['fg_ari'] for r in group])
    ari = '—' if math.isnan(ari_mean) else _fmt(ari_mean, ari_std, '.3f')
    paper = PAPER.get((stage, variant))
    lines.append(f'| {stage} | {variant} | {len(group)} | {_fmt(mean, std)} | {ratio} | {ari} '
                 f'| {_fmt(*paper) if paper else "—"} |')
  rmr = groups.get(('natural_1step', 'rmr'))
  e2e = groups.get(('natural_1step', 'end_to_end'))
  text = '\n'.join(lines) + '\n'
  text += ('\nControls: abstract rows against constant velocity, natural rows against copying '
           'the last frame, on the same validation windows; a ratio below 1 beats the control.\n')
  if rmr and e2e and len(rmr) == len(e2e):
    test = statistics.paired_ttest([r['mse'] for r in sorted(rmr, key=lambda r: r['seed'])],
                                   [r['mse'] for r in sorted(e2e, key=lambda r: r['seed'])])
    better = 'lower (better)' if test['mean_diff'] < 0 else 'higher (worse)'
    text += (f'\nRMR vs end-to-end, natural 1-step MSE paired over {int(test["n"])} seeds: RMR '
             f'is {better} by {abs(test["mean_diff"]):.3e} on average (t = {test["t"]:.2f}, '
             f'two-sided p = {test["p_value"]:.3g}).\n')
  return text


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
