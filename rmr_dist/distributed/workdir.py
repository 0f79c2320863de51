"""Work-directory rules shared by the programs: one directory, one config; valid stage names."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist.replay import episode_store


def check_workdir_config(workdir: str, config: Any) -> None:
  """Records `config` in `<workdir>/config.json`, or checks it equals the recorded one.

  Args:
    workdir: the run's work directory (exists).
    config: a validated config dataclass.

  Raises:
    ConfigError: the directory was created with a different config (names the differing
      sections), so runs of different configs are never mixed.
  """
  path = os.path.join(workdir, 'config.json')
  current = json.loads(json.dumps(config_lib.to_dict(config)))
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous != current:
      diffs = [k for k in sorted(set(previous) | set(current))
               if previous.get(k) != current.get(k)]
      raise config_lib.ConfigError(
          f'Work directory {workdir} was created with a different config (sections '
          f'differing: {", ".join(diffs)}). Use a fresh --workdir, or the config of {path}.')
  else:
    episode_store.atomic_write_json(path, current)


def check_stage_names(stages: Sequence[str], valid: Sequence[str]) -> list[str]:
  """Returns `stages` in pipeline order (the order of `valid`).

  Raises:
    ConfigError: an unknown stage or none at all (lists the valid ones, in order).
  """
  unknown = [s for s in stages if s not in valid]
  if unknown or not stages:
    raise config_lib.ConfigError(f'Unknown stage(s) {unknown or list(stages)}; valid stages, '
                                 f'in order: {",".join(valid)}.')
  return [s for s in valid if s in stages]
