"""Table 2 metrics for the abstract Atari models: entropy filter, slot accuracy, bit F1.

Everything here is numpy, exact and deterministic (integer counts, float64 reductions in a
fixed order), computed over whole held-out episodes.

Entropy filter (Appendix B, after Anand et al., 2019): a slot is scored only when the
entropy of its byte-value distribution exceeds ``ENTROPY_THRESHOLD = 0.6``. The entropy is
in NATS (natural log, ``ENTROPY_LOG_BASE = e``), as in Anand et al.'s reference code
(``torch.distributions.Categorical(...).entropy()``). It is computed on the TARGET RAM (y,
the RAM after each evaluation transition) of the evaluation transitions, i.e. on the labels
being predicted.

Slot accuracy: a (transition, slot) counts as right only when all 8 bits are right; the
score is the mean over T transitions x the selected slots.

Bit F1: positive class = bit value 1; MICRO-averaged, i.e. one pool of true positives, false
positives and false negatives over every selected (transition, slot, bit) entry, then
``F1 = 2 TP / (2 TP + FP + FN)``. If the selected targets hold no 1 at all, F1 is 1.0 when
the predictions hold none either (nothing to find, nothing wrongly found) and 0.0 otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from rmr_dist.networks.atari_abstract import NUM_SLOTS, bytes_to_bits

ENTROPY_LOG_BASE = math.e  # entropies are in nats
ENTROPY_THRESHOLD = 0.6  # a slot is scored when its entropy is > this


def slot_entropy(ram: np.ndarray) -> np.ndarray:
  """Entropy (nats) of each slot's byte-value distribution over the given RAM states.

  Args:
    ram: [T, S] uint8 RAM states (for the filter: the evaluation targets y), T >= 1.

  Returns:
    [S] float64, ``-sum_v p_v log(p_v)`` with ``p_v`` the fraction of the T states in
    which the slot holds value v.
  """
  ram = np.asarray(ram)
  if ram.ndim != 2 or ram.shape[0] == 0:
    raise ValueError(f'expected [T, S] RAM with T >= 1, got shape {ram.shape}')
  ram = ram.astype(np.int64)
  counts = np.stack([np.bincount(ram[:, s], minlength=256) for s in range(ram.shape[1])])
  p = counts.astype(np.float64) / ram.shape[0]  # [S, 256]
  plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)  # [S, 256]
  return -plogp.sum(axis=1) / math.log(ENTROPY_LOG_BASE)  # [S]


def high_entropy_slots(ram_targets: np.ndarray) -> np.ndarray:
  """The slots Table 2 scores: entropy over the targets > ``ENTROPY_THRESHOLD``.

  Args:
    ram_targets: [T, S] uint8 target RAM (y) of the evaluation transitions.

  Returns:
    [S] bool.
  """
  return slot_entropy(ram_targets) > ENTROPY_THRESHOLD


def _selection(slot_mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Broadcasts a slot mask ([S] or [T, S]) to ``shape`` ([T, S]) as bool."""
  return np.broadcast_to(np.asarray(slot_mask, dtype=bool), shape)


def slot_accuracy(pred_bytes: np.ndarray, true_bytes: np.ndarray,
                  slot_mask: np.ndarray) -> float:
  """Share of selected (transition, slot) pairs whose whole byte is predicted right.

  Args:
    pred_bytes: [T, S] uint8 predicted RAM.
    true_bytes: [T, S] uint8 target RAM.
    slot_mask: [S] (or [T, S]) bool, the slots to score.

  Returns:
    Mean over T x selected slots of ``pred == true`` (all 8 bits); NaN when nothing is
    selected.
  """
  pred_bytes, true_bytes = np.asarray(pred_bytes), np.asarray(true_bytes)
  if pred_bytes.shape != true_bytes.shape:
    raise ValueError(f'shape mismatch: {pred_bytes.shape} vs {true_bytes.shape}')
  selected = _selection(slot_mask, true_bytes.shape)  # [T, S]
  total = int(selected.sum())
  if total == 0:
    return float('nan')
  right = int(np.sum((pred_bytes == true_bytes) & selected))
  return right / total


def bit_f1(pred_bits: np.ndarray, true_bits: np.ndarray, slot_mask: np.ndarray) -> float:
  """Micro-averaged bit-level F1 (positive = bit 1) over the selected slots.

  Args:
    pred_bits: [T, S, 8] predicted bits (a bit is 1 when > 0.5; bools and 0/1 work).
    true_bits: [T, S, 8] target bits.
    slot_mask: [S] (or [T, S]) bool, the slots to score (all 8 bits of each).

  Returns:
    ``2 TP / (2 TP + FP + FN)`` pooled over every selected (transition, slot, bit); if the
    selected targets have no positive, 1.0 when the predictions have none either, else 0.0.
  """
  pred = np.asarray(pred_bits) > 0.5
  true = np.asarray(true_bits) > 0.5
  if pred.shape != true.shape:
    raise ValueError(f'shape mismatch: {pred.shape} vs {true.shape}')
  selected = _selection(slot_mask, true.shape[:-1])[..., None]  # [T, S, 1]
  tp = int(np.sum(pred & true & selected))
  fp = int(np.sum(pred & ~true & selected))
  fn = int(np.sum(~pred & true & selected))
  if tp + fn == 0:
    return 1.0 if fp == 0 else 0.0
  return 2 * tp / (2 * tp + fp + fn)


def bit_f1_per_slot(pred_bits: np.ndarray, true_bits: np.ndarray,
                    slot_mask: np.ndarray) -> dict[int, float]:
  """:func:`bit_f1` of each selected slot alone (its 8 bits pooled over the transitions): which
  RAM bytes a predictor reads and which it misses, where the micro F1 pools them.

  Args:
    pred_bits: [T, S, 8] predicted bits.
    true_bits: [T, S, 8] target bits.
    slot_mask: [S] bool, the slots to score.

  Returns:
    {slot index: F1} for every selected slot, in index order.
  """
  slot_mask = np.asarray(slot_mask, bool)
  if slot_mask.ndim != 1:
    raise ValueError(f'slot_mask must be [S], got shape {slot_mask.shape}')
  one = np.eye(len(slot_mask), dtype=bool)
  return {int(k): bit_f1(pred_bits, true_bits, one[k]) for k in np.flatnonzero(slot_mask)}


def table2_metrics(pred_bytes: np.ndarray, true_bytes: np.ndarray) -> dict[str, float]:
  """Slot accuracy and bit F1 over the high-entropy slots of the targets, as in Table 2.

  Args:
    pred_bytes: [T, 128] uint8 predicted next RAM for every evaluation transition.
    true_bytes: [T, 128] uint8 target next RAM (also defines the entropy filter).

  Returns:
    ``slot_accuracy``, ``bit_f1`` and ``num_slots`` (how many slots passed the filter).
  """
  true_bytes = np.asarray(true_bytes)
  if true_bytes.shape[-1] != NUM_SLOTS:
    raise ValueError(f'expected [T, {NUM_SLOTS}] RAM, got {true_bytes.shape}')
  mask = high_entropy_slots(true_bytes)  # [128]
  return {
      'slot_accuracy': slot_accuracy(pred_bytes, true_bytes, mask),
      'bit_f1': bit_f1(bytes_to_bits(np.asarray(pred_bytes)), bytes_to_bits(true_bytes), mask),
      'num_slots': float(mask.sum()),
  }
