"""Report Table 1 (probe F1 of RMR vs C-SWM encoders) and the data-efficiency study.

Table 1: for every game, the linear-probe bit F1 of the frozen natural encoder per seed, for
C-SWM (processor trained from scratch) and RMR (pre-trained, frozen processor), paired over
seeds (identical batches per seed) and compared with `statistics.paired_ttest`. RMR counts as
better when ``p < 0.05`` and its mean is higher. Written atomically:
  table1.csv, table1.md, table1_probe_f1.png, and ``results.json['table1']`` (merged).
Data efficiency: probe F1 against the fraction of natural transitions used for training:
  data_efficiency.csv (fraction, game, variant, seed, f1) and data_efficiency.png.
Learning curve: probe F1 against natural updates (step 0: the untrained encoders):
  learning_curve.csv (game, step, variant, seed, f1) and learning_curve.png.
The same tables for another probe metric (the AtariARI byte probes' mean weighted F1) are
written under other stems (`METRICS`: table1_byte.*, data_efficiency_byte.*,
learning_curve_byte.*) by the same functions, with their own controls.

Controls, in every table and figure: the untrained encoders (the natural learners'
initialisations, zero updates, probed by the same code) and the majority-class-per-bit
predictor. A variant "beats the untrained control" when its seed mean exceeds the untrained
seeds' mean by more than their std (ddof=1).

Figures use matplotlib's object API on an Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import statistics

TABLE1_COLUMNS = ('game', 'cswm_f1_mean', 'cswm_f1_std', 'rmr_f1_mean', 'rmr_f1_std',
                  'p_value', 'n_seeds', 'rmr_better', 'untrained_f1_mean', 'untrained_f1_std',
                  'majority_f1')
DATA_EFFICIENCY_COLUMNS = ('fraction', 'game', 'variant', 'seed', 'f1')
LEARNING_CURVE_COLUMNS = ('game', 'step', 'variant', 'seed', 'f1')
VARIANTS = ('cswm', 'rmr')
SIGNIFICANCE = 0.05
_TITLES = {'cswm': 'C-SWM', 'rmr': 'RMR'}
_COLOURS = {'cswm': '#4c72b0', 'rmr': '#dd8452'}


@dataclasses.dataclass(frozen=True)
class Metric:
  """A probe metric the tables can show.

  Attributes:
    suffix: appended to every file stem ('' for bit F1, '_byte' for byte F1) and to
      results.json's 'table1' key.
    label: axis and column label.
    majority: how the majority control predicts (Table 1's footnote).
  """
  suffix: str
  label: str
  majority: str


BIT = Metric('', 'probe bit F1', 'predicts every bit as its more frequent value in the probe '
             'training RAM')
BYTE = Metric('_byte', 'probe byte F1', 'predicts every AtariARI variable as its most frequent '
              'value in the probe training RAM; byte F1 is the mean over the variables with '
              'label entropy >= 0.6 nats of each 256-way probe\'s weighted F1')
METRICS = {'bit': BIT, 'byte': BYTE}


def beats_control(scores: Sequence[float], untrained: Sequence[float]) -> bool:
  """Seed mean of ``scores`` above the untrained seeds' mean by more than their std (ddof=1)."""
  if len(untrained) < 2 or not len(scores):
    return False
  return bool(np.mean(scores) - np.mean(untrained) > np.std(untrained, ddof=1))


def table1_rows(per_game: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One Table 1 row per game (sorted by name).

  Args:
    per_game: {game: {'cswm': [f1 per seed], 'rmr': [f1 per seed], and optionally the controls
      'untrained': [f1 per seed] and 'majority': f1}}, seeds paired by index.

  Returns:
    Rows with the `TABLE1_COLUMNS` keys (NaN controls when absent) plus ``t``, ``mean_diff``,
    ``rmr_beats_untrained`` and ``cswm_beats_untrained``.
  """
  rows = []
  for game in sorted(per_game):
    scores = {v: [float(x) for x in per_game[game][v]] for v in VARIANTS}
    summary = statistics.summarise(scores)
    test = statistics.paired_ttest(scores['rmr'], scores['cswm'])
    p = test['p_value']
    better = bool(not math.isnan(p) and p < SIGNIFICANCE
                  and summary['rmr']['mean'] > summary['cswm']['mean'])
    rows.append({
        'game': game,
        'cswm_f1_mean': summary['cswm']['mean'], 'cswm_f1_std': summary['cswm']['std'],
        'rmr_f1_mean': summary['rmr']['mean'], 'rmr_f1_std': summary['rmr']['std'],
        'p_value': p, 'n_seeds': len(scores['rmr']), 'rmr_better': better,
        't': test['t'], 'mean_diff': test['mean_diff'],
        **_control_columns(per_game[game], scores),
    })
  return rows


def _control_columns(entry: Mapping[str, Any], scores: Mapping[str, Sequence[float]]
                     ) -> dict[str, Any]:
  untrained = [float(x) for x in entry.get('untrained', [])]
  nan = float('nan')
  return {
      'untrained_f1_mean': float(np.mean(untrained)) if untrained else nan,
      'untrained_f1_std': float(np.std(untrained, ddof=1)) if len(untrained) > 1 else nan,
      'majority_f1': float(entry['majority']) if entry.get('majority') is not None else nan,
      **{f'{v}_beats_untrained': beats_control(scores[v], untrained) for v in VARIANTS},
  }


def _fmt(x: float, digits: int = 3) -> str:
  return '—' if x is None or math.isnan(x) else f'{x:.{digits}f}'


def _fmt_p(p: float) -> str:
  if math.isnan(p):
    return '— (indistinguishable)'
  return f'{p:.2e}' if p < 1e-3 else f'{p:.3f}'


def table1_markdown(rows: Sequence[dict[str, Any]], metric: Metric = BIT) -> str:
  """Table 1 as Markdown; games where RMR is significantly better are bold with a `*`."""
  label = 'probe F1' if metric is BIT else metric.label
  lines = [f'| Game | C-SWM {label} | RMR {label} | p (paired t) | untrained f~ | majority '
           '| seeds |', '| --- | --- | --- | --- | --- | --- | --- |']
  for r in rows:
    rmr = f'{_fmt(r["rmr_f1_mean"])} ± {_fmt(r["rmr_f1_std"])}'
    cswm = f'{_fmt(r["cswm_f1_mean"])} ± {_fmt(r["cswm_f1_std"])}'
    rmr += ' †' if r.get('rmr_beats_untrained') else ''
    cswm += ' †' if r.get('cswm_beats_untrained') else ''
    if r['rmr_better']:
      rmr = f'**{rmr}** *'
    lines.append(f'| {r["game"]} | {cswm} | {rmr} | {_fmt_p(r["p_value"])} | '
                 f'{_fmt(r["untrained_f1_mean"])} ± {_fmt(r["untrained_f1_std"])} | '
                 f'{_fmt(r["majority_f1"])} | {r["n_seeds"]} |')
  n_better = sum(r['rmr_better'] for r in rows)
  lines += ['', f'`*` RMR significantly better (two-sided paired t-test over seeds, '
                f'p < {SIGNIFICANCE}, higher mean): {n_better} of {len(rows)} games. '
                'Mean ± std (ddof=1) over seeds. Controls: "untrained f~" probes the same '
                f'initialisations after zero updates with the same code; "majority" '
                f'{metric.majority}. `†` the seed mean beats the untrained control (above its '
                'mean by more than its std).']
  return '\n'.join(lines) + '\n'


def _json_safe(x: Any) -> Any:
  """NaN/inf floats -> None (strict JSON), recursively."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  return x


def save_figure(fig: Figure, path: str) -> None:
  """Renders ``fig`` to PNG atomically (`rmr_dist.storage.write_with`)."""
  FigureCanvasAgg(fig)
  storage.write_with(path, lambda f: fig.savefig(f, format='png', dpi=120, bbox_inches='tight'))


def csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def _table1_figure(rows: Sequence[dict[str, Any]],
                   per_game: Mapping[str, Mapping[str, Sequence[float]]],
                   metric: Metric) -> Figure:
  """Bars of mean probe F1 (± std) per game and variant, with each seed as a dot."""
  fig = Figure(figsize=(max(4.0, 0.9 * len(rows) + 1.5), 3.6))
  ax = fig.add_subplot(1, 1, 1)
  width = 0.38
  x = np.arange(len(rows))  # [G]
  for k, v in enumerate(VARIANTS):
    offset = (k - 0.5) * width
    means = [r[f'{v}_f1_mean'] for r in rows]
    stds = [r[f'{v}_f1_std'] for r in rows]
    ax.bar(x + offset, means, width, yerr=stds, capsize=2, color=_COLOURS[v], alpha=0.6,
           label=_TITLES[v])
    for i, r in enumerate(rows):
      seeds = np.asarray(per_game[r['game']][v], np.float64)
      jitter = np.linspace(-0.25, 0.25, len(seeds)) * width if len(seeds) > 1 else [0.0]
      ax.scatter(x[i] + offset + np.asarray(jitter), seeds, s=9, color='k', zorder=3)
  for i, r in enumerate(rows):
    for key, style in (('untrained_f1_mean', '--'), ('majority_f1', ':')):
      if math.isfinite(r.get(key, float('nan'))):
        ax.hlines(r[key], x[i] - 2 * width, x[i] + 2 * width, colors='k', linestyles=style,
                  label=None if i else ('untrained f~' if style == '--' else 'majority'))
  for i, r in enumerate(rows):
    if r['rmr_better']:
      top = max(max(per_game[r['game']]['rmr'], default=0.0), r['rmr_f1_mean'])
      ax.text(x[i], top + 0.02, '*', ha='center', fontsize=12)
  tops = [max([r['rmr_f1_mean'], r['cswm_f1_mean'], *per_game[r['game']]['rmr'],
               *per_game[r['game']]['cswm']]) for r in rows]
  finite = [t for t in tops if math.isfinite(t)]
  ax.set_ylim(0.0, max(finite, default=1.0) + 0.1)
  ax.set_xticks(x)
  ax.set_xticklabels([r['game'] for r in rows], rotation=45, ha='right')
  ax.set_ylabel(f'{metric.label} (high-entropy slots)' if metric is BIT else metric.label)
  ax.set_title(f'Linear RAM probes on frozen encoders (* RMR better, p < {SIGNIFICANCE})')
  ax.legend(loc='lower right', fontsize=8)
  return fig


def write_table1(report_dir: str, per_game: Mapping[str, Mapping[str, Sequence[float]]],
                 extra: Optional[dict[str, Any]] = None, metric: Metric = BIT
                 ) -> dict[str, str]:
  """Writes Table 1 (csv, md, png) and merges it into results.json, all atomically.

  Args:
    report_dir: output directory (created if needed).
    per_game: {game: {'cswm': [f1 per seed], 'rmr': [f1 per seed]}}, seeds paired by index.
    extra: more top-level keys merged into results.json.
    metric: what the scores are; its suffix names the files (table1_byte.csv, ...).

  Returns:
    {file name: path} for table1{suffix}.csv, table1{suffix}.md, table1{suffix}_probe_f1.png
    and results.json (the table under 'table1{suffix}').
  """
  storage.makedirs(report_dir)
  rows = table1_rows(per_game)
  stem = f'table1{metric.suffix}'
  paths = {name: storage.join(report_dir, name) for name in
           (f'{stem}.csv', f'{stem}.md', f'{stem}_probe_f1.png', 'results.json')}
  workdir_lib.atomic_write_text(paths[f'{stem}.csv'], csv_text(TABLE1_COLUMNS, rows))
  workdir_lib.atomic_write_text(paths[f'{stem}.md'], table1_markdown(rows, metric))
  save_figure(_table1_figure(rows, per_game, metric), paths[f'{stem}_probe_f1.png'])
  results = workdir_lib.read_json(paths['results.json']) or {}
  results[stem] = {
      r['game']: {**r, 'per_seed': {v: [float(x) for x in per_game[r['game']][v]]
                                    for v in VARIANTS + ('untrained',)
                                    if v in per_game[r['game']]}}
      for r in rows}
  results.update(extra or {})
  workdir_lib.atomic_write_json(paths['results.json'], _json_safe(results))
  return paths


def data_efficiency_rows(
    results: Mapping[Any, Mapping[str, Mapping[str, Sequence[float]]]]) -> list[dict[str, Any]]:
  """Long-format rows (fraction, game, variant, seed, f1), sorted; seed = position in list."""
  rows = []
  for fraction in sorted(results, key=float):
    for game in sorted(results[fraction]):
      for v in VARIANTS:
        for seed, f1 in enumerate(results[fraction][game].get(v, [])):
          rows.append({'fraction': float(fraction), 'game': game, 'variant': v, 'seed': seed,
                       'f1': float(f1)})
  return rows


def _plot_seed_curves(ax, rows: Sequence[dict[str, Any]], game: str, x: str) -> None:
  """Per variant, mean probe F1 ± std over seeds against ``rows``' key ``x`` for ``game``."""
  for v in VARIANTS:
    xs = sorted({r[x] for r in rows if r['game'] == game and r['variant'] == v})
    if not xs:
      continue
    scores = [[r['f1'] for r in rows if r['game'] == game and r['variant'] == v and r[x] == at]
              for at in xs]
    mean = np.array([np.mean(s) for s in scores])
    std = np.array([np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in scores])
    ax.plot(xs, mean, marker='o', color=_COLOURS[v], label=_TITLES[v])
    ax.fill_between(xs, mean - std, mean + std, color=_COLOURS[v], alpha=0.2)


def _data_efficiency_figure(rows: Sequence[dict[str, Any]],
                            controls: Mapping[str, Mapping[str, float]],
                            metric: Metric) -> Figure:
  """One panel per game: mean probe F1 ± std over seeds against the data fraction, with the
  untrained encoders' mean (dashed) and the majority predictor (dotted) as reference lines."""
  games = sorted({r['game'] for r in rows})
  cols = min(4, max(1, len(games)))
  nrows = -(-len(games) // cols) if games else 1
  fig = Figure(figsize=(3.2 * cols, 2.6 * nrows))
  for g, game in enumerate(games):
    ax = fig.add_subplot(nrows, cols, g + 1)
    _plot_seed_curves(ax, rows, game, 'fraction')
    _reference_lines(ax, controls.get(game, {}))
    ax.set_xscale('log')
    ticks = sorted({r['fraction'] for r in rows if r['game'] == game})
    ax.set_xticks(ticks)
    ax.set_xticklabels([f'{f:g}' for f in ticks], fontsize=7)
    ax.minorticks_off()
    ax.set_title(game, fontsize=9)
    ax.set_xlabel('fraction of natural transitions', fontsize=8)
    ax.set_ylabel(metric.label, fontsize=8)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def _write_csv_and_figure(report_dir: str, stem: str, columns: Sequence[str],
                          rows: Sequence[dict[str, Any]], fig: Figure) -> dict[str, str]:
  """Writes ``<stem>.csv`` and ``<stem>.png`` atomically; returns {file name: path}."""
  storage.makedirs(report_dir)
  paths = {name: storage.join(report_dir, name) for name in (f'{stem}.csv', f'{stem}.png')}
  workdir_lib.atomic_write_text(paths[f'{stem}.csv'], csv_text(columns, rows))
  save_figure(fig, paths[f'{stem}.png'])
  return paths


def _reference_lines(ax, controls: Mapping[str, float]) -> None:
  """Untrained-encoder mean (dashed, ± std band) and majority F1 (dotted) across the panel."""
  untrained = controls.get('untrained_f1_mean', float('nan'))
  if math.isfinite(untrained):
    ax.axhline(untrained, color='k', linestyle='--', linewidth=1, label='untrained f~')
    std = controls.get('untrained_f1_std', float('nan'))
    if math.isfinite(std):
      ax.axhspan(untrained - std, untrained + std, color='k', alpha=0.08)
  majority = controls.get('majority_f1', float('nan'))
  if math.isfinite(majority):
    ax.axhline(majority, color='grey', linestyle=':', linewidth=1, label='majority')


def write_data_efficiency(
    report_dir: str,
    results: Mapping[Any, Mapping[str, Mapping[str, Sequence[float]]]],
    controls: Optional[Mapping[str, Mapping[str, float]]] = None,
    metric: Metric = BIT) -> dict[str, str]:
  """Writes data_efficiency{metric.suffix}.{csv,png} atomically.

  Args:
    report_dir: output directory (created if needed).
    results: {fraction: {game: {'cswm': [f1 per seed], 'rmr': [f1 per seed]}}}; fraction
      keys may be floats or strings of floats (as read back from JSON).
    controls: {game: {'untrained_f1_mean', 'untrained_f1_std', 'majority_f1'}} reference lines.
    metric: what the scores are (file stem suffix, axis label).

  Returns:
    {file name: path} for the csv and the png.
  """
  rows = data_efficiency_rows(results)
  return _write_csv_and_figure(report_dir, f'data_efficiency{metric.suffix}',
                               DATA_EFFICIENCY_COLUMNS, rows,
                               _data_efficiency_figure(rows, controls or {}, metric))


def learning_curve_rows(curve: Mapping[str, Mapping[Any, Mapping[str, Sequence[float]]]]
                        ) -> list[dict[str, Any]]:
  """Long-format rows (game, step, variant, seed, f1), sorted; variant 'untrained' at step 0."""
  rows = []
  for game in sorted(curve):
    for step in sorted(curve[game], key=int):
      for v in sorted(curve[game][step]):
        for seed, f1 in enumerate(curve[game][step][v]):
          rows.append({'game': game, 'step': int(step), 'variant': v, 'seed': seed,
                       'f1': float(f1)})
  return rows


def write_learning_curve(report_dir: str,
                         curve: Mapping[str, Mapping[Any, Mapping[str, Sequence[float]]]],
                         controls: Optional[Mapping[str, Mapping[str, float]]] = None,
                         metric: Metric = BIT) -> dict[str, str]:
  """Writes learning_curve{metric.suffix}.{csv,png} atomically.

  Args:
    report_dir: output directory.
    curve: {game: {step: {variant: [f1 per seed]}}}; every variant starts from the untrained
      encoders, so step 0 (if present) is their probe F1 for each variant.
    controls: reference lines per game, as for `write_data_efficiency`.
    metric: what the scores are (file stem suffix, axis label).

  Returns:
    {file name: path}.
  """
  rows = learning_curve_rows(curve)
  games = sorted(curve)
  fig = Figure(figsize=(3.6 * max(1, len(games)), 2.8))
  for g, game in enumerate(games):
    ax = fig.add_subplot(1, max(1, len(games)), g + 1)
    _plot_seed_curves(ax, rows, game, 'step')
    _reference_lines(ax, (controls or {}).get(game, {}))
    ax.set_title(game, fontsize=9)
    ax.set_xlabel('natural updates', fontsize=8)
    ax.set_ylabel(metric.label, fontsize=8)
    ax.legend(fontsize=7)
  fig.tight_layout()
  return _write_csv_and_figure(report_dir, f'learning_curve{metric.suffix}',
                               LEARNING_CURVE_COLUMNS, rows, fig)
