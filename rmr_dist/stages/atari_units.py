"""The Atari learner stages as units (`stages.units`), shared by the Ray driver
(`distributed.atari_program.AtariProgram`) and the in-process one (`stages.atari_in_process`).

  abstract: one unit per (game, model)          -> abstract/<fp>/<game>/<model>/result.json
  natural:  one unit per (game, data fraction)  -> natural/<fp>/<game>/f<pct>/trained.json
  probe:    one unit per (game, data fraction)  -> probe/<fp>/<game>/f<pct>/probe.json
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.stages import units as units_lib

LEARNER_STAGES = ('abstract', 'natural', 'probe')


def require_collect(paths: workdir_lib.WorkDir, stage: str) -> None:
  """Raises ConfigError unless the work directory holds the collect stage's outputs."""
  if not storage.exists(paths.collect_summary):
    raise config_lib.ConfigError(
        f'The {stage} stage needs the collect stage\'s outputs, and {paths.root} has none: '
        f'run with --stages=collect,{stage} (or point --workdir at a collected run).')


def learner_units(config: config_lib.AtariConfig, paths: workdir_lib.WorkDir, stage: str,
                  address_for: Callable[[str], str]) -> list[units_lib.LearnerUnit]:
  """The units of learner stage `stage`, in order; `address_for(game)` gives the game's Reverb
  address when a unit runs ('' with replay.learner_source='store': no server is started)."""
  if stage not in LEARNER_STAGES:
    raise ValueError(f'Unknown Atari learner stage {stage!r}; valid: {LEARNER_STAGES}')
  store = config.replay.learner_source == 'store'
  nc = config.natural
  fractions = [(g, f) for g in config.games for f in nc.data_fractions]
  if stage == 'abstract':
    work = [(g, m) for g in config.games for m in config.abstract.models]
    result = lambda g, m: storage.join(paths.abstract_unit(g, m), 'result.json')
    label = lambda g, m: f'{g} / {m}'
  elif stage == 'natural':
    work = fractions
    result = lambda g, f: storage.join(paths.natural_unit(g, f), 'trained.json')
    label = lambda g, f: (f'{g} fraction {f}: {len(nc.variants)} variants x {nc.num_seeds} '
                          'seeds in lockstep')
  else:
    work = fractions
    result = paths.probe_result
    label = lambda g, f: f'{g} fraction {f}'
  return [units_lib.LearnerUnit(
      f'atari_{stage}', result(*item),
      lambda item=item: (*item, '' if store else address_for(item[0])), label(*item))
          for item in work]


def report_line(stage: str, record: dict[str, Any]) -> str:
  """The status line of one finished unit of learner stage `stage`."""
  if stage == 'abstract':
    return (f'slot acc {100 * record["slot_acc"]:.2f}%, bit F1 {record["bit_f1"]:.3f} over '
            f'{record["n_eval_slots"]} slots, {record["n_eval_transitions"]} transitions '
            f'({record["train_seconds"]:.0f} s)')
  if stage == 'natural':
    return (f'{record["steps"]} steps in {record["seconds"]:.0f} s; identical batches: '
            f'{record["identical_batches"]}')
  return 'bit F1 per seed: ' + ', '.join(
      f'{v} ' + ' '.join(f'{x:.3f}' for x in r['bit_f1']) for v, r in record['variants'].items())


def report(stage: str) -> units_lib.ReportFn:
  """`units.read_or_run`'s status line for `stage`: '<label>: <report_line>'."""
  return lambda unit, record, read_back: f'{unit.label}: {report_line(stage, record)}'
