"""The abstract Atari model: encode -> process -> decode on RAM bits (paper section 4, App. B).

``g(P(f(x), a))``: RAM bits x [B, 128, 8] and a one-hot action a [B, 18] go to

  f (``encoder``):   a linear projection of each slot's 8 bits to ``latent_size`` features,
                     the same for every slot, plus a learned per-slot embedding -> [B, 128, 64];
  P (``processor``): any processor of ``rmr_dist.networks.processors`` -> [B, 128, 64];
  g (``decoder``):   a linear projection of each slot to 8 bit logits and 1 overwrite-mask
                     logit -> bit_logits [B, 128, 8], mask_logits [B, 128].

Slot identity. A fully connected MPNN (and Deep Sets) is permutation-equivariant: without
help it cannot tell slot 17 from slot 42, yet RAM byte k has its own meaning. The encoder
adds a learned embedding ``e_k`` [latent_size] to slot k's projection. That keeps f shared
across slots and cheap (8 x 64 weights plus 128 x 64 embeddings, not a 128 x 8 x 64
per-slot kernel), and lets P stay a generic equivariant processor that can be reused on
pixel slots: the identity lives in the latent, not in P. ``slot_embedding=False`` removes
it, and then f, g and an MPNN / Deep Sets P are all per-slot or equivariant, so the whole
model is permutation-equivariant over slots (what the tests check).

Masks (App. B). RAM updates are sparse, so the model also predicts which slots to overwrite;
slots it does not overwrite copy the input. :func:`combine` is that rule; the loss
(``rmr_dist.losses``) uses the true mask (teacher forcing) and evaluation the predicted one.

Bits: ``bytes_to_bits`` puts the most-significant bit first: byte 0b10000001 -> [1,0,0,0,0,0,0,1].
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NUM_SLOTS = 128  # Atari RAM bytes
NUM_BITS = 8  # bits per byte
NUM_ACTIONS = 18  # full ALE action set

# Bit k of a slot holds 2**(7 - k): most-significant bit first.
_BIT_WEIGHTS = (1 << np.arange(NUM_BITS - 1, -1, -1)).astype(np.uint8)  # [8] = 128, ..., 1


def _xp(x):
  """numpy for numpy inputs (exact, host-side), jax.numpy for jax arrays and tracers."""
  return np if isinstance(x, (np.ndarray, np.generic)) else jnp


def bytes_to_bits(ram) -> jax.Array | np.ndarray:
  """Unpacks RAM bytes into bits, most-significant bit first.

  Args:
    ram: [..., 128] uint8 (any integer dtype with values 0..255). numpy in, numpy out;
      jax in, jax out.

  Returns:
    [..., 128, 8] float32 of 0.0 / 1.0; ``bits[..., k]`` is bit ``7 - k`` of the byte.
  """
  xp = _xp(ram)
  ram = xp.asarray(ram).astype(xp.uint8)
  shifts = xp.arange(NUM_BITS - 1, -1, -1, dtype=xp.uint8)  # [8] = 7, ..., 0
  return ((ram[..., None] >> shifts) & 1).astype(xp.float32)  # [..., 128, 8]


def bits_to_bytes(bits) -> jax.Array | np.ndarray:
  """Packs bits (most-significant first) back into bytes; inverse of :func:`bytes_to_bits`.

  Args:
    bits: [..., 8] values; a bit is 1 when it is > 0.5 (so 0/1 floats, bools and ints work).

  Returns:
    [...] uint8.
  """
  xp = _xp(bits)
  on = (xp.asarray(bits) > 0.5).astype(xp.uint8)  # [..., 8]
  return xp.sum(on * xp.asarray(_BIT_WEIGHTS), axis=-1, dtype=xp.uint8)  # [...]


def combine(x_bits: jax.Array, bit_logits: jax.Array, mask: jax.Array) -> jax.Array:
  """Applies the overwrite mask: predicted bits where the mask is set, input bits elsewhere.

  Args:
    x_bits: [B, S, 8] input RAM bits (0/1).
    bit_logits: [B, S, 8] predicted bit logits; a bit is predicted 1 when its logit is > 0
      (sigmoid > 0.5).
    mask: [B, S] bool or 0/1; true (nonzero) = overwrite this slot.

  Returns:
    [B, S, 8] float32 bits.
  """
  predicted = (bit_logits > 0).astype(jnp.float32)  # [B, S, 8]
  overwrite = jnp.asarray(mask).astype(bool)[..., None]  # [B, S, 1]
  return jnp.where(overwrite, predicted, jnp.asarray(x_bits, jnp.float32))


def copy_baseline(x_bits: jax.Array, action: Optional[jax.Array] = None) -> jax.Array:
  """The copy baseline of Table 2: predicts the next RAM equals the current RAM (y = x).

  Args:
    x_bits: [B, S, 8] input RAM bits.
    action: ignored (the same call signature as the learned models).

  Returns:
    [B, S, 8] float32, equal to ``x_bits``.
  """
  del action
  return jnp.asarray(x_bits, jnp.float32)


class AbstractOutput(NamedTuple):
  """The abstract model's outputs (logits; see :func:`rmr_dist.losses.predict` for bits)."""
  bit_logits: jax.Array  # [B, S, 8]
  mask_logits: jax.Array  # [B, S]


class RamEncoder(nn.Module):
  """f: per-slot linear projection of the bits plus an optional learned slot embedding.

  Attributes:
    num_slots: S, slots per input (128 RAM bytes).
    latent_size: H, features per slot.
    slot_embedding: add a learned [S, H] embedding (initialised N(0, 1)) so slots are
      distinguishable; False makes f act identically on every slot.
  """
  num_slots: int = NUM_SLOTS
  latent_size: int = 64
  slot_embedding: bool = True

  @nn.compact
  def __call__(self, x_bits: jax.Array) -> jax.Array:
    """Args: x_bits: [B, S, 8]. Returns: [B, S, H]."""
    if x_bits.shape[-2] != self.num_slots:
      raise ValueError(f'expected {self.num_slots} slots, got input of shape {x_bits.shape}')
    z = nn.Dense(self.latent_size, name='projection')(x_bits)  # [B, S, H]
    if self.slot_embedding:
      embedding = self.param('slot_embedding', nn.initializers.normal(stddev=1.0),
                             (self.num_slots, self.latent_size))  # [S, H]
      z = z + embedding
    return z


class RamDecoder(nn.Module):
  """g: per-slot linear projection to 8 bit logits and 1 overwrite-mask logit."""

  @nn.compact
  def __call__(self, z: jax.Array) -> AbstractOutput:
    """Args: z: [B, S, H]. Returns: bit logits [B, S, 8], mask logits [B, S]."""
    out = nn.Dense(NUM_BITS + 1, name='projection')(z)  # [B, S, 9]
    return AbstractOutput(bit_logits=out[..., :NUM_BITS], mask_logits=out[..., NUM_BITS])


class AbstractModel(nn.Module):
  """Encode-process-decode transition model on RAM: ``g(P(f(x), a))``.

  Parameters: ``params['encoder']``, ``params['processor']`` (the processor alone, to save
  or freeze), ``params['decoder']``.

  Attributes:
    processor: an unbound processor (``make_processor(...)``); Flax names it
      ``processor`` after this attribute.
    num_slots: S (128).
    latent_size: H (64).
    slot_embedding: learned slot-index embedding in f (see module docstring).
  """
  processor: nn.Module
  num_slots: int = NUM_SLOTS
  latent_size: int = 64
  slot_embedding: bool = True

  def setup(self):
    self.encoder = RamEncoder(self.num_slots, self.latent_size, self.slot_embedding)
    self.decoder = RamDecoder()

  def __call__(self, x_bits: jax.Array, action: jax.Array) -> AbstractOutput:
    """Args:
      x_bits: [B, S, 8] float RAM bits (0/1).
      action: [B, A] float one-hot action.

    Returns:
      AbstractOutput(bit_logits [B, S, 8], mask_logits [B, S]).
    """
    z = self.encoder(jnp.asarray(x_bits, jnp.float32))  # [B, S, H]
    z = self.processor(z, jnp.asarray(action, jnp.float32))  # [B, S, H]
    return self.decoder(z)
