"""Paper Table 2 (abstract models' slot accuracy and bit F1) as CSV, Markdown and JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import report_files
from rmr_dist.evaluation import statistics

TABLE2_COLUMNS = ('game', 'model', 'slot_acc', 'bit_f1', 'n_eval_slots', 'n_eval_transitions')
TABLE2_MODELS = ('copy', 'mlp', 'deepsets', 'mpnn')
_MODEL_TITLES = {'copy': 'Copy baseline', 'mlp': 'MLP', 'deepsets': 'Deep Sets', 'mpnn': 'MPNN'}


def _fmt_acc(x: float) -> str:
  return '—' if x is None or math.isnan(x) else f'{100 * x:.2f}%'


def _fmt_f1(x: float) -> str:
  return '—' if x is None or math.isnan(x) else f'{x:.3f}'


def table2_markdown(rows: Sequence[dict[str, Any]]) -> str:
  """Table 2 laid out like the paper: a row per game, slot acc. and bit F1 per model."""
  models = [m for m in TABLE2_MODELS if any(r['model'] == m for r in rows)]
  games = sorted({r['game'] for r in rows})
  by = {(r['game'], r['model']): r for r in rows}
  header = '| Game | ' + ' | '.join(f'{_MODEL_TITLES[m]} slot acc. | {_MODEL_TITLES[m]} bit F1'
                                     for m in models) + ' | eval slots | eval transitions |'
  lines = [header, '|' + ' --- |' * (2 * len(models) + 3)]
  for g in games:
    cells = []
    for m in models:
      r = by.get((g, m))
      cells += [_fmt_acc(r['slot_acc']) if r else '', _fmt_f1(r['bit_f1']) if r else '']
    any_row = next(by[(g, m)] for m in models if (g, m) in by)
    lines.append(f'| {g} | ' + ' | '.join(cells) +
                 f' | {any_row["n_eval_slots"]} | {any_row["n_eval_transitions"]} |')
  return '\n'.join(lines) + '\n'


# (better, worse-or-control) pairs compared episode by episode: the paper's claim (MPNN over
# Deep Sets over the MLP) and each learned model against copying.
PAIRED_COMPARISONS = (('mpnn', 'deepsets'), ('mpnn', 'mlp'), ('deepsets', 'mlp'),
                      ('mlp', 'copy'), ('deepsets', 'copy'), ('mpnn', 'copy'))


def paired_comparisons(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Per game, each PAIRED_COMPARISONS pair compared on the same validation episodes.

  Every model is scored on the same episodes (`atari_abstract_eval.evaluate`'s
  episode_slot_acc), so the per-episode slot accuracies pair up: a two-sided paired t-test over
  episodes (`statistics.paired_ttest`) of ``a - b``. Rows lacking episode_slot_acc (results
  written before it existed) are skipped.

  Returns:
    [{game, a, b, mean_diff, t, p_value, n_episodes, a_better_episodes}] in (game, pair) order.
  """
  by = {(r['game'], r['model']): r for r in rows if r.get('episode_slot_acc')}
  out = []
  for game in sorted({g for g, _ in by}):
    for a, b in PAIRED_COMPARISONS:
      if (game, a) not in by or (game, b) not in by:
        continue
      x, y = by[(game, a)]['episode_slot_acc'], by[(game, b)]['episode_slot_acc']
      if len(x) != len(y):
        raise ValueError(f'{game}: {a} and {b} were scored on different episodes '
                         f'({len(x)} vs {len(y)})')
      test = statistics.paired_ttest(x, y)
      out.append({'game': game, 'a': a, 'b': b, 'mean_diff': test['mean_diff'],
                  't': test['t'], 'p_value': test['p_value'], 'n_episodes': len(x),
                  'a_better_episodes': int(sum(u > v for u, v in zip(x, y)))})
  return out


def paired_markdown(comparisons: Sequence[dict[str, Any]], same_batches: bool) -> str:
  """The paired comparisons as a Markdown section (appended to table2.md)."""
  if not comparisons:
    return ''
  batches = ('every learned model trained on the same batch sequence (seeded episode-store '
             'batches)' if same_batches else
             'each model trained on its own Reverb samples (not seeded)')
  lines = ['', '**Paired over validation episodes** (per-episode slot accuracy, a - b, '
           f'two-sided paired t-test; {batches}):', '',
           '| game | a | b | mean diff | t | p | a better on |', '| --- |' + ' --- |' * 6]
  for c in comparisons:
    lines.append(f'| {c["game"]} | {_MODEL_TITLES[c["a"]]} | {_MODEL_TITLES[c["b"]]} | '
                 f'{100 * c["mean_diff"]:+.2f} pts | {c["t"]:.2f} | {c["p_value"]:.3g} | '
                 f'{c["a_better_episodes"]} of {c["n_episodes"]} episodes |')
  return '\n'.join(lines) + '\n'


def curve_points(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Table 2's learning curve: [{game, model, step, slot_acc, bit_f1}] from each row's
  `curve` (abstract.curve_steps) and its final scores at `train_steps`, in (game, model, step)
  order; models without curve points (and copy) are left out."""
  out = []
  for r in rows:
    if not r.get('curve'):
      continue
    points = {int(k): v for k, v in r['curve'].items()}
    points[int(r['train_steps'])] = {'slot_acc': r['slot_acc'], 'bit_f1': r['bit_f1']}
    out += [{'game': r['game'], 'model': r['model'], 'step': k, **points[k]}
            for k in sorted(points)]
  return sorted(out, key=lambda p: (p['game'], TABLE2_MODELS.index(p['model']), p['step']))


def curve_markdown(points: Sequence[dict[str, Any]]) -> str:
  """The curve as Markdown: a row per (game, step), slot acc. and bit F1 per model."""
  models = [m for m in TABLE2_MODELS if any(p['model'] == m for p in points)]
  by = {(p['game'], p['step'], p['model']): p for p in points}
  keys = sorted({(p['game'], p['step']) for p in points})
  lines = ['| Game | updates | ' + ' | '.join(
      f'{_MODEL_TITLES[m]} slot acc. | {_MODEL_TITLES[m]} bit F1' for m in models) + ' |',
           '|' + ' --- |' * (2 + 2 * len(models))]
  for game, step in keys:
    cells = []
    for m in models:
      p = by.get((game, step, m))
      cells += [_fmt_acc(p['slot_acc']) if p else '', _fmt_f1(p['bit_f1']) if p else '']
    lines.append(f'| {game} | {step} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def write_table2(report_dir: str, rows: Sequence[dict[str, Any]],
                 extra: dict[str, Any] | None = None, *,
                 same_batches: bool = False) -> dict[str, str]:
  """Writes table2.csv, table2.md (with the paired comparisons when the rows have per-episode
  scores), table2_curve.md (when rows have curve points) and results.json (merged: 'table2',
  'table2_paired', 'table2_curve') atomically; returns their paths. `same_batches` says
  whether the models trained on one batch sequence."""
  storage.makedirs(report_dir)
  rows = sorted(rows, key=lambda r: (r['game'], TABLE2_MODELS.index(r['model'])))
  paths = {name: storage.join(report_dir, name)
           for name in ('table2.csv', 'table2.md', 'results.json')}
  workdir_lib.atomic_write_text(paths['table2.csv'], report_files.csv_text(TABLE2_COLUMNS, rows))
  comparisons = paired_comparisons(rows)
  workdir_lib.atomic_write_text(paths['table2.md'], table2_markdown(rows) +
                                paired_markdown(comparisons, same_batches))
  results = workdir_lib.read_json(paths['results.json']) or {}
  results['table2'] = list(rows)
  results['table2_paired'] = comparisons
  results['table2_same_batches'] = same_batches
  curve = curve_points(rows)
  results['table2_curve'] = curve
  if curve:
    paths['table2_curve.md'] = storage.join(report_dir, 'table2_curve.md')
    workdir_lib.atomic_write_text(paths['table2_curve.md'], curve_markdown(curve))
  report_files.merge_results(results, extra)
  workdir_lib.atomic_write_json(paths['results.json'], results)
  return paths
