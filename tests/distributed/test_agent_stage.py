"""The agent stage end to end on a real local Ray and Reverb (test config), then collection by
heads that act from its checkpoints."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.ray


@pytest.mark.slow
def test_agent_stage_checkpoints_feed_the_collect_heads(tmp_path):
  from rmr_dist import checkpointing
  workdir = str(tmp_path / 'run')
  env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER='0')
  # --stages=collect with checkpoint_path='agent' adds the agent stage before it.
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, 'atari.py'), '--config=configs/atari.py:test',
       f'--workdir={workdir}', '--stages=collect', '--config.heads.base_policy=checkpoint',
       '--config.heads.checkpoint_path=agent'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'adding the agent stage' in proc.stdout
  game_dir = os.path.join(workdir, 'agent', 'pong')
  with open(os.path.join(game_dir, 'result.json')) as f:
    result = json.load(f)
  # test config: 600 agent steps, 100 of warm-up, 8 samples per insert, batch 8 -> ~500 updates.
  assert result['env_steps'] == 600 and result['updates'] >= 400
  assert len(result['checkpoints']) == 3 and result['checkpoints'][0] == 'policy_0'
  assert result['checkpoints'][-1] == f'policy_{result["updates"]}'
  digests = set()
  for name in result['checkpoints']:
    meta, params = checkpointing.load_policy(os.path.join(game_dir, name))
    assert meta['hidden_sizes'] == [16] and meta['actions'] == [0, 1, 3, 4, 11, 12]
    digests.add(checkpointing.tree_digest(params))
  assert len(digests) == 3  # The policy changed between checkpoints.
  with open(os.path.join(game_dir, 'returns.csv')) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith('env_steps,actor,return') and len(lines) >= 3
  assert os.path.getsize(os.path.join(game_dir, 'returns.png')) > 0
  with open(os.path.join(workdir, 'collect', 'summary.json')) as f:
    heads = json.load(f)['heads']
  assert heads['base_policy'] == 'checkpoint'
  # 4 heads over 3 checkpoints: round(i * 2 / 3) = 0, 1, 1, 2.
  used = [os.path.basename(h['checkpoint']) for h in heads['pong']]
  assert used == [result['checkpoints'][k] for k in (0, 1, 1, 2)]
  assert all(h['episodes'] == 2 and h['mean_return'] is not None for h in heads['pong'])
