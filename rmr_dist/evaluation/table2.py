"""Paper Table 2 (abstract models' slot accuracy and bit F1) as CSV, Markdown and JSON."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib

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


def write_table2(report_dir: str, rows: Sequence[dict[str, Any]],
                 extra: dict[str, Any] | None = None) -> dict[str, str]:
  """Writes table2.csv, table2.md and results.json (merged) atomically; returns their paths."""
  storage.makedirs(report_dir)
  rows = sorted(rows, key=lambda r: (r['game'], TABLE2_MODELS.index(r['model'])))
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=TABLE2_COLUMNS, extrasaction='ignore',
                          lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  paths = {name: storage.join(report_dir, name)
           for name in ('table2.csv', 'table2.md', 'results.json')}
  workdir_lib.atomic_write_text(paths['table2.csv'], buf.getvalue())
  workdir_lib.atomic_write_text(paths['table2.md'], table2_markdown(rows))
  results = workdir_lib.read_json(paths['results.json']) or {}
  results['table2'] = list(rows)
  results.update(extra or {})
  workdir_lib.atomic_write_json(paths['results.json'], results)
  return paths
