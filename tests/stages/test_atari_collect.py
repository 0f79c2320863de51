"""The collect stage's bookkeeping (`rmr_dist.stages.atari_collect`) on hand-made episodes,
without Ray or Reverb: counters, summary values, and the summary file marking completion."""

import json
import os

import pytest

from configs import atari as atari_configs
from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.replay import splits
from rmr_dist.stages import atari_collect


def _stats(head, episode, split, length, episode_return, seconds, skipped=False):
  return collector_lib.EpisodeStats('pong', head, episode, split, length, episode_return,
                                    terminal=True, seconds=seconds, skipped=skipped)


@pytest.fixture
def config():
  config = config_lib.load_atari_config(atari_configs.get_config('test'))
  assert config.games == ('pong',) and config.heads.num_heads == 4
  assert config.replay.transitions_per_item == 8 and config.env.frame_skip == 4
  return config


# 10 + 20 train transitions (2 + 3 items of 8), 5 validation ones; 20 steps played in 2 s.
STATS = [_stats(0, 0, splits.TRAIN, 10, 1.0, 0.0, skipped=True),
         _stats(0, 1, splits.VAL, 5, -1.0, 0.5),
         _stats(1, 0, splits.TRAIN, 20, 3.0, 1.5)]


def test_work_units_cover_the_budget(config):
  units = atari_collect.work_units(config)
  assert len(units) == 4 * 2 and units[0] == collector_lib.WorkUnit('pong', 0, 0)
  assert atari_collect.head_checkpoints(config, '/nowhere') is None  # random heads


def test_log_progress_counts_played_steps(config):
  logged, lines = [], []
  atari_collect.log_progress(config, STATS, total=8, elapsed=5.0, actor_steps=[25, 0],
                             replay_items=7, log_fn=lambda s, step: logged.append((s, step)),
                             say=lines.append)
  (scalars, step), = logged
  assert step == 25  # skipped episodes were not played
  assert scalars['collector/steps_per_s'] == 5.0 and scalars['collector/frames_per_s'] == 20.0
  assert scalars['collector/actor_0/steps_per_s'] == 5.0
  assert scalars['collector/pong/episodes'] == 3 and scalars['collector/head_0/episodes'] == 2
  assert scalars['collector/head_3/episodes'] == 0
  assert lines == ['collect: 3/8 episodes, 25 steps, 5 steps/s, ETA 8s, replay items 7']


def test_game_summary_values(config):
  summary = atari_collect.game_summary(config, STATS, {'abstract_pong': 5, 'natural_pong': 5,
                                                       'abstract_breakout': 9})
  assert summary == {'pong': {
      'train_episodes': 2, 'val_episodes': 1, 'train_transitions': 30, 'train_items': 5,
      'val_transitions': 5, 'mean_return': 1.0, 'agent_steps_per_s': 12.5,
      'frames_per_s': 50.0, 'replay_items': {'abstract_pong': 5, 'natural_pong': 5}}}


def test_write_summary_marks_the_stage_complete(config, tmp_path):
  paths = workdir_lib.open_workdir(str(tmp_path), config, workdir_lib.ATARI_STAGES)
  paths.record_stage('collect')
  assert atari_collect.read_summary(config, paths) is None
  logger = logging_lib.Logger(paths.tb)
  summary = atari_collect.write_summary(config, paths, STATS, {}, None, logger,
                                        say=lambda line: None)
  logger.close()
  heads = summary['heads']['pong']
  assert [h['episodes'] for h in heads] == [2, 1, 0, 0]
  assert heads[0]['mean_return'] == 0.0 and heads[2]['mean_return'] is None
  assert 'replay_checkpoint' not in summary
  with open(paths.collect_summary) as f:
    assert json.load(f) == summary
  assert os.path.exists(os.path.join(paths.episodes, 'index.json'))
  # With replay.checkpoint the stage is complete only once the replay checkpoint is there.
  assert config.replay.checkpoint and atari_collect.read_summary(config, paths) is None
  os.makedirs(paths.replay)
  assert atari_collect.read_summary(config, paths) == summary
