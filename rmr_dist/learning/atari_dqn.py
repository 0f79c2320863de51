"""Double DQN with n-step returns on console RAM: the agent stage's pure, pmapped update.

The Q-network is `rmr_dist.networks.atari_policy.RamQNetwork` (RAM bits -> 18 action values), the
network the `checkpoint` base policy of the heads acts with. Batches are n-step transitions
written by `rmr_dist.acting.atari_agent_actor` (numpy dicts):

    {'ram_t':    [B, 128] uint8,   RAM where the action was taken
     'action':   [B]      int32,   action index in [0, 18)
     'reward':   [B]      float32, sum_{k<n'} gamma^k r_{t+k} (rewards clipped to [-1, 1])
     'discount': [B]      float32, gamma^n' if the episode goes on after n' steps, else 0
     'ram_tn':   [B, 128] uint8}   RAM n' steps later (n' = n, or fewer at the episode's end)

The double-DQN target (van Hasselt et al., 2016) with n-step returns (Hessel et al., 2018):

    y = reward + discount * Q_target(ram_tn, argmax_a Q_online(ram_tn, a))

where the argmax runs over the agent's actions (all 18, or the game's minimal set: the other
outputs are never taken, so never trained, and are masked), and the loss is the Huber loss
(delta 1) of Q_online(ram_t, action) - stop_gradient(y),
averaged over the batch. The target parameters are copied from the online ones every
`target_update_period` updates. A truncated episode (time cap) keeps its bootstrap
(discount = gamma^n'); only a terminal one sets it to 0.

`update` is pure; `make_pmapped_update` maps it over the local devices with the gradients
`pmean`-ed, so 1 device and N devices give the same update (the loss is a mean over equal
shards).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rmr_dist.networks import atari_policy

Batch = dict[str, Any]
AXIS = 'devices'


class DQNState(NamedTuple):
  """Learner state; crosses `pmap` (replicated)."""
  params: Any  # Online RamQNetwork parameters.
  target_params: Any  # Target network parameters.
  opt_state: optax.OptState
  step: jax.Array  # [] int32, updates applied so far.


def make_network(hidden_sizes: Sequence[int], encoding: str = 'bits') -> atari_policy.RamQNetwork:
  """The Q-network of the agent (and of the checkpoint heads)."""
  return atari_policy.RamQNetwork(tuple(hidden_sizes), atari_policy.NUM_ACTIONS, encoding)


def init_state(hidden_sizes: Sequence[int], optimizer: optax.GradientTransformation,
               rng: jax.Array, encoding: str = 'bits') -> DQNState:
  """A DQNState at step 0 (target = online parameters)."""
  params = atari_policy.init_params(rng, hidden_sizes, atari_policy.NUM_ACTIONS, encoding)
  return DQNState(params=params, target_params=params, opt_state=optimizer.init(params),
                  step=jnp.zeros((), jnp.int32))


def double_dqn_targets(net: atari_policy.RamQNetwork, params: Any, target_params: Any,
                       batch: Batch, actions: Sequence[int] | None = None) -> jax.Array:
  """y = reward + discount * Q_target(s_n, argmax_a Q_online(s_n, a)): [B] float32, the
  argmax over `actions` (None: all)."""
  q_online_n = net.apply({'params': params}, batch['ram_tn'])  # [B, A]
  q_target_n = net.apply({'params': target_params}, batch['ram_tn'])  # [B, A]
  best = atari_policy.greedy_action(q_online_n, actions)  # [B]
  bootstrap = jnp.take_along_axis(q_target_n, best[:, None], axis=-1)[:, 0]  # [B]
  return batch['reward'] + batch['discount'] * bootstrap


def loss_fn(params: Any, target_params: Any, batch: Batch, *, net: atari_policy.RamQNetwork,
            actions: Sequence[int] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Huber loss of the double-DQN TD errors, and metrics; both batch means."""
  q = net.apply({'params': params}, batch['ram_t'])  # [B, A]
  q_taken = jnp.take_along_axis(q, batch['action'][:, None].astype(jnp.int32), axis=-1)[:, 0]
  y = jax.lax.stop_gradient(
      double_dqn_targets(net, params, target_params, batch, actions))  # [B]
  td = q_taken - y  # [B]
  loss = jnp.mean(optax.huber_loss(td, delta=1.0))
  return loss, {'loss': loss, 'q_mean': jnp.mean(q_taken), 'td_abs': jnp.mean(jnp.abs(td))}


def update(state: DQNState, batch: Batch, *, net: atari_policy.RamQNetwork,
           optimizer: optax.GradientTransformation, target_update_period: int,
           actions: Sequence[int] | None = None,
           axis_name: str | None = None) -> tuple[DQNState, dict[str, jax.Array]]:
  """One double-DQN update (pure).

  Args:
    state: the learner state (replicated under pmap).
    batch: an n-step batch (module docstring); this device's shard under pmap.
    net: the Q-network.
    optimizer: the optax optimiser.
    target_update_period: copy online -> target after every this many updates.
    actions: the agent's action indices (the bootstrap's argmax runs over them); None: all.
    axis_name: the pmap axis to `pmean` gradients and metrics over; None on one device.

  Returns:
    (new state, metrics {'loss', 'q_mean', 'td_abs'}).
  """
  loss = functools.partial(loss_fn, net=net, actions=actions)
  grads, metrics = jax.grad(loss, has_aux=True)(state.params, state.target_params, batch)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  step = state.step + 1
  copy = step % target_update_period == 0
  target_params = jax.tree_util.tree_map(lambda p, t: jnp.where(copy, p, t), params,
                                         state.target_params)
  return DQNState(params, target_params, opt_state, step), metrics


def make_pmapped_update(net: atari_policy.RamQNetwork, optimizer: optax.GradientTransformation,
                        target_update_period: int,
                        actions: Sequence[int] | None = None) -> Callable[..., Any]:
  """`update` pmapped over the local devices: (replicated state, [D, B/D, ...] batch)."""
  return jax.pmap(functools.partial(update, net=net, optimizer=optimizer,
                                    target_update_period=target_update_period,
                                    actions=None if actions is None else tuple(actions),
                                    axis_name=AXIS), axis_name=AXIS)


def shard(batch: Batch, num_devices: int) -> Batch:
  """Reshapes every [B, ...] array of `batch` to [D, B/D, ...]."""
  return {k: v.reshape((num_devices, -1) + v.shape[1:]) for k, v in batch.items()}


def numpy_q_values(params: Any, ram: Any, encoding: str = 'bits') -> Any:
  """RamQNetwork forward pass in numpy (actors: no JAX dispatch per step).

  Args:
    params: RamQNetwork parameters (numpy or JAX arrays), {'Dense_0': {'kernel', 'bias'}, ...}.
    ram: [128] or [B, 128] uint8.
    encoding: the network's RAM encoding.

  Returns:
    [A] or [B, A] float32 action values, equal to `RamQNetwork.apply` up to float rounding.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  h = atari_policy.encode_ram(ram, encoding, xp=np)  # [..., F]
  layers = sorted(params, key=lambda name: int(name.split('_')[-1]))
  for i, name in enumerate(layers):
    h = h @ np.asarray(params[name]['kernel']) + np.asarray(params[name]['bias'])
    if i < len(layers) - 1:
      h = np.maximum(h, 0.0)
  return h
