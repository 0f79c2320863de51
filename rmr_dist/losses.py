"""Losses of the RMR pipelines.

Abstract Atari model (paper section 4 and Appendix B): binary cross-entropy on the bits of the
next RAM state, with an overwrite mask trained by teacher forcing.

Teacher forcing, exactly: the true mask marks the slots whose byte changed (any of its 8 bits
differs between x and y). During training the output is formed with the TRUE mask, so an
unchanged slot copies its input, which equals its target: it contributes no bit loss, whatever
the bit head says there. The bit loss is therefore the sigmoid BCE of the bit logits against
y, averaged over the bits of the changed slots in the batch (8 per changed slot; 0 when the
batch has no change). The mask head gets its own sigmoid BCE against the true mask,
averaged over every slot of the batch. ``loss = bit_loss + mask_loss``.

At evaluation :func:`predict` forms the output with the PREDICTED mask (sigmoid > 0.5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rmr_dist.networks.abstract import combine


def true_mask(x_bits: jax.Array, y_bits: jax.Array) -> jax.Array:
  """Slots whose byte changed between x and y.

  Args:
    x_bits: [B, S, 8] input bits (0/1).
    y_bits: [B, S, 8] target bits (0/1).

  Returns:
    [B, S] bool, True where any bit differs.
  """
  return jnp.any(jnp.asarray(x_bits) != jnp.asarray(y_bits), axis=-1)


def abstract_loss(bit_logits: jax.Array, mask_logits: jax.Array, x_bits: jax.Array,
                  y_bits: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
  """BCE on the overwritten bits (teacher-forced mask) plus BCE on the mask head.

  Args:
    bit_logits: [B, S, 8] predicted bit logits.
    mask_logits: [B, S] predicted overwrite logits.
    x_bits: [B, S, 8] input RAM bits (0/1).
    y_bits: [B, S, 8] target RAM bits (0/1).

  Returns:
    ``(loss, metrics)``: the scalar loss ``bit_loss + mask_loss`` and scalar metrics
    ``loss``, ``bit_loss``, ``mask_loss``, ``mask_accuracy`` (predicted mask == true mask,
    over slots), ``changed_fraction`` (share of slots that changed) and ``slot_accuracy``
    (share of slots whose 8 bits :func:`predict` gets right, predicted mask, all slots).
  """
  x_bits = jnp.asarray(x_bits, jnp.float32)
  y_bits = jnp.asarray(y_bits, jnp.float32)
  changed = true_mask(x_bits, y_bits)  # [B, S] bool
  changed_f = changed.astype(jnp.float32)  # [B, S]

  bit_bce = optax.sigmoid_binary_cross_entropy(bit_logits, y_bits)  # [B, S, 8]
  # Unchanged slots copy x (= y) under the true mask: no bit loss there.
  bit_sum = jnp.sum(bit_bce * changed_f[..., None])
  num_bits = bit_bce.shape[-1] * jnp.sum(changed_f)
  bit_loss = bit_sum / jnp.maximum(num_bits, 1.0)

  mask_loss = jnp.mean(optax.sigmoid_binary_cross_entropy(mask_logits, changed_f))  # over [B, S]
  loss = bit_loss + mask_loss

  predicted = predict(bit_logits, mask_logits, x_bits)  # [B, S, 8]
  metrics = {
      'loss': loss,
      'bit_loss': bit_loss,
      'mask_loss': mask_loss,
      'mask_accuracy': jnp.mean(((mask_logits > 0) == changed).astype(jnp.float32)),
      'changed_fraction': jnp.mean(changed_f),
      'slot_accuracy': jnp.mean(jnp.all(predicted == y_bits, axis=-1).astype(jnp.float32)),
  }
  return loss, metrics


def predict(bit_logits: jax.Array, mask_logits: jax.Array, x_bits: jax.Array) -> jax.Array:
  """Evaluation-time prediction: overwrite where the PREDICTED mask is set, else copy x.

  Args:
    bit_logits: [B, S, 8] predicted bit logits (bit = logit > 0, i.e. sigmoid > 0.5).
    mask_logits: [B, S] predicted overwrite logits (overwrite = logit > 0, i.e. sigmoid > 0.5).
    x_bits: [B, S, 8] input RAM bits (0/1).

  Returns:
    [B, S, 8] float32 predicted next-RAM bits.
  """
  return combine(x_bits, bit_logits, mask_logits > 0)
