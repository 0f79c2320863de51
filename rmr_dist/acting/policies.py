"""Base policies that the policy heads modulate: `random` and `checkpoint` (greedy network)."""

from __future__ import annotations

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


class CheckpointPolicy:
  """Greedy (argmax-Q) policy network restored from an Orbax checkpoint.

  Args:
    path: a directory written by `rmr_dist.checkpointing.save_policy`.
  """

  def __init__(self, path: str):
    import jax  # pylint: disable=g-import-not-at-top
    from rmr_dist import checkpointing  # pylint: disable=g-import-not-at-top
    from rmr_dist.networks import policy  # pylint: disable=g-import-not-at-top
    self.path = path
    meta, params = checkpointing.load_policy(path)
    net = policy.RamQNetwork(tuple(meta['hidden_sizes']), meta['num_actions'])
    self._params = jax.device_put(params)
    self._q = jax.jit(lambda p, ram: net.apply({'params': p}, ram[None])[0])  # [A]

  def act(self, observation: atari.Observation, rng: np.random.Generator) -> int:
    del rng
    return int(np.argmax(np.asarray(self._q(self._params, observation.ram))))


def make_policy(heads: config_lib.HeadsConfig) -> Policy:
  """The base policy named by `heads.base_policy`."""
  if heads.base_policy == 'random':
    return RandomPolicy()
  if heads.base_policy == 'checkpoint':
    return CheckpointPolicy(heads.checkpoint_path)
  raise config_lib.ConfigError(f'Unknown base_policy {heads.base_policy!r}; valid: '
                               f'{config_lib.BASE_POLICIES}')
