"""Behaviour-policy network for the `checkpoint` base policy of the policy heads.

A Q-network over the console RAM: the 128 bytes, as 1024 bits ('bits', the default), as 128
values scaled to [0, 1] ('bytes': positions and counters become ordered inputs, so a ReLU unit can
compare a paddle's and a ball's coordinates), or both concatenated ('both', 1152 inputs), pass
through an MLP to 18 action values. Acting is greedy: the argmax over the policy's actions (all
18, or the minimal set of the game it was trained on; `greedy_action`). The network is small on
purpose: a collector evaluates it once per agent step on a CPU.
`rmr_dist.checkpointing.save_policy` / `load_policy` store it with the hyper-parameters needed
to rebuild it and its actions.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

RAM_BITS = 128 * 8
NUM_ACTIONS = 18  # The full Atari action set.
ENCODINGS = ('bits', 'bytes', 'both')  # How the RAM enters the network.


def encode_ram(ram, encoding: str, xp=jnp):
  """[B, 128] uint8 -> [B, F] float32 network input ('bits' F=1024, 'bytes' 128, 'both' 1152);
  `xp` is jax.numpy or numpy."""
  if encoding not in ENCODINGS:
    raise ValueError(f'encoding={encoding!r}; valid: {ENCODINGS}')
  ram = xp.asarray(ram).astype(xp.uint8)
  parts = []
  if encoding in ('bits', 'both'):
    parts.append(xp.unpackbits(ram, axis=-1).astype(xp.float32))
  if encoding in ('bytes', 'both'):
    parts.append(ram.astype(xp.float32) / 255.0)
  return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)


def greedy_action(q, actions=None, xp=jnp):
  """argmax of `q` over the allowed `actions` (indices; None: all): [..., A] -> [...] int."""
  if actions is None or len(actions) == q.shape[-1]:
    return xp.argmax(q, axis=-1)
  allowed = xp.asarray(actions)
  return allowed[xp.argmax(q[..., allowed], axis=-1)]


class RamQNetwork(nn.Module):
  """MLP from RAM bits to Q-values.

  Attributes:
    hidden_sizes: widths of the hidden ReLU layers.
    num_actions: number of actions (18 for the full Atari set).
    encoding: 'bits', 'bytes' or 'both' (module docstring).
  """
  hidden_sizes: Sequence[int] = (256, 256)
  num_actions: int = 18
  encoding: str = 'bits'

  @nn.compact
  def __call__(self, ram: jax.Array) -> jax.Array:
    """Args: ram [B, 128] uint8. Returns: q [B, num_actions] float32."""
    h = encode_ram(ram, self.encoding)  # [B, F]
    for width in self.hidden_sizes:
      h = nn.relu(nn.Dense(width)(h))  # [B, width]
    return nn.Dense(self.num_actions)(h)  # [B, A]


def init_params(rng: jax.Array, hidden_sizes: Sequence[int], num_actions: int = 18,
                encoding: str = 'bits'):
  """Initial parameters of a RamQNetwork."""
  net = RamQNetwork(tuple(hidden_sizes), num_actions, encoding)
  return net.init(rng, jnp.zeros((1, 128), jnp.uint8))['params']
