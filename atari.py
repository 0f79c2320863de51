"""Atari RMR: collect RAM + pixel traces with policy heads, learn from them, report.

  python atari.py                                  # local default, fresh work directory
  python atari.py --config=configs/atari.py:test --workdir=/tmp/rmr --stages=collect
  python atari.py --config.heads.num_heads=16      # override any config field
  python atari.py --config.games=pong --stages=agent  # train a policy per game (agent/)

Stages: agent (opt-in: trains the heads' policies), collect, abstract, natural, probe, report
(the default: all but agent, which is added when heads.checkpoint_path='agent'). Runs embedded
(local Ray on 127.0.0.1, in-process Reverb) unless the config names a Ray cluster; with
--config.ray.address=none the learner stages and the report run in this process without Ray or
Reverb, on a work directory collected elsewhere (scripts/gpu_study.sh).
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Reverb's TF runtime: warnings and up.

from rmr_dist import cli  # noqa: E402
from rmr_dist import config as config_lib  # noqa: E402
from rmr_dist import workdir as workdir_lib  # noqa: E402


def make_program(config, workdir):
  """The AtariProgram, imported only once the command line and the config have been checked:
  Ray, JAX and Reverb take seconds to import, and a bad input fails before that. With
  ray.address='none' the learner stages run in this process instead, importing neither Ray
  nor Reverb (`rmr_dist.stages.atari_in_process`)."""
  if config.ray.address == config_lib.NO_RAY:
    from rmr_dist.stages import atari_in_process  # pylint: disable=g-import-not-at-top
    return atari_in_process.InProcessAtariProgram(config, workdir)
  from rmr_dist.distributed import atari_program  # pylint: disable=g-import-not-at-top
  return atari_program.AtariProgram(config, workdir)


if __name__ == '__main__':
  cli.main(prog='atari.py',
           default_config=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                                       'atari.py') + ':local',
           load_config=config_lib.load_atari_config, make_program=make_program,
           stages=workdir_lib.ATARI_STAGE_NAMES,
           default_stages=workdir_lib.ATARI_DEFAULT_STAGES)
