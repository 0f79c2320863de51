"""Each bouncing-balls stage unit in one process, without Ray, on the `test` config."""

import os

from configs import balls as balls_configs
from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.stages import balls_abstract
from rmr_dist.stages import balls_data
from rmr_dist.stages import balls_natural
from rmr_dist.stages import balls_report


def test_stage_units_run_in_one_process(tmp_path):
  config = config_lib.load_balls_config(balls_configs.get_config('test'))
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

  written = balls_report.run(config, paths, say=lambda line: None)
  with open(written['balls.md']) as f:
    assert f'natural {paths.fingerprints["natural"]}' in f.read()
