"""Report Table 1 (linear-probe F1 of frozen pixel encoders) and the data-efficiency study.

Table 1: for every game, the probe F1 on the validation episodes of each natural variant's
frozen encoders (`config.natural.variants`, e.g. RMR, C-SWM and RMR through a random frozen
processor), per seed, beside the controls: the majority predictor, the untrained encoders (the
natural learners' initialisations, zero updates, probed by the same code) and the supervised
ceiling (f~ trained end to end on the probes' labels, probed by the same code). Seeds are
paired (identical batches per seed), so the variants are compared by the paired differences
rmr - cswm and rmr - rmr_random_p (where both are present) with a 95% t-interval over seeds
(`statistics.paired_difference`); RMR counts as better than C-SWM when the paired t-test gives
``p < 0.05`` and its mean is higher. A variant "beats the untrained control" when its seed mean
exceeds the untrained seeds' mean by more than their std (ddof=1), the seed noise.

One table per probe metric (`METRICS`), written atomically by the same functions:
  primary, AtariARI's byte probes (F1 averaged within each AtariARI category, then across
    categories): table1.{csv,md}, table1_probe_f1.png, ``results.json['table1']``,
    data_efficiency.{csv,png}, learning_curve.{csv,png};
  secondary, the paper's bit probes (bit F1 on high-entropy RAM slots): the same stems with
    '_bit' (table1_bit.*, ``results.json['table1_bit']``, ...).
The CSV and results.json hold every seed's value. Data efficiency: probe F1 against the fraction
of natural transitions used for training (fraction, game, variant, seed, f1). Learning curve:
probe F1 against natural updates (step 0: the untrained encoders), with the untrained and
ceiling levels (and the majority) as reference lines.

Figures use matplotlib's object API on an Agg canvas (no pyplot, no global backend switch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import report_files
from rmr_dist.evaluation import statistics

DATA_EFFICIENCY_COLUMNS = ('fraction', 'game', 'variant', 'seed', 'f1')
LEARNING_CURVE_COLUMNS = ('game', 'step', 'variant', 'seed', 'f1')
# per_game keys that are controls, not variants.
CONTROLS = ('untrained', 'majority', 'ceiling')
# Paired differences reported when both variants are present: (a, b) -> a - b.
COMPARISONS = (('rmr', 'cswm'), ('rmr', 'rmr_random_p'))
SIGNIFICANCE = 0.05
CONFIDENCE = 0.95
POWER = 0.8  # The power at which `*_detectable` differences are found (paired t-test).
_ORDER = ('rmr', 'cswm', 'rmr_random_p')  # Variants first in this order, then by name.
_TITLES = {'cswm': 'C-SWM', 'rmr': 'RMR', 'rmr_random_p': 'RMR (random P)'}
_COLOURS = {'cswm': '#4c72b0', 'rmr': '#dd8452', 'rmr_random_p': '#55a868'}
_SPARE_COLOURS = ('#c44e52', '#8172b3', '#937860', '#da8bc3', '#8c8c8c')


@dataclasses.dataclass(frozen=True)
class Metric:
  """A probe metric the tables can show.

  Attributes:
    suffix: appended to every file stem ('' for the primary byte F1, '_bit' for bit F1) and to
      results.json's 'table1' key.
    label: axis and column label.
    majority: how the majority control predicts (Table 1's footnote).
  """
  suffix: str
  label: str
  majority: str


BYTE = Metric('', 'probe byte F1', 'predicts every AtariARI variable as its most frequent value '
              'in the probe training RAM. Byte F1 (AtariARI\'s protocol): a linear 256-way probe '
              'per AtariARI variable with label entropy >= 0.6 nats, its weighted F1 averaged '
              'within each AtariARI category (agent, small-object and other localisation; '
              'score/clock/lives/display; misc) and then across the categories')
BIT = Metric('_bit', 'probe bit F1', 'predicts every bit as its more frequent value in the probe '
             'training RAM. Bit F1 (the paper\'s protocol): micro F1 of linear per-bit probes on '
             'the RAM slots with entropy > 0.6 nats over the validation RAM')
METRICS = {'byte': BYTE, 'bit': BIT}  # The primary first.


def title(variant: str) -> str:
  """A variant's display name."""
  return _TITLES.get(variant, variant)


def variants_of(per_game: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
  """The variants of ``per_game`` (its non-control keys over all games), RMR, C-SWM and RMR with
  a random P first, then by name."""
  names = {k for entry in per_game.values() for k in entry if k not in CONTROLS}
  return tuple(sorted(names, key=lambda v: (_ORDER.index(v) if v in _ORDER else len(_ORDER), v)))


def comparisons(variants: Sequence[str]) -> tuple[tuple[str, str], ...]:
  """The `COMPARISONS` whose two variants are both in ``variants``."""
  return tuple((a, b) for a, b in COMPARISONS if a in variants and b in variants)


def table1_columns(variants: Sequence[str]) -> tuple[str, ...]:
  """The CSV columns of a Table 1 over ``variants`` (``*_seeds``: per-seed values, ';'-joined)."""
  cols = ['game', 'n_seeds', 'majority_f1', 'untrained_f1_mean', 'untrained_f1_std',
          'untrained_f1_seeds']
  for v in variants:
    cols += [f'{v}_f1_mean', f'{v}_f1_std', f'{v}_f1_seeds', f'{v}_beats_untrained']
  cols += ['ceiling_f1_mean', 'ceiling_f1_std', 'ceiling_f1_seeds']
  for v in variants:
    cols += [f'{v}_minus_untrained_{k}' for k in ('mean', 'ci_low', 'ci_high', 'p_value')]
  for a, b in comparisons(variants):
    cols += [f'{a}_minus_{b}_{k}'
             for k in ('mean', 'ci_low', 'ci_high', 'p_value', 'detectable')]
  if ('rmr', 'cswm') in comparisons(variants):
    cols.append('rmr_better')
  return tuple(cols)


def beats_control(scores: Sequence[float], untrained: Sequence[float]) -> bool:
  """Seed mean of ``scores`` above the untrained seeds' mean by more than their std (ddof=1)."""
  if len(untrained) < 2 or not len(scores):
    return False
  return bool(np.mean(scores) - np.mean(untrained) > np.std(untrained, ddof=1))


def _seeds(values: Sequence[float]) -> str:
  return ';'.join(f'{x:.6g}' for x in values)


def _summary(prefix: str, values: Optional[Sequence[float]]) -> dict[str, Any]:
  """``{prefix}_f1_mean``, ``_std`` (ddof=1; NaN for < 2 seeds) and ``_seeds`` of per-seed
  values (NaN and '' when absent)."""
  values = [float(x) for x in values or []]
  nan = float('nan')
  return {f'{prefix}_f1_mean': float(np.mean(values)) if values else nan,
          f'{prefix}_f1_std': float(np.std(values, ddof=1)) if len(values) > 1 else nan,
          f'{prefix}_f1_seeds': _seeds(values)}


_DIFF_KEYS = (('mean', 'mean_diff'), ('ci_low', 'ci_low'), ('ci_high', 'ci_high'),
              ('p_value', 'p_value'))


def _paired(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """`statistics.paired_difference` of per-seed scores a - b ([n] each); NaNs when the seed
  counts differ or are below 2."""
  if len(a) != len(b) or len(a) < 2:
    nan = float('nan')
    return {'mean_diff': nan, 'ci_low': nan, 'ci_high': nan, 'p_value': nan}
  return statistics.paired_difference(a, b, CONFIDENCE)


def table1_rows(per_game: Mapping[str, Mapping[str, Any]],
                variants: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
  """One Table 1 row per game (sorted by name).

  Args:
    per_game: {game: {variant: [f1 per seed], ..., and the controls 'untrained': [f1 per
      seed], 'majority': f1 and 'ceiling': [f1 per seed] where present}}, seeds paired by
      index across variants.
    variants: the variant columns, in order (default `variants_of`).

  Returns:
    Rows with the `table1_columns` keys (NaN where a value is absent).
  """
  variants = tuple(variants or variants_of(per_game))
  rows = []
  for game in sorted(per_game):
    entry = per_game[game]
    scores = {v: [float(x) for x in entry.get(v) or []] for v in variants}
    untrained = [float(x) for x in entry.get('untrained') or []]
    row = {'game': game, 'n_seeds': max([len(x) for x in scores.values()], default=0),
           'majority_f1': (float(entry['majority']) if entry.get('majority') is not None
                           else float('nan')),
           **_summary('untrained', untrained), **_summary('ceiling', entry.get('ceiling'))}
    for v in variants:
      row.update(_summary(v, scores[v]))
      row[f'{v}_beats_untrained'] = beats_control(scores[v], untrained)
    for v in variants:  # Seed i's untrained encoder is seed i's initialisation: paired.
      diff = _paired(scores[v], untrained)
      row.update({f'{v}_minus_untrained_{k}': diff[d] for k, d in _DIFF_KEYS})
    for a, b in comparisons(variants):
      nan = float('nan')
      paired = len(scores[a]) == len(scores[b])
      diff = _paired(scores[a], scores[b])
      n = len(scores[a]) if paired else 0
      detectable = (statistics.detectable_difference(
          n, float(np.std(np.subtract(scores[a], scores[b]), ddof=1)), SIGNIFICANCE, POWER)
                    if n >= 2 else nan)
      row.update({f'{a}_minus_{b}_mean': diff['mean_diff'], f'{a}_minus_{b}_ci_low':
                  diff['ci_low'], f'{a}_minus_{b}_ci_high': diff['ci_high'],
                  f'{a}_minus_{b}_p_value': diff['p_value'],
                  f'{a}_minus_{b}_detectable': detectable})
    if ('rmr', 'cswm') in comparisons(variants):
      p = row['rmr_minus_cswm_p_value']
      row['rmr_better'] = bool(not math.isnan(p) and p < SIGNIFICANCE
                               and row['rmr_minus_cswm_mean'] > 0)
    rows.append(row)
  return rows


def _fmt(x: float, digits: int = 3) -> str:
  return '—' if x is None or math.isnan(x) else f'{x:.{digits}f}'


def _fmt_p(p: float) -> str:
  if math.isnan(p):
    return '—'
  return f'{p:.2e}' if p < 1e-3 else f'{p:.3f}'


def _fmt_signed(x: float) -> str:
  return '—' if x is None or math.isnan(x) else f'{x:+.3f}'


def _mean_std(r: Mapping[str, Any], prefix: str) -> str:
  mean, std = r[f'{prefix}_f1_mean'], r[f'{prefix}_f1_std']
  if math.isnan(mean):
    return '—'
  return _fmt(mean) if math.isnan(std) else f'{_fmt(mean)} ± {_fmt(std)}'


def _variants_in(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
  """The variants of `table1_rows` rows, in column order."""
  keys = rows[0] if rows else {}
  return tuple(k[:-len('_beats_untrained')] for k in keys if k.endswith('_beats_untrained'))


def table1_markdown(rows: Sequence[dict[str, Any]], metric: Metric = BYTE) -> str:
  """Table 1 as Markdown: controls, every variant (mean ± std over seeds; `†` beats the
  untrained control), the ceiling and the paired differences with their 95% t-intervals; games
  where RMR is significantly better than C-SWM have its cell bold with a `*`."""
  variants = _variants_in(rows)
  pairs = comparisons(variants)
  head = (['Game', 'majority', 'untrained f~'] + [title(v) for v in variants] + ['ceiling']
          + [f'{title(a)} − {title(b)} [{CONFIDENCE:.0%} CI] (p; detectable)'
             for a, b in pairs]
          + ['seeds'])
  lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for r in rows:
    cells = [r['game'], _fmt(r['majority_f1']), _mean_std(r, 'untrained')]
    for v in variants:
      cell = _mean_std(r, v) + (' †' if r[f'{v}_beats_untrained'] else '')
      if v == 'rmr' and r.get('rmr_better'):
        cell = f'**{cell}** *'
      cells.append(cell)
    cells.append(_mean_std(r, 'ceiling'))
    for a, b in pairs:
      k = f'{a}_minus_{b}'
      cells.append(f'{_fmt_signed(r[k + "_mean"])} [{_fmt_signed(r[k + "_ci_low"])}, '
                   f'{_fmt_signed(r[k + "_ci_high"])}] ({_fmt_p(r[k + "_p_value"])}; '
                   f'{_fmt(r[k + "_detectable"])})')
    cells.append(str(r['n_seeds']))
    lines.append('| ' + ' | '.join(cells) + ' |')
  control = ['| Game | ' + ' | '.join(f'{title(v)} − untrained f~' for v in variants) + ' |',
             '|' + ' --- |' * (len(variants) + 1)]
  for r in rows:
    cells = [r['game']]
    for v in variants:
      k = f'{v}_minus_untrained'
      cells.append(f'{_fmt_signed(r[k + "_mean"])} [{_fmt_signed(r[k + "_ci_low"])}, '
                   f'{_fmt_signed(r[k + "_ci_high"])}] (p {_fmt_p(r[k + "_p_value"])})')
    control.append('| ' + ' | '.join(cells) + ' |')
  notes = [f'{metric.label[0].upper()}{metric.label[1:]} on the validation episodes, mean ± std '
           '(ddof=1) over seeds (per-seed values in the CSV and results.json). '
           '"untrained f~" probes the natural learners\' initialisations after zero updates, '
           '"ceiling" the same initialisations trained end to end on the probes\' RAM labels '
           '(probe.ceiling_steps), both with the same probe code as the variants; "majority" '
           f'{metric.majority}. `†` the seed mean beats the untrained control (above its mean '
           'by more than its std over seeds).']
  if pairs:
    notes.append(f'Paired differences over seeds (identical batches per seed) with their '
                 f'{CONFIDENCE:.0%} t-interval, two-sided paired t-test p-value and the smallest '
                 f'difference this many seeds detect at p < {SIGNIFICANCE} with '
                 f'{POWER:.0%} power given the measured spread of the paired differences '
                 '(`statistics.detectable_difference`).')
  if ('rmr', 'cswm') in pairs:
    n_better = sum(bool(r.get('rmr_better')) for r in rows)
    notes.append(f'`*` RMR significantly better than C-SWM (p < {SIGNIFICANCE}, higher mean): '
                 f'{n_better} of {len(rows)} games.')
  notes.append('Below: each variant against its own initialisation, paired by seed (seed i\'s '
               f'untrained f~ is seed i\'s start), with the {CONFIDENCE:.0%} t-interval and '
               'p-value: a trained encoder counts as better than untrained when the interval '
               'lies above 0.')
  return '\n'.join(lines + [''] + [' '.join(notes), ''] + control) + '\n'


def _json_safe(x: Any) -> Any:
  """NaN/inf floats -> None (strict JSON), recursively."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  return x


def _colour(variant: str, variants: Sequence[str]) -> str:
  if variant in _COLOURS:
    return _COLOURS[variant]
  others = [v for v in variants if v not in _COLOURS]
  i = others.index(variant) if variant in others else 0
  return _SPARE_COLOURS[i % len(_SPARE_COLOURS)]


def _table1_figure(rows: Sequence[dict[str, Any]], per_game: Mapping[str, Mapping[str, Any]],
                   metric: Metric) -> Figure:
  """Bars of mean probe F1 (± std) per game and variant, each seed a dot; the untrained mean
  (dashed), the ceiling mean (dash-dot) and the majority (dotted) as lines over each game."""
  variants = _variants_in(rows)
  fig = Figure(figsize=(max(4.0, (0.3 * len(variants) + 0.4) * len(rows) + 1.5), 3.6))
  ax = fig.add_subplot(1, 1, 1)
  width = 0.8 / max(1, len(variants))
  x = np.arange(len(rows))  # [G]
  tops = []
  for k, v in enumerate(variants):
    offset = (k - (len(variants) - 1) / 2) * width
    means = np.array([r[f'{v}_f1_mean'] for r in rows], np.float64)
    stds = np.nan_to_num(np.array([r[f'{v}_f1_std'] for r in rows], np.float64))
    ax.bar(x + offset, means, width, yerr=stds, capsize=2, color=_colour(v, variants),
           alpha=0.6, label=title(v))
    for i, r in enumerate(rows):
      seeds = np.asarray(per_game[r['game']].get(v) or [], np.float64)
      jitter = np.linspace(-0.25, 0.25, len(seeds)) * width if len(seeds) > 1 else [0.0]
      ax.scatter(x[i] + offset + np.asarray(jitter)[:len(seeds)], seeds, s=9, color='k',
                 zorder=3)
      tops += [r[f'{v}_f1_mean'], *seeds]
  styles = (('untrained_f1_mean', '--', 'untrained f~'), ('ceiling_f1_mean', '-.', 'ceiling'),
            ('majority_f1', ':', 'majority'))
  for key, style, label in styles:
    labelled = False
    for i, r in enumerate(rows):
      if math.isfinite(r.get(key, float('nan'))):
        ax.hlines(r[key], x[i] - 0.45, x[i] + 0.45, colors='k', linestyles=style,
                  label=None if labelled else label)
        labelled = True
        tops.append(r[key])
  for i, r in enumerate(rows):
    if r.get('rmr_better'):
      top = max([r['rmr_f1_mean'], *(per_game[r['game']].get('rmr') or [])])
      ax.text(x[i], top + 0.02, '*', ha='center', fontsize=12)
  finite = [t for t in tops if math.isfinite(t)]
  ax.set_ylim(0.0, min(1.05, max(finite, default=1.0) + 0.1))
  ax.set_xticks(x)
  ax.set_xticklabels([r['game'] for r in rows], rotation=45, ha='right')
  ax.set_ylabel(metric.label)
  ax.set_title(f'Linear RAM probes on frozen encoders (* RMR > C-SWM, p < {SIGNIFICANCE})')
  ax.legend(loc='lower right', fontsize=7)
  return fig


def write_table1(report_dir: str, per_game: Mapping[str, Mapping[str, Any]],
                 extra: Optional[dict[str, Any]] = None, metric: Metric = BYTE,
                 variants: Optional[Sequence[str]] = None) -> dict[str, str]:
  """Writes Table 1 (csv, md, png) and merges it into results.json, all atomically.

  Args:
    report_dir: output directory (created if needed).
    per_game: {game: {variant: [f1 per seed], 'untrained': [f1 per seed], 'majority': f1,
      'ceiling': [f1 per seed]}} (controls optional), seeds paired by index.
    extra: more top-level keys merged into results.json.
    metric: what the scores are; its suffix names the files (table1_bit.csv, ...).
    variants: the variant columns, in order (default `variants_of`).

  Returns:
    {file name: path} for table1{suffix}.csv, table1{suffix}.md, table1{suffix}_probe_f1.png
    and results.json (the table under 'table1{suffix}': per game its row and 'per_seed'
    {variant or control: [f1 per seed]}).
  """
  storage.makedirs(report_dir)
  variants = tuple(variants or variants_of(per_game))
  rows = table1_rows(per_game, variants)
  stem = f'table1{metric.suffix}'
  paths = {name: storage.join(report_dir, name) for name in
           (f'{stem}.csv', f'{stem}.md', f'{stem}_probe_f1.png', 'results.json')}
  workdir_lib.atomic_write_text(paths[f'{stem}.csv'],
                                report_files.csv_text(table1_columns(variants), rows))
  workdir_lib.atomic_write_text(paths[f'{stem}.md'], table1_markdown(rows, metric))
  report_files.save_figure(_table1_figure(rows, per_game, metric), paths[f'{stem}_probe_f1.png'])
  results = workdir_lib.read_json(paths['results.json']) or {}
  results[stem] = {
      r['game']: {**r, 'per_seed': {v: [float(x) for x in per_game[r['game']][v]]
                                    for v in variants + ('untrained', 'ceiling')
                                    if per_game[r['game']].get(v) is not None}}
      for r in rows}
  report_files.merge_results(results, extra)
  workdir_lib.atomic_write_json(paths['results.json'], _json_safe(results))
  return paths


def fraction_label(game: str, fraction: float) -> str:
  """The row label of (game, fraction) in the per-fraction Table 1, e.g. 'pong @30%' (a
  percentage of the training episodes, so the full set reads '@100%', not '@1')."""
  return f'{game} @{100 * float(fraction):g}%'


def write_table1_by_fraction(report_dir: str,
                             results: Mapping[Any, Mapping[str, Mapping[str, Any]]],
                             metric: Metric = BYTE,
                             variants: Optional[Sequence[str]] = None) -> dict[str, str]:
  """Table 1 with one row per (game, data fraction): the same columns, controls and paired
  differences (95% interval, p, detectable difference) as `write_table1`, per fraction.

  Args:
    report_dir: output directory (created if needed).
    results: {fraction: {game: per-game entry of `write_table1`}} (fraction keys floats or
      strings of floats).
    metric: what the scores are; its suffix names the files.
    variants: the variant columns, in order (default `variants_of`).

  Returns:
    {file name: path} of table1{suffix}_by_fraction.{csv,md}; rows ordered by game, then
    fraction ascending.
  """
  storage.makedirs(report_dir)
  fractions = sorted(results, key=float)
  games = sorted({g for f in fractions for g in results[f]})
  variants = tuple(variants or variants_of(results[fractions[-1]]))
  rows = []
  for game in games:
    for f in fractions:
      if game in results[f]:
        row = table1_rows({fraction_label(game, float(f)): results[f][game]}, variants)[0]
        rows.append({**row, 'fraction': float(f)})
  stem = f'table1{metric.suffix}_by_fraction'
  paths = {name: storage.join(report_dir, name) for name in (f'{stem}.csv', f'{stem}.md')}
  workdir_lib.atomic_write_text(paths[f'{stem}.csv'], report_files.csv_text(
      ('fraction',) + table1_columns(variants), rows))
  workdir_lib.atomic_write_text(paths[f'{stem}.md'], table1_markdown(rows, metric))
  return paths


def data_efficiency_rows(
    results: Mapping[Any, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
  """Long-format rows (fraction, game, variant, seed, f1) of the variants (not the controls),
  sorted; seed = position in list."""
  rows = []
  for fraction in sorted(results, key=float):
    for game in sorted(results[fraction]):
      entry = results[fraction][game]
      for v in variants_of({game: entry}):
        for seed, f1 in enumerate(entry.get(v) or []):
          rows.append({'fraction': float(fraction), 'game': game, 'variant': v, 'seed': seed,
                       'f1': float(f1)})
  return rows


def _plot_seed_curves(ax, rows: Sequence[dict[str, Any]], game: str, x: str) -> None:
  """Per variant, mean probe F1 ± std over seeds against ``rows``' key ``x`` for ``game``."""
  variants = variants_of({'': {r['variant']: None for r in rows if r['game'] == game}})
  for v in variants:
    xs = sorted({r[x] for r in rows if r['game'] == game and r['variant'] == v})
    scores = [[r['f1'] for r in rows if r['game'] == game and r['variant'] == v and r[x] == at]
              for at in xs]
    mean = np.array([np.mean(s) for s in scores])
    std = np.array([np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in scores])
    colour = _colour(v, variants)
    ax.plot(xs, mean, marker='o', color=colour, label=title(v))
    ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.2)


def _data_efficiency_figure(rows: Sequence[dict[str, Any]],
                            controls: Mapping[str, Mapping[str, float]],
                            metric: Metric) -> Figure:
  """One panel per game: mean probe F1 ± std over seeds against the data fraction, with the
  controls as reference lines (`_reference_lines`)."""
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
  workdir_lib.atomic_write_text(paths[f'{stem}.csv'], report_files.csv_text(columns, rows))
  report_files.save_figure(fig, paths[f'{stem}.png'])
  return paths


def _reference_lines(ax, controls: Mapping[str, float]) -> None:
  """Untrained-encoder mean (dashed, ± std band), supervised-ceiling mean (dash-dot, ± std
  band) and majority F1 (dotted) across the panel, where present."""
  for key, style, label in (('untrained', '--', 'untrained f~'), ('ceiling', '-.', 'ceiling')):
    level = controls.get(f'{key}_f1_mean', float('nan'))
    if not math.isfinite(level):
      continue
    ax.axhline(level, color='k', linestyle=style, linewidth=1, label=label)
    std = controls.get(f'{key}_f1_std', float('nan'))
    if math.isfinite(std):
      ax.axhspan(level - std, level + std, color='k', alpha=0.08)
  majority = controls.get('majority_f1', float('nan'))
  if math.isfinite(majority):
    ax.axhline(majority, color='grey', linestyle=':', linewidth=1, label='majority')


def write_data_efficiency(
    report_dir: str,
    results: Mapping[Any, Mapping[str, Mapping[str, Sequence[float]]]],
    controls: Optional[Mapping[str, Mapping[str, float]]] = None,
    metric: Metric = BYTE) -> dict[str, str]:
  """Writes data_efficiency{metric.suffix}.{csv,png} atomically.

  Args:
    report_dir: output directory (created if needed).
    results: {fraction: {game: {variant: [f1 per seed], ...}}} (control keys are skipped);
      fraction keys may be floats or strings of floats (as read back from JSON).
    controls: {game: {'untrained_f1_mean', 'untrained_f1_std', 'ceiling_f1_mean',
      'ceiling_f1_std', 'majority_f1'}} reference lines (e.g. the `table1_rows` rows).
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
  """Long-format rows (game, step, variant, seed, f1), sorted by (game, step, variant)."""
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
                         metric: Metric = BYTE) -> dict[str, str]:
  """Writes learning_curve{metric.suffix}.{csv,png} atomically.

  Args:
    report_dir: output directory.
    curve: {game: {step: {variant: [f1 per seed]}}}; every variant starts from the untrained
      encoders, so step 0 (if present) is their probe F1 for each variant.
    controls: reference lines per game (the untrained and ceiling levels, the majority), as for
      `write_data_efficiency`.
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
