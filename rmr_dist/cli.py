"""The command line of both entry points (`atari.py`, `balls.py`): `main`.

absl/ml_collections report a bad `--config.<key>=...` override with a bare `KeyError` traceback.
`check_config_args` looks at the config arguments first and exits with a message that names the
bad file, variant or key and lists what would be valid. Every other bad input (config values,
stage names, the work directory, a policy checkpoint) fails in the program's constructor, in
the driver, before Ray starts, and `main` prints its message without a traceback.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib


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


def main(*, prog: str, default_config: str, load_config: Callable[[Any], Any],
         make_program: Callable[[Any, str], Any], stages: Sequence[str],
         default_stages: Sequence[str] | None = None) -> None:
  """Parses flags and runs a program: `--config`, `--config.a.b=...`, `--workdir`, `--stages`.

  Args:
    prog: the entry point's name (for messages and the default work directory).
    default_config: 'configs/<file>.py:<variant>' used without --config.
    load_config: validates the ml_collections config into the program's config dataclass.
    make_program: `(config, workdir) -> program` with `run(stages)` and `close()`.
    stages: the program's stages, in order.
    default_stages: the stages run without --stages (default: all of `stages`).
  """
  # pylint: disable=g-import-not-at-top  (absl flags are defined only for a real command line)
  from absl import app
  from absl import flags
  from absl import logging
  from ml_collections import config_flags

  exit_on_bad_config_args(sys.argv, default_config, prog)
  config_flag = config_flags.DEFINE_config_file(
      'config', default_config, f'Config file and variant, e.g. {default_config} '
      '(variants: test | local | gpu | paper, as the file defines).')
  workdir_flag = flags.DEFINE_string(
      'workdir', None, f'Work directory (outputs, checkpoints, TensorBoard). Default: a fresh '
      f'runs/{prog[:-3]}-<time> directory. Re-running with the same directory resumes, and '
      'reuses the stages a changed config leaves unchanged.')
  stages_flag = flags.DEFINE_list('stages', list(default_stages or stages),
                                  f'Comma-separated stages to run, from: {",".join(stages)}.')

  def run(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
    workdir = workdir_flag.value or os.path.join(
        os.getcwd(), 'runs', f'{prog[:-3]}-' + datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
    try:
      config = load_config(config_flag.value)
      chosen = workdir_lib.check_stage_names(stages_flag.value, stages)
      print(f'{prog}: work directory {storage.normalize(workdir)}', flush=True)
      program = make_program(config, workdir)
    except config_lib.ConfigError as e:
      sys.exit(f'{prog}: error: {e}')
    # Imported here: JAX and Orbax take seconds, and a bad command line fails before them.
    from rmr_dist import checkpointing  # pylint: disable=g-import-not-at-top
    user_errors = (config_lib.ConfigError, checkpointing.CheckpointError, FloatingPointError,
                   TimeoutError, RuntimeError)
    try:
      program.run(chosen)
    except user_errors as e:
      sys.exit(f'{prog}: error: {e}')
    finally:
      program.close()
    print(f'{prog}: done. Outputs in {storage.normalize(workdir)}; TensorBoard: tensorboard '
          f'--logdir {storage.join(storage.normalize(workdir), "tb")}')

  app.run(run)
