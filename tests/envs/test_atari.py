"""The ALE environment: determinism, the 18-action one-hot, frames and truncation."""

import numpy as np
import pytest

from rmr_dist import config as config_lib
from rmr_dist.envs import atari


def _rollout(env, seed, n=120, action_seed=0):
  obs = env.reset(seed)
  rng = np.random.default_rng(action_seed)
  rams, frames, rewards = [obs.ram], [obs.frame], []
  for _ in range(n):
    r = env.step(int(rng.integers(atari.NUM_ACTIONS)))
    rams.append(r.observation.ram)
    frames.append(r.observation.frame)
    rewards.append(r.reward)
    if r.terminal or r.truncated:
      break
  return np.stack(rams), np.stack(frames), np.asarray(rewards)


def test_same_seed_same_episode_even_after_other_episodes():
  a = _rollout(atari.AtariEnv('pong'), seed=7)
  env = atari.AtariEnv('pong')
  _rollout(env, seed=1)
  _rollout(env, seed=2, action_seed=5)
  b = _rollout(env, seed=7)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)


def test_sticky_actions_depend_on_seed():
  a, _, _ = _rollout(atari.AtariEnv('breakout', repeat_action_probability=0.25), seed=1)
  b, _, _ = _rollout(atari.AtariEnv('breakout', repeat_action_probability=0.25), seed=2)
  n = min(len(a), len(b))
  assert not np.array_equal(a[:n], b[:n])


def test_no_sticky_actions_means_seed_irrelevant():
  env = atari.AtariEnv('breakout', repeat_action_probability=0.0)
  a, _, _ = _rollout(env, seed=1)
  b, _, _ = _rollout(env, seed=2)
  np.testing.assert_array_equal(a, b)


def test_observation_shapes_and_dtypes():
  env = atari.AtariEnv('pong')
  obs = env.reset(0)
  assert obs.ram.shape == (128,) and obs.ram.dtype == np.uint8
  assert obs.frame.shape == (210, 160, 3) and obs.frame.dtype == np.uint8
  small = atari.AtariEnv('pong', frame_shape=(84, 64)).reset(0)
  assert small.frame.shape == (84, 64, 3) and small.frame.dtype == np.uint8


def test_truncation_at_max_episode_steps():
  env = atari.AtariEnv('pong', max_episode_steps=5)
  env.reset(0)
  results = [env.step(0) for _ in range(5)]
  assert [r.truncated for r in results] == [False] * 4 + [True]
  assert not any(r.terminal for r in results)


def test_all_18_actions_are_distinct_inputs():
  # Frostbite uses all 18 joystick/fire combinations: from the same state each action index
  # leads to a different RAM, so the env really exposes the full set in a fixed order.
  env = atari.AtariEnv('frostbite', repeat_action_probability=0.0, frame_skip=4)
  outcomes = set()
  for a in range(atari.NUM_ACTIONS):
    env.reset(0)
    for _ in range(60):
      env.step(0)
    for _ in range(3):
      r = env.step(a)
    outcomes.add(r.observation.ram.tobytes())
  assert len(outcomes) == atari.NUM_ACTIONS


def test_one_hot():
  for a in (0, 5, 17):
    v = atari.one_hot(a)
    assert v.shape == (18,) and v.dtype == np.uint8 and v.sum() == 1 and v[a] == 1
  with pytest.raises(ValueError):
    atari.one_hot(18)


def test_bad_game_and_action():
  with pytest.raises(config_lib.ConfigError, match="Unknown game 'pongo'.*pong"):
    atari.AtariEnv('pongo')
  env = atari.AtariEnv('pong')
  env.reset(0)
  with pytest.raises(ValueError, match='action 18'):
    env.step(18)


def test_noop_starts_deterministic_under_seed():
  env = atari.AtariEnv('pong', noop_max=30, frame_shape=(84, 64))
  first = [env.reset(seed) for seed in (3, 4, 3)]
  noops = []
  for seed in (3, 4, 3):
    env.reset(seed)
    noops.append(env.last_noops)
  assert noops[0] == noops[2] and 0 <= min(noops) and max(noops) <= 30
  np.testing.assert_array_equal(first[0].ram, first[2].ram)
  np.testing.assert_array_equal(first[0].frame, first[2].frame)
  # Some seed in a handful starts after a different number of no-ops, hence another state.
  starts = {}
  for seed in range(6):
    obs = env.reset(seed)
    starts[env.last_noops] = obs.ram.tobytes()
  assert len(starts) > 1 and len(set(starts.values())) > 1
  # Without sticky actions, the steps after the start are a function of the start alone.
  a, _, _ = _rollout(env, seed=3)
  b, _, _ = _rollout(env, seed=3)
  np.testing.assert_array_equal(a, b)
