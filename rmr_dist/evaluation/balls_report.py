"""Bouncing-balls report: balls.csv / balls.md beside the paper's numbers, and rollout figures.

balls.csv has one row per (stage, variant, seed) with its validation MSE:

  abstract_1step      the MPNN's 1-step next-position MSE (positions normalised to the box)
  abstract_rollout10  its MSE at the last step of an autoregressive rollout (10 in the paper)
  natural_1step       per-pixel next-frame MSE (frames in [0, 1]) of each natural model

Variant 'copy_last' is the no-learning baseline that predicts the newest input state / frame.

Written atomically. Figures use matplotlib's object API on an Agg canvas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rmr_dist.evaluation.table1 import csv_text, save_figure
from rmr_dist import workdir as workdir_lib

COLUMNS = ('stage', 'variant', 'seed', 'mse')
# Paper section 3: (mean, std) of the MSE; std None where the paper gives one run.
PAPER = {('abstract_1step', 'mpnn'): (4.59e-4, None),
         ('natural_1step', 'rmr'): (7.94e-4, 0.41e-4),
         ('natural_1step', 'end_to_end'): (9.47e-4, 0.24e-4)}


def rows(abstract: dict[str, Any] | None, natural: dict[str, Any] | None,
         seed: int) -> list[dict[str, Any]]:
  """The balls.csv rows from the stages' result.json contents (either may be None)."""
  out = []
  if abstract is not None:
    steps = len(abstract['rollout_mse'])
    out.append({'stage': 'abstract_1step', 'variant': 'mpnn', 'seed': seed,
                'mse': abstract['mse_1step']})
    out.append({'stage': f'abstract_rollout{steps}', 'variant': 'mpnn', 'seed': seed,
                'mse': abstract['rollout_mse'][-1]})
    out.append({'stage': 'abstract_1step', 'variant': 'copy_last', 'seed': seed,
                'mse': abstract['copy_last_mse_1step']})
  if natural is not None:
    for variant, values in natural['mse'].items():
      out.extend({'stage': 'natural_1step', 'variant': variant, 'seed': s, 'mse': v}
                 for s, v in enumerate(values))
    out.append({'stage': 'natural_1step', 'variant': 'copy_last', 'seed': seed,
                'mse': natural['copy_last_mse']})
  return out


def _fmt(mean: float, std: float | None) -> str:
  return f'{mean:.3e}' if std is None else f'{mean:.3e} ± {std:.1e}'


def markdown(table_rows: Sequence[dict[str, Any]]) -> str:
  """Mean ± std over seeds per (stage, variant), next to the paper's value."""
  groups: dict[tuple[str, str], list[float]] = {}
  for r in table_rows:
    groups.setdefault((r['stage'], r['variant']), []).append(float(r['mse']))
  lines = ['| stage | variant | seeds | MSE (mean ± std) | paper |', '|---|---|---|---|---|']
  for (stage, variant), values in groups.items():
    std = float(np.std(values)) if len(values) > 1 else None
    paper = PAPER.get((stage, variant))
    lines.append(f'| {stage} | {variant} | {len(values)} | '
                 f'{_fmt(float(np.mean(values)), std)} | '
                 f'{_fmt(*paper) if paper else "—"} |')
  return '\n'.join(lines) + '\n'


def write_tables(report_dir: str, table_rows: Sequence[dict[str, Any]]) -> dict[str, str]:
  """Writes balls.csv and balls.md; returns their paths."""
  paths = {name: os.path.join(report_dir, name) for name in ('balls.csv', 'balls.md')}
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
  os.makedirs(os.path.dirname(path), exist_ok=True)
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
  os.makedirs(os.path.dirname(path), exist_ok=True)
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
