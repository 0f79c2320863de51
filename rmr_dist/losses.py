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

Natural Atari model: C-SWM's TransE contrastive loss (:func:`contrastive_loss`, section below),
or InfoNCE over the batch's next frames (:func:`infonce_loss`, an option beside the paper's).
Bouncing balls: the per-pixel next-frame MSE (:func:`frame_mse`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rmr_dist.networks.atari_abstract import combine


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


# ---------------------------------------------------------------------------------------------
# Natural Atari model: the TransE-style contrastive hinge loss of C-SWM (Kipf et al., 2019),
# which the paper re-uses "exactly" (section 4, natural pipeline).
#
# What C-SWM's public code (github.com/tkipf/c-swm, modules.py, ContrastiveSWM) computes, and
# what is implemented here:
#
#   energy:    d(x, y) = 0.5 / sigma**2 * mean_slots( sum_features( (x - y)**2 ) )
#              (C-SWM: ``norm = 0.5 / (self.sigma**2)``, ``norm * diff.pow(2).sum(2).mean(1)``:
#              summed over the features of a slot, AVERAGED over the K slots, i.e. the
#              paper's 1/K sum_k d(z^k, z'^k); with 128 slots a sum would be 128x larger).
#   positive:  d(z_pred_next, z_next): the predicted next latent against the encoded next frame.
#   negative:  max(0, hinge - d(z, z[perm])): the encoded CURRENT state against the encoded
#              current states of a shuffled batch (C-SWM: ``neg_state = state[perm]`` and
#              ``self.energy(state, action, neg_state, no_trans=True)``, so diff = state -
#              neg_state; the next state is not in this term). The C-SWM paper's equation
#              writes the negative as d(z~, z_t+1) instead; we follow the code, which produced
#              C-SWM's results and which "exactly the same loss" most plausibly means.
#   loss:      mean_i positive_i + mean_i negative_i over the batch (per-example means, so the
#              mean of equal device shards is the full-batch loss).
#
# Where perm[i] == i the negative energy is 0 and the term is the constant ``hinge`` (no
# gradient), as in C-SWM.
# ---------------------------------------------------------------------------------------------


def transe_energy(a: jax.Array, b: jax.Array, sigma: float = 0.5) -> jax.Array:
  """C-SWM's energy: ``0.5 / sigma**2 * mean over slots of sum over features of (a - b)**2``.

  Args:
    a: [..., N, H] slot latents.
    b: [..., N, H] slot latents.
    sigma: energy scale (C-SWM: 0.5, so the factor is 2).

  Returns:
    [...] energies (one per example).
  """
  norm = 0.5 / sigma ** 2
  return norm * jnp.mean(jnp.sum(jnp.square(a - b), axis=-1), axis=-1)


def negative_permutation(rng: jax.Array, batch_size: int) -> jax.Array:
  """The batch shuffle that picks each example's negative; a function of ``rng`` alone.

  Args:
    rng: PRNGKey.
    batch_size: B.

  Returns:
    [B] int32, a permutation of 0..B-1 (the same for every model given the same key).
  """
  return jax.random.permutation(rng, batch_size).astype(jnp.int32)


def _is_key(x: jax.Array) -> bool:
  """A typed PRNG key, or a raw uint32 [2] key (a permutation is a signed integer array)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    return True
  return x.dtype == jnp.uint32 and tuple(x.shape) == (2,)


def contrastive_loss(z_pred_next: jax.Array, z_next: jax.Array, z: jax.Array,
                     rng_or_perm: jax.Array, *, hinge: float = 1.0, sigma: float = 0.5
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """C-SWM's contrastive hinge loss with negatives ``z[perm]`` (see the comment above).

  Args:
    z_pred_next: [B, N, H] predicted next latents g~(P(f~(x_t), a_t)).
    z_next: [B, N, H] encoded next frames f~(x_t+1).
    z: [B, N, H] encoded current frames f~(x_t).
    rng_or_perm: a PRNGKey (typed, or raw uint32 [2]), turned into the permutation by
      :func:`negative_permutation`, or the [B] signed-integer permutation itself.
    hinge: margin of the negative term (C-SWM: 1.0).
    sigma: energy scale (C-SWM: 0.5).

  Returns:
    ``(loss, metrics)``: see :func:`contrastive_loss_with_negatives`.
  """
  if _is_key(rng_or_perm):
    perm = negative_permutation(rng_or_perm, z.shape[0])  # [B]
  else:
    perm = jnp.asarray(rng_or_perm)  # [B]
  return contrastive_loss_with_negatives(z_pred_next, z_next, z, z[perm], hinge=hinge,
                                         sigma=sigma)


def contrastive_loss_with_negatives(z_pred_next: jax.Array, z_next: jax.Array, z: jax.Array,
                                    z_negative: jax.Array, *, hinge: float = 1.0,
                                    sigma: float = 0.5
                                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The loss of :func:`contrastive_loss` with the negatives given (``z_negative = z[perm]``).

  The natural learner uses this form: under pmap each device encodes the negatives of its own
  rows from the gathered frames, so no latent crosses devices.

  Args:
    z_pred_next: [B, N, H] predicted next latents.
    z_next: [B, N, H] encoded next frames.
    z: [B, N, H] encoded current frames.
    z_negative: [B, N, H] the negatives, encoded current frames of the shuffled batch.
    hinge: margin of the negative term.
    sigma: energy scale.

  Returns:
    ``(loss, metrics)``: scalar ``loss = positive_energy + negative_loss`` and scalar metrics
    ``loss``, ``positive_energy`` (mean d(z_pred_next, z_next)), ``negative_energy``
    (mean d(z, z_negative)) and ``negative_loss`` (mean max(0, hinge - d(z, z_negative))).
  """
  positive = transe_energy(z_pred_next, z_next, sigma)  # [B]
  negative = transe_energy(z, z_negative, sigma)  # [B]
  negative_loss = jnp.mean(jnp.maximum(0.0, hinge - negative))
  loss = jnp.mean(positive) + negative_loss
  return loss, {'loss': loss, 'positive_energy': jnp.mean(positive),
                'negative_energy': jnp.mean(negative), 'negative_loss': negative_loss}


# ---------------------------------------------------------------------------------------------
# InfoNCE over the batch's next frames: an alternative objective for the natural Atari model
# (config ``natural.loss='infonce'``), not the paper's. With C-SWM's hinge the single negative
# per example is far from the hinge only while the encoder is near its initialisation, and its
# squared-distance gradient vanishes as latents of different frames stay close (Atari frames
# differ in a few pixels). Here every example's prediction must pick its own next frame out of
# all B next frames of the batch: a softmax over ``-d(z_pred_i, z_next_j)`` with the same
# energy ``d`` (:func:`transe_energy`), so the push to tell frames apart never saturates
# while any two frames of the batch look alike to the encoder (the objective of CPC / ST-DIM).
# ---------------------------------------------------------------------------------------------


def _centred(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``a`` and ``b`` less the mean of ``b`` over its rows: the same differences ``a_i - b_j``,
  without what every latent shares (e.g. the slot embedding), so norms are of the scale of the
  differences. Args: a [b, N, H], b [B, N, H]. Returns: the two, same shapes."""
  centre = jax.lax.stop_gradient(jnp.mean(b, axis=0, keepdims=True))  # [1, N, H]
  return a - centre, b - centre


def pairwise_energy(a: jax.Array, b: jax.Array, sigma: float = 0.5) -> jax.Array:
  """:func:`transe_energy` of every pair: ``out[i, j] = transe_energy(a[i], b[j])``.

  Precision. The latents carry a large constant part (a slot embedding: |z|^2 ~ 8e3 at
  N x H = 128 x 64) that cancels in ``a - b``, while the differences that matter are ~1e-2:
  ``|a|^2 + |b|^2 - 2 a.b`` on the raw latents keeps only ~5e-4 of them in float32. So the
  common part is subtracted first (:func:`_centred`, exact in the differences: a constant
  shift, with no gradient of its own), and the expansion then runs on norms of the scale of
  the differences (one [b, B] matmul instead of a [b, B, N, H] tensor of differences).

  Args:
    a: [b, N, H] slot latents.
    b: [B, N, H] slot latents.
    sigma: energy scale.

  Returns:
    [b, B] energies.
  """
  norm = 0.5 / sigma ** 2
  n = a.shape[-2]
  a, b = _centred(a, b)
  a = a.reshape(a.shape[0], -1)  # [b, N * H]
  b = b.reshape(b.shape[0], -1)  # [B, N * H]
  squared = (jnp.sum(jnp.square(a), -1)[:, None] + jnp.sum(jnp.square(b), -1)[None, :]
             - 2.0 * a @ b.T)  # [b, B]
  return norm * jnp.maximum(squared, 0.0) / n


def infonce_loss(z_pred_next: jax.Array, z_next_all: jax.Array, positive_index: jax.Array, *,
                 sigma: float = 0.5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross-entropy of picking each row's own next frame among all the batch's next frames.

  Args:
    z_pred_next: [b, N, H] predicted next latents of this device's rows.
    z_next_all: [B, N, H] encoded next frames of the whole (global) batch, b <= B.
    positive_index: [b] int, the row of ``z_next_all`` that is each prediction's own.
    sigma: energy scale; the logits are ``-pairwise_energy(z_pred_next, z_next_all, sigma)``.

  Returns:
    ``(loss, metrics)``: scalar ``loss`` (mean over the rows) and scalar metrics ``loss``,
    ``positive_energy`` (mean energy to the own next frame), ``negative_energy`` (mean energy
    to the other next frames) and ``accuracy`` (share of rows whose own next frame has the
    lowest energy).
  """
  energy = pairwise_energy(z_pred_next, z_next_all, sigma)  # [b, B]
  own = jax.nn.one_hot(positive_index, energy.shape[1], dtype=energy.dtype)  # [b, B]
  loss = jnp.mean(optax.softmax_cross_entropy(-energy, own))
  positive = jnp.sum(energy * own, axis=1)  # [b]
  negative = jnp.sum(energy * (1.0 - own), axis=1) / max(energy.shape[1] - 1, 1)  # [b]
  accuracy = jnp.mean((jnp.argmin(energy, axis=1) == positive_index).astype(jnp.float32))
  return loss, {'loss': loss, 'positive_energy': jnp.mean(positive),
                'negative_energy': jnp.mean(negative), 'accuracy': accuracy}


def slot_infonce_loss(z_pred_next: jax.Array, z_next_all: jax.Array,
                      positive_index: jax.Array, *, sigma: float = 0.5
                      ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """:func:`infonce_loss` slot by slot: each slot's prediction must pick its own next frame's
  latent of the SAME slot among that slot's latents of all the batch's next frames.

  Where :func:`infonce_loss` contrasts whole frames (one energy summed over slots, so a few
  slots can carry the whole discrimination), here every slot is its own classifier (the
  per-location InfoNCE of ST-DIM, Anand et al. 2019, with slots for locations): each slot is
  pushed to encode what tells the frame apart from its neighbours.

  Args:
    z_pred_next: [b, N, H] predicted next latents of this device's rows.
    z_next_all: [B, N, H] encoded next frames of the whole (global) batch, b <= B.
    positive_index: [b] int, the row of ``z_next_all`` that is each prediction's own.
    sigma: energy scale; slot k's logits are ``-||z_pred[i, k] - z_next_all[j, k]||^2 /
      (2 sigma^2)``.

  Returns:
    ``(loss, metrics)``: scalar ``loss`` (mean over rows and slots) and scalar metrics
    ``loss``, ``positive_energy`` / ``negative_energy`` (per-slot energies to the own / the
    other next frames, averaged over slots) and ``accuracy`` (share of (row, slot) pairs whose
    own next frame has the lowest energy).
  """
  norm = 0.5 / sigma ** 2
  z_pred_next, z_next_all = _centred(z_pred_next, z_next_all)  # as in pairwise_energy
  squared = (jnp.sum(jnp.square(z_pred_next), -1).T[:, :, None]
             + jnp.sum(jnp.square(z_next_all), -1).T[:, None, :]
             - 2.0 * jnp.einsum('ikh,jkh->kij', z_pred_next, z_next_all))  # [N, b, B]
  energy = norm * jnp.maximum(squared, 0.0)  # [N, b, B]
  own = jax.nn.one_hot(positive_index, energy.shape[2], dtype=energy.dtype)  # [b, B]
  loss = jnp.mean(optax.softmax_cross_entropy(-energy, own[None]))
  positive = jnp.sum(energy * own, axis=2)  # [N, b]
  negative = jnp.sum(energy * (1.0 - own), axis=2) / max(energy.shape[2] - 1, 1)  # [N, b]
  accuracy = jnp.mean((jnp.argmin(energy, axis=2) == positive_index[None]).astype(jnp.float32))
  return loss, {'loss': loss, 'positive_energy': jnp.mean(positive),
                'negative_energy': jnp.mean(negative), 'accuracy': accuracy}


def action_infonce_loss(z_pred_actions: jax.Array, z_next: jax.Array, valid: jax.Array, *,
                        sigma: float = 0.5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross-entropy of picking the action taken among other actions, by how well each action's
  prediction matches the own next frame.

  Frame InfoNCE is satisfied by whatever tells next frames apart, often the slow content
  (scores, bricks, the opponent); the objects the actions move can then be dropped. Here each
  row's true next latent must be nearer the transition under the action taken than under other
  actions, which only an encoding of what the actions move can do.

  Args:
    z_pred_actions: [b, 1 + K, N, H] predicted next latents of each row under the action taken
      (index 0) and K other actions.
    z_next: [b, N, H] each row's encoded next frame.
    valid: [b, 1 + K] bool, False for an other action equal to the one taken (left out of
      the softmax; index 0 must be True).
    sigma: energy scale, as :func:`pairwise_energy` (per slot, ``/ (2 sigma^2)``).

  Returns:
    ``(loss, metrics)``: scalar ``loss`` (mean over the rows with at least one valid other
    action) and scalar metrics ``action_loss`` (the same) and ``action_accuracy`` (share of those
    rows whose action taken has the lowest energy).
  """
  norm = 0.5 / sigma ** 2
  n = z_next.shape[-2]
  diff = z_pred_actions - z_next[:, None]  # [b, 1 + K, N, H]: no shared part to cancel
  energy = norm * jnp.sum(jnp.square(diff), axis=(-2, -1)) / n  # [b, 1 + K]
  logits = jnp.where(valid, -energy, -jnp.inf)  # [b, 1 + K]
  log_p = jax.nn.log_softmax(logits, axis=1)[:, 0]  # [b]
  counted = jnp.any(valid[:, 1:], axis=1).astype(energy.dtype)  # [b]
  rows = jnp.maximum(jnp.sum(counted), 1.0)
  loss = -jnp.sum(log_p * counted) / rows
  best = jnp.argmax(logits, axis=1) == 0  # [b]
  accuracy = jnp.sum(best.astype(energy.dtype) * counted) / rows
  return loss, {'action_loss': loss, 'action_accuracy': accuracy}


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
