"""The agent stage's learner: the pmapped double-DQN update (`atari_dqn.py`) fed from an iterator.

A plain class (no Ray): `step()` takes one batch and applies one update; `params()` is the
online network as numpy (what actors pull and checkpoints store). The iterator comes from
`rmr_dist.replay.atari_agent_table.make_batch_iterator`, whose rate limiter paces the learner; when
it ends (a sample blocked past its timeout) `step()` returns None and the caller decides
whether to wait for more data (`reset_iterator`) or stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from rmr_dist import config as config_lib
from rmr_dist.learning import atari_dqn
from rmr_dist.learning import optimizers


def expected_updates(agent: config_lib.AgentConfig) -> int:
  """Updates the rate limiter allows over the budget: (steps - warm-up) x ratio / batch."""
  samples = (agent.num_env_steps - agent.min_replay_size) * agent.samples_per_insert
  return max(1, int(samples // agent.batch_size))


def checkpoint_updates(agent: config_lib.AgentConfig) -> list[int]:
  """The updates after which a policy is saved: 0 (untrained), evenly spaced ones, and the
  last (saved at the end, whatever its count: the last entry is `expected_updates`)."""
  total, k = expected_updates(agent), agent.num_checkpoints
  return sorted({round(i * total / (k - 1)) for i in range(k)})


class AgentLearner:
  """Double DQN over the local devices.

  Args:
    agent: the agent stage's settings.
    make_iterator: `() -> iterator of numpy batches` ([B, ...] dicts, `atari_dqn.Batch`).
    seed: parameter initialisation seed.
    actions: the agent's action indices (`rmr_dist.envs.atari.agent_actions`); None: all 18.
  """

  def __init__(self, agent: config_lib.AgentConfig,
               make_iterator: Callable[[], Iterator[atari_dqn.Batch]], seed: int,
               actions: Sequence[int] | None = None):
    self._devices = jax.local_devices()
    if agent.batch_size % len(self._devices):
      raise config_lib.ConfigError(
          f'agent.batch_size={agent.batch_size} must be a multiple of the {len(self._devices)} '
          'local devices the learner maps over.')
    net = atari_dqn.make_network(agent.hidden_sizes, agent.ram_encoding)
    optimizer = optimizers.make_adam(optimizers.make_schedule(agent.learning_rate),
                                     agent.clip_norm)
    state = atari_dqn.init_state(agent.hidden_sizes, optimizer, jax.random.PRNGKey(seed),
                                 agent.ram_encoding)
    self._state = jax.device_put_replicated(state, self._devices)
    self._update = atari_dqn.make_pmapped_update(net, optimizer, agent.target_update_period,
                                                 actions)
    self._make_iterator = make_iterator
    self._iterator: Iterator[atari_dqn.Batch] | None = None
    self.steps = 0

  def reset_iterator(self) -> None:
    """Drops the (ended) iterator; the next `step` opens a new one."""
    self._iterator = None

  def step(self) -> dict[str, float] | None:
    """One update; None when the iterator ended (no batch within its timeout)."""
    if self._iterator is None:
      self._iterator = self._make_iterator()
    try:
      batch = next(self._iterator)
    except StopIteration:
      self._iterator = None
      return None
    self._state, metrics = self._update(self._state, atari_dqn.shard(batch, len(self._devices)))
    self.steps += 1
    return metrics

  def params(self) -> Any:
    """The online parameters (device 0's copy) as numpy."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x[0]), self._state.params)

  @staticmethod
  def to_floats(metrics: Any) -> dict[str, float]:
    return {k: float(np.asarray(v)[0]) for k, v in metrics.items()}
