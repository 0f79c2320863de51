"""The Atari learner stages in this one process, without Ray or Reverb (`ray.address='none'`).

For a machine that has JAX and an accelerator but no Ray or Reverb (e.g. a lent GPU machine):
collect elsewhere (`--stages=collect`, with `collect.store_all_episodes=True`), copy the work
directory, then

  python atari.py --config=configs/atari.py:gpu --workdir=W --config.ray.address=none \\
      --stages=abstract,natural,probe,report

runs the same units as the Ray driver (`stages.atari_units`), in order, reading finished ones
back, with the learners reading the episode store (`replay.learner_source='store'`). JAX uses
every local device of this process (`jax.pmap`); the `ray.*` resource settings do not apply.
"""

from __future__ import annotations

import json
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.stages import atari_units
from rmr_dist.stages import units as units_lib

STAGES = (*atari_units.LEARNER_STAGES, 'report')


class InProcessAtariProgram:
  """The Atari learner stages and the report, run here (the `AtariProgram` interface).

  Args:
    config: the validated config, with ray.address='none' (hence replay.learner_source='store').
    workdir: a work directory that holds a finished collect stage.
  """

  def __init__(self, config: config_lib.AtariConfig, workdir: str):
    if config.ray.address != config_lib.NO_RAY:
      raise config_lib.ConfigError(
          f"The in-process Atari program needs ray.address={config_lib.NO_RAY!r}; got "
          f'{config.ray.address!r}.')
    self.config = config
    self.paths = workdir_lib.open_workdir(workdir, config, workdir_lib.ATARI_STAGES)
    self.workdir = self.paths.root
    self.logger = logging_lib.Logger(self.paths.tb)
    self.logger.text('config', '```\n' + json.dumps(self.paths.config_dict, indent=1) +
                     '\n```')

  def run(self, stages: list[str]) -> None:
    """Runs `stages` in pipeline order.

    Raises:
      ConfigError: before any stage runs, for a stage that needs Ray (agent, collect) or a
        learner stage without the collect stage's outputs.
    """
    stages = workdir_lib.check_stage_names(stages, workdir_lib.ATARI_STAGE_NAMES)
    outside = [s for s in stages if s not in STAGES]
    if outside:
      raise config_lib.ConfigError(
          f"--stages={','.join(stages)}: with ray.address={config_lib.NO_RAY!r} only "
          f"{', '.join(STAGES)} run (in this process); {', '.join(outside)} need Ray and "
          'Reverb: run them on a machine that has them (e.g. --stages=collect there), then '
          'copy the work directory here.')
    for stage in stages:
      if stage != 'report':
        atari_units.require_collect(self.paths, stage)
    import jax  # pylint: disable=g-import-not-at-top
    print(f'atari: in-process learners on JAX {jax.default_backend()} '
          f'({jax.local_device_count()} local devices)', flush=True)
    for stage in stages:
      if stage == 'report':
        self.report()
      else:
        self._units(stage)

  def _units(self, stage: str) -> list[dict[str, Any]]:
    units = atari_units.learner_units(self.config, self.paths, stage, lambda game: '')
    say = lambda line: print(line, flush=True)
    return units_lib.read_or_run(
        self.paths, stage, units, atari_units.report(stage),
        lambda unit: units_lib.run_unit(self.config, self.paths, unit.name, *unit.args(),
                                        log_fn=self.logger.scalars, say=say))

  def report(self) -> dict[str, str]:
    """Writes Table 2 and Table 1 (`stages.atari_report`)."""
    from rmr_dist.stages import atari_report  # pylint: disable=g-import-not-at-top
    return atari_report.run(self.config, self.paths, self.logger,
                            say=lambda line: print(line, flush=True))

  def close(self) -> None:
    """Flushes logs."""
    self.logger.close()
