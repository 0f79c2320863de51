"""Plain-Python acting of the agent stage: epsilon-greedy on RAM Q-values, n-step transitions.

No Ray here (`rmr_dist.distributed.atari_agent` wraps this class as an actor). An AgentActor plays
one game continuously, episode after episode, and in `run(num_steps)` plays that many agent
steps (episodes continue across calls) and returns the episodes that ended. Every step:

  * every `param_pull_interval` steps it pulls the learner's latest parameters (`params_fn`);
  * it acts epsilon-greedily on the Q-values (numpy forward pass, `atari_dqn.numpy_q_values`) over
    the agent's actions (`agent.action_set`: all 18 or the game's minimal set), with epsilon
    decayed linearly over the *global* step count (its own steps x number of actors);
  * it emits the n-step transition that became complete (`NStepAccumulator`) to `add_fn`.

Rewards are clipped to [-1, 1] in the returns (DQN); episode returns are reported unclipped.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist.envs import atari
from rmr_dist.learning import atari_dqn
from rmr_dist.networks import atari_policy


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
  """One finished training episode.

  Attributes:
    actor: actor index.
    episode_return: sum of (unclipped) rewards.
    length: agent steps.
    actor_steps: the actor's agent steps when the episode ended.
    epsilon: exploration rate at its end.
    params_version: learner update count of the parameters acted with at its end.
  """
  actor: int
  episode_return: float
  length: int
  actor_steps: int
  epsilon: float
  params_version: int


def linear_epsilon(step: int, start: float, end: float, decay_steps: int) -> float:
  """start -> end linearly over `decay_steps` steps, then flat."""
  return end + (start - end) * max(0.0, 1.0 - step / decay_steps)


class NStepAccumulator:
  """Turns a stream of (ram, action, reward) steps into n-step transitions.

  `step(ram_t, action, reward, ram_tp1, terminal, truncated)` returns the transitions it
  completes: the one that started n steps ago, or at an episode's end every pending one, each
  {'ram_t', 'action', 'reward' (discounted sum of clipped rewards), 'discount' (gamma^n', or
  0 when the episode terminated within the n' steps), 'ram_tn'}.
  """

  def __init__(self, n: int, gamma: float):
    self._n, self._gamma = n, gamma
    self._pending: collections.deque[tuple[np.ndarray, int, float]] = collections.deque()

  def _emit(self, ram_tn: np.ndarray, terminal: bool) -> dict[str, Any]:
    ram_t, action, _ = self._pending[0]
    rewards = [r for _, _, r in self._pending]
    ret = sum(self._gamma ** k * r for k, r in enumerate(rewards))
    discount = 0.0 if terminal else self._gamma ** len(rewards)
    self._pending.popleft()
    return {'ram_t': ram_t, 'action': action, 'reward': ret, 'discount': discount,
            'ram_tn': ram_tn}

  def step(self, ram_t: np.ndarray, action: int, reward: float, ram_tp1: np.ndarray,
           terminal: bool, truncated: bool) -> list[dict[str, Any]]:
    self._pending.append((ram_t, action, float(np.clip(reward, -1.0, 1.0))))
    out = []
    if terminal or truncated:
      while self._pending:
        out.append(self._emit(ram_tp1, terminal))
    elif len(self._pending) == self._n:
      out.append(self._emit(ram_tp1, False))
    return out


class AgentActor:
  """Plays one game epsilon-greedily with the learner's latest parameters.

  Args:
    game: ALE ROM id.
    env: the env settings (frame skip, sticky actions, no-op starts).
    agent: the agent stage's settings.
    actor_index: i in [0, num_actors): seeds its episodes.
    seed: the program's root seed.
    add_fn: receives each n-step transition (an `agent_table.NStepAdder.add`).
    params_fn: `() -> (version, params)` of the learner's latest parameters, or None before
      the first publication (then it acts uniformly at random).
  """

  def __init__(self, game: str, env: config_lib.EnvConfig, agent: config_lib.AgentConfig,
               actor_index: int, seed: int, add_fn: Callable[[dict[str, Any]], None],
               params_fn: Callable[[], tuple[int, Any] | None]):
    self._agent = agent
    self._env = atari.AtariEnv(game, frame_skip=env.frame_skip,
                               repeat_action_probability=env.repeat_action_probability,
                               max_episode_steps=agent.max_episode_steps,
                               noop_max=env.noop_max, read_frames=False)
    self.actions = atari.agent_actions(game, agent.action_set)
    self._allowed = np.asarray(self.actions)  # Built once: act() runs every agent step.
    self._index = actor_index
    self._rng = np.random.default_rng([seed, 0xA6E, actor_index])
    self._add_fn, self._params_fn = add_fn, params_fn
    self._nstep = NStepAccumulator(agent.n_step, agent.gamma)
    self._params: Any = None
    self._version = -1
    self.steps = 0
    self._obs = self._reset()
    self._return, self._length = 0.0, 0

  def _reset(self) -> atari.Observation:
    return self._env.reset(int(self._rng.integers(1 << 31)))

  def epsilon(self) -> float:
    a = self._agent
    return linear_epsilon(self.steps * a.num_actors, a.epsilon_start, a.epsilon_end,
                          a.epsilon_decay_steps)

  def _pull(self) -> None:
    pulled = self._params_fn()
    if pulled is not None:
      self._version, self._params = pulled

  def act(self, ram: np.ndarray) -> int:
    if self._params is None or self._rng.random() < self.epsilon():
      return self.actions[int(self._rng.integers(len(self.actions)))]
    q = atari_dqn.numpy_q_values(self._params, ram, self._agent.ram_encoding)  # [18]
    return int(atari_policy.greedy_action(q, self._allowed, xp=np))

  def run(self, num_steps: int) -> list[EpisodeRecord]:
    """Plays `num_steps` agent steps; returns the episodes that ended meanwhile."""
    finished = []
    for _ in range(num_steps):
      if self.steps % self._agent.param_pull_interval == 0:
        self._pull()
      ram_t = self._obs.ram
      action = self.act(ram_t)
      result = self._env.step(action)
      self.steps += 1
      self._return += result.reward
      self._length += 1
      for item in self._nstep.step(ram_t, action, result.reward, result.observation.ram,
                                   result.terminal, result.truncated):
        self._add_fn(item)
      self._obs = result.observation
      if result.terminal or result.truncated:
        finished.append(EpisodeRecord(self._index, self._return, self._length, self.steps,
                                      self.epsilon(), self._version))
        self._obs = self._reset()
        self._return, self._length = 0.0, 0
    return finished
