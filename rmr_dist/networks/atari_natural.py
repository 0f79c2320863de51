"""The natural (pixel) Atari model: ``g~(P(f~(x), a))`` on frames (paper section 4).

  f~ (``encoder``, :class:`AtariEncoder`): the CNN trunk of Anand et al. (2019) -- the
      AtariARI / ST-DIM "NatureCNN" up to its local feature map -- then a 1x1 convolution to
      ``128 * m`` feature maps, ``m`` per slot; each slot's ``m x h x w`` values are flattened
      and read out by one function shared by all slots (Readouts, below) to 64 features:
      frames [B, H, W, 3] uint8 -> z [B, 128, 64]; stacked frames [B, K, H, W, 3] (the K most
      recent, oldest first; C-SWM's Atari inputs are K = 2) enter the trunk as the K frames'
      3K channels.
  P  (``processor``): any processor of ``rmr_dist.networks.processors`` (the pre-trained
      abstract MPNN for RMR; the same architecture, trained, for C-SWM) -> [B, 128, 64].
  g~ (``decoder``, :class:`LatentDecoder`): one linear projection per slot to 64 features.

The model predicts the next latent, ``g~(P(f~(x_t), a_t)) ~ f~(x_t+1)``, and is trained with
the C-SWM contrastive loss (``rmr_dist.losses.contrastive_loss``).

Trunks (``TRUNKS``; VALID convolutions, orthogonal kernels with ReLU gain sqrt(2), zero
biases as AtariARI's ``init_``):

  'small': AtariARI's trunk for its 84 x 84 frames (``atariari/methods/encoders.py``,
           NatureCNN with ``downsample``): conv 32 8x8 stride 4, ReLU; conv 64 4x4 stride 2,
           ReLU; conv 64 3x3 stride 1, ReLU.   84 x 84 -> 20 x 20 -> 9 x 9 -> 7 x 7
  'full':  the paper's / ST-DIM's local feature map at 210 x 160 (NatureCNN ``main[:6]``):
           conv 32 8x8 s4; conv 64 4x4 s2; conv 128 4x4 s2.   210 x 160, padded to
           220 x 172 -> 54 x 42 -> 26 x 20 -> 12 x 9

Every pixel is seen. A VALID convolution of kernel k and stride s leaves the last
``(n - k) % s`` rows of a side n outside every output (the old trunk at 84 x 64 never saw rows
76-83 and columns 60-63; at 210 x 160, rows 204-209 and columns 156-159). The encoder pads
each side with zeros at its end to :func:`covered_size`, the smallest size at least as large
that every layer tiles exactly, so every input pixel reaches some output
(``tests/networks/test_atari_natural.py`` checks it with ``jax.grad`` for every config's frame
size).
A side below :func:`min_side` is refused (:func:`trunk_output_shape`).

Readouts. After the trunk a 1x1 convolution computes ``128 * m`` maps, ``m`` per slot (kernel
columns ``k*m ... k*m + m - 1`` belong to slot k), through a sigmoid as C-SWM's object maps
(``map_activation='none'`` leaves them linear); each slot's ``m x h x w`` values are read out
by one function shared by the slots:

  'latent': the paper's: a linear projection to ``latent_size`` features, plus (with
            ``slot_embedding``) a learned [S, latent_size] slot-index embedding, added where
            the abstract f adds its own (an RMR model takes the abstract f's, frozen).
  'bits':   a linear map to 8 soft bits per slot (sigmoid), then the abstract encoder f itself
            (``abstract_net.RamEncoder``: shared projection of the 8 bits + slot embedding,
            named ``ram_encoder`` so the abstract model's ``params['encoder']`` plugs in):
            P receives inputs of exactly the kind it was trained on, in the span of the
            abstract latents and at their scale. RMR freezes that f at the export's.

Slot embeddings are per-slot constants: they change no probe's information about the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rmr_dist.networks import atari_abstract as abstract_net

NUM_SLOTS = 128  # one slot per Atari RAM byte, as in the abstract model
LATENT_SIZE = 64  # features per slot (paper: 64)
NUM_ACTIONS = 18  # full ALE action set
# (features, kernel, stride) of the trunk convolutions.
TRUNKS = {
    'small': ((32, 8, 4), (64, 4, 2), (64, 3, 1)),  # AtariARI at 84 x 84: 7 x 7 maps
    'full': ((32, 8, 4), (64, 4, 2), (128, 4, 2)),  # ST-DIM's local map at 210 x 160
}
MAP_ACTIVATIONS = ('sigmoid', 'none')
READOUTS = ('latent', 'bits')


def _check_trunk(trunk: str) -> tuple[tuple[int, int, int], ...]:
  if trunk not in TRUNKS:
    raise ValueError(f'trunk={trunk!r}; valid: {tuple(TRUNKS)}')
  return TRUNKS[trunk]


def min_side(trunk: str = 'small') -> int:
  """The smallest frame side the trunk maps to one output (e.g. 36 for 'small')."""
  n = 1
  for _, kernel, stride in reversed(_check_trunk(trunk)):
    n = (n - 1) * stride + kernel
  return n


def covered_size(n: int, trunk: str = 'small') -> int:
  """The smallest side ``>= n`` that every VALID layer of the trunk tiles exactly, so no pixel
  of a side padded to it falls outside every output (``n`` itself when it already tiles).

  Raises:
    ValueError: ``n`` is below :func:`min_side`.
  """
  layers = _check_trunk(trunk)
  if n < min_side(trunk):
    raise ValueError(f'A frame side of {n} pixels is too small for the {trunk!r} trunk: each '
                     f'side needs at least {min_side(trunk)} pixels.')
  m = n
  while True:
    size, ok = m, True
    for _, kernel, stride in layers:
      if (size - kernel) % stride:
        ok = False
        break
      size = (size - kernel) // stride + 1
    if ok:
      return m
    m += 1


def trunk_output_shape(height: int, width: int, trunk: str = 'small') -> tuple[int, int]:
  """The trunk's local feature map size (h, w) for ``height x width`` frames, after padding
  each side to :func:`covered_size`.

  Raises:
    ValueError: a side is below :func:`min_side` (the message names the size and the minimum).
  """
  out = []
  for n in (height, width):
    size = covered_size(n, trunk)
    for _, kernel, stride in TRUNKS[trunk]:
      size = (size - kernel) // stride + 1
    out.append(size)
  return out[0], out[1]


class AtariEncoder(nn.Module):
  """f~: trunk (every pixel covered), per-slot 1x1 maps, a readout shared by the slots.

  Attributes:
    maps_per_slot: m, feature maps per slot (1 = C-SWM-style object maps).
    num_slots: S (128).
    latent_size: features per slot (64).
    map_activation: 'sigmoid' (C-SWM's object maps) or 'none' on the 1x1 maps.
    slot_embedding: add a learned [S, latent_size] slot-index embedding (initialised N(0, 1),
      as the abstract f's); with readout 'bits', that of the abstract encoder.
    trunk: one of ``TRUNKS``.
    readout: 'latent' (the paper's projection) or 'bits' (8 soft bits per slot through the
      abstract encoder f); see the module docstring.
  """
  maps_per_slot: int = 1
  num_slots: int = NUM_SLOTS
  latent_size: int = LATENT_SIZE
  map_activation: str = 'sigmoid'
  slot_embedding: bool = False
  trunk: str = 'small'
  readout: str = 'latent'

  def __post_init__(self):
    if self.maps_per_slot < 1:
      raise ValueError(f'maps_per_slot={self.maps_per_slot} must be >= 1')
    if self.map_activation not in MAP_ACTIVATIONS:
      raise ValueError(f'map_activation={self.map_activation!r}; valid: {MAP_ACTIVATIONS}')
    if self.readout not in READOUTS:
      raise ValueError(f'readout={self.readout!r}; valid: {READOUTS}')
    _check_trunk(self.trunk)
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
    h, w = trunk_output_shape(height, width, self.trunk)
    x = jnp.asarray(frames, jnp.float32) / 255.0  # [B, H, W, 3K] in [0, 1]
    pad_h = covered_size(height, self.trunk) - height
    pad_w = covered_size(width, self.trunk) - width
    if pad_h or pad_w:  # zeros after the last row / column, so every pixel reaches an output
      x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))  # [B, H', W', 3K]
    for i, (features, kernel, stride) in enumerate(TRUNKS[self.trunk]):
      x = nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding='VALID',
                  kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)),
                  bias_init=nn.initializers.zeros_init(), name=f'conv_{i}')(x)
      x = nn.relu(x)  # [B, h_i, w_i, features]; finally [B, h, w, C]
    m = self.maps_per_slot
    maps = nn.Conv(self.num_slots * m, (1, 1), name='slot_maps')(x)  # [B, h, w, S * m]
    if self.map_activation == 'sigmoid':
      maps = nn.sigmoid(maps)
    maps = maps.reshape(b, h, w, self.num_slots, m)  # channel k * m + j -> slot k, map j
    maps = jnp.transpose(maps, (0, 3, 4, 1, 2))  # [B, S, m, h, w]
    maps = maps.reshape(b, self.num_slots, m * h * w)  # [B, S, m * h * w]
    if self.readout == 'bits':
      bits = nn.sigmoid(nn.Dense(abstract_net.NUM_BITS, name='bit_readout')(maps))  # [B, S, 8]
      return abstract_net.RamEncoder(self.num_slots, self.latent_size, self.slot_embedding,
                                     name='ram_encoder')(bits)  # [B, S, latent_size]
    z = nn.Dense(self.latent_size, name='projection')(maps)  # [B, S, latent_size]
    if self.slot_embedding:
      z = z + self.param('slot_embedding', nn.initializers.normal(stddev=1.0),
                         (self.num_slots, self.latent_size))  # [S, latent_size]
    return z


def abstract_encoder_paths(readout: str, slot_embedding: bool) -> tuple[tuple[str, ...], ...]:
  """Where f~ holds parts of the abstract encoder f (paths under ``params['encoder']``): what an
  RMR model takes from the processor export and keeps frozen with P."""
  if readout == 'bits':
    return (('ram_encoder',),)
  return (('slot_embedding',),) if slot_embedding else ()


def plug_abstract_encoder(encoder_params: Any, abstract_encoder: Any, readout: str,
                          slot_embedding: bool) -> Any:
  """f~'s params with the abstract encoder's parts (``abstract_encoder_paths``) replaced by
  those of ``abstract_encoder`` (the abstract model's ``params['encoder']``).

  Raises:
    ValueError: a part's shapes differ (e.g. another latent size).
  """
  params = dict(encoder_params)
  for (name,) in abstract_encoder_paths(readout, slot_embedding):
    given = abstract_encoder if readout == 'bits' else abstract_encoder[name]
    want = jax.tree_util.tree_map(np.shape, params[name])
    have = jax.tree_util.tree_map(np.shape, given)
    if want != have:
      raise ValueError(f'The abstract encoder does not fit f~\'s {name!r}: {have} vs {want}')
    params[name] = jax.tree_util.tree_map(np.asarray, given)
  return params


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
    trunk: see :class:`AtariEncoder`.
    readout: see :class:`AtariEncoder`.
  """
  processor: nn.Module
  maps_per_slot: int = 1
  num_slots: int = NUM_SLOTS
  latent_size: int = LATENT_SIZE
  map_activation: str = 'sigmoid'
  slot_embedding: bool = False
  trunk: str = 'small'
  readout: str = 'latent'

  def setup(self):
    self.encoder = AtariEncoder(self.maps_per_slot, self.num_slots, self.latent_size,
                                self.map_activation, self.slot_embedding, self.trunk,
                                self.readout)
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
                   map_activation: str = 'sigmoid', slot_embedding: bool = False,
                   trunk: str = 'small', readout: str = 'latent'
                   ) -> Callable[[Any, jax.Array], jax.Array]:
  """f~ alone as ``encode_fn(encoder_params, frames [B, (K,) H, W, 3]) -> [B, 128, latent]``.

  For the probes (``rmr_dist.evaluation.atari_probes.EncodeFn``): pass the ``params['encoder']``
  subtree of one trained model (e.g. ``NaturalLearner.encoder_params(variant, seed)``).
  """
  encoder = AtariEncoder(maps_per_slot, NUM_SLOTS, latent_size, map_activation, slot_embedding,
                         trunk, readout)

  def encode_fn(params: Any, frames: jax.Array) -> jax.Array:
    return encoder.apply({'params': params}, frames)

  return encode_fn
