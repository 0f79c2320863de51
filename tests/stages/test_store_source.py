"""Learners without Reverb: with `replay.learner_source=store` the Atari learner stages complete
the `test` config (with two-frame natural inputs, which only the store gives) in a process where
importing `reverb` (or TensorFlow, its runtime) raises, and the balls learner stages import
neither."""

import json
import os
import subprocess
import sys

import pytest

from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import collector as collector_lib
from rmr_dist.replay import episode_store
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

ATARI_LEARNERS = '''
import json, sys
from configs import atari as atari_configs
from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.distributed import program  # The driver imports without Reverb too.
from rmr_dist.stages import atari_abstract, atari_natural, atari_probe, atari_report

config = config_lib.load_atari_config(json.loads(sys.argv[1]))
paths = workdir_lib.open_workdir(sys.argv[2], config, workdir_lib.ATARI_STAGES)
out = {'abstract': [atari_abstract.run(config, paths, 'pong', m, '', say=print)
                    for m in config.abstract.models]}
out['natural'] = [atari_natural.run(config, paths, 'pong', f, '', say=print)
                  for f in config.natural.data_fractions]
out['probe'] = [atari_probe.run(config, paths, 'pong', f, '')
                for f in config.natural.data_fractions]
logger = logging_lib.Logger(paths.tb)
out['report'] = dict(atari_report.run(config, paths, logger, say=print))
logger.close()
out['blocked'] = [m for m, v in sys.modules.items() if v is not None and
                  m.split('.')[0] in ('reverb', 'tensorflow')]
print('RESULT ' + json.dumps(out))
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
  proc = _run_blocked(tmp_path, 'from rmr_dist.replay import tables\n')  # Imports reverb.
  assert proc.returncode != 0 and 'import of reverb halted' in proc.stderr


def test_atari_learners_complete_from_the_store_without_reverb(tmp_path):
  from configs import atari as atari_configs
  config = config_lib.load_atari_config(atari_configs.get_config('test'))
  config = config_lib.load_atari_config(dict(
      config_lib.to_dict(config),
      collect=dict(config_lib.to_dict(config.collect), store_all_episodes=True),
      replay=dict(config_lib.to_dict(config.replay), learner_source='store'),
      abstract=dict(config_lib.to_dict(config.abstract), models=('copy', 'mpnn'),
                    curve_steps=(3,)),
      natural=dict(config_lib.to_dict(config.natural), frame_stack=2)))
  # Collection without replay: the plain collector writes every episode to the store only.
  paths = workdir_lib.open_workdir(str(tmp_path / 'run'), config, workdir_lib.ATARI_STAGES)
  collector = collector_lib.Collector(config, episode_store.EpisodeStore(paths.episodes), None)
  collector.run(collector_lib.make_work_units(config.games, config.heads.num_heads,
                                              config.heads.episodes_per_head))
  proc = _run_blocked(tmp_path, ATARI_LEARNERS, json.dumps(config_lib.to_dict(config)),
                      paths.root)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = json.loads(proc.stdout.split('RESULT ', 1)[1])
  assert out['blocked'] == []
  assert [r['model'] for r in out['abstract']] == ['copy', 'mpnn']
  assert out['abstract'][1]['train_steps'] == config.abstract.num_steps
  # Table 2's learning curve: the MPNN evaluated after 3 of its 6 updates too, copy never.
  assert set(out['abstract'][1]['curve']) == {'3'} and out['abstract'][0]['curve'] == {}
  assert 0 <= out['abstract'][1]['curve']['3']['bit_f1'] <= 1
  assert all(r['identical_batches'] and r['steps'] == config.natural.num_steps
             for r in out['natural'])
  assert all(len(v['bit_f1']) == config.natural.num_seeds
             for r in out['probe'] for v in r['variants'].values())
  assert {'table1.md', 'table2.md', 'table2_curve.md'} <= set(out['report'])
  with open(out['report']['table2.md']) as f:  # Store batches: Table 2 is paired.
    assert 'same batch sequence' in f.read()
  # Two-frame inputs, probes included: the probe set holds stacks [N, 2, H, W, 3].
  import numpy as np
  with np.load(paths.probe_data('pong')) as data:
    assert data['frames'].shape[1:] == (2, config.env.frame_height, config.env.frame_width, 3)


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
                 collect=dict(config_lib.to_dict(test_config.collect), store_all_episodes=False))
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load_atari_config(without)
  assert 'config.collect.store_all_episodes=False' in str(e.value)
  assert 'config.probe.train_transitions' in str(e.value)
