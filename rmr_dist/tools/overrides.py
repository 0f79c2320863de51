"""``SECTION.KEY=VALUE`` overrides of a work directory's config.json (the tools' ``--set``)."""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib


def read_config_dict(root: str) -> dict[str, Any]:
  """The config.json a work directory's latest run wrote.

  Raises:
    ConfigError: `root` holds no config.json (names it).
  """
  config_dict = workdir_lib.read_json(storage.join(root, 'config.json'))
  if config_dict is None:
    raise config_lib.ConfigError(f'--workdir={root} holds no run (no config.json): run the '
                                 'program on it first.')
  return config_dict


def apply(config_dict: dict[str, Any], items: list[str], schema: type) -> dict[str, Any]:
  """`config_dict` with each ``SECTION.KEY=VALUE`` of `items` applied (a copy).

  A value is parsed as a Python literal where the key's current value is not a string (tuples
  as ``('cswm','rmr')``), else taken as text. A key of the section's dataclass counts even when
  `config_dict` (written before the field existed) lacks it.

  Raises:
    ConfigError: an item that is not ``SECTION.KEY=VALUE`` with a key of `schema` (names it
      and the sections).
  """
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in config_dict.items()}
  sections = {f.name: f.type for f in dataclasses.fields(schema)}
  for item in items:
    key, sep, text = item.partition('=')
    section, _, name = key.partition('.')
    section_type = getattr(config_lib, str(sections.get(section, '')), None)
    fields = ({f.name for f in dataclasses.fields(section_type)}
              if dataclasses.is_dataclass(section_type) else set())
    if not sep or not isinstance(out.get(section), dict) or (
        name not in out[section] and name not in fields):
      raise config_lib.ConfigError(
          f'--set {item!r}: expected SECTION.KEY=VALUE with a key of the config (sections: '
          f'{", ".join(k for k, v in out.items() if isinstance(v, dict))})')
    old = out[section].get(name)
    if isinstance(old, str):
      out[section][name] = text
    else:
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        value = text
      if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # '1' for a float field
      out[section][name] = value
  return out
