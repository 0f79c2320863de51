"""Command-line helpers shared by the entry points (`atari.py`, `balls.py`).

absl/ml_collections report a bad `--config.<key>=...` override with a bare `KeyError` traceback.
`check_config_args` looks at the config arguments first and exits with a message that names the
bad file, variant or key and lists what would be valid.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence

import ml_collections

from rmr_dist import config as config_lib


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """Loads 'path/to/file.py[:variant]' the way ml_collections' config flag does.

  Raises:
    ConfigError: for a missing file or an unknown variant.
  """
  path, _, variant = spec.partition(':')
  if not os.path.isfile(path):
    raise config_lib.ConfigError(f'Config file {path!r} (from --config={spec}) does not exist.')
  module_spec = importlib.util.spec_from_file_location('_rmr_user_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    return module.get_config(variant) if variant else module.get_config()
  except ValueError as e:
    raise config_lib.ConfigError(f'--config={spec}: {e}') from e


def check_config_args(argv: Sequence[str], default_spec: str, flag: str = 'config') -> None:
  """Validates `--config=...` and every `--config.a.b=...` override in `argv`.

  Args:
    argv: the command line.
    default_spec: the config flag's default 'file.py:variant'.
    flag: the config flag's name.

  Raises:
    ConfigError: naming the bad file, variant or override key and the valid keys.
  """
  spec = default_spec
  overrides = []
  for arg in argv[1:]:
    if arg.startswith(f'--{flag}='):
      spec = arg.split('=', 1)[1]
    elif arg.startswith(f'--{flag}.'):
      overrides.append(arg[len(flag) + 3:].split('=', 1)[0])
  config = load_config_file(spec)
  for key in overrides:
    node, walked = config, flag
    for part in key.split('.'):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        valid = ', '.join(sorted(node.keys())) if isinstance(node, ml_collections.ConfigDict) \
            else '(none: it is a value)'
        raise config_lib.ConfigError(f'Unknown config override --{flag}.{key}: {walked} has no '
                                     f'key {part!r}; valid keys of {walked}: {valid}.')
      node, walked = node[part], f'{walked}.{part}'


def exit_on_bad_config_args(argv: Sequence[str], default_spec: str, prog: str) -> None:
  """`check_config_args`, exiting with status 1 and the message on a ConfigError."""
  try:
    check_config_args(argv, default_spec)
  except config_lib.ConfigError as e:
    raise SystemExit(f'{prog}: error: {e}') from None
