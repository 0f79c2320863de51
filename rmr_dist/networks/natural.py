"""The natural (pixel) Atari model: ``g~(P(f~(x), a))`` on frames (paper section 4).

  f~ (``encoder``, :class:`AtariEncoder`): the CNN trunk of Anand et al. (2019) -- the
      AtariARI / ST-DIM "NatureCNN" up to its local feature map -- then a 1x1 convolution to
      ``128 * m`` feature maps, ``m`` per slot; each slot's ``m x h x w`` values are flattened
      and linearly projected (one projection shared by all slots) to 64 features:
      frames [B, H, W, 3] uint8 -> z [B, 128, 64]; stacked frames [B, K, H, W, 3] (the K most
      recent, oldest first; C-SWM's Atari inputs are K = 2) enter the trunk as the K frames'
      3K channels.
  P  (``processor``): any processor of ``rmr_dist.networks.processors`` (the pre-trained
      abstract MPNN for RMR; the same architecture, trained, for C-SWM) -> [B, 128, 64].
  g~ (``decoder``, :class:`LatentDecoder`): one linear projection per slot to 64 features.

The model predicts the next latent, ``g~(P(f~(x_t), a_t)) ~ f~(x_t+1)``, and is trained with
the C-SWM contrastive loss (``rmr_dist.losses.contrastive_loss``).

Trunk (NatureCNN of ``atariari/methods/encoders.py``, its ``main[:6]``): conv 32 8x8 stride 4,
ReLU; conv 64 4x4 stride 2, ReLU; conv 128 4x4 stride 2, ReLU; VALID padding, orthogonal
kernels with ReLU gain sqrt(2), zero biases (AtariARI's ``init_``). A VALID convolution of
kernel k and stride s maps a side n to ``(n - k) // s + 1``, so

  210 x 160 -> 51 x 39 -> 24 x 18 -> 11 x 8   (x 128 channels; ST-DIM's local map ``f5``)
   84 x  64 -> 20 x 15 ->  9 x  6 ->  3 x 2   (the ``test`` config's frames)

and each side needs at least 44 pixels (44 -> 10 -> 4 -> 1); 42 x 32 gives 9 x 7 -> 3 x 2 and
then nothing, which :func:`trunk_output_shape` reports with a ValueError.

Slot identity. The 1x1 convolution has its own weights for each slot's ``m`` maps (kernel
columns ``k*m ... k*m + m - 1`` belong to slot k), so every slot sees its own detector of the
local features, and the shared projection then reads a spatial map, i.e. where that slot's
detector fired. That alone gives slots no identity the processor can read: two slots whose
maps look alike get alike latents, whereas the abstract f the frozen P was trained on adds a
learned slot-index embedding ``e_k``. ``slot_embedding=True`` adds the same to f~ (a learned
[S, H] embedding after the shared projection), so P sees inputs like its training data; it is
a per-slot constant, so it changes no probe's information about the frame. With ``m = 1``
each slot is one object map, the style of C-SWM. The maps pass through a sigmoid, as C-SWM's
object-extractor outputs do (``map_activation='none'`` leaves them linear, the paper's text
taken literally).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NUM_SLOTS = 128  # one slot per Atari RAM byte, as in the abstract model
LATENT_SIZE = 64  # features per slot (paper: 64)
NUM_ACTIONS = 18  # full ALE action set
# (features, kernel, stride) of the three trunk convolutions (AtariARI NatureCNN main[:6]).
TRUNK = ((32, 8, 4), (64, 4, 2), (128, 4, 2))
MAP_ACTIVATIONS = ('sigmoid', 'none')


def trunk_output_shape(height: int, width: int) -> tuple[int, int]:
  """The trunk's local feature map size (h, w) for ``height x width`` frames (VALID padding).

  Raises:
    ValueError: the frames are too small for the trunk (the message gives each layer's size).
  """
  sizes = [(height, width)]
  for _, kernel, stride in TRUNK:
    h, w = sizes[-1]
    sizes.append(((h - kernel) // stride + 1, (w - kernel) // stride + 1))
    if min(h, w) < kernel:
      raise ValueError(f'Frames of {height}x{width} are too small for the Atari trunk: sizes '
                       f'{sizes[:-1]} reach a {kernel}x{kernel} convolution (each side needs at '
                       'least 44 pixels).')
  return sizes[-1]


class AtariEncoder(nn.Module):
  """f~: NatureCNN trunk, per-slot 1x1 maps, shared per-slot linear projection.

  Attributes:
    maps_per_slot: m, feature maps per slot (1 = C-SWM-style object maps).
    num_slots: S (128).
    latent_size: features per slot (64).
    map_activation: 'sigmoid' (C-SWM's object maps) or 'none' on the 1x1 maps.
    slot_embedding: add a learned [S, latent_size] slot-index embedding after the projection
      (initialised N(0, 1), as the abstract f's).
  """
  maps_per_slot: int = 1
  num_slots: int = NUM_SLOTS
  latent_size: int = LATENT_SIZE
  map_activation: str = 'sigmoid'
  slot_embedding: bool = False

  def __post_init__(self):
    if self.maps_per_slot < 1:
      raise ValueError(f'maps_per_slot={self.maps_per_slot} must be >= 1')
    if self.map_activation not in MAP_ACTIVATIONS:
      raise ValueError(f'map_activation={self.map_activation!r}; valid: {MAP_ACTIVATIONS}')
    super().__post_init__()

  @nn.compact
  def __call__(self, frames: jax.Array) -> jax.Array:
    """Args:
      frames: [B, H, W, 3] uint8 RGB frames, or [B, K, H, W, 3] stacks of K frames (any
        dtype with values 0..255).

    Returns:
      [B, S, latent_size] float32 slot latents.
    """
    if frames.ndim == 5:  # [B, K, H, W, 3] -> [B, H, W, 3K], frame k in channels 3k .. 3k+2
      k = frames.shape[1]
      frames = jnp.moveaxis(frames, 1, 3).reshape(frames.shape[:1] + frames.shape[2:4] + (3 * k,))
    b, height, width, _ = frames.shape
    h, w = trunk_output_shape(height, width)
    x = jnp.asarray(frames, jnp.float32) / 255.0  # [B, H, W, 3K] in [0, 1]
    for i, (features, kernel, stride) in enumerate(TRUNK):
      x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding='VALID',
                  kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                  bias_init=nn.initializers.zeros_init(), name=f'conv_{i}')(x)
      x = nn.relu(x)  # [B, h_i, w_i, features]; finally [B, h, w, 128]
    m = self.maps_per_slot
    maps = nn.Conv(self.num_slots * m, (1, 1), name='slot_maps')(x)  # [B, h, w, S * m]
    if self.map_activation == 'sigmoid':
      maps = nn.sigmoid(maps)
    maps = maps.reshape(b, h, w, self.num_slots, m)  # channel k * m + j -> slot k, map j
    maps = jnp.transpose(maps, (0, 3, 4, 1, 2))  # [B, S, m, h, w]
    maps = maps.reshape(b, self.num_slots, m * h * w)  # [B, S, m * h * w]
    z = nn.Dense(self.latent_size, name='projection')(maps)  # [B, S, latent_size]
    if self.slot_embedding:
      z = z + self.param('slot_embedding', nn.initializers.normal(stddev=1.0),
                         (self.num_slots, self.latent_size))  # [S, latent_size]
    return z


class LatentDecoder(nn.Module):
  """g~: one linear projection, shared by the slots, to ``latent_size`` features."""
  latent_size: int = LATENT_SIZE

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """Args: z: [B, S, H]. Returns: [B, S, latent_size]."""
    return nn.Dense(self.latent_size, name='projection')(z)


class NaturalModel(nn.Module):
  """Pixel transition model ``g~(P(f~(x), a))``, predicting the next frame's latent.

  Parameters: ``params['encoder']`` (f~), ``params['processor']`` (P; the same tree as
  the abstract model's, so a processor export plugs in as-is), ``params['decoder']`` (g~).

  Attributes:
    processor: an unbound processor (``make_spec_processor(spec)``); Flax names it
      ``processor`` after this attribute.
    maps_per_slot: m of the encoder.
    num_slots: S (128).
    latent_size: H (64); must equal the processor's latent size.
    map_activation: see :class:`AtariEncoder`.
    slot_embedding: see :class:`AtariEncoder`.
  """
  processor: nn.Module
  maps_per_slot: int = 1
  num_slots: int = NUM_SLOTS
  latent_size: int = LATENT_SIZE
  map_activation: str = 'sigmoid'
  slot_embedding: bool = False

  def setup(self):
    self.encoder = AtariEncoder(self.maps_per_slot, self.num_slots, self.latent_size,
                                self.map_activation, self.slot_embedding)
    self.decoder = LatentDecoder(self.latent_size)

  def encode(self, frames: jax.Array) -> jax.Array:
    """f~. Args: frames [B, H, W, 3] or [B, K, H, W, 3] uint8. Returns: z [B, S, H] float32."""
    return self.encoder(frames)

  def transition(self, z: jax.Array, action: jax.Array) -> jax.Array:
    """g~(P(z, a)). Args: z [B, S, H]; action [B, 18] one-hot. Returns: [B, S, H]."""
    return self.decoder(self.processor(z, jnp.asarray(action, jnp.float32)))

  def __call__(self, frames: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Args:
      frames: [B, H, W, 3] uint8 frames x_t.
      action: [B, 18] one-hot action a_t.

    Returns:
      ``(z_pred_next, z)``: the predicted next latent g~(P(f~(x_t), a_t)) [B, S, H] and the
      encoded current latent f~(x_t) [B, S, H].
    """
    z = self.encode(frames)  # [B, S, H]
    return self.transition(z, action), z


def make_encode_fn(maps_per_slot: int, latent_size: int = LATENT_SIZE,
                   map_activation: str = 'sigmoid', slot_embedding: bool = False
                   ) -> Callable[[Any, jax.Array], jax.Array]:
  """f~ alone as ``encode_fn(encoder_params, frames [B, (K,) H, W, 3]) -> [B, 128, latent]``.

  For the probes (``rmr_dist.evaluation.probes.EncodeFn``): pass the ``params['encoder']``
  subtree of one trained model (e.g. ``NaturalLearner.encoder_params(variant, seed)``).
  """
  encoder = AtariEncoder(maps_per_slot, NUM_SLOTS, latent_size, map_activation, slot_embedding)

  def encode_fn(params: Any, frames: jax.Array) -> jax.Array:
    return encoder.apply({'params': params}, frames)

  return encode_fn
