"""Processors P(z, a): MPNN, Deep Sets and MLP, all with one call signature.

Every processor is a Flax linen module called as

    processor(z, action) -> z_next
        z:      [B, N, H] float32   latent slots
        action: [B, A]    float32   one-hot action
        z_next: [B, N, H] float32

so the abstract (RAM) model and the natural (pixel) model can share a pre-trained processor.
Inside a parent model the processor is always the submodule named ``processor``, so its
parameters form one subtree (``params['processor']``) that can be saved, restored and frozen
on its own.

The MPNN follows Appendix B of the paper: message passing (Gilmer et al., 2017) over the fully
connected graph of slots, the action concatenated to every node's features (as C-SWM does),
three-layer message MLPs with a ReLU after each hidden layer. Deep Sets is "the same model,
only it passes messages over the identity adjacency matrix": here it literally is the MPNN
class with ``adjacency='identity'``, which computes only the N diagonal messages.

:class:`ModelSpec` is the serialisable description of a processor (and of the abstract model
around it) that a processor export carries; :func:`make_spec_processor` rebuilds the processor
from it.
"""

import dataclasses
from typing import Any, Optional, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmr_dist.networks import atari_abstract as abstract_net

AGGREGATIONS = ('sum', 'mean', 'max')
ADJACENCIES = ('full', 'identity')


class Processor(Protocol):
  """What every processor is: ``P(z [B, N, H], action [B, A]) -> [B, N, H]``."""

  def __call__(self, z: jax.Array, action: jax.Array) -> jax.Array:
    ...


class PairwiseDense(nn.Module):
  """Dense layer on the edge features [x_i, x_j], computed without forming them.

  With kernel ``W = [W_r; W_s]`` (receiver rows, then sender rows) and bias ``b``,
  ``Dense([x_i, x_j]) = (x_i W_r + b) + x_j W_s``: two per-node products, broadcast-added.
  The parameters are exactly those of ``nn.Dense`` on the concatenation (kernel
  ``[2D, F]``, same initialiser and fan-in), so a naive implementation that does
  materialise ``[B, N, N, 2D]`` gives the same numbers with the same parameters.

  Attributes:
    features: F, output width.
  """
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, diagonal_only: bool = False) -> jax.Array:
    """Args:
      x: [B, N, D] node features.
      diagonal_only: only the self-edges i -> i (the identity adjacency).

    Returns:
      [B, N, N, F] pre-activations, axis 1 the receiver i and axis 2 the sender j;
      or [B, N, F] for the self-edges only.
    """
    d = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (2 * d, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    receiver = jnp.dot(x, kernel[:d]) + bias  # [B, N, F]
    sender = jnp.dot(x, kernel[d:])  # [B, N, F]
    if diagonal_only:
      return receiver + sender  # [B, N, F]
    return receiver[:, :, None, :] + sender[:, None, :, :]  # [B, N, N, F]


def _aggregate(messages: jax.Array, aggregation: str,
               adjacency_mask: Optional[jax.Array]) -> jax.Array:
  """Aggregates messages over senders.

  Args:
    messages: [B, N, N, F], axis 1 the receiver, axis 2 the sender.
    aggregation: 'sum', 'mean' or 'max'.
    adjacency_mask: None (every pair, self-loops included) or [N, N] / [B, N, N] with
      ``mask[i, j] = 1`` when j sends to i. A node with no incoming edge aggregates to 0.

  Returns:
    [B, N, F]
  """
  if adjacency_mask is None:
    if aggregation == 'sum':
      return jnp.sum(messages, axis=2)
    if aggregation == 'mean':
      return jnp.mean(messages, axis=2)
    return jnp.max(messages, axis=2)
  mask = jnp.broadcast_to(adjacency_mask, messages.shape[:3]).astype(bool)  # [B, N, N]
  degree = jnp.sum(mask, axis=2)[..., None].astype(messages.dtype)  # [B, N, 1]
  if aggregation == 'max':
    masked = jnp.where(mask[..., None], messages, -jnp.inf)
    return jnp.where(degree > 0, jnp.max(masked, axis=2), 0.0)  # [B, N, F]
  total = jnp.sum(jnp.where(mask[..., None], messages, 0.0), axis=2)  # [B, N, F]
  if aggregation == 'mean':
    return total / jnp.maximum(degree, 1.0)
  return total


class MessagePassingStep(nn.Module):
  """One message-passing step; see :class:`MPNN` for the maths."""
  hidden_size: int
  aggregation: str
  adjacency: str
  residual: bool

  @nn.compact
  def __call__(self, h: jax.Array, action: jax.Array,
               adjacency_mask: Optional[jax.Array] = None) -> jax.Array:
    b, n, _ = h.shape
    a = jnp.broadcast_to(action[:, None, :], (b, n, action.shape[-1]))  # [B, N, A]
    x = jnp.concatenate([h, a], axis=-1)  # [B, N, H + A] node features with the action
    identity = self.adjacency == 'identity'
    # Message MLP psi([x_i, x_j]): three layers, ReLU after the two hidden ones.
    m = PairwiseDense(self.hidden_size, name='message_0')(x, diagonal_only=identity)
    m = nn.relu(m)  # [B, N, N, F] (full) or [B, N, F] (identity)
    m = nn.relu(nn.Dense(self.hidden_size, name='message_1')(m))
    m = nn.Dense(self.hidden_size, name='message_2')(m)
    # Every aggregation of the single self-message is that message.
    agg = m if identity else _aggregate(m, self.aggregation, adjacency_mask)  # [B, N, F]
    # Node update phi([h_i, a, m_i]): two layers, ReLU between.
    u = jnp.concatenate([x, agg], axis=-1)  # [B, N, H + A + F]
    u = nn.relu(nn.Dense(self.hidden_size, name='update_0')(u))
    u = nn.Dense(h.shape[-1], name='update_1')(u)  # [B, N, H]
    return h + u if self.residual else u


class MPNN(nn.Module):
  """Message-passing processor over a graph of N slots (Gilmer et al., 2017).

  Each step, with node features ``x_i = [h_i, a]`` (the action on every node, as C-SWM)::

      m_ij = psi([x_i, x_j])                   three-layer MLP, ReLU after hidden layers
      M_i  = AGG_{j in N(i)} m_ij              sum | mean | max over senders j
      h_i' = h_i + phi([h_i, a, M_i])          two-layer MLP (ReLU between); without
                                               ``residual`` h_i' = phi(...)

  ``adjacency='full'``: every j sends to every i, self-loops included (N^2 edges).
  ``adjacency='identity'``: each node only messages itself (Deep Sets), O(N) work.
  Each of ``num_steps`` steps has its own parameters (``step_0``, ``step_1``, ...).

  Memory: the first message layer on ``[x_i, x_j]`` is split into ``x_i W_r + x_j W_s``
  (:class:`PairwiseDense`), so the ``[B, N, N, 2(H + A)]`` edge concatenation is never
  formed (at N=128, H=64, A=18: 16,384 x 164 = 2.7M floats per sample). The largest
  intermediates are ``[N, N, hidden_size]`` per sample: N^2 * hidden_size floats, 1,048,576
  (4 MiB) at N=128, hidden_size=64. A step keeps about four of them alive for the
  backward pass (pre-activation, ReLU, second layer, message), so activation memory is
  about 4 * N^2 * hidden_size floats per sample per step: quadratic in N, linear in
  ``hidden_size``, ``num_steps`` and B, and independent of H and A (only the per-node
  ``[N, H + A]`` tensors depend on those). The identity adjacency needs N * hidden_size.

  Attributes:
    hidden_size: width of every message and update layer (also the message size).
    num_steps: message-passing steps, each with its own parameters.
    aggregation: 'sum', 'mean' or 'max' over incoming messages. Default 'max' (the
      CLRS MPNN's reduction); 'sum' over 128 fully connected slots makes the output
      scale grow with N (mean |bit logit| about 27 at initialisation against about 1
      for 'max' / 'mean' in the full abstract model).
    adjacency: 'full' (fully connected, self-loops included) or 'identity' (Deep Sets).
    residual: add the update to the input node (``h + phi``) rather than replace it.
  """
  hidden_size: int = 64
  num_steps: int = 1
  aggregation: str = 'max'
  adjacency: str = 'full'
  residual: bool = True

  def __post_init__(self):
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f'aggregation={self.aggregation!r}; valid: {AGGREGATIONS}')
    if self.adjacency not in ADJACENCIES:
      raise ValueError(f'adjacency={self.adjacency!r}; valid: {ADJACENCIES}')
    if self.num_steps < 1 or self.hidden_size < 1:
      raise ValueError(f'num_steps={self.num_steps} and hidden_size={self.hidden_size} '
                       'must be >= 1')
    super().__post_init__()

  @nn.compact
  def __call__(self, z: jax.Array, action: jax.Array,
               adjacency_mask: Optional[jax.Array] = None) -> jax.Array:
    """Args:
      z: [B, N, H] slot latents.
      action: [B, A] one-hot action.
      adjacency_mask: optional explicit graph for ``adjacency='full'`` only: [N, N] or
        [B, N, N], ``mask[i, j] = 1`` when j sends to i (nodes with no incoming edge
        aggregate to 0). Forms the dense [B, N, N, F] messages whatever the mask.

    Returns:
      [B, N, H] updated latents.
    """
    if adjacency_mask is not None and self.adjacency != 'full':
      raise ValueError("adjacency_mask needs adjacency='full'; "
                       f'this processor has adjacency={self.adjacency!r}')
    h = z  # [B, N, H]
    for step in range(self.num_steps):
      h = MessagePassingStep(self.hidden_size, self.aggregation, self.adjacency,
                             self.residual, name=f'step_{step}')(h, action, adjacency_mask)
    return h


class DeepSets(MPNN):
  """Deep Sets (Zaheer et al., 2017): the MPNN over the identity adjacency.

  Same class, same parameter tree, each node only messages itself, so one set of
  parameters gives identical outputs here and in ``MPNN`` called with
  ``adjacency_mask=eye(N)``; this computes the N diagonal messages only (O(N)).
  """
  adjacency: str = 'identity'


class MLPProcessor(nn.Module):
  """Three-layer MLP on the flattened latent and the action (no slot structure).

  ``z' = z + reshape(L2(relu(L1(relu(L0([flatten(z), a]))))), [B, N, H])``; without
  ``residual`` the reshaped MLP output itself. The last layer has N * H outputs, so the
  parameter count grows as ``hidden_size * N * H`` (about 4.2M at N=128, H=64, 256).

  Attributes:
    hidden_size: width of the two hidden layers.
    residual: add the output to the input latent.
  """
  hidden_size: int = 256
  residual: bool = True

  @nn.compact
  def __call__(self, z: jax.Array, action: jax.Array) -> jax.Array:
    """Args:
      z: [B, N, H] slot latents.
      action: [B, A] one-hot action.

    Returns:
      [B, N, H] updated latents.
    """
    b, n, h = z.shape
    x = jnp.concatenate([z.reshape(b, n * h), action], axis=-1)  # [B, N*H + A]
    x = nn.relu(nn.Dense(self.hidden_size, name='layer_0')(x))  # [B, hidden]
    x = nn.relu(nn.Dense(self.hidden_size, name='layer_1')(x))  # [B, hidden]
    x = nn.Dense(n * h, name='layer_2')(x).reshape(b, n, h)  # [B, N, H]
    return z + x if self.residual else x


PROCESSORS = {'mpnn': MPNN, 'deepsets': DeepSets, 'mlp': MLPProcessor}


def make_processor(name: str, **kwargs) -> nn.Module:
  """Builds a processor by name.

  Args:
    name: 'mpnn', 'deepsets' or 'mlp'.
    **kwargs: the processor's attributes (e.g. ``hidden_size``, ``num_steps``,
      ``aggregation``); an unknown one raises ``TypeError`` naming it.

  Returns:
    An unbound processor module. Pass it to a parent model as its ``processor``
    attribute, which names it ``processor`` in the parameter tree.

  Raises:
    ValueError: unknown ``name`` (the message lists the valid names).
  """
  if name not in PROCESSORS:
    raise ValueError(f'Unknown processor {name!r}; valid processors: {sorted(PROCESSORS)}')
  return PROCESSORS[name](**kwargs)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything needed to rebuild an abstract model (and its processor) from scratch.

  Attributes:
    processor: 'mpnn', 'deepsets' or 'mlp'.
    latent_size: H, features per slot (64 in the paper).
    hidden_size: message / update width of the MPNN and Deep Sets.
    num_message_steps: message-passing steps of the MPNN and Deep Sets.
    aggregation: 'sum', 'mean' or 'max' over incoming messages (MPNN).
    mlp_hidden_size: hidden width of the MLP processor.
    slot_embedding: learned per-slot embedding in the encoder f.
    num_slots: N, nodes the abstract model's processor sees (128 RAM bytes; the balls). Only
      the MLP processor's parameters depend on it: an MPNN export runs on any number of slots.
    action_size: A, width of the action the processor reads (18 on Atari, 0 for balls).
  """
  processor: str
  latent_size: int = 64
  hidden_size: int = 64
  num_message_steps: int = 1
  aggregation: str = 'max'
  mlp_hidden_size: int = 256
  slot_embedding: bool = True
  num_slots: int = abstract_net.NUM_SLOTS
  action_size: int = abstract_net.NUM_ACTIONS

  def __post_init__(self):
    if self.processor not in PROCESSORS:
      raise ValueError(f'ModelSpec.processor={self.processor!r}; valid: {sorted(PROCESSORS)}')
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f'ModelSpec.aggregation={self.aggregation!r}; valid: {AGGREGATIONS}')
    for name in ('latent_size', 'hidden_size', 'num_message_steps', 'mlp_hidden_size',
                 'num_slots'):
      if int(getattr(self, name)) < 1:
        raise ValueError(f'ModelSpec.{name}={getattr(self, name)!r} must be >= 1')
    if int(self.action_size) < 0:
      raise ValueError(f'ModelSpec.action_size={self.action_size!r} must be >= 0')

  def to_dict(self) -> dict[str, Any]:
    """Returns the spec as a JSON-serialisable dict."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> 'ModelSpec':
    """Builds a spec from :meth:`to_dict` output.

    Raises:
      ValueError: an unknown key (named in the message) or an invalid value.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f'Unknown ModelSpec keys {unknown}; valid: {sorted(known)}')
    return cls(**values)


def make_spec_processor(spec: ModelSpec) -> nn.Module:
  """The unbound processor P that ``spec`` describes (see :func:`make_processor`)."""
  if spec.processor == 'mlp':
    return make_processor('mlp', hidden_size=spec.mlp_hidden_size)
  return make_processor(spec.processor, hidden_size=spec.hidden_size,
                        num_steps=spec.num_message_steps, aggregation=spec.aggregation)
