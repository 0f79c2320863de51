"""Base policies that the policy heads modulate: `random` and `checkpoint` (greedy network),
and `HeadCheckpointPolicies`: one checkpoint per head from several, weak to strong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist.envs import atari


class Policy(Protocol):
  """A base policy: maps an observation (and the head's RNG) to an action index in [0, 18)."""

  def act(self, observation: atari.Observation, rng: np.random.Generator) -> int:
    ...


class RandomPolicy:
  """Uniform over the 18 actions."""

  def act(self, observation: atari.Observation, rng: np.random.Generator) -> int:
    del observation
    return int(rng.integers(atari.NUM_ACTIONS))


def persistent_random_episode(env: atari.AtariEnv, seed: int, steps: int,
                              switch_prob: float = 0.3
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One episode of persistent random actions, in this process (no Reverb, no Ray).

  From ``env.reset(seed)``, each step keeps the previous action (NOOP at first) or, with
  probability ``switch_prob``, draws a new uniform one (numpy generator seeded by ``seed``);
  stops after ``steps`` steps or at the end of the episode.

  Returns:
    ``(frames [T+1, H, W, 3] uint8, ram [T+1, 128] uint8, actions [T] int)``.
  """
  rng = np.random.default_rng(seed)
  obs = env.reset(seed)
  frames, ram, actions, action = [obs.frame], [obs.ram], [], 0
  for _ in range(steps):
    if rng.random() < switch_prob:
      action = int(rng.integers(atari.NUM_ACTIONS))
    result = env.step(action)
    frames.append(result.observation.frame)
    ram.append(result.observation.ram)
    actions.append(action)
    if result.terminal or result.truncated:
      break
  return np.stack(frames), np.stack(ram), np.asarray(actions)


class CheckpointPolicy:
  """Greedy (argmax-Q) policy network restored from an Orbax checkpoint, over the actions
  its checkpoint records (all 18, or the minimal set of the game it was trained on).

  Args:
    path: a directory written by `rmr_dist.checkpointing.save_policy`.
  """

  def __init__(self, path: str):
    import jax  # pylint: disable=g-import-not-at-top
    from rmr_dist import checkpointing  # pylint: disable=g-import-not-at-top
    from rmr_dist.networks import atari_policy  # pylint: disable=g-import-not-at-top
    self.path = path
    meta, params = checkpointing.load_policy(path)
    net = atari_policy.RamQNetwork(tuple(meta['hidden_sizes']), meta['num_actions'],
                                   meta['encoding'])
    self.actions = tuple(meta['actions'])
    self._allowed = np.asarray(self.actions)
    self._greedy = atari_policy.greedy_action
    self._params = jax.device_put(params)
    self._q = jax.jit(lambda p, ram: net.apply({'params': p}, ram[None])[0])  # [A]

  def act(self, observation: atari.Observation, rng: np.random.Generator) -> int:
    del rng
    q = np.asarray(self._q(self._params, observation.ram))  # [A]
    return int(self._greedy(q, self._allowed, xp=np))


def head_checkpoint_index(head: int, num_heads: int, num_checkpoints: int) -> int:
  """round(head * (K - 1) / (N - 1)): head 0 -> the first (weakest) of K checkpoints in
  training order, head N-1 -> the last; the heads between spread evenly over the rest."""
  if num_heads == 1:
    return num_checkpoints - 1
  return int(round(head * (num_checkpoints - 1) / (num_heads - 1)))


class HeadCheckpointPolicies:
  """The base policy of every (game, head) from several checkpoints per game.

  Head i of N acts greedily from checkpoint `head_checkpoint_index(i, N, K)` of its game's K
  checkpoints (in training order); each checkpoint is restored once, on first use.

  Args:
    checkpoints: {game: checkpoint directories in training order}.
    num_heads: N.
  """

  def __init__(self, checkpoints: Mapping[str, Sequence[str]], num_heads: int):
    self.checkpoints = {g: list(paths) for g, paths in checkpoints.items()}
    self.num_heads = num_heads
    self._loaded: dict[str, CheckpointPolicy] = {}

  def path_for(self, game: str, head: int) -> str:
    """The checkpoint head `head` acts from in `game`."""
    paths = self.checkpoints[game]
    return paths[head_checkpoint_index(head, self.num_heads, len(paths))]

  def for_head(self, game: str, head: int) -> CheckpointPolicy:
    path = self.path_for(game, head)
    if path not in self._loaded:
      self._loaded[path] = CheckpointPolicy(path)
    return self._loaded[path]


def make_policy(heads: config_lib.HeadsConfig,
                checkpoints: Mapping[str, Sequence[str]] | None = None
                ) -> Policy | HeadCheckpointPolicies:
  """The base policy named by `heads.base_policy`.

  Args:
    heads: the heads config.
    checkpoints: with base_policy='checkpoint', {game: checkpoints in training order}
      (`rmr_dist.stages.atari_agent.resolve_checkpoints`): then a HeadCheckpointPolicies;
      without, the one checkpoint at `heads.checkpoint_path`.
  """
  if heads.base_policy == 'random':
    return RandomPolicy()
  if heads.base_policy == 'checkpoint':
    if checkpoints is not None:
      return HeadCheckpointPolicies(checkpoints, heads.num_heads)
    return CheckpointPolicy(heads.checkpoint_path)
  raise config_lib.ConfigError(f'Unknown base_policy {heads.base_policy!r}; valid: '
                               f'{config_lib.BASE_POLICIES}')


def policy_for(base: Policy | HeadCheckpointPolicies, game: str, head: int) -> Policy:
  """The policy head `head` of `game` acts from (`base` itself unless it is per head)."""
  if isinstance(base, HeadCheckpointPolicies):
    return base.for_head(game, head)
  return base
