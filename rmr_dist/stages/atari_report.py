"""The Atari report stage: Table 2, Table 1 and the data-efficiency plot from finished units.

Reads the units of the current fingerprints (`WorkDir.stage_dir`) and writes `report/`:
table2.{csv,md}; Table 1 in the primary metric, AtariARI's across-categories byte F1
(probe.byte_probes; games with AtariARI labels): table1.{csv,md}, table1_probe_f1.png,
table1_by_fraction.{csv,md} and data_efficiency.{csv,png} (with several data fractions),
learning_curve.{csv,png} (with natural.curve_steps); the same in the paper's bit F1:
table1_bit.*, table1_bit_by_fraction.*, data_efficiency_bit.*, learning_curve_bit.*; and
results.json (its 'probes' holds every probe record: per seed the validation, probe-train
and held-out F1, the per-category byte F1 and the fits' steps). Every table shows each
variant of natural.variants beside the controls (majority, untrained f~, supervised ceiling)
and the paired differences (`rmr_dist.evaluation.atari_table1`). Each table's markdown ends
with the stage fingerprints it came from, and results.json holds them under 'fingerprints'.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import atari_table1
from rmr_dist.evaluation import atari_table2


def _source_line(workdir: workdir_lib.WorkDir, stage: str) -> str:
  prints = ', '.join(f'{k} {v}' for k, v in workdir.stage_fingerprints(stage).items())
  return f'\nFrom {workdir.root}, stage fingerprints: {prints}.\n'


def _objective_line(nc: config_lib.NaturalConfig) -> str:
  """How the natural models were trained: every variant shares it; 'C-SWM' names the model
  with P trained, whatever the objective."""
  objective = ("C-SWM's contrastive hinge (the paper's)" if nc.loss == 'hinge' else
               f"natural.loss={nc.loss!r} (not the paper's hinge)")
  return (f'\nEvery variant ({", ".join(nc.variants)}): {objective}, {nc.num_steps} updates of '
          f'batch {nc.batch_size}, {nc.num_seeds} seeds.\n')


def _append(path: str, text: str) -> None:
  body = storage.read_text(path)
  workdir_lib.atomic_write_text(path, body + text)


def abstract_rows(config: config_lib.AtariConfig,
                  workdir: workdir_lib.WorkDir) -> list[dict[str, Any]]:
  """The finished abstract units' Table 2 rows, in (game, model) order."""
  rows = []
  for game in config.games:
    for model in config.abstract.models:
      row = workdir_lib.read_json(storage.join(workdir.abstract_unit(game, model),
                                               'result.json'))
      if row is not None:
        rows.append(row)
  return rows


def probe_records(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir
                  ) -> dict[float, dict[str, dict[str, Any]]]:
  """{fraction: {game: probe.json record}} of the finished probe units."""
  out: dict[float, dict[str, dict[str, Any]]] = {}
  for game in config.games:
    for fraction in config.natural.data_fractions:
      rec = workdir_lib.read_json(workdir.probe_result(game, fraction))
      if rec is not None:
        out.setdefault(fraction, {})[game] = rec
  return out


# Per metric: the per-seed key in probe.json, its majority control and its learning curve.
_KEYS = {'byte': ('byte_f1', 'majority_byte_f1', 'learning_curve_byte'),
         'bit': ('bit_f1', 'majority_f1', 'learning_curve')}


def _scored(rec: dict[str, Any], key: str) -> bool:
  """Every encoder of a probe record has a value for ``key`` (byte F1 may be absent)."""
  return all(x is not None for r in (*rec['variants'].values(), rec['untrained'])
             for x in r.get(key, [None]))


def probe_f1(records: dict[float, dict[str, dict[str, Any]]], metric: str = 'byte'
             ) -> dict[float, dict[str, dict[str, Any]]]:
  """{fraction: {game: {variant: [probe F1 per seed], 'untrained': [per seed], 'majority': f1,
  'ceiling': [per seed] or None}}} of the probe records (`probe_records`) scored by ``metric``
  ('byte' or 'bit'; games without byte probes are left out of 'byte')."""
  key, majority, _ = _KEYS[metric]
  out: dict[float, dict[str, dict[str, Any]]] = {}
  for fraction, by_game in records.items():
    for game, rec in by_game.items():
      if _scored(rec, key):
        ceiling = (rec.get('ceiling') or {}).get(key)
        out.setdefault(fraction, {})[game] = {
            **{v: r[key] for v, r in rec['variants'].items()},
            'untrained': rec['untrained'][key], 'majority': rec.get(majority),
            'ceiling': ceiling if ceiling and None not in ceiling else None}
  return out


def learning_curve(config: config_lib.AtariConfig, by_fraction: dict[float, dict[str, Any]],
                   metric: str = 'byte') -> dict[str, dict[int, dict[str, list[float]]]]:
  """{game: {step: {variant: [f1 per seed]}}} of the largest fraction: step 0 the untrained
  encoders (every variant's start), the saved snapshots, and the final encoders."""
  key, _, curve_key = _KEYS[metric]
  curve = {}
  for game, rec in by_fraction.get(max(config.natural.data_fractions), {}).items():
    if not rec.get(curve_key) or not _scored(rec, key):
      continue
    points = {0: {v: rec['untrained'][key] for v in rec['variants']}}
    points.update({int(k): v for k, v in rec[curve_key].items()})
    points[config.natural.num_steps] = {v: r[key] for v, r in rec['variants'].items()}
    curve[game] = points
  return curve


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir,
        logger: logging_lib.Logger | None = None,
        say: Callable[[str], None] = print) -> dict[str, str]:
  """Writes every table that has finished units; returns {file name: path}.

  Raises:
    ConfigError: nothing to report (no finished abstract or probe unit).
  """
  paths: dict[str, str] = {}
  rows = abstract_rows(config, workdir)
  if rows:
    paths.update(_write_table2(config, workdir, rows, logger, say))
  paths.update(_write_table1(config, workdir, logger, say))
  if not paths:
    raise config_lib.ConfigError(f'Nothing to report in {workdir.root}: run the abstract '
                                 '(and natural, probe) stages first.')
  return paths


def _write_table2(config, workdir, rows, logger, say) -> dict[str, str]:
  done = {(r['game'], r['model']) for r in rows}
  missing = [f'{g}/{m}' for g in config.games for m in config.abstract.models
             if (g, m) not in done]
  if missing:
    print(f'report: missing abstract results for {", ".join(missing)}', file=sys.stderr)
  # Seeded episode-store batches are one sequence for every model; Reverb's are not seeded.
  paths = atari_table2.write_table2(workdir.report, rows, extra={
      'fingerprints': {'table2': workdir.stage_fingerprints('abstract')}},
                                    same_batches=config.replay.learner_source == 'store')
  _append(paths['table2.md'], _source_line(workdir, 'abstract'))
  text = storage.read_text(paths['table2.md'])
  if logger is not None:
    logger.text('eval/table2', text)
  say(f'report: Table 2 written to {paths["table2.csv"]}\n{text}')
  return paths


def _write_table1(config, workdir, logger, say) -> dict[str, str]:
  """Table 1, data efficiency and learning curve in byte F1 (the primary metric, where the
  probe stage fit byte probes) and in bit F1."""
  records = probe_records(config, workdir)
  extra = {'fingerprints': {'table1': workdir.stage_fingerprints('probe')},
           'probes': {f'{game}/f{round(100 * fraction):d}': rec
                      for fraction, by_game in records.items()
                      for game, rec in by_game.items()}}
  paths: dict[str, str] = {}
  for name, metric in atari_table1.METRICS.items():
    paths.update(_write_metric(config, workdir, records, name, metric, extra, logger, say))
  return paths


def _write_metric(config, workdir, records, name, metric, extra, logger, say
                  ) -> dict[str, str]:
  nc = config.natural
  by_fraction = probe_f1(records, name)
  paths: dict[str, str] = {}
  full = by_fraction.get(max(nc.data_fractions))
  controls = {}
  table, efficiency, curve_stem = (f'{s}{metric.suffix}' for s in
                                   ('table1', 'data_efficiency', 'learning_curve'))
  if full:
    paths.update(atari_table1.write_table1(workdir.report, full, extra=extra, metric=metric,
                                           variants=nc.variants))
    md = paths[f'{table}.md']
    _append(md, _objective_line(nc) + _source_line(workdir, 'probe'))
    text = storage.read_text(md)
    if logger is not None:
      logger.text(f'eval/{table}', text)
      logger.image(f'eval/{table}_probe_f1', paths[f'{table}_probe_f1.png'])
    say(f'report: Table 1 ({metric.label}) written to {paths[table + ".csv"]}\n{text}')
    controls = {r['game']: r for r in atari_table1.table1_rows(full, nc.variants)}
  if len(by_fraction) > 1:
    written = atari_table1.write_table1_by_fraction(workdir.report, by_fraction, metric,
                                                    nc.variants)
    paths.update(written)
    md = written[f'{table}_by_fraction.md']
    _append(md, _objective_line(nc) + _source_line(workdir, 'probe'))
    say(f'report: Table 1 per data fraction ({metric.label}) written to '
        f'{written[table + "_by_fraction.csv"]}\n{storage.read_text(md)}')
    paths.update(atari_table1.write_data_efficiency(workdir.report, by_fraction, controls, metric))
    if logger is not None:
      logger.image(f'eval/{efficiency}', paths[f'{efficiency}.png'])
  curve = learning_curve(config, records, name)
  if curve:
    paths.update(atari_table1.write_learning_curve(workdir.report, curve, controls, metric))
    say(f'report: learning curve ({metric.label}) written to {paths[curve_stem + ".csv"]}')
    if logger is not None:
      logger.image(f'eval/{curve_stem}', paths[f'{curve_stem}.png'])
  return paths
