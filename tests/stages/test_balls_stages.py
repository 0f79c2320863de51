"""Each bouncing-balls stage unit in one process, without Ray, on the `test` config (less the
oracle, which the whole-program test runs)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from configs import balls as balls_configs
from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.stages import balls_abstract
from rmr_dist.stages import balls_data
from rmr_dist.stages import balls_natural
from rmr_dist.stages import balls_report
from rmr_dist.tools import balls_ladder

pytestmark = pytest.mark.fast_compile  # few updates of small models: compiling dominates


def test_stage_units_run_in_one_process(tmp_path, capsys):
  config = config_lib.load_balls_config(balls_configs.get_config('test'))
  config = dataclasses.replace(config, natural=dataclasses.replace(config.natural,
                                                                   oracle_steps=0))
  paths = workdir_lib.open_workdir(str(tmp_path), config, workdir_lib.BALLS_STAGES)
  data = balls_data.run(config, paths, say=lambda line: None)
  assert data['simulated'] == config.data.train_episodes + config.data.val_episodes
  assert balls_data.missing_work(config, paths, 1) == []

  abstract = balls_abstract.run(config, paths, say=lambda line: None)
  assert abstract['train_steps'] == config.abstract.num_steps
  assert len(abstract['rollout_mse']) == config.abstract.rollout_steps
  assert os.path.isdir(os.path.join(paths.stage_dir('abstract'), 'processor'))

  logged = []
  natural = balls_natural.run(config, paths, log_fn=lambda s, step: logged.append(s),
                              say=lambda line: None)
  assert natural['identical_batches']
  assert set(natural['mse']) == set(config.natural.variants)
  assert any('eval/natural/rmr/seed_0/mse' in s and 'eval/natural/rmr/seed_0/fg_ari' in s
             for s in logged)
  assert balls_natural.run(config, paths) == natural  # Read back, not redone.
  for parts in natural['latent_outside_abstract_span'].values():
    assert all(0.0 <= x <= 1.0 for k in ('ball_slots', 'background_slot') for x in parts[k])

  written = balls_report.run(config, paths, say=lambda line: None)
  with open(written['balls.md']) as f:
    text = f.read()
  assert f'natural {paths.fingerprints["natural"]}' in text
  assert '| rmr |' in text and 'span of the abstract f' in text

  # The ladder tool runs on the same work directory, with the stage's learner.
  balls_ladder.main([f'--workdir={tmp_path}', 'controls', '--windows=4'])
  balls_ladder.main([f'--workdir={tmp_path}', 'train', '--variant=rmr', '--steps=2',
                     '--eval-every=1', '--windows=4', '--set', 'natural.slot_init=sampled'])
  lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if line.startswith('{')]
  assert lines[0]['mean_frame_mse'] > 0 and lines[0]['n_windows'] == 4
  assert [x['step'] for x in lines[1:]] == [0, 1, 2]
  assert all(np.isfinite(x['mse']) and x['ratio_copy_last'] > 0 for x in lines[1:])
