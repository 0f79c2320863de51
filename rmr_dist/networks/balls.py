"""Bouncing-balls models: abstract (positions) and natural (frames) (paper section 3, App. A).

Abstract: ``g(P(f(x)))`` on ball positions. A history x [B, T_hist, N, 2] goes to

  f (``encoder``):   a linear projection of each ball's concatenated history
                     ``[x_0, y_0, x_1, y_1, ...]`` (2 * T_hist values) to ``latent_size``
                     features, the same for every ball -> [B, N, 128];
  P (``processor``): a processor of ``rmr_dist.networks.processors`` (App. A: a 2-step MPNN
                     over the fully connected ball graph) -> [B, N, 128];
  g (``decoder``):   a linear projection of each ball to its next 2D position -> [B, N, 2].

The system has no action, so P is called with a zero-width action ``[B, 0]``: its node
features are then just the latents, and its parameter shapes are those of a processor built
for ``A = 0``. f, g and an MPNN P all act per ball or equivariantly, so the abstract model is
permutation-equivariant over balls.

Natural: ``g~(P(f~(x)))`` on frames. f~ runs Slot Attention (Locatello et al., 2020) on each
of the T_hist input images (:class:`SlotAttentionEncoder`), concatenates each slot's T_hist
vectors and projects them with one Dense to 128 features; P is the same processor (its
``params['processor']`` subtree has the same structure as the abstract model's, so a
pre-trained abstract processor loads as-is); g~ is a spatial broadcast decoder (Watters et
al., 2019; :class:`BroadcastDecoder`) whose per-slot RGB and masks are composited into the
predicted next frame, scored by :func:`frame_mse`.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LATENT_SIZE = 128  # per-ball / per-slot latent (App. A)


def _no_action(batch_size: int) -> jax.Array:
  """The zero-width action [B, 0] the bouncing-balls processors are called with."""
  return jnp.zeros((batch_size, 0), jnp.float32)


class BallsAbstractModel(nn.Module):
  """``g(P(f(x)))`` on ball positions (paper Appendix A).

  Parameters: ``params['encoder']`` (f), ``params['processor']`` (P, to save or freeze),
  ``params['decoder']`` (g).

  Attributes:
    processor: an unbound processor (``make_processor('mpnn', ...)``); Flax names it
      ``processor`` after this attribute. Called with a zero-width action.
    latent_size: features per ball (128).
  """
  processor: nn.Module
  latent_size: int = LATENT_SIZE

  @nn.compact
  def __call__(self, history: jax.Array) -> jax.Array:
    """Args:
      history: [B, T_hist, N, 2] past ball positions, oldest first.

    Returns:
      [B, N, 2] predicted next positions.
    """
    b, t, n, d = history.shape
    x = jnp.transpose(jnp.asarray(history, jnp.float32), (0, 2, 1, 3))  # [B, N, T, 2]
    x = x.reshape(b, n, t * d)  # [B, N, T*2], per ball [x_0, y_0, x_1, y_1, ...]
    z = nn.Dense(self.latent_size, name='encoder')(x)  # [B, N, latent]
    z = self.processor(z, _no_action(b))  # [B, N, latent]
    return nn.Dense(d, name='decoder')(z)  # [B, N, 2]


def build_grid(height: int, width: int) -> np.ndarray:
  """The soft position grid of Slot Attention: [1, H, W, 4] channels ``[y, x, 1-y, 1-x]``.

  ``y`` and ``x`` run over ``linspace(0, 1)`` along rows and columns.
  """
  ys, xs = np.meshgrid(np.linspace(0.0, 1.0, height), np.linspace(0.0, 1.0, width),
                       indexing='ij')  # [H, W] each
  grid = np.stack([ys, xs], axis=-1)  # [H, W, 2]
  return np.concatenate([grid, 1.0 - grid], axis=-1)[None].astype(np.float32)  # [1, H, W, 4]


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
  def __call__(self, inputs: jax.Array, slots: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Args:
      inputs: [B, L, D] input features.
      slots: [B, K, S] initial slots.

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
      attention = jax.nn.softmax(logits, axis=1)  # [B, K, L], normalised over slots
      weights = attention + self.epsilon
      weights = weights / jnp.sum(weights, axis=2, keepdims=True)  # over inputs
      updates = jnp.einsum('bkl,bls->bks', weights, v)  # [B, K, S]
      slots, _ = gru(slots, updates)  # [B, K, S]
      slots = slots + mlp_out(nn.relu(mlp_hidden(norm_mlp(slots))))
    return slots, attention


class SlotAttentionEncoder(nn.Module):
  """f~ before the projection: Slot Attention over a short sequence of images.

  Per image: a CNN (``num_conv_layers`` convolutions of ``cnn_channels`` channels,
  ``kernel_size`` square kernels, stride 1, SAME padding, ReLU) -> soft position embedding
  -> flatten to [H*W, C] -> LayerNorm -> MLP (Dense(cnn_channels), ReLU, Dense(cnn_channels))
  -> :class:`SlotAttention` (one module, shared by every image).

  Slot order across images (as SAVi, Kipf et al., 2022). Slot Attention is equivariant in
  its slots, so separately initialised slots would come out in an arbitrary order for each
  image and "slot k of image 1" and "slot k of image 2" would be unrelated. Here only the
  first image's slots start from the learned Gaussian ``mu + exp(log_sigma) * noise``
  (params ``slots_mu``, ``slots_log_sigma`` [1, 1, S]; noise from the ``'slots'`` rng
  stream); every later image's slots start from the previous image's final slots, so slot k
  keeps following the same object through the history. That is what makes concatenating
  slot k's vectors across images (:class:`BallsNaturalModel`) meaningful.

  ``deterministic=True`` draws the initial noise from a fixed key (``PRNGKey(0)``) rather
  than the ``'slots'`` stream, so no rng is needed and repeated calls agree. (It does not
  use ``mu`` alone: K identical initial slots get identical queries, a uniform softmax over
  slots and identical updates, so they would stay identical through every iteration and
  image and the encoder would see one object K times.)

  Attributes:
    num_slots: K (10 balls plus background).
    slot_size: S.
    cnn_channels: channels of every convolution and of the MLP (the attention inputs' D).
    kernel_size: convolution kernel side.
    num_conv_layers: convolutions in the CNN.
    num_iterations: Slot Attention iterations per image.
    mlp_hidden_size: hidden width of Slot Attention's residual MLP.
  """
  num_slots: int = 11
  slot_size: int = 64
  cnn_channels: int = 64
  kernel_size: int = 5
  num_conv_layers: int = 4
  num_iterations: int = 3
  mlp_hidden_size: int = 128

  @nn.compact
  def __call__(self, images: jax.Array,
               deterministic: bool = False) -> tuple[jax.Array, jax.Array]:
    """Args:
      images: [B, T, H, W, 3] uint8 (0..255) or float in [0, 1].
      deterministic: initial slot noise from a fixed key instead of the 'slots' stream.

    Returns:
      ``(slots, attention)``: slots [B, T, K, S]; each image's last-iteration attention
      [B, T, K, H*W], softmaxed over slots.
    """
    b, t, h, w, c = images.shape
    x = jnp.asarray(images)
    if jnp.issubdtype(x.dtype, jnp.integer):
      x = x.astype(jnp.float32) / 255.0
    x = x.astype(jnp.float32).reshape(b * t, h, w, c)  # [B*T, H, W, 3] in [0, 1]
    for i in range(self.num_conv_layers):
      x = nn.Conv(self.cnn_channels, (self.kernel_size, self.kernel_size), padding='SAME',
                  name=f'conv_{i}')(x)
      x = nn.relu(x)  # [B*T, H, W, C]
    x = SoftPositionEmbed(name='position_embedding')(x)  # [B*T, H, W, C]
    x = x.reshape(b, t, h * w, self.cnn_channels)  # [B, T, L, C], L = H*W
    x = nn.LayerNorm(name='norm')(x)
    x = nn.relu(nn.Dense(self.cnn_channels, name='mlp_0')(x))
    x = nn.Dense(self.cnn_channels, name='mlp_1')(x)  # [B, T, L, C]

    mu = self.param('slots_mu', nn.initializers.xavier_uniform(), (1, 1, self.slot_size))
    log_sigma = self.param('slots_log_sigma', nn.initializers.xavier_uniform(),
                           (1, 1, self.slot_size))
    key = jax.random.PRNGKey(0) if deterministic else self.make_rng('slots')
    noise = jax.random.normal(key, (b, self.num_slots, self.slot_size))  # [B, K, S]
    slots = mu + jnp.exp(log_sigma) * noise  # [B, K, S]

    slot_attention = SlotAttention(self.num_iterations, self.slot_size,
                                   self.mlp_hidden_size, name='slot_attention')
    all_slots, all_attention = [], []
    for step in range(t):  # each image starts from the previous image's slots
      slots, attention = slot_attention(x[:, step], slots)  # [B, K, S], [B, K, L]
      all_slots.append(slots)
      all_attention.append(attention)
    return jnp.stack(all_slots, axis=1), jnp.stack(all_attention, axis=1)


class BroadcastDecoder(nn.Module):
  """g~: spatial broadcast decoder (Watters et al., 2019), as in Slot Attention.

  Each slot latent [D] is tiled over a ``broadcast_size x broadcast_size`` grid, a soft
  position embedding is added, then ``num_layers`` transposed convolutions (``channels``
  channels, ReLU after each): the first ``log2(image_size / broadcast_size)`` with stride 2
  (8 -> 16 -> 32 -> 64 at the defaults), the rest stride 1. A per-pixel Dense then gives 4
  channels per slot: linear RGB and a mask logit. Masks are softmaxed across slots and
  ``recon = sum_k mask_k * rgb_k``.

  Memory: every slot is decoded at full resolution, so the last layers hold
  ``B * K * image_size^2 * channels`` floats each (5,632 x 4,096 x 64 = 1.5G floats at
  B=512, K=11, 64x64, 64 channels).

  Attributes:
    image_size: output side (square images).
    broadcast_size: side of the broadcast grid; ``image_size / broadcast_size`` must be a
      power of two needing at most ``num_layers`` stride-2 layers.
    channels: channels of every transposed convolution.
    kernel_size: kernel side.
    num_layers: transposed convolutions (App. A: 5).
  """
  image_size: int = 64
  broadcast_size: int = 8
  channels: int = 64
  kernel_size: int = 5
  num_layers: int = 5

  def __post_init__(self):
    ratio = self.image_size // self.broadcast_size if self.broadcast_size > 0 else 0
    if (self.broadcast_size < 1 or ratio * self.broadcast_size != self.image_size
        or ratio & (ratio - 1)):
      raise ValueError(f'image_size={self.image_size} / broadcast_size={self.broadcast_size}'
                       ' must be a power of two')
    if self.num_upsampling > self.num_layers:
      raise ValueError(f'image_size={self.image_size} from broadcast_size='
                       f'{self.broadcast_size} needs {self.num_upsampling} stride-2 layers '
                       f'but num_layers={self.num_layers}')
    super().__post_init__()

  @property
  def num_upsampling(self) -> int:
    """Stride-2 layers: log2(image_size / broadcast_size)."""
    return int(round(math.log2(self.image_size // self.broadcast_size)))

  @nn.compact
  def __call__(self, z: jax.Array) -> dict:
    """Args:
      z: [B, K, D] slot latents.

    Returns:
      ``{'recon': [B, H, W, 3], 'masks': [B, K, H, W, 1] (sum over K == 1),
      'rgb': [B, K, H, W, 3]}`` with H = W = image_size.
    """
    b, k, d = z.shape
    s = self.broadcast_size
    x = jnp.broadcast_to(z.reshape(b * k, 1, 1, d), (b * k, s, s, d))  # [B*K, s, s, D]
    x = SoftPositionEmbed(name='position_embedding')(x)
    for i in range(self.num_layers):
      stride = 2 if i < self.num_upsampling else 1
      x = nn.ConvTranspose(self.channels, (self.kernel_size, self.kernel_size),
                           strides=(stride, stride), padding='SAME', name=f'deconv_{i}')(x)
      x = nn.relu(x)  # [B*K, h_i, w_i, C]; finally [B*K, H, W, C]
    x = nn.Dense(4, name='output')(x)  # [B*K, H, W, 4]
    x = x.reshape(b, k, self.image_size, self.image_size, 4)
    rgb, mask_logits = x[..., :3], x[..., 3:]  # [B, K, H, W, 3], [B, K, H, W, 1]
    masks = jax.nn.softmax(mask_logits, axis=1)  # over slots
    recon = jnp.sum(masks * rgb, axis=1)  # [B, H, W, 3]
    return {'recon': recon, 'masks': masks, 'rgb': rgb}


class BallsNaturalModel(nn.Module):
  """``g~(P(f~(x)))`` on frames (paper section 3 / Appendix A), predicting the next frame.

  f~: :class:`SlotAttentionEncoder` on the T_hist input images -> slots [B, T, K, S]; per
  slot the T vectors are concatenated [B, K, T*S] and one Dense (``projection``) maps them to
  ``latent_size``; P: the processor (zero-width action); g~: :class:`BroadcastDecoder`.

  Parameters: exactly ``params['encoder']``, ``params['projection']``,
  ``params['processor']`` (the same structure as :class:`BallsAbstractModel`'s for the same
  processor config and latent size, so an abstract export loads as-is) and
  ``params['decoder']``.

  Attributes:
    encoder: an unbound :class:`SlotAttentionEncoder`.
    processor: an unbound processor; Flax names it ``processor``.
    decoder: an unbound :class:`BroadcastDecoder`.
    latent_size: per-slot latent (128); must match the abstract model's for the transfer.
  """
  encoder: SlotAttentionEncoder
  processor: nn.Module
  decoder: BroadcastDecoder
  latent_size: int = LATENT_SIZE

  @nn.compact
  def __call__(self, frames: jax.Array, deterministic: bool = False) -> dict:
    """Args:
      frames: [B, T_hist, H, W, 3] uint8 input frames, oldest first.
      deterministic: passed to the encoder (fixed initial slot noise, no 'slots' rng).

    Returns:
      ``{'recon': [B, H, W, 3], 'masks': [B, K, H, W, 1], 'rgb': [B, K, H, W, 3],
      'latents': [B, K, latent] (f~(x), P's input), 'next_latents': [B, K, latent]
      (P's output, the decoder's input), 'attention': [B, T_hist, K, H*W]}``.
    """
    slots, attention = self.encoder(frames, deterministic)  # [B, T, K, S], [B, T, K, L]
    b, t, k, s = slots.shape
    x = jnp.transpose(slots, (0, 2, 1, 3)).reshape(b, k, t * s)  # [B, K, T*S]
    latents = nn.Dense(self.latent_size, name='projection')(x)  # [B, K, latent]
    next_latents = self.processor(latents, _no_action(b))  # [B, K, latent]
    out = dict(self.decoder(next_latents))
    out.update(latents=latents, next_latents=next_latents, attention=attention)
    return out


def frame_mse(recon: jax.Array, target: jax.Array) -> jax.Array:
  """Per-pixel MSE of a reconstruction against the true frame (App. A's metric).

  Args:
    recon: [B, H, W, 3] float, in [0, 1] scale.
    target: [B, H, W, 3] uint8 (scaled to [0, 1]); a float target is taken as already in
      [0, 1].

  Returns:
    [] float32, the mean squared error over every pixel and channel.
  """
  target = jnp.asarray(target)
  if jnp.issubdtype(target.dtype, jnp.integer):
    target = target.astype(jnp.float32) / 255.0
  return jnp.mean(jnp.square(jnp.asarray(recon, jnp.float32) - target))
