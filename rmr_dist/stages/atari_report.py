"""The Atari report stage: Table 2, Table 1 and the data-efficiency plot from finished units.

Reads the units of the current fingerprints (`WorkDir.stage_dir`) and writes `report/`:
table2.{csv,md}, table1.{csv,md}, table1_probe_f1.png, data_efficiency.{csv,png},
results.json. Each table's markdown ends with the stage fingerprints it came from, and
results.json holds them under 'fingerprints'.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import table1
from rmr_dist.evaluation import table2


def _source_line(workdir: workdir_lib.WorkDir, stage: str) -> str:
  prints = ', '.join(f'{k} {v}' for k, v in workdir.stage_fingerprints(stage).items())
  return f'\nFrom {workdir.root}, stage fingerprints: {prints}.\n'


def _append(path: str, text: str) -> None:
  with open(path) as f:
    body = f.read()
  workdir_lib.atomic_write_text(path, body + text)


def abstract_rows(config: config_lib.AtariConfig,
                  workdir: workdir_lib.WorkDir) -> list[dict[str, Any]]:
  """The finished abstract units' Table 2 rows, in (game, model) order."""
  rows = []
  for game in config.games:
    for model in config.abstract.models:
      row = workdir_lib.read_json(os.path.join(workdir.abstract_unit(game, model),
                                               'result.json'))
      if row is not None:
        rows.append(row)
  return rows


def probe_f1(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir
             ) -> dict[float, dict[str, dict[str, list[float]]]]:
  """{fraction: {game: {variant: [probe bit F1 per seed]}}} of the finished probe units."""
  by_fraction: dict[float, dict[str, dict[str, list[float]]]] = {}
  for game in config.games:
    for fraction in config.natural.data_fractions:
      rec = workdir_lib.read_json(workdir.probe_result(game, fraction))
      if rec is not None:
        by_fraction.setdefault(fraction, {})[game] = {
            v: r['bit_f1'] for v, r in rec['variants'].items()}
  return by_fraction


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
  paths = table2.write_table2(workdir.report, rows, extra={
      'fingerprints': {'table2': workdir.stage_fingerprints('abstract')}})
  _append(paths['table2.md'], _source_line(workdir, 'abstract'))
  with open(paths['table2.md']) as f:
    text = f.read()
  if logger is not None:
    logger.text('eval/table2', text)
  say(f'report: Table 2 written to {paths["table2.csv"]}\n{text}')
  return paths


def _write_table1(config, workdir, logger, say) -> dict[str, str]:
  nc = config.natural
  by_fraction = probe_f1(config, workdir)
  if not by_fraction or set(nc.variants) != {'rmr', 'cswm'}:
    return {}
  paths: dict[str, str] = {}
  prints = {'fingerprints': {'table1': workdir.stage_fingerprints('probe')}}
  full = by_fraction.get(max(nc.data_fractions))
  if full:
    paths.update(table1.write_table1(workdir.report, full, extra=prints))
    _append(paths['table1.md'], _source_line(workdir, 'probe'))
    with open(paths['table1.md']) as f:
      text = f.read()
    if logger is not None:
      logger.text('eval/table1', text)
      logger.image('eval/table1_probe_f1', paths['table1_probe_f1.png'])
    say(f'report: Table 1 written to {paths["table1.csv"]}\n{text}')
  if len(by_fraction) > 1:
    paths.update(table1.write_data_efficiency(workdir.report, by_fraction))
    if logger is not None:
      logger.image('eval/data_efficiency', paths['data_efficiency.png'])
  return paths
