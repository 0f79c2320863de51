"""Learners without Reverb: with `replay.learner_source=store` the Atari driver and learner
stages import in a process where importing `reverb` (or TensorFlow, its runtime) raises, and
the balls learner stages import neither (tests/stages/test_gpu_study.py runs the Atari learner
stages so, without Ray too)."""

import os
import subprocess
import sys

import pytest

from rmr_dist import config as config_lib
from tests.conftest import REPO

# Run before the script: reverb and tensorflow look uninstalled. A None entry in sys.modules
# makes `import reverb` (and its submodules) raise ImportError and importlib.util.find_spec
# return None, as for a package that is not there (etils probes for tensorflow that way).
BLOCK = '''
import runpy, sys
sys.modules['reverb'] = sys.modules['tensorflow'] = None
sys.argv = sys.argv[1:]  # [script, its arguments...]
runpy.run_path(sys.argv[0], run_name='__main__')
'''

ATARI_IMPORTS = '''
import sys
from rmr_dist.distributed import atari_program  # The Ray driver imports without Reverb too.
from rmr_dist.stages import atari_abstract, atari_natural, atari_probe, atari_report
print('RESULT', [m for m, v in sys.modules.items() if v is not None and
                 m.split('.')[0] in ('reverb', 'tensorflow')])
'''

BALLS_IMPORTS = '''
import sys
from rmr_dist.distributed import balls_program
from rmr_dist.stages import balls_data, balls_abstract, balls_natural, balls_report
print('RESULT', [m for m, v in sys.modules.items() if v is not None and
                 m.split('.')[0] in ('reverb', 'tensorflow')])
'''


def _run_blocked(tmp_path, script, *args, timeout=300):
  path = tmp_path / 'script.py'
  path.write_text(script)
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, '-c', BLOCK, str(path), *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_the_import_hook_blocks_reverb(tmp_path):
  proc = _run_blocked(tmp_path, 'import reverb\n')
  assert proc.returncode != 0 and 'ModuleNotFoundError: import of reverb halted' in proc.stderr
  proc = _run_blocked(tmp_path, 'from rmr_dist.replay import atari_tables\n')  # Imports reverb.
  assert proc.returncode != 0 and 'import of reverb halted' in proc.stderr


def test_atari_driver_and_learner_stages_import_no_reverb(tmp_path):
  """The learner stages themselves run from the store without Reverb, Ray or TensorFlow in
  tests/stages/test_gpu_study.py (`ray.address='none'`)."""
  proc = _run_blocked(tmp_path, ATARI_IMPORTS)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith('RESULT []')


def test_balls_learner_stages_import_no_reverb(tmp_path):
  proc = _run_blocked(tmp_path, BALLS_IMPORTS)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith('RESULT []')


def test_store_source_without_stored_training_episodes_is_refused(test_config):
  with_store = dict(config_lib.to_dict(test_config),
                    collect=dict(config_lib.to_dict(test_config.collect),
                                 store_all_episodes=False),
                    replay=dict(config_lib.to_dict(test_config.replay), learner_source='store'))
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load_atari_config(with_store)
  assert "config.replay.learner_source='store'" in str(e.value)
  assert 'config.collect.store_all_episodes=False' in str(e.value)


def test_probe_stage_without_stored_training_episodes_is_refused(test_config):
  # The probe set (and its episode ids) comes from the stored training episodes, whatever
  # the learners' source.
  assert test_config.collect.store_all_episodes
  without = dict(config_lib.to_dict(test_config),
                 collect=dict(config_lib.to_dict(test_config.collect), store_all_episodes=False),
                 replay=dict(config_lib.to_dict(test_config.replay), learner_source='reverb'))
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load_atari_config(without)
  assert 'config.collect.store_all_episodes=False' in str(e.value)
  assert 'config.probe.train_transitions' in str(e.value)
