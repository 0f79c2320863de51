"""Atari RMR: collect RAM + pixel traces with policy heads, then (later stages) learn from them.

  python atari.py                                  # local default, fresh work directory
  python atari.py --config=configs/atari.py:test --workdir=/tmp/rmr --stages=collect
  python atari.py --config.heads.num_heads=16      # override any config field

Runs embedded (local Ray on 127.0.0.1, in-process Reverb) unless the config names a Ray cluster.
"""

import datetime
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Reverb's TF runtime: warnings and up.

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rmr_dist import cli  # noqa: E402
from rmr_dist import config as config_lib  # noqa: E402
from rmr_dist.distributed import program as program_lib  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_CONFIG = os.path.join(_HERE, 'configs', 'atari.py') + ':local'
if __name__ == '__main__':
  # ml_collections reads the config arguments while defining the flag: check them before.
  cli.exit_on_bad_config_args(sys.argv, _DEFAULT_CONFIG, prog='atari.py')
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG,
    'Config file and variant, e.g. configs/atari.py:local (test | local | paper).')
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Work directory (outputs, checkpoints, TensorBoard). Default: a fresh '
    'runs/atari-<time> directory. Re-running with the same directory resumes.')
_STAGES = flags.DEFINE_list(
    'stages', list(program_lib.STAGES),
    f'Comma-separated stages to run, from: {",".join(program_lib.STAGES)}.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  try:
    config = config_lib.load_atari_config(_CONFIG.value)
    stages = program_lib.check_stages(_STAGES.value)
  except config_lib.ConfigError as e:
    sys.exit(f'atari.py: error: {e}')
  workdir = _WORKDIR.value or os.path.join(
      os.getcwd(), 'runs', 'atari-' + datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
  print(f'atari.py: work directory {workdir}', flush=True)
  try:
    program = program_lib.AtariProgram(config, workdir)
  except config_lib.ConfigError as e:
    sys.exit(f'atari.py: error: {e}')
  try:
    program.run(stages)
  except (config_lib.ConfigError, FloatingPointError, TimeoutError) as e:
    sys.exit(f'atari.py: error: {e}')
  finally:
    program.close()
  print(f'atari.py: done. Outputs in {workdir}; TensorBoard: tensorboard --logdir '
        f'{os.path.join(workdir, "tb")}')


if __name__ == '__main__':
  app.run(main)
