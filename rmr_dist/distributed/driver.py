"""What the two programs' drivers share: the work directory and logger, the stage loop, and the
learner stages' units, each read back when finished, else run in the stage's learner group.

`program.AtariProgram` and `balls_program.BallsProgram` extend `Program`. Each names its stages
(`STAGES`, in pipeline order; `LEARNER_STAGES`, those whose units run in learner groups) and
has one method per stage; `Program.run(stages)` checks placement, starts Ray and checks that
every node sees the work directory, then calls the stage methods in order. A learner stage's
method lists its `stages.units.LearnerUnit`s and hands them to `Program.read_or_run`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.distributed import learners
from rmr_dist.distributed import placement
from rmr_dist.distributed import ray_setup
from rmr_dist.distributed import workdir_check
from rmr_dist.stages import units as units_lib


class Program:
  """A program's driver: stages run in order, learner stages in learner groups.

  Args:
    config: the validated config (Atari or balls).
    workdir: the run's work directory (created if missing).
    specs: the program's stage specs (`workdir_lib.ATARI_STAGES` or `BALLS_STAGES`).
  """

  STAGES: tuple[str, ...] = ()
  LEARNER_STAGES: tuple[str, ...] = ()  # Their units run in learner groups.

  def __init__(self, config: Any, workdir: str, specs: Sequence[workdir_lib.StageSpec]):
    self.config = config
    self.paths = workdir_lib.open_workdir(workdir, config, specs)
    self.workdir = self.paths.root
    self.logger = logging_lib.Logger(self.paths.tb)
    self.logger.text('config', '```\n' + json.dumps(self.paths.config_dict, indent=1) +
                     '\n```')

  def check_stages(self, stages: list[str]) -> list[str]:
    """Validates stage names (order is normalised to the pipeline order)."""
    return workdir_lib.check_stage_names(stages, self.STAGES)

  def add_stages(self, stages: list[str]) -> list[str]:
    """The validated `stages` with any stage they need added (none here)."""
    return stages

  def check_inputs(self, stages: list[str]) -> None:
    """Raises ConfigError, before Ray starts, when a chosen stage needs the outputs of an
    upstream stage that is neither chosen nor in the work directory (none here)."""
    del stages

  def actor_pools(self, stages: list[str]) -> list[tuple[int, str]]:
    """(count, setting) of each pool of 1-CPU actors that `stages` will hold at once (none
    here); checked against a local Ray before it starts (`placement.check_before_stages`)."""
    del stages
    return []

  def run(self, stages: list[str]) -> None:
    """Runs `stages` in pipeline order.

    Raises:
      ConfigError: a bad stage name; or, before any stage runs (and before Ray starts), a
        stage's inputs are missing (`check_inputs`), or the stages include learner stages
        (`LEARNER_STAGES`) and the Ray cluster cannot place a learner group, or (on a local
        Ray) an actor pool of `actor_pools` has more actors than the CPUs.
    """
    stages = self.add_stages(self.check_stages(stages))
    self.check_inputs(stages)
    placement.check_before_stages(self.config.ray, stages, self.LEARNER_STAGES,
                                  self.actor_pools(stages))
    if any(stage != 'report' for stage in stages):  # The report is written by the driver.
      ray_setup.init_ray(self.config.ray)
      workdir_check.check_nodes_see(self.paths.root)
    for stage in stages:
      getattr(self, stage)()

  def read_or_run(self, stage: str, units: Sequence[units_lib.LearnerUnit],
                  report: units_lib.ReportFn) -> list[dict[str, Any]]:
    """Each unit's result record: read back when the unit is finished, else from running it.

    The stage's learner group starts (Ray too, if need be) only when an unfinished unit comes
    up, runs the units in order and is killed when the stage ends.

    Args:
      stage: the learner stage (names its group and prefixes the status lines).
      units: its units, in order.
      report: its status line after each unit (None: none).

    Returns:
      The units' result records, in order.
    """
    with learners.LazyGroup(self.config, stage, self.paths) as group:

      def run(unit: units_lib.LearnerUnit) -> dict[str, Any]:
        ray_setup.init_ray(self.config.ray)
        return group().run(unit.name, *unit.args())

      return units_lib.read_or_run(self.paths, stage, units, report, run)

  def close(self) -> None:
    """Flushes logs (Ray itself is left to the caller)."""
    self.logger.close()
