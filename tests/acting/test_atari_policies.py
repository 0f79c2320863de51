"""Base policies: the checkpoint policy restores a real network and acts greedily."""

import os

import jax
import numpy as np
import pytest

from rmr_dist import checkpointing
from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari
from rmr_dist.networks import atari_policy as policy_net


def test_checkpoint_policy_acts_greedily(tmp_path):
  params = policy_net.init_params(jax.random.PRNGKey(3), (32,))
  path = checkpointing.save_policy(str(tmp_path / 'pol'), params, (32,))
  pol = atari_policies.CheckpointPolicy(path)
  env = atari.AtariEnv('pong')
  obs = env.reset(0)
  net = policy_net.RamQNetwork((32,), 18)
  for _ in range(5):
    q = net.apply({'params': params}, obs.ram[None])[0]
    assert pol.act(obs, np.random.default_rng(0)) == int(np.argmax(q))
    obs = env.step(int(np.argmax(q))).observation


def test_checkpoint_policy_acts_over_the_actions_it_was_trained_on(tmp_path):
  params = policy_net.init_params(jax.random.PRNGKey(3), (32,))
  bias = np.zeros(18, np.float32)
  bias[[7, 4]] = [50.0, 40.0]  # Dominates every state's Q: 7 overall, 4 within Breakout's set.
  params['Dense_1']['bias'] = bias
  breakout = atari.agent_actions('breakout', 'minimal')
  path = checkpointing.save_policy(str(tmp_path / 'pol'), params, (32,), actions=breakout)
  meta, _ = checkpointing.load_policy(path)
  assert meta['actions'] == [0, 1, 3, 4]
  obs = atari.AtariEnv('breakout').reset(0)
  assert atari_policies.CheckpointPolicy(path).act(obs, np.random.default_rng(0)) == 4
  full = checkpointing.save_policy(str(tmp_path / 'full'), params, (32,))
  assert atari_policies.CheckpointPolicy(full).act(obs, np.random.default_rng(0)) == 7
  with pytest.raises(checkpointing.CheckpointError, match=r'actions=\[3, 18\]'):
    checkpointing.save_policy(str(tmp_path / 'bad'), params, (32,), actions=(3, 18))


def test_make_policy_checkpoint_from_config(tmp_path, test_config):
  import dataclasses
  params = policy_net.init_params(jax.random.PRNGKey(0), (16, 16))
  path = checkpointing.save_policy(str(tmp_path / 'pol'), params, (16, 16))
  cfg = dataclasses.replace(test_config.heads, base_policy='checkpoint', checkpoint_path=path)
  assert isinstance(atari_policies.make_policy(cfg), atari_policies.CheckpointPolicy)
  assert isinstance(atari_policies.make_policy(test_config.heads), atari_policies.RandomPolicy)


def test_missing_checkpoint_names_path(tmp_path):
  with pytest.raises(checkpointing.CheckpointError, match='No policy checkpoint at.*nothing'):
    atari_policies.CheckpointPolicy(str(tmp_path / 'nothing'))


def test_mismatched_checkpoint_names_path(tmp_path):
  params = policy_net.init_params(jax.random.PRNGKey(0), (32,))
  path = checkpointing.save_policy(str(tmp_path / 'pol'), params, (32,))
  # Corrupt the meta so it promises a different architecture.
  meta_file = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(path, 'meta')) for f in fs]
  for f in meta_file:
    with open(f) as fh:
      text = fh.read()
    with open(f, 'w') as fh:
      fh.write(text.replace('32', '48'))
  with pytest.raises(checkpointing.CheckpointError, match=str(tmp_path)):
    atari_policies.CheckpointPolicy(path)


def test_persistent_random_episode_is_seeded_and_stops_at_the_limit():
  env = atari.AtariEnv('pong', frame_shape=(42, 32), max_episode_steps=40)
  frames, ram, actions = atari_policies.persistent_random_episode(env, 5, 30)
  assert frames.shape == (31, 42, 32, 3) and ram.shape == (31, 128) and actions.shape == (30,)
  assert len(set(actions.tolist())) > 1  # it does switch actions
  again = atari_policies.persistent_random_episode(env, 5, 30)
  np.testing.assert_array_equal(again[2], actions)
  np.testing.assert_array_equal(again[1], ram)
  longer = atari_policies.persistent_random_episode(env, 5, 100)  # truncated at 40 steps
  assert longer[2].shape == (40,)
