"""The learner stages' units, without Ray: what a unit is, how one runs in this process, and
the loop that reads finished units back and runs the others.

A unit is one call of a stage module's `run(config, workdir, *args, log_fn=..., say=...)`
(`UNITS`), e.g. the abstract MPNN of one game. Its result record is written last, so a unit
whose record exists is finished and is read back rather than rerun. The Ray drivers
(`rmr_dist.distributed.driver`) run unfinished units in learner-group actors, whose processes
call `run_unit`; `rmr_dist.stages.atari_in_process` calls it in its own process (no Ray).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from rmr_dist import workdir as workdir_lib

# The stage units: name -> module with `run(config, workdir, *args, log_fn=..., say=...)`.
UNITS = {
    'atari_abstract': 'rmr_dist.stages.atari_abstract',
    'atari_natural': 'rmr_dist.stages.atari_natural',
    'atari_probe': 'rmr_dist.stages.atari_probe',
    'balls_abstract': 'rmr_dist.stages.balls_abstract',
    'balls_natural': 'rmr_dist.stages.balls_natural',
}


class LearnerUnit(NamedTuple):
  """One unit of a learner stage.

  Attributes:
    name: the unit, a key of `UNITS`.
    result_path: its result record, written last: present once the unit is done.
    args: `() -> tuple`, the unit's arguments after (config, workdir); called only when the unit
      runs (an Atari unit's replay address starts the Reverb server).
    label: names the unit in the status lines ('unit ...' before it); None: no such line.
  """
  name: str
  result_path: str
  args: Callable[[], tuple[Any, ...]]
  label: str | None = None


# `(unit, record, read_back) -> status line or None`, said after each unit.
ReportFn = Callable[[LearnerUnit, dict[str, Any], bool], str | None]


def run_unit(config: Any, workdir: workdir_lib.WorkDir, unit: str, *args: Any,
             log_fn: Callable[[dict[str, float], int], None] | None = None,
             say: Callable[[str], None] = print) -> Any:
  """Runs unit `unit` (a `UNITS` name) on `args` in this process; returns its record.

  Raises:
    ValueError: `unit` is not a `UNITS` name.
  """
  if unit not in UNITS:
    raise ValueError(f'Unknown learner unit {unit!r}; valid: {sorted(UNITS)}')
  module = importlib.import_module(UNITS[unit])
  return module.run(config, workdir, *args, log_fn=log_fn, say=say)


def read_or_run(paths: workdir_lib.WorkDir, stage: str, units: Sequence[LearnerUnit],
                report: ReportFn, run: Callable[[LearnerUnit], dict[str, Any]]
                ) -> list[dict[str, Any]]:
  """Each unit's result record: read back when the unit is finished, else `run(unit)`.

  Args:
    paths: the run's work directory (the stage is recorded in it first).
    stage: the learner stage (prefixes the status lines).
    units: its units, in order.
    report: its status line after each unit (None: none).
    run: runs an unfinished unit and returns its record (in a learner group, or here).

  Returns:
    The units' result records, in order.
  """
  paths.record_stage(stage)
  records = []
  for unit in units:
    if unit.label is not None:
      print(f'{stage}: {unit.label} ...', flush=True)
    record = workdir_lib.read_json(unit.result_path)
    read_back = record is not None
    if not read_back:
      record = run(unit)
    line = report(unit, record, read_back)
    if line is not None:
      print(f'{stage}: {line}', flush=True)
    records.append(record)
  return records
