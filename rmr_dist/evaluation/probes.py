"""Linear RAM probes on a frozen pixel encoder (the paper's Table 1 evaluation).

"We train linear classifiers on the concatenation of all slot embeddings obtained from f~ to
predict individual RAM bits ... the encoder is frozen, and gradients can only flow into the
linear probe." The pieces:

* `frozen_embeddings` runs the trained encoder forward only (jitted, batched, under
  `jax.lax.stop_gradient`) and returns the flattened slot embeddings ``[N, 128 * 64]``. The
  encoder params are an argument of a forward pass and never of a `jax.grad`: nothing in this
  module differentiates them, so a probe cannot move the encoder.
* Bit probes (the paper's protocol): one logistic-regression classifier per RAM bit, i.e. a
  single ``[D, 1024]`` weight matrix plus bias, trained with binary cross-entropy and Adam.
  They are scored exactly like the abstract models (`rmr_dist.evaluation.metrics`): micro
  bit F1 (positive = 1) and slot accuracy over the slots whose entropy over the VALIDATION
  RAM exceeds 0.6 nats.
* Byte probes (AtariARI's protocol, Anand et al. 2019): for every labelled RAM variable of a
  game (`rmr_dist.evaluation.atariari_labels`), a linear 256-way softmax classifier of the
  byte value, scored by the class-weighted F1 (`weighted_f1`) and averaged over variables.

Conventions shared by both probes: embeddings are standardised per feature with the TRAIN
mean and std (stored in `ProbeParams`; a feature with std < 1e-6 gets std 1); weights and
biases start at zero; an L2 penalty ``weight_decay / 2 * ||W||^2`` (bias excluded) is added
to the mean loss; minibatches are drawn as successive slices of per-epoch permutations from
``numpy.random.default_rng(seed)`` (a full batch when ``batch_size >= N``), so training is a
deterministic function of the inputs and the seed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmr_dist.evaluation import atariari_labels
from rmr_dist.evaluation import metrics
from rmr_dist.networks.abstract import NUM_BITS, NUM_SLOTS, bits_to_bytes, bytes_to_bits

NUM_BYTE_CLASSES = 256  # values a RAM byte can take
_MIN_STD = 1e-6  # features with a smaller train std are left unscaled


class EncodeFn(Protocol):
  """A pixel encoder: ``(params, frames [B, H, W, 3] uint8) -> slots [B, 128, 64]``."""

  def __call__(self, params: Any, frames: jax.Array) -> jax.Array:
    ...


class ProbeParams(NamedTuple):
  """A bank of linear classifiers on standardised embeddings.

  Attributes:
    w: [D, K] float32 weights (K = 1024 bit logits, or V * 256 byte logits).
    b: [K] float32 biases.
    mean: [D] float32 train mean of the embeddings.
    std: [D] float32 train std of the embeddings (1 where it was < 1e-6).
  """
  w: jax.Array
  b: jax.Array
  mean: jax.Array
  std: jax.Array


@dataclasses.dataclass(frozen=True)
class ByteProbes:
  """AtariARI byte probes of one game.

  Attributes:
    params: linear softmax classifiers, K = len(variables) * 256 logits.
    variables: names of the probed variables (those that passed the entropy filter).
    ram_indices: RAM index of each variable.
  """
  params: ProbeParams
  variables: tuple[str, ...]
  ram_indices: tuple[int, ...]


def frozen_embeddings(encode_fn: EncodeFn, params: Any, frames: np.ndarray,
                      batch_size: int) -> np.ndarray:
  """Flattened slot embeddings of a frozen encoder (forward passes only).

  The encoder runs jitted, in batches (the last one padded to ``batch_size`` so it compiles
  once), and its output is wrapped in `jax.lax.stop_gradient`. ``params`` are never
  differentiated here; the probes are trained on the returned numpy array.

  Args:
    encode_fn: ``(params, frames [B, H, W, 3] uint8) -> [B, S, E]`` slot embeddings.
    params: the encoder parameters.
    frames: [N, H, W, 3] uint8 observations.
    batch_size: frames per forward pass.

  Returns:
    [N, S * E] float32 (D = 128 * 64 for the paper's encoder).
  """
  frames = np.asarray(frames)
  n = frames.shape[0]

  @jax.jit
  def _embed(p, x):
    slots = jax.lax.stop_gradient(encode_fn(p, x))  # [B, S, E]
    return slots.reshape(slots.shape[0], -1).astype(jnp.float32)  # [B, S * E]

  chunks = []
  for start in range(0, n, batch_size):
    batch = frames[start:start + batch_size]  # [b, H, W, 3]
    b = batch.shape[0]
    if b < batch_size:
      pad = np.zeros((batch_size - b,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, pad])
    chunks.append(np.asarray(_embed(params, batch))[:b])
  if not chunks:
    raise ValueError('frozen_embeddings needs at least one frame')
  return np.concatenate(chunks)  # [N, D]


def _standardise(emb: jax.Array, params: ProbeParams) -> jax.Array:
  return (emb - params.mean) / params.std  # [B, D]


def _logits(params: ProbeParams, emb: jax.Array) -> jax.Array:
  return _standardise(emb, params) @ params.w + params.b  # [B, K]


def _bit_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean binary cross-entropy; logits and targets [B, 1024]."""
  return optax.sigmoid_binary_cross_entropy(logits, targets).mean()


def _byte_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy; logits [B, V * 256], targets [B, V] int32."""
  logits = logits.reshape(targets.shape + (NUM_BYTE_CLASSES,))  # [B, V, 256]
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


@functools.partial(jax.jit, static_argnames=('loss_fn', 'steps', 'learning_rate',
                                             'weight_decay'))
def _fit(init: ProbeParams, emb: jax.Array, targets: jax.Array,
         batch_idx: Optional[jax.Array], *, loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
         steps: int, learning_rate: float, weight_decay: float) -> ProbeParams:
  """Adam on (w, b) only; mean and std stay fixed.

  ``batch_idx`` [steps, B] picks each step's minibatch; None means full batch every step.
  """
  optimiser = optax.adam(learning_rate)

  def loss(wb, x, y):
    logits = _logits(init._replace(w=wb[0], b=wb[1]), x)  # [B, K]
    return loss_fn(logits, y) + 0.5 * weight_decay * jnp.sum(jnp.square(wb[0]))

  def step(carry, idx):
    wb, opt_state = carry
    x, y = (emb, targets) if idx is None else (emb[idx], targets[idx])  # [B, D], [B, ...]
    grads = jax.grad(loss)(wb, x, y)  # only the probe is differentiated
    updates, opt_state = optimiser.update(grads, opt_state, wb)
    return (optax.apply_updates(wb, updates), opt_state), None

  wb = (init.w, init.b)
  (wb, _), _ = jax.lax.scan(step, (wb, optimiser.init(wb)), batch_idx, length=steps)
  return init._replace(w=wb[0], b=wb[1])


def _batch_indices(n: int, steps: int, batch_size: int, seed: int) -> Optional[np.ndarray]:
  """[steps, B] int32 slices of successive permutations of range(n); None if B >= n."""
  if batch_size >= n:
    return None
  rng = np.random.default_rng(seed)
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  perms = np.concatenate([rng.permutation(n)[:per_epoch * batch_size] for _ in range(epochs)])
  return perms[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def _train_linear(emb: np.ndarray, targets: np.ndarray, num_outputs: int, loss_fn, *,
                  steps: int, batch_size: int, learning_rate: float, weight_decay: float,
                  seed: int) -> ProbeParams:
  """Fits ``num_outputs`` linear logits on standardised ``emb`` [N, D] (see module doc)."""
  emb = np.asarray(emb, np.float32)
  if emb.ndim != 2 or emb.shape[0] != targets.shape[0] or emb.shape[0] == 0:
    raise ValueError(f'expected emb [N, D] matching targets [N, ...], got {emb.shape} and '
                     f'{targets.shape}')
  if steps < 1 or batch_size < 1:
    raise ValueError(f'steps and batch_size must be >= 1, got {steps}, {batch_size}')
  mean = emb.mean(axis=0, dtype=np.float64).astype(np.float32)  # [D]
  std = emb.std(axis=0, dtype=np.float64).astype(np.float32)  # [D]
  std = np.where(std < _MIN_STD, 1.0, std).astype(np.float32)
  d = emb.shape[1]
  init = ProbeParams(w=jnp.zeros((d, num_outputs), jnp.float32),
                     b=jnp.zeros((num_outputs,), jnp.float32),
                     mean=jnp.asarray(mean), std=jnp.asarray(std))
  idx = _batch_indices(emb.shape[0], steps, batch_size, seed)
  return _fit(init, jnp.asarray(emb), jnp.asarray(targets),
              None if idx is None else jnp.asarray(idx), loss_fn=loss_fn, steps=int(steps),
              learning_rate=float(learning_rate), weight_decay=float(weight_decay))


def train_bit_probes(train_emb: np.ndarray, train_ram: np.ndarray, *, steps: int,
                     batch_size: int, learning_rate: float, weight_decay: float,
                     seed: int) -> ProbeParams:
  """Trains one logistic-regression classifier per RAM bit (1024 in all, one matrix).

  Args:
    train_emb: [N, D] float32 frozen-encoder embeddings.
    train_ram: [N, 128] uint8 RAM of the same frames (the labels).
    steps: Adam steps.
    batch_size: minibatch size (full batch when >= N).
    learning_rate: Adam learning rate.
    weight_decay: L2 coefficient on the weights.
    seed: minibatch-order seed (training is deterministic given it).

  Returns:
    ProbeParams with w [D, 1024] (column ``8 * slot + k`` predicts bit k, MSB first).
  """
  train_ram = np.asarray(train_ram)
  if train_ram.ndim != 2 or train_ram.shape[1] != NUM_SLOTS:
    raise ValueError(f'expected train_ram [N, {NUM_SLOTS}], got {train_ram.shape}')
  targets = bytes_to_bits(train_ram).reshape(len(train_ram), NUM_SLOTS * NUM_BITS)  # [N, 1024]
  return _train_linear(train_emb, targets.astype(np.float32), NUM_SLOTS * NUM_BITS, _bit_loss,
                       steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                       weight_decay=weight_decay, seed=seed)


def predict_bits(params: ProbeParams, emb: np.ndarray) -> np.ndarray:
  """Thresholded bit predictions.

  Args:
    params: bit probes from `train_bit_probes`.
    emb: [N, D] embeddings.

  Returns:
    [N, 128, 8] uint8 of 0/1 (1 where the logit is > 0), MSB first.
  """
  logits = np.asarray(_logits(params, jnp.asarray(emb, jnp.float32)))  # [N, 1024]
  return (logits > 0).astype(np.uint8).reshape(-1, NUM_SLOTS, NUM_BITS)


def evaluate_bit_probes(params: ProbeParams, val_emb: np.ndarray,
                        val_ram: np.ndarray) -> dict[str, float]:
  """Scores bit probes like the abstract models (Table 2 metrics, on probe predictions).

  Args:
    params: bit probes from `train_bit_probes`.
    val_emb: [N, D] validation embeddings.
    val_ram: [N, 128] uint8 validation RAM; its per-slot entropy selects the scored slots.

  Returns:
    ``bit_f1`` (micro, positive = 1, over the high-entropy slots), ``slot_accuracy`` (whole
    byte right) and ``num_slots`` (how many slots passed the 0.6-nat filter).
  """
  val_ram = np.asarray(val_ram)
  mask = metrics.high_entropy_slots(val_ram)  # [128] bool
  pred_bits = predict_bits(params, val_emb)  # [N, 128, 8]
  return {
      'bit_f1': metrics.bit_f1(pred_bits, bytes_to_bits(val_ram), mask),
      'slot_accuracy': metrics.slot_accuracy(bits_to_bytes(pred_bits), val_ram, mask),
      'num_slots': float(mask.sum()),
  }


def weighted_f1(pred: np.ndarray, true: np.ndarray) -> float:
  """Class-support-weighted F1 (scikit-learn's ``average='weighted'``, y_true = ``true``).

  For every class c present in ``true``: ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``; the
  result is ``sum_c n_c F1_c / N`` with ``n_c`` the count of c in ``true``. Classes seen only
  in ``pred`` have weight 0 (their false positives still lower the F1 of the true classes
  through FN).

  Args:
    pred: [N] int predicted classes.
    true: [N] int true classes.

  Returns:
    The weighted F1; NaN when N = 0.
  """
  pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
  if pred.shape != true.shape:
    raise ValueError(f'shape mismatch: {pred.shape} vs {true.shape}')
  if true.size == 0:
    return float('nan')
  classes, support = np.unique(true, return_counts=True)
  total = 0.0
  for c, n_c in zip(classes, support):
    tp = int(np.sum((pred == c) & (true == c)))
    fp = int(np.sum((pred == c) & (true != c)))
    fn = int(n_c) - tp
    total += int(n_c) * (2 * tp / (2 * tp + fp + fn))
  return total / true.size


def train_byte_probes(train_emb: np.ndarray, train_ram: np.ndarray, game: str, *, steps: int,
                      batch_size: int, learning_rate: float, weight_decay: float,
                      seed: int) -> Optional[ByteProbes]:
  """Trains a linear 256-way softmax classifier per AtariARI variable of ``game``.

  As in AtariARI, variables whose label entropy (nats, over ``train_ram``) is below 0.6 are
  dropped before training.

  Args:
    train_emb: [N, D] float32 frozen-encoder embeddings.
    train_ram: [N, 128] uint8 RAM of the same frames.
    game: ale-py ROM id, e.g. ``'pong'``.
    steps, batch_size, learning_rate, weight_decay, seed: as for `train_bit_probes`.

  Returns:
    ByteProbes, or None when the game has no AtariARI labels or none passes the filter.
  """
  labels = atariari_labels.ATARIARI_LABELS.get(game)
  if not labels:
    return None
  train_ram = np.asarray(train_ram)
  names = tuple(labels)
  indices = np.array([labels[k] for k in names])  # [V]
  keep = metrics.slot_entropy(train_ram[:, indices]) >= metrics.ENTROPY_THRESHOLD  # [V]
  if not keep.any():
    return None
  names = tuple(n for n, k in zip(names, keep) if k)
  indices = indices[keep]
  targets = train_ram[:, indices].astype(np.int32)  # [N, V]
  params = _train_linear(train_emb, targets, len(names) * NUM_BYTE_CLASSES, _byte_loss,
                         steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                         weight_decay=weight_decay, seed=seed)
  return ByteProbes(params=params, variables=names, ram_indices=tuple(int(i) for i in indices))


def predict_bytes(probes: ByteProbes, emb: np.ndarray) -> np.ndarray:
  """Arg-max byte values, [N, V] uint8 (one column per ``probes.variables``)."""
  logits = np.asarray(_logits(probes.params, jnp.asarray(emb, jnp.float32)))  # [N, V * 256]
  logits = logits.reshape(len(logits), len(probes.variables), NUM_BYTE_CLASSES)
  return logits.argmax(axis=-1).astype(np.uint8)  # [N, V]


def evaluate_byte_probes(probes: Optional[ByteProbes], val_emb: np.ndarray,
                         val_ram: np.ndarray) -> Optional[dict[str, Any]]:
  """Per-variable weighted F1 and accuracy of AtariARI byte probes on validation frames.

  Args:
    probes: from `train_byte_probes` (None passes through).
    val_emb: [N, D] validation embeddings.
    val_ram: [N, 128] uint8 validation RAM.

  Returns:
    None when ``probes`` is None; else ``f1`` and ``accuracy`` ({variable: value}),
    ``mean_f1`` and ``mean_accuracy`` (unweighted means over variables, AtariARI's
    "overall average") and ``num_variables``.
  """
  if probes is None:
    return None
  true = np.asarray(val_ram)[:, list(probes.ram_indices)]  # [N, V]
  pred = predict_bytes(probes, val_emb)  # [N, V]
  f1 = {n: weighted_f1(pred[:, v], true[:, v]) for v, n in enumerate(probes.variables)}
  acc = {n: float(np.mean(pred[:, v] == true[:, v])) for v, n in enumerate(probes.variables)}
  return {
      'f1': f1,
      'accuracy': acc,
      'mean_f1': float(np.mean(list(f1.values()))),
      'mean_accuracy': float(np.mean(list(acc.values()))),
      'num_variables': len(probes.variables),
  }
