"""Double DQN: the update's target against a hand computation, n-step returns, 1 == 2 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rmr_dist.acting import atari_agent_actor
from rmr_dist.learning import atari_dqn
from rmr_dist.networks import atari_policy


def _constant_q_params(q_values):
  """RamQNetwork((1,)) params whose Q(s, .) = q_values for every state s."""
  params = atari_policy.init_params(jax.random.PRNGKey(0), (1,))
  return {'Dense_0': {'kernel': jnp.zeros_like(params['Dense_0']['kernel']),
                      'bias': jnp.ones_like(params['Dense_0']['bias'])},
          'Dense_1': {'kernel': jnp.zeros_like(params['Dense_1']['kernel']),
                      'bias': jnp.asarray(q_values, jnp.float32)}}


def _batch(rng, size):
  return {'ram_t': rng.integers(0, 256, (size, 128), dtype=np.uint8),
          'action': rng.integers(0, 18, size).astype(np.int32),
          'reward': rng.normal(size=size).astype(np.float32),
          'discount': (rng.random(size) < 0.8).astype(np.float32) * 0.99 ** 3,
          'ram_tn': rng.integers(0, 256, (size, 128), dtype=np.uint8)}


def test_double_dqn_target_and_loss_match_a_hand_computation():
  online = np.zeros(18, np.float32)
  online[[1, 4]] = [3.0, 1.0]  # Online argmax: action 1.
  target = np.zeros(18, np.float32)
  target[[1, 4, 7]] = [2.0, 0.5, 9.0]  # Target argmax would be 7; double DQN takes action 1.
  net = atari_dqn.make_network((1,))
  batch = {'ram_t': np.zeros((2, 128), np.uint8), 'action': np.array([4, 1], np.int32),
           'reward': np.array([1.0, -0.5], np.float32),
           'discount': np.array([0.9, 0.0], np.float32),  # The second episode terminated.
           'ram_tn': np.zeros((2, 128), np.uint8)}
  y = atari_dqn.double_dqn_targets(net, _constant_q_params(online), _constant_q_params(target),
                                   batch)
  # y = r + discount * Q_target(s_n, argmax_a Q_online(s_n, a)) = r + discount * 2.
  np.testing.assert_allclose(np.asarray(y), [1.0 + 0.9 * 2.0, -0.5], rtol=1e-6)
  loss, metrics = atari_dqn.loss_fn(_constant_q_params(online), _constant_q_params(target), batch,
                                    net=net)
  td = np.array([1.0 - 2.8, 3.0 - (-0.5)])  # Q_online(s, a) - y: -1.8 and 3.5.
  huber = np.where(np.abs(td) <= 1, 0.5 * td ** 2, np.abs(td) - 0.5)
  np.testing.assert_allclose(float(loss), huber.mean(), rtol=1e-6)
  np.testing.assert_allclose(float(metrics['q_mean']), 2.0, rtol=1e-6)


def test_double_dqn_bootstrap_argmax_runs_over_the_agents_actions():
  # Online argmax over all 18 is action 2, which Pong's minimal set lacks; over (0, 1, 3, 4,
  # 11, 12) it is 11, whose target value the bootstrap takes.
  online = np.zeros(18, np.float32)
  online[[2, 11]] = [5.0, 1.0]
  target = np.zeros(18, np.float32)
  target[[2, 11]] = [7.0, 0.25]
  net = atari_dqn.make_network((1,))
  batch = {'ram_t': np.zeros((1, 128), np.uint8), 'action': np.array([11], np.int32),
           'reward': np.array([1.0], np.float32), 'discount': np.array([0.5], np.float32),
           'ram_tn': np.zeros((1, 128), np.uint8)}
  args = (net, _constant_q_params(online), _constant_q_params(target), batch)
  np.testing.assert_allclose(np.asarray(atari_dqn.double_dqn_targets(*args)), [1.0 + 0.5 * 7.0])
  pong = (0, 1, 3, 4, 11, 12)
  np.testing.assert_allclose(np.asarray(atari_dqn.double_dqn_targets(*args, pong)),
                             [1.0 + 0.5 * 0.25])
  assert int(atari_policy.greedy_action(online, pong, xp=np)) == 11
  assert int(atari_policy.greedy_action(online, None, xp=np)) == 2


def test_update_on_a_hand_made_batch_moves_q_toward_the_target():
  # Plain SGD with lr 1 on the output bias: dL/db[a] = mean over the batch of huber'(td), so
  # after one step b[a] = q - clip(td, -1, 1) / B for the one example taking action a.
  online = np.zeros(18, np.float32)
  online[[1, 4]] = [3.0, 1.0]
  params = _constant_q_params(online)
  optimizer = optax.sgd(1.0)
  state = atari_dqn.DQNState(params, _constant_q_params(np.full(18, 2.0, np.float32)),
                             optimizer.init(params), jnp.zeros((), jnp.int32))
  batch = {'ram_t': np.zeros((2, 128), np.uint8), 'action': np.array([4, 1], np.int32),
           'reward': np.array([0.2, 1.0], np.float32),
           'discount': np.array([0.5, 0.0], np.float32), 'ram_tn': np.zeros((2, 128), np.uint8)}
  new, _ = atari_dqn.update(state, batch, net=atari_dqn.make_network((1,)), optimizer=optimizer,
                            target_update_period=100)
  bias = np.asarray(new.params['Dense_1']['bias'])
  # td(action 4) = 1 - (0.2 + 0.5 * 2) = -0.2; td(action 1) = 3 - 1 = 2 (clipped to 1).
  np.testing.assert_allclose(bias[4], 1.0 + 0.2 / 2, rtol=1e-5)
  np.testing.assert_allclose(bias[1], 3.0 - 1.0 / 2, rtol=1e-5)
  assert int(new.step) == 1
  np.testing.assert_array_equal(np.asarray(new.target_params['Dense_1']['bias']),
                                np.full(18, 2.0))  # Not yet copied.


def test_target_network_is_copied_every_period():
  optimizer = optax.adam(1e-2)
  state = atari_dqn.init_state((8,), optimizer, jax.random.PRNGKey(1))
  net = atari_dqn.make_network((8,))
  batch = _batch(np.random.default_rng(0), 4)
  for step in range(1, 5):
    state, _ = atari_dqn.update(state, batch, net=net, optimizer=optimizer, target_update_period=3)
    same = all(np.array_equal(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state.target_params)))
    assert same == (step == 3), step


def test_pmapped_update_on_two_devices_equals_one_device():
  assert jax.local_device_count() == 2  # conftest forces 2 CPU devices.
  optimizer = optax.adam(1e-3)
  net = atari_dqn.make_network((16,))
  state = atari_dqn.init_state((16,), optimizer, jax.random.PRNGKey(2))
  batch = _batch(np.random.default_rng(1), 8)
  one, m1 = atari_dqn.update(state, batch, net=net, optimizer=optimizer, target_update_period=10)
  pupdate = atari_dqn.make_pmapped_update(net, optimizer, 10)
  two, m2 = pupdate(jax.device_put_replicated(state, jax.local_devices()),
                    atari_dqn.shard(batch, 2))
  for a, b in zip(jax.tree_util.tree_leaves(one.params), jax.tree_util.tree_leaves(two.params)):
    np.testing.assert_allclose(np.asarray(b[0]), np.asarray(a), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(m2['loss'][0]), float(m1['loss']), rtol=1e-5)


@pytest.mark.parametrize('encoding', atari_policy.ENCODINGS)
def test_numpy_forward_matches_the_network_and_the_checkpoint_keeps_the_encoding(encoding,
                                                                              tmp_path):
  from rmr_dist import checkpointing
  params = atari_policy.init_params(jax.random.PRNGKey(4), (32, 16), encoding=encoding)
  ram = np.random.default_rng(2).integers(0, 256, (3, 128), dtype=np.uint8)
  expected = atari_policy.RamQNetwork((32, 16), 18, encoding).apply({'params': params}, ram)
  np.testing.assert_allclose(atari_dqn.numpy_q_values(params, ram, encoding), np.asarray(expected),
                             rtol=1e-4, atol=1e-5)
  path = checkpointing.save_policy(str(tmp_path / 'p'), params, (32, 16), encoding=encoding)
  meta, restored = checkpointing.load_policy(path)
  assert meta['encoding'] == encoding and meta['actions'] == list(range(18))
  np.testing.assert_allclose(atari_dqn.numpy_q_values(restored, ram, encoding),
                             np.asarray(expected), rtol=1e-4, atol=1e-5)


def test_n_step_returns_clip_rewards_and_stop_at_terminals():
  acc = atari_agent_actor.NStepAccumulator(n=2, gamma=0.5)
  ram = [np.full(128, i, np.uint8) for i in range(5)]
  assert acc.step(ram[0], 3, 1.0, ram[1], False, False) == []
  (a,) = acc.step(ram[1], 4, 5.0, ram[2], False, False)  # 5 is clipped to 1.
  assert a['action'] == 3 and a['reward'] == 1.0 + 0.5 * 1.0 and a['discount'] == 0.25
  assert np.array_equal(a['ram_t'], ram[0]) and np.array_equal(a['ram_tn'], ram[2])
  b, c = acc.step(ram[2], 5, -2.0, ram[3], True, False)  # Terminal: flush both, discount 0.
  assert b['action'] == 4 and b['reward'] == 1.0 + 0.5 * -1.0 and b['discount'] == 0.0
  assert c['action'] == 5 and c['reward'] == -1.0 and c['discount'] == 0.0
  assert np.array_equal(b['ram_tn'], ram[3]) and np.array_equal(c['ram_tn'], ram[3])
  (d,) = acc.step(ram[3], 6, 0.0, ram[4], False, True)  # Truncated: keeps its bootstrap.
  assert d['discount'] == 0.5


def test_linear_epsilon():
  assert atari_agent_actor.linear_epsilon(0, 1.0, 0.1, 100) == 1.0
  assert abs(atari_agent_actor.linear_epsilon(50, 1.0, 0.1, 100) - 0.55) < 1e-12
  assert atari_agent_actor.linear_epsilon(500, 1.0, 0.1, 100) == 0.1


def test_actor_explores_and_acts_only_within_its_action_set(test_config):
  import dataclasses
  from rmr_dist.envs import atari
  pong = atari.agent_actions('pong', 'minimal')
  assert pong == (0, 1, 3, 4, 11, 12) and atari.agent_actions('pong', 'full') == tuple(range(18))
  assert atari.agent_actions('breakout', 'minimal') == (0, 1, 3, 4)
  with pytest.raises(ValueError, match="action_set='some'; valid: \\('full', 'minimal'\\)"):
    atari.agent_actions('pong', 'some')
  agent = dataclasses.replace(test_config.agent, action_set='minimal', hidden_sizes=(1,),
                              ram_encoding='bits')
  q = np.zeros(18, np.float32)
  q[[2, 5, 12]] = [9.0, 8.0, 1.0]  # The greedy action over the minimal set is 12.
  params = jax.tree_util.tree_map(np.asarray, _constant_q_params(q))
  added = []
  actor = atari_agent_actor.AgentActor('pong', test_config.env, agent, 0, 0, added.append,
                                       lambda: (1, params))
  actor.run(300)  # Epsilon 1 -> 0.02 over the test config's 300 steps.
  taken = [int(t['action']) for t in added]
  assert set(taken) <= set(pong) and len(set(taken)) == 6  # Explored all six, nothing else.
  assert actor.act(np.zeros(128, np.uint8)) in pong
  assert taken[-50:].count(12) >= 40  # Greedy now: 12, not 2 or 5 (outside the set).


def test_update_learns_a_two_state_bandit_over_the_minimal_set():
  # RAM byte 0 tells the state; reward 1 for action 3 in state A, 11 in state B, else 0
  # (one-step episodes). From random init, 300 Adam updates on uniform random actions in the
  # set must make the greedy policy right in both states.
  pong = (0, 1, 3, 4, 11, 12)
  rng = np.random.default_rng(0)
  net = atari_dqn.make_network((32,), 'bytes')
  optimizer = optax.adam(1e-2)
  state = atari_dqn.init_state((32,), optimizer, jax.random.PRNGKey(0), 'bytes')
  step = jax.jit(lambda s, b: atari_dqn.update(s, b, net=net, optimizer=optimizer,
                                               target_update_period=10, actions=pong))
  for _ in range(300):
    s = rng.integers(0, 2, 64)
    a = np.asarray(pong)[rng.integers(0, 6, 64)]
    ram = np.zeros((64, 128), np.uint8)
    ram[:, 0] = 255 * s
    reward = ((s == 0) & (a == 3)) | ((s == 1) & (a == 11))
    state, _ = step(state, {'ram_t': ram, 'action': a.astype(np.int32),
                            'reward': reward.astype(np.float32),
                            'discount': np.zeros(64, np.float32), 'ram_tn': ram})
  probe = np.zeros((2, 128), np.uint8)
  probe[1, 0] = 255
  q = net.apply({'params': state.params}, probe)
  assert [int(a) for a in atari_policy.greedy_action(q, pong)] == [3, 11]
  assert float(q[0, 3]) > 0.8 and float(q[1, 3]) < 0.2
