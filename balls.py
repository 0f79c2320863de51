"""Bouncing balls RMR (paper section 3): simulate, train the abstract MPNN, transfer its P.

  python balls.py                                   # local default, fresh work directory
  python balls.py --config=configs/balls.py:test --workdir=/tmp/balls
  python balls.py --config.natural.num_seeds=5      # override any config field

Stages: data (MuJoCo simulation actors on Ray), abstract, natural (learner groups), report.
Runs embedded (local Ray on 127.0.0.1) unless the config names a Ray cluster.
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from rmr_dist import cli  # noqa: E402
from rmr_dist import config as config_lib  # noqa: E402
from rmr_dist import workdir as workdir_lib  # noqa: E402


def make_program(config, workdir):
  """The BallsProgram, imported only once the command line and the config have been checked:
  Ray and JAX take seconds to import, and a bad input fails before that."""
  from rmr_dist.distributed import balls_program  # pylint: disable=g-import-not-at-top
  return balls_program.BallsProgram(config, workdir)


if __name__ == '__main__':
  cli.main(prog='balls.py',
           default_config=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                                       'balls.py') + ':local',
           load_config=config_lib.load_balls_config, make_program=make_program,
           stages=workdir_lib.BALLS_STAGE_NAMES)
