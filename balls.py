"""Bouncing balls RMR (paper section 3): simulate, train the abstract MPNN, transfer its P.

  python balls.py                                   # local default, fresh work directory
  python balls.py --config=configs/balls.py:test --workdir=/tmp/balls
  python balls.py --config.natural.num_seeds=5      # override any config field

Stages: data (MuJoCo simulation actors on Ray), abstract, natural, report. Runs embedded
(local Ray on 127.0.0.1) unless the config names a Ray cluster.
"""

import datetime
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rmr_dist import checkpointing  # noqa: E402
from rmr_dist import cli  # noqa: E402
from rmr_dist import config as config_lib  # noqa: E402
from rmr_dist.distributed import balls_program  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_CONFIG = os.path.join(_HERE, 'configs', 'balls.py') + ':local'
if __name__ == '__main__':
  cli.exit_on_bad_config_args(sys.argv, _DEFAULT_CONFIG, prog='balls.py')
_CONFIG = config_flags.DEFINE_config_file(
    'config', _DEFAULT_CONFIG,
    'Config file and variant, e.g. configs/balls.py:local (test | local | gpu | paper).')
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Work directory (outputs, checkpoints, TensorBoard). Default: a fresh '
    'runs/balls-<time> directory. Re-running with the same directory resumes.')
_STAGES = flags.DEFINE_list(
    'stages', list(balls_program.STAGES),
    f'Comma-separated stages to run, from: {",".join(balls_program.STAGES)}.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  try:
    config = config_lib.load_balls_config(_CONFIG.value)
    stages = balls_program.check_stages(_STAGES.value)
    workdir = _WORKDIR.value or os.path.join(
        os.getcwd(), 'runs', 'balls-' + datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
    print(f'balls.py: work directory {workdir}', flush=True)
    program = balls_program.BallsProgram(config, workdir)
  except config_lib.ConfigError as e:
    sys.exit(f'balls.py: error: {e}')
  try:
    program.run(stages)
  except (config_lib.ConfigError, checkpointing.CheckpointError, FloatingPointError,
          TimeoutError, RuntimeError) as e:
    sys.exit(f'balls.py: error: {e}')
  finally:
    program.close()
  print(f'balls.py: done. Outputs in {workdir}; TensorBoard: tensorboard --logdir '
        f'{os.path.join(workdir, "tb")}')


if __name__ == '__main__':
  app.run(main)
