"""Slot Attention (Locatello et al., 2020): the pixel encoder f~ of the bouncing-balls model.

* :func:`build_grid` / :class:`SoftPositionEmbed`: the soft position embedding added to a
  feature map;
* :class:`SlotAttention`: the iterative attention module (Algorithm 1);
* :func:`pixel_centres`: every pixel's centre in the simulator's box coordinates;
* :class:`SlotAttentionEncoder`: CNN + position embedding + MLP + Slot Attention over a short
  sequence of images, the slots of each image starting from the previous image's (as SAVi),
  each slot with an explicit position: the centre of mass of its attention.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SLOT_INITS = ('learned', 'sampled')


def build_grid(height: int, width: int) -> np.ndarray:
  """The soft position grid of Slot Attention: [1, H, W, 4] channels ``[y, x, 1-y, 1-x]``.

  ``y`` and ``x`` run over ``linspace(0, 1)`` along rows and columns.
  """
  ys, xs = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width),
                       indexing='ij')  # [H, W] each
  grid = np.stack([ys, xs], axis=-1)  # [H, W, 2]
  return np.concatenate([grid, 1.0 - grid], axis=-1)[None].astype(np.float32)  # [1, H, W, 4]


def pixel_centres(height: int, width: int) -> np.ndarray:
  """Pixel centres in box coordinates, as the balls renderer places them: [H*W, 2] (x, y).

  Row-major over the image; pixel (i, j) has centre ``((j + 0.5) / W, 1 - (i + 0.5) / H)``
  (x to the right, y up, row 0 at the top of the box), so a position computed from these
  lives in the same coordinates as the simulator's ball positions.
  """
  ys = 1.0 - (np.arange(height) + 0.5) / height
  xs = (np.arange(width) + 0.5) / width
  y, x = np.meshgrid(ys, xs, indexing='ij')  # [H, W] each
  return np.stack([x, y], axis=-1).reshape(height * width, 2).astype(np.float32)


def _spread_slots(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Initial learned slots [1, K, S]: orthogonal rows of norm sqrt(S) (K <= S), so the K
  initial queries are as different as they can be and split the image between them."""
  k, s = shape[-2], shape[-1]
  rows = nn.initializers.orthogonal(scale=float(np.sqrt(s)))(key, (k, s), dtype)
  return rows.reshape(shape)


class SoftPositionEmbed(nn.Module):
  """Adds ``Dense(grid)`` to a feature map, the grid being :func:`build_grid`."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Args: x: [B, H, W, C]. Returns: [B, H, W, C]."""
    grid = build_grid(x.shape[1], x.shape[2])  # [1, H, W, 4]
    return x + nn.Dense(x.shape[-1], name='dense')(grid)


class SlotAttention(nn.Module):
  """Slot Attention (Locatello et al., 2020, Algorithm 1).

  ``inputs = LayerNorm(inputs); k, v = Wk inputs, Wv inputs``; then ``num_iterations``
  times::

      q      = Wq LayerNorm(slots)
      attn   = softmax_over_slots(q k^T / sqrt(slot_size))          [B, K, L]
      w      = (attn + eps) / sum_over_inputs(attn + eps)             weighted mean
      slots  = GRU(carry=slots, inputs=w v)
      slots += MLP(LayerNorm(slots))                                 residual

  Every iteration shares the same parameters. q, k, v projections have no bias.

  Attributes:
    num_iterations: attention iterations.
    slot_size: S, features per slot (also the q / k / v width).
    mlp_hidden_size: hidden width of the residual MLP.
    epsilon: added to the attention before renormalising over inputs.
  """
  num_iterations: int = 3
  slot_size: int = 64
  mlp_hidden_size: int = 128
  epsilon: float = 1e-8

  @nn.compact
  def __call__(self, inputs: jax.Array, slots: jax.Array,
               locality: tuple[jax.Array, jax.Array, float] | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Args:
      inputs: [B, L, D] input features.
      slots: [B, K, S] initial slots.
      locality: optional ``(centres [L, 2], positions [B, K, 2], strength)``: every
        iteration adds ``-|strength * (centre_l - position_k)|^2 / 2`` to slot k's logit for
        input l, then moves ``position_k`` to the centre of mass of slot k's attention.

    Returns:
      ``(slots, attention)``: the final slots [B, K, S] and the last iteration's attention
      [B, K, L], softmaxed over slots (``attention.sum(axis=1) == 1``).
    """
    inputs = nn.LayerNorm(name='norm_inputs')(inputs)  # [B, L, D]
    k = nn.Dense(self.slot_size, use_bias=False, name='project_k')(inputs)  # [B, L, S]
    v = nn.Dense(self.slot_size, use_bias=False, name='project_v')(inputs)  # [B, L, S]
    norm_slots = nn.LayerNorm(name='norm_slots')
    project_q = nn.Dense(self.slot_size, use_bias=False, name='project_q')
    gru = nn.GRUCell(self.slot_size, name='gru')
    norm_mlp = nn.LayerNorm(name='norm_mlp')
    mlp_hidden = nn.Dense(self.mlp_hidden_size, name='mlp_hidden')
    mlp_out = nn.Dense(self.slot_size, name='mlp_out')
    scale = self.slot_size ** -0.5
    attention = None
    for _ in range(self.num_iterations):
      q = project_q(norm_slots(slots)) * scale  # [B, K, S]
      logits = jnp.einsum('bks,bls->bkl', q, k)  # [B, K, L]
      if locality is not None:
        centres, positions, strength = locality
        offset = strength * (centres[None, None] - positions[:, :, None])  # [B, K, L, 2]
        logits = logits - 0.5 * jnp.sum(jnp.square(offset), axis=-1)
      attention = jax.nn.softmax(logits, axis=1)  # [B, K, L], normalised over slots
      weights = attention + self.epsilon
      weights = weights / jnp.sum(weights, axis=2, keepdims=True)  # over inputs
      if locality is not None:
        locality = (centres, jnp.einsum('bkl,ld->bkd', weights, centres), strength)
      updates = jnp.einsum('bkl,bls->bks', weights, v)  # [B, K, S]
      slots, _ = gru(slots, updates)  # [B, K, S]
      slots = slots + mlp_out(nn.relu(mlp_hidden(norm_mlp(slots))))
    return slots, attention


class SlotAttentionEncoder(nn.Module):
  """f~ before the projection: Slot Attention over a short sequence of images.

  Per image: scale to [-1, 1] -> a CNN (``num_conv_layers`` convolutions of ``cnn_channels``
  channels, ``kernel_size`` square kernels, stride 1, SAME padding, ReLU) -> soft position
  embedding -> flatten to [H*W, C] -> LayerNorm -> MLP (Dense(cnn_channels), ReLU,
  Dense(cnn_channels)) -> :class:`SlotAttention` (one module, shared by every image).

  Slot order across images (as SAVi, Kipf et al., 2022). Only the first image's slots start
  from the initial slots; every later image's slots start from the previous image's final
  slots, so slot k keeps following the same object through the history. That is what makes
  concatenating slot k's vectors across images (``balls.BallsNaturalModel``) meaningful.

  Initial slots (``slot_init``):
    'learned'  K learned vectors (params ``slots_init`` [1, K, S], initialised orthogonal),
               one per slot, as the learned queries of Jia et al. (2023, BO-QSA). Used for
               the balls: each ball has its own colour, so slot k can learn to look for one
               colour from the start.
    'sampled'  Locatello et al.'s ``mu + exp(log_sigma) * noise`` (params ``slots_mu``,
               ``slots_log_sigma`` [1, 1, S]); noise from ``slot_noise``, else the ``'slots'``
               rng stream, else (``deterministic``) a fixed key. (Not ``mu`` alone: K identical
               slots would stay identical through every iteration.)

  Slot positions (as Invariant Slot Attention, Biza et al., 2023): each slot's position is
  the centre of mass of its last-iteration attention over :func:`pixel_centres`, in the
  simulator's box coordinates. It is exact and differentiable in the attention, so a loss
  on where the decoder draws a slot pulls that slot's attention toward the object.

  Attributes:
    num_slots: K (the balls plus background).
    slot_size: S.
    cnn_channels: channels of every convolution and of the MLP (the attention inputs' D).
    kernel_size: convolution kernel side.
    num_conv_layers: convolutions in the CNN.
    num_iterations: Slot Attention iterations per image.
    mlp_hidden_size: hidden width of Slot Attention's residual MLP.
    slot_init: 'learned' or 'sampled' (above).
    attention_locality: 0, or the strength of a Gaussian locality term in the attention
      logits around each slot's current position (``SlotAttention``'s ``locality``); the
      first image's slots start at K positions spread on a circle of radius 0.3 about the
      box centre, later images' where the previous image left them. Without it every slot's
      attention starts centred near the image centre, and some initialisations stayed at
      the mean-frame solution for hundreds of updates (README, "Bouncing balls").
  """
  num_slots: int = 11
  slot_size: int = 64
  cnn_channels: int = 64
  kernel_size: int = 5
  num_conv_layers: int = 4
  num_iterations: int = 3
  mlp_hidden_size: int = 128
  slot_init: str = 'learned'
  attention_locality: float = 0.0

  def __post_init__(self):
    if self.slot_init not in SLOT_INITS:
      raise ValueError(f'slot_init={self.slot_init!r}; valid: {SLOT_INITS}')
    super().__post_init__()

  @nn.compact
  def __call__(self, images: jax.Array, deterministic: bool = False,
               slot_noise: jax.Array | None = None) -> dict:
    """Args:
      images: [B, T, H, W, 3] uint8 (0..255) or float in [0, 1].
      deterministic: 'sampled' initial noise from a fixed key instead of the 'slots' stream.
      slot_noise: [B, K, S] standard-normal initial noise for 'sampled' (the learners draw it
        per global batch row, so a batch split over devices gets the same noise).

    Returns:
      ``{'slots': [B, T, K, S], 'positions': [B, T, K, 2] (x, y) in box coordinates,
      'attention': [B, T, K, H*W] (each image's last iteration, softmaxed over slots)}``.
    """
    b, t, h, w, c = images.shape
    x = jnp.asarray(images)
    if jnp.issubdtype(x.dtype, jnp.integer):
      x = x.astype(jnp.float32) / 255.0
    x = 2.0 * x.astype(jnp.float32).reshape(b * t, h, w, c) - 1.0  # [B*T, H, W, 3] in [-1, 1]
    for i in range(self.num_conv_layers):
      x = nn.Conv(self.cnn_channels, (self.kernel_size, self.kernel_size), padding='SAME',
                  name=f'conv_{i}')(x)
      x = nn.relu(x)  # [B*T, H, W, C]
    x = SoftPositionEmbed(name='position_embedding')(x)  # [B*T, H, W, C]
    x = x.reshape(b, t, h * w, self.cnn_channels)  # [B, T, L, C], L = H*W
    x = nn.LayerNorm(name='norm')(x)
    x = nn.relu(nn.Dense(self.cnn_channels, name='mlp_0')(x))
    x = nn.Dense(self.cnn_channels, name='mlp_1')(x)  # [B, T, L, C]

    shape = (b, self.num_slots, self.slot_size)
    if self.slot_init == 'learned':
      init = self.param('slots_init', _spread_slots, (1, self.num_slots, self.slot_size))
      slots = jnp.broadcast_to(init, shape)  # [B, K, S]
    else:
      mu = self.param('slots_mu', nn.initializers.xavier_uniform(), (1, 1, self.slot_size))
      log_sigma = self.param('slots_log_sigma', nn.initializers.xavier_uniform(),
                             (1, 1, self.slot_size))
      if slot_noise is None:
        key = jax.random.PRNGKey(0) if deterministic else self.make_rng('slots')
        slot_noise = jax.random.normal(key, shape)  # [B, K, S]
      slots = mu + jnp.exp(log_sigma) * slot_noise  # [B, K, S]

    centres = jnp.asarray(pixel_centres(h, w))  # [L, 2]
    slot_attention = SlotAttention(self.num_iterations, self.slot_size,
                                   self.mlp_hidden_size, name='slot_attention')
    angles = 2.0 * np.pi * np.arange(self.num_slots) / self.num_slots
    circle = np.stack([0.5 + 0.3 * np.cos(angles), 0.5 + 0.3 * np.sin(angles)], axis=-1)
    positions = jnp.broadcast_to(jnp.asarray(circle, jnp.float32), (b, self.num_slots, 2))
    all_slots, all_positions, all_attention = [], [], []
    for step in range(t):  # each image starts from the previous image's slots
      locality = ((centres, positions, self.attention_locality) if self.attention_locality
                  else None)
      slots, attention = slot_attention(x[:, step], slots, locality)  # [B,K,S], [B,K,L]
      weights = attention / jnp.sum(attention, axis=-1, keepdims=True)  # over pixels
      positions = jnp.einsum('bkl,ld->bkd', weights, centres)  # [B, K, 2]
      all_slots.append(slots)
      all_positions.append(positions)
      all_attention.append(attention)
    return {'slots': jnp.stack(all_slots, axis=1),
            'positions': jnp.stack(all_positions, axis=1),
            'attention': jnp.stack(all_attention, axis=1)}
