"""Behaviour-policy network for the `checkpoint` base policy of the policy heads.

A Q-network over the console RAM: the 128 bytes are unpacked into 1024 bits and passed through an
MLP to 18 action values. Acting is greedy (argmax). The network is small on purpose: a collector
evaluates it once per agent step on a CPU. `rmr_dist.checkpointing.save_policy` /
`load_policy` store it with the hyper-parameters needed to rebuild it.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

RAM_BITS = 128 * 8
NUM_ACTIONS = 18  # The full Atari action set.


class RamQNetwork(nn.Module):
  """MLP from RAM bits to Q-values.

  Attributes:
    hidden_sizes: widths of the hidden ReLU layers.
    num_actions: number of actions (18 for the full Atari set).
  """
  hidden_sizes: Sequence[int] = (256, 256)
  num_actions: int = 18

  @nn.compact
  def __call__(self, ram: jax.Array) -> jax.Array:
    """Args: ram [B, 128] uint8. Returns: q [B, num_actions] float32."""
    bits = jnp.unpackbits(ram.astype(jnp.uint8), axis=-1).astype(jnp.float32)  # [B, 1024]
    h = bits
    for width in self.hidden_sizes:
      h = nn.relu(nn.Dense(width)(h))  # [B, width]
    return nn.Dense(self.num_actions)(h)  # [B, A]


def init_params(rng: jax.Array, hidden_sizes: Sequence[int], num_actions: int = 18):
  """Initial parameters of a RamQNetwork."""
  net = RamQNetwork(tuple(hidden_sizes), num_actions)
  return net.init(rng, jnp.zeros((1, 128), jnp.uint8))['params']
