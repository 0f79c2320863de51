"""What both programs' configs share: the error type, the validators, the Ray section and
the builder that turns a user's ConfigDict into frozen, type-checked dataclasses."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any


class ConfigError(ValueError):
  """A configuration value is missing, unknown, of the wrong type or out of range."""


def require(cond: bool, path: str, value: Any, valid: str) -> None:
  if not cond:
    raise ConfigError(f'Invalid config value {path}={value!r}: expected {valid}.')


AGGREGATIONS = ('sum', 'mean', 'max')


def require_curve_steps(steps: tuple[int, ...], num_steps: int, path: str) -> None:
  """A learning curve's update counts: distinct ints in [1, num_steps)."""
  require(all(isinstance(k, int) and 0 < k < num_steps for k in steps)
          and len(set(steps)) == len(steps), path, steps,
          f'distinct ints in [1, num_steps={num_steps})')


NO_RAY = 'none'  # ray.address: no Ray; the Atari learner stages run in the driver's process.


@dataclasses.dataclass(frozen=True)
class RayConfig:
  """Where the Ray program runs.

  Attributes:
    address: '' starts a local Ray on 127.0.0.1; 'auto' or 'HOST:PORT' joins a cluster;
      'none' (`NO_RAY`, Atari only) runs the learner stages and the report in the driver's
      process without Ray or Reverb (`stages.atari_in_process`; needs
      replay.learner_source='store'), the other fields then unused.
    num_cpus: CPUs a local Ray may use; 0 means all of this machine's.
    learner_num_cpus: CPUs each learner-group process (one per host) reserves.
    learner_num_gpus: GPUs each learner-group process reserves; 0 runs JAX on the CPU. Ray
      sets CUDA_VISIBLE_DEVICES, so `jax.pmap` maps over exactly these devices.
    learner_max_restarts: how often a dead learner process is restarted (by Ray on one host,
      by the driver as a whole group on several); the unit resumes from its Orbax checkpoint.
    learner_hosts: hosts (processes) per abstract / natural learner group. Above 1 they are
      placed STRICT_SPREAD and joined by `jax.distributed`; each host samples
      batch_size / learner_hosts of every update.
  The learner fields have defaults (a config file may omit them); configs/atari.py sets them.
  """
  address: str
  num_cpus: int
  learner_num_cpus: float = 1.0
  learner_num_gpus: float = 0.0
  learner_max_restarts: int = 2
  learner_hosts: int = 1

  def validate(self, path: str) -> None:
    require(self.num_cpus >= 0, f'{path}.num_cpus', self.num_cpus, 'an int >= 0')
    require(self.learner_num_cpus > 0, f'{path}.learner_num_cpus', self.learner_num_cpus,
            'a float > 0')
    require(self.learner_num_gpus >= 0, f'{path}.learner_num_gpus', self.learner_num_gpus,
            'a float >= 0')
    require(self.learner_max_restarts >= 0, f'{path}.learner_max_restarts',
            self.learner_max_restarts, 'an int >= 0')
    require(self.learner_hosts >= 1, f'{path}.learner_hosts', self.learner_hosts,
            'an int >= 1')


def check_type(path: str, value: Any, annotation: Any) -> Any:
  """Checks `value` against a field annotation and returns it in canonical form."""
  origin = typing.get_origin(annotation)
  if origin is tuple:
    (item_type, _) = typing.get_args(annotation)
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
      raise ConfigError(f'Config key {path} must be a list/tuple of {item_type.__name__}, '
                        f'got {value!r} ({type(value).__name__}).')
    return tuple(check_type(f'{path}[{i}]', v, item_type) for i, v in enumerate(value))
  if annotation is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f'Config key {path} must be a float, got {value!r} '
                        f'({type(value).__name__}).')
    return float(value)
  if annotation is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f'Config key {path} must be an int, got {value!r} '
                        f'({type(value).__name__}).')
    return value
  if annotation in (bool, str):
    if not isinstance(value, annotation):
      raise ConfigError(f'Config key {path} must be a {annotation.__name__}, got {value!r} '
                        f'({type(value).__name__}).')
    return value
  raise TypeError(f'Unsupported annotation {annotation!r} at {path}')


def build(cls: type, values: Mapping[str, Any], path: str) -> Any:
  """Recursively builds dataclass `cls` from a mapping, checking keys and types."""
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(values) - set(names))
  if unknown:
    raise ConfigError(f'Unknown config key(s) {", ".join(f"{path}.{k}" for k in unknown)}; '
                      f'valid keys of {path}: {", ".join(names)}.')
  optional = {f.name for f in dataclasses.fields(cls)
              if f.default is not dataclasses.MISSING}  # Fields with a default may be omitted.
  missing = [n for n in names if n not in values and n not in optional]
  if missing:
    raise ConfigError(f'Missing config key(s) {", ".join(f"{path}.{k}" for k in missing)}.')
  kwargs = {}
  for name in names:
    if name not in values:
      continue  # An omitted field with a default.
    annotation, value = hints[name], values[name]
    if dataclasses.is_dataclass(annotation):
      if not isinstance(value, Mapping):
        raise ConfigError(f'Config key {path}.{name} must be a section (dict), got {value!r}.')
      kwargs[name] = build(annotation, value, f'{path}.{name}')
    else:
      kwargs[name] = check_type(f'{path}.{name}', value, annotation)
  obj = cls(**kwargs)
  obj.validate(path)
  return obj


def to_dict(config: Any) -> dict[str, Any]:
  """A JSON-ready dict of a config dataclass (tuples become lists)."""
  return dataclasses.asdict(config)
