"""A work directory: every path in it, its atomic writers, cached results, stage fingerprints.

Both programs keep everything a run produces under one directory (local, or storage every node
sees on a cluster: a shared file system or an object-store URI such as `s3://bucket/run`; every
path goes through `rmr_dist.storage`). Layout (Atari, then bouncing balls):

  config.json                      the validated config of the latest run (for reference)
  data.json                        the config values that made the collected data (checked)
  episodes/                        Atari episode store | balls/{train,val}/ trajectories
  replay/                          Atari: Reverb checkpoint(s)
  collect/summary.json             Atari: per-game counts and throughput
  <stage>/<fingerprint>/stage.json the stage's config values and upstream fingerprints
  abstract/<fp>/<game>/<model>/    Atari: checkpoints/, processor/, result.json
  abstract/<fp>/                   balls: checkpoints/, processor/, result.json, rollout_example.npz
  natural/<fp>/<game>/f<pct>/      Atari: checkpoints/, trained.json
  natural/<fp>/                    balls: checkpoints/, result.json, rollout_example.npz
  probe/<fp>/<game>/               Atari: probe_data.npz, f<pct>/probe.json
  report/                          tables and figures of the latest report (names fingerprints)
  tb/                              TensorBoard

Stage-level reuse. Each stage's outputs depend on some config values (`StageSpec.sections`,
minus the `ignored` ones that change how but not what it computes: logging and checkpoint
cadence, prefetch depth, timeouts) and on the outputs of its upstream stages. Its fingerprint
hashes those values together with the upstream stages' fingerprints, so a change anywhere
upstream changes every fingerprint below it. Each learned stage writes under
`<stage>/<fingerprint>/`: re-running into a work directory with a config that changes only a
later stage reuses everything upstream (same fingerprints, same directories, finished units
are read back) and re-runs the changed stage and those after it in new directories, keeping the
old ones. The data stage (Atari `collect`, balls `data`) cannot be redone beside the old data:
a config that changes the values it depends on is refused, naming them.

A fingerprint names the upstream outputs by the config that produced them, not by their bytes:
the learners' batches are random draws (Reverb sampling is not seeded), so two runs of one config
give slightly different numbers under the same fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import storage


# ------------------------------------------------------------------------------------------
# Atomic writers (through the path layer: local files or object-store URIs).
# ------------------------------------------------------------------------------------------


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically (creating its directory)."""
  storage.write_bytes(path, data)


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` atomically (creating its directory)."""
  storage.write_text(path, text)


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON to `path` atomically."""
  storage.write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def atomic_write_npz(path: str, *, compress_level: int = 6, **arrays: Any) -> None:
  """Writes `arrays` as a compressed .npz to `path` atomically (`np.load` reads it).

  Args:
    path: local path or URI.
    compress_level: zlib level, 1 (fastest) to 9; 6 is `np.savez_compressed`'s.
    **arrays: name -> array.
  """
  import zipfile  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  def write(f):
    with zipfile.ZipFile(f, 'w', compression=zipfile.ZIP_DEFLATED, compresslevel=compress_level,
                         allowZip64=True) as archive:
      for name, value in arrays.items():
        with archive.open(name + '.npy', 'w', force_zip64=True) as member:
          np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

  storage.write_with(path, write)


def read_npz(path: str) -> dict[str, Any]:
  """The arrays of the .npz at `path` (local or URI), loaded whole."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  with np.load(io.BytesIO(storage.read_bytes(path))) as data:
    return {k: data[k] for k in data.files}


def read_json(path: str) -> Any:
  """The JSON at `path`, or None when there is none."""
  try:
    return json.loads(storage.read_text(path))
  except FileNotFoundError:
    return None


def cached_result(path: str, compute: Callable[[], Any]) -> Any:
  """A unit's result: the JSON at `path` if the unit finished, else `compute()`, written there.

  The result file is written last and atomically, so its presence marks the unit complete.
  `compute` returning None (a process other than 0 of a multi-host learner group) writes
  nothing.
  """
  result = read_json(path)
  if result is not None:
    return result
  result = compute()
  if result is not None:
    atomic_write_json(path, result)
  return result


# ------------------------------------------------------------------------------------------
# Stage fingerprints.
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """What one stage's outputs depend on.

  Attributes:
    name: the stage.
    sections: dotted config paths ('abstract', 'natural.data_fractions') it depends on.
    upstream: the stages whose outputs it reads.
    ignored: dotted paths inside `sections` that do not change its outputs.
    data: True for the stage that makes the data; a change to its values is refused.
  """
  name: str
  sections: tuple[str, ...]
  upstream: tuple[str, ...] = ()
  ignored: tuple[str, ...] = ()
  data: bool = False


_LEARNER_CADENCE = ('save_every', 'keep_checkpoints', 'log_every', 'prefetch', 'eval_every',
                    'eval_windows_during_training', 'export_timeout_s', 'eval_batch_size')


def _cadence(section: str) -> tuple[str, ...]:
  return tuple(f'{section}.{k}' for k in _LEARNER_CADENCE)


# The stages each entry point runs, in pipeline order (`report` has no fingerprint: it rewrites
# report/ from the latest outputs). Here, not in the Ray programs, so that `atari.py` and
# `balls.py` can check `--stages` before importing Ray, JAX or Reverb.
ATARI_STAGE_NAMES = ('agent', 'collect', 'abstract', 'natural', 'probe', 'report')
# The stages `atari.py` runs without --stages: the agent stage is opt-in (it trains a policy per
# game; `AtariProgram.run` adds it when the heads act from its checkpoints).
ATARI_DEFAULT_STAGES = ('collect', 'abstract', 'natural', 'probe', 'report')
BALLS_STAGE_NAMES = ('data', 'abstract', 'natural', 'report')

ATARI_STAGES = (
    # Writes agent/<game>/ (fixed paths, checked against agent/stage.json by the program).
    StageSpec('agent', ('games', 'seed', 'env.frame_skip', 'env.repeat_action_probability',
                        'env.noop_max', 'agent'),
              ignored=('agent.num_actors', 'agent.actor_chunk_steps', 'agent.log_every',
                       'agent.sample_timeout_s')),
    StageSpec('collect', ('games', 'seed', 'env', 'heads', 'collect', 'replay',
                          'natural.data_fractions'),
              ignored=('collect.num_collectors', 'collect.max_actor_restarts',
                       'collect.status_interval_s', 'replay.server', 'replay.port',
                       'replay.learner_source'),
              data=True),
    StageSpec('abstract', ('abstract',), ('collect',), _cadence('abstract')),
    StageSpec('natural', ('natural',), ('abstract',), _cadence('natural')),
    StageSpec('probe', ('probe',), ('natural',), ('probe.embed_batch_size',)),
)
BALLS_STAGES = (
    StageSpec('data', ('seed', 'sim', 'data'), ignored=('data.num_workers',), data=True),
    StageSpec('abstract', ('abstract',), ('data',), _cadence('abstract')),
    StageSpec('natural', ('natural',), ('abstract',), _cadence('natural')),
)


def _flatten(tree: Any, prefix: str) -> dict[str, Any]:
  if isinstance(tree, Mapping):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}.{key}' if prefix else key))
    return out
  return {prefix: tree}


# Config values added after work directories existed, with the value that does what the code
# did before them: at that value a path is left out of the stage values, so the fingerprints and
# `data.json` of older work directories still match (other values are recorded as usual).
ADDED_NEUTRAL_VALUES = {'heads.min_persistence': 0.0, 'agent.action_set': 'full',
                        'abstract.curve_steps': [], 'natural.readout_init': 'random',
                        'natural.appearance': 'last_slot', 'natural.action_negatives': 0,
                        'natural.action_weight': 1.0, 'natural.action_start': 0,
                        'natural.action_sigma': 0.0, 'natural.over_models': 'vmap'}


def stage_values(config_dict: Mapping[str, Any], spec: StageSpec) -> dict[str, Any]:
  """{dotted path: value} of the config values `spec` depends on (JSON types)."""
  flat = _flatten(json.loads(json.dumps(config_dict)), '')
  values = {}
  for section in spec.sections:
    for path, value in flat.items():
      if path == section or path.startswith(section + '.'):
        if not any(path == i or path.startswith(i + '.') for i in spec.ignored):
          values[path] = value
  for path, neutral in ADDED_NEUTRAL_VALUES.items():
    if path in values and values[path] == neutral:
      del values[path]
  return dict(sorted(values.items()))


def fingerprints(config_dict: Mapping[str, Any],
                 specs: Sequence[StageSpec]) -> dict[str, str]:
  """{stage: fingerprint}: 10 hex digits of the SHA-256 of its values and upstream prints."""
  out: dict[str, str] = {}
  for spec in specs:
    record = {'stage': spec.name, 'values': stage_values(config_dict, spec),
              'upstream': {u: out[u] for u in spec.upstream}}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    out[spec.name] = digest[:10]
  return out


# ------------------------------------------------------------------------------------------
# The work directory.
# ------------------------------------------------------------------------------------------


class WorkDir:
  """The paths of one run's work directory (plain data: it crosses into Ray actors).

  Args:
    root: the directory (absolute).
    config_dict: `config_lib.to_dict` of the validated config.
    specs: the program's stages (`ATARI_STAGES` or `BALLS_STAGES`).
  """

  def __init__(self, root: str, config_dict: Mapping[str, Any], specs: Sequence[StageSpec]):
    self.root = storage.normalize(root)
    self.specs = {s.name: s for s in specs}
    self.config_dict = json.loads(json.dumps(config_dict))
    self.fingerprints = fingerprints(self.config_dict, specs)

  @classmethod
  def reopen(cls, root: str, specs: Sequence[StageSpec]) -> WorkDir:
    """The work directory as its latest run left it (from its config.json)."""
    config_dict = read_json(storage.join(root, 'config.json'))
    if config_dict is None:
      raise config_lib.ConfigError(f'{root} is not a work directory (no config.json).')
    return cls(root, config_dict, specs)

  def path(self, *parts: str) -> str:
    return storage.join(self.root, *parts)

  @property
  def tb(self) -> str:
    return self.path('tb')

  @property
  def report(self) -> str:
    return self.path('report')

  @property
  def episodes(self) -> str:
    return self.path('episodes')

  def stage_dir(self, stage: str) -> str:
    """`<root>/<stage>/<fingerprint>` of a learned stage."""
    if self.specs[stage].data:
      raise ValueError(f'The {stage} stage writes fixed paths, not a fingerprint directory.')
    return self.path(stage, self.fingerprints[stage])

  def record_stage(self, stage: str) -> str:
    """Creates the stage's directory and its stage.json (values + upstream); returns the dir."""
    spec = self.specs[stage]
    directory = self.path(stage) if spec.data else self.stage_dir(stage)
    record = {'stage': stage, 'fingerprint': self.fingerprints[stage],
              'values': stage_values(self.config_dict, spec),
              'upstream': {u: self.fingerprints[u] for u in spec.upstream}}
    path = storage.join(directory, 'stage.json')
    if read_json(path) != record:
      atomic_write_json(path, record)
    return directory

  def stage_fingerprints(self, stage: str) -> dict[str, str]:
    """{stage: fingerprint} of `stage` and everything upstream of it (for reports)."""
    out, todo = {}, [stage]
    while todo:
      name = todo.pop()
      out[name] = self.fingerprints[name]
      todo.extend(self.specs[name].upstream)
    return dict(sorted(out.items()))

  # ---------------------------------------------------------------- Atari
  @property
  def replay(self) -> str:
    return self.path('replay')

  @property
  def collect_summary(self) -> str:
    return self.path('collect', 'summary.json')

  def abstract_unit(self, game: str, model: str) -> str:
    return storage.join(self.stage_dir('abstract'), game, model)

  def processor_export(self, game: str, model: str) -> str:
    return storage.join(self.abstract_unit(game, model), 'processor')

  def natural_unit(self, game: str, fraction: float) -> str:
    return storage.join(self.stage_dir('natural'), game, f'f{round(100 * fraction):d}')

  def probe_data(self, game: str) -> str:
    return storage.join(self.stage_dir('probe'), game, 'probe_data.npz')

  def probe_result(self, game: str, fraction: float) -> str:
    return storage.join(self.stage_dir('probe'), game, f'f{round(100 * fraction):d}',
                        'probe.json')

  # ---------------------------------------------------------------- bouncing balls
  @property
  def trajectories(self) -> str:
    return self.path('episodes', 'balls')


def open_workdir(root: str, config: Any, specs: Sequence[StageSpec]) -> WorkDir:
  """Creates or reopens a work directory for `config`, refusing what would mix data.

  Writes `config.json` (the latest config) and, on first use, `data.json` (the values of the
  data stage); a later run whose data values differ is refused.

  Args:
    root: the --workdir path.
    config: the validated config dataclass.
    specs: the program's stages.

  Raises:
    ConfigError: `root` is an existing file, cannot be created, has a scheme or bucket that
      cannot be used (`storage.check_path`), is an object store with `ray.learner_hosts` > 1,
      or was made with other data values (the message names them and their recorded and new
      values).
  """
  root = storage.check_path(root)
  hosts = getattr(getattr(config, 'ray', None), 'learner_hosts', 1)
  if storage.is_remote(root) and hosts > 1:
    raise config_lib.ConfigError(
        f'--workdir={root} with ray.learner_hosts={hosts}: the hosts of a learner group save '
        'one Orbax checkpoint together, which needs a shared file system; an object-store work '
        'directory takes ray.learner_hosts=1 (or mount shared storage: launch/cluster.yaml).')
  if storage.isfile(root):
    raise config_lib.ConfigError(f'--workdir={root} is an existing file, not a directory: give '
                                 'a new path or an existing work directory.')
  try:
    storage.makedirs(root)
  except OSError as e:
    raise config_lib.ConfigError(f'--workdir={root} cannot be created: {e}') from e
  workdir = WorkDir(root, config_lib.to_dict(config), specs)
  data_spec = next(s for s in specs if s.data)
  current = stage_values(workdir.config_dict, data_spec)
  recorded = read_json(workdir.path('data.json'))
  previous = recorded
  if previous is None:
    legacy = read_json(workdir.path('config.json'))  # A directory made before data.json.
    previous = current if legacy is None else stage_values(legacy, data_spec)
  if previous != current:
    diffs = [f'{k} (recorded {previous.get(k)!r}, now {current.get(k)!r})'
             for k in sorted(set(previous) | set(current)) if previous.get(k) != current.get(k)]
    raise config_lib.ConfigError(
        f'Work directory {root} holds {data_spec.name} data made with other settings; '
        f'differing: {"; ".join(diffs)}. These change the {data_spec.name} stage, whose data '
        f'cannot be replaced beside the old: use a fresh --workdir, or the recorded values '
        f'({workdir.path("data.json")}). Later stages may change freely.')
  if recorded is None:
    atomic_write_json(workdir.path('data.json'), current)
  atomic_write_json(workdir.path('config.json'), workdir.config_dict)
  return workdir


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
