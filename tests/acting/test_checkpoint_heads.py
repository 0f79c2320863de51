"""Heads built from several policy checkpoints act from the right one."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist.acting import atari_heads as heads_lib
from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari
from rmr_dist.networks import atari_policy as policy_net
from rmr_dist.stages import atari_agent


def _save_constant_policy(path, action):
  """A RamQNetwork((1,)) checkpoint whose greedy action is `action` in every state."""
  params = policy_net.init_params(__import__('jax').random.PRNGKey(0), (1,))
  bias = np.zeros(18, np.float32)
  bias[action] = 1.0
  params = {'Dense_0': {'kernel': jnp.zeros_like(params['Dense_0']['kernel']),
                        'bias': jnp.ones_like(params['Dense_0']['bias'])},
            'Dense_1': {'kernel': jnp.zeros_like(params['Dense_1']['kernel']),
                        'bias': jnp.asarray(bias)}}
  return checkpointing.save_policy(path, params, (1,))


def test_head_checkpoint_index_spans_first_to_last():
  assert [atari_policies.head_checkpoint_index(i, 5, 3) for i in range(5)] == [0, 0, 1, 2, 2]
  assert [atari_policies.head_checkpoint_index(i, 4, 4) for i in range(4)] == [0, 1, 2, 3]
  assert [atari_policies.head_checkpoint_index(i, 8, 2) for i in range(8)] == [0] * 4 + [1] * 4
  assert atari_policies.head_checkpoint_index(0, 1, 5) == 4  # One head: the best policy.


def test_heads_act_from_their_checkpoint(tmp_path):
  # Checkpoints in training order 5, 40, 300 (numeric order, not lexical): greedy actions 2, 3, 4.
  root = tmp_path / 'agent' / 'pong'
  for update, action in ((300, 4), (5, 2), (40, 3)):
    _save_constant_policy(str(root / f'policy_{update}'), action)
  heads_cfg = config_lib.HeadsConfig(
      num_heads=5, episodes_per_head=1, base_policy='checkpoint', checkpoint_path='agent',
      epsilon=0.0, alpha=0.0, min_persistence=0.0, max_persistence=0.0,
      preference_concentration=1.0)
  found = atari_agent.resolve_checkpoints(heads_cfg, ['pong'], str(tmp_path))
  assert [os.path.basename(p) for p in found['pong']] == ['policy_5', 'policy_40', 'policy_300']
  family = atari_policies.make_policy(heads_cfg, found)
  obs = atari.AtariEnv('pong').reset(0)
  specs = heads_lib.make_head_specs(5, epsilon=0.0, alpha=0.0, max_persistence=0.0,
                                    preference_concentration=1.0, seed=0)
  acted = []
  for i in range(5):
    head = heads_lib.Head(specs[i], atari_policies.policy_for(family, 'pong', i))
    head.begin_episode(np.random.default_rng(i))
    acted.append(head.act(obs))
  assert acted == [2, 2, 3, 4, 4]  # Checkpoints [0, 0, 1, 2, 2]: weak heads and strong ones.
  # A directory of per-game checkpoints works as well; a single checkpoint serves every head.
  same = config_lib.HeadsConfig(**{**heads_cfg.__dict__, 'checkpoint_path': str(tmp_path / 'agent')})
  assert atari_agent.resolve_checkpoints(same, ['pong'], '/elsewhere') == found
  one = config_lib.HeadsConfig(**{**heads_cfg.__dict__, 'checkpoint_path': str(root / 'policy_40')})
  assert atari_agent.resolve_checkpoints(one, ['pong'], '') == {'pong': [str(root / 'policy_40')]}


def test_agent_checkpoints_missing_names_the_stage(tmp_path):
  heads_cfg = config_lib.HeadsConfig(
      num_heads=2, episodes_per_head=1, base_policy='checkpoint', checkpoint_path='agent',
      epsilon=0.0, alpha=0.0, min_persistence=0.0, max_persistence=0.0,
      preference_concentration=1.0)
  with pytest.raises(config_lib.ConfigError, match='run the agent stage first'):
    atari_agent.resolve_checkpoints(heads_cfg, ['pong'], str(tmp_path))
