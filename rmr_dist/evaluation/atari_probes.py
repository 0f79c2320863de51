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
  They are scored exactly like the abstract models (`rmr_dist.evaluation.atari_metrics`): micro
  bit F1 (positive = 1) and slot accuracy over the slots whose entropy over the VALIDATION
  RAM exceeds 0.6 nats.
* Byte probes (AtariARI's protocol, Anand et al. 2019): for every labelled RAM variable of a
  game (`rmr_dist.evaluation.atari_ram_labels`), a linear 256-way softmax classifier of the
  byte value, scored by the class-weighted F1 (`weighted_f1`), averaged within each AtariARI
  category and then across the categories (`category_f1`: AtariARI's "across_categories_avg").

Conventions shared by both probes: embeddings are standardised per feature with the TRAIN
mean and std (stored in `ProbeParams`; a feature with std < 1e-6 gets std 1); weights and
biases start at zero; an L2 penalty ``weight_decay / 2 * ||W||^2`` (bias excluded) is added
to the mean loss; minibatches are drawn as successive slices of per-epoch permutations from
``numpy.random.default_rng(seed)`` (a full batch when ``batch_size >= N``), so training is a
deterministic function of the inputs and the seed. With early stopping, the held-out frames are
whole episodes when the frames' episode ids (``groups``) are given (`split_indices`), so no
near-duplicate frame of a fitted episode is held out.
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

from rmr_dist.evaluation import atari_ram_labels
from rmr_dist.evaluation import atari_metrics
from rmr_dist.networks.atari_abstract import NUM_BITS, NUM_SLOTS, bits_to_bytes, bytes_to_bits

NUM_BYTE_CLASSES = 256  # values a RAM byte can take
_MIN_STD = 1e-6  # features with a smaller train std are left unscaled


class EncodeFn(Protocol):
  """A pixel encoder: ``(params, frames [B, H, W, 3] uint8) -> slots [B, 128, 64]``."""

  def __call__(self, params: Any, frames: jax.Array) -> jax.Array:
    ...


class ProbeParams(NamedTuple):
  """A bank of linear classifiers on standardised (optionally whitened) embeddings.

  Attributes:
    w: [D', K] float32 weights (K = 1024 bit logits, or V * 256 byte logits; D' = D, or k
      with ``proj``).
    b: [K] float32 biases.
    mean: [D] float32 train mean of the embeddings.
    std: [D] float32 train std of the embeddings (1 where it was < 1e-6).
    proj: None, or [D, k] float32 whitening projection of the standardised embeddings onto
      their k leading principal components (a linear map: the probe stays linear in the
      embeddings).
    outputs: None (w's columns are all K outputs), or [K'] int32: the bit columns (0..1023)
      that w's K' columns predict; the others are predicted 0 (`fit_bit_probes`'s ``slots``).
  """
  w: jax.Array
  b: jax.Array
  mean: jax.Array
  std: jax.Array
  proj: Optional[jax.Array] = None
  outputs: Optional[jax.Array] = None


@dataclasses.dataclass(frozen=True)
class ByteProbes:
  """AtariARI byte probes of one game.

  Attributes:
    params: linear softmax classifiers, K = len(variables) * 256 logits.
    variables: names of the probed variables (those that passed the entropy filter).
    ram_indices: RAM index of each variable.
    categories: AtariARI category of each variable (`atari_ram_labels.ATARIARI_CATEGORIES`).
  """
  params: ProbeParams
  variables: tuple[str, ...]
  ram_indices: tuple[int, ...]
  categories: tuple[str, ...]


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
  x = (emb - params.mean) / params.std  # [B, D]
  return x if params.proj is None else x @ params.proj  # [B, D']


def whitening(x: np.ndarray, max_components: int, rel_tol: float = 1e-4) -> np.ndarray:
  """[D, k] projection of centred ``x`` [N, D] onto its principal components, scaled to unit
  variance: the k = min(max_components, rank) components whose singular value exceeds
  ``rel_tol`` times the largest. Computed from the smaller of the Gram and covariance matrices.
  """
  x = np.asarray(x, np.float64)
  n, d = x.shape
  if n <= d:
    lam, u = np.linalg.eigh(x @ x.T)  # ascending, [N], [N, N]
    lam, u = lam[::-1].copy(), np.ascontiguousarray(u[:, ::-1])
    k = max(1, int(min(max_components, np.sum(lam > (rel_tol ** 2) * lam[0]))))
    v = x.T @ np.ascontiguousarray(u[:, :k]) / np.sqrt(lam[:k])  # [D, k] singular vectors
  else:
    lam, v = np.linalg.eigh(x.T @ x)
    lam, v = lam[::-1].copy(), np.ascontiguousarray(v[:, ::-1])
    k = max(1, int(min(max_components, np.sum(lam > (rel_tol ** 2) * lam[0]))))
  return (v[:, :k] * np.sqrt(n / lam[:k])).astype(np.float32)  # [D, k]


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
def _fit(init: ProbeParams, opt_state: optax.OptState, emb: jax.Array, targets: jax.Array,
         batch_idx: Optional[jax.Array], *, loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
         steps: int, learning_rate: float, weight_decay: float
         ) -> tuple[ProbeParams, optax.OptState]:
  """``steps`` Adam steps on (w, b) only, from ``opt_state``; mean and std stay fixed.

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
  (wb, opt_state), _ = jax.lax.scan(step, (wb, opt_state), batch_idx, length=steps)
  return init._replace(w=wb[0], b=wb[1]), opt_state


@functools.partial(jax.jit, static_argnames=('loss_fn',))
def _mean_loss(params: ProbeParams, emb: jax.Array, targets: jax.Array, *,
               loss_fn: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """The data loss (no L2) of ``params`` on ``emb`` [N, D]: the early-stopping criterion."""
  return loss_fn(_logits(params, emb), targets)


def batch_indices(n: int, steps: int, batch_size: int, seed: int) -> Optional[np.ndarray]:
  """[steps, B] int32 slices of successive permutations of range(n); None if B >= n."""
  if batch_size >= n:
    return None
  rng = np.random.default_rng(seed)
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  perms = np.concatenate([rng.permutation(n)[:per_epoch * batch_size] for _ in range(epochs)])
  return perms[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


@functools.partial(jax.jit, static_argnames=('loss_fn',))
def _heldout_score(params: ProbeParams, emb: jax.Array, targets: jax.Array, *,
                   loss_fn: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """Higher is better: micro F1 (positive = 1) for bit probes, minus the loss otherwise."""
  logits = _logits(params, emb)
  if loss_fn is _bit_loss:
    pred, true = logits > 0, targets > 0.5
    tp = jnp.sum(pred & true)
    return 2 * tp / jnp.maximum(2 * tp + jnp.sum(pred != true), 1)
  return -loss_fn(logits, targets)


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
  """Fit-to-convergence settings of a probe (AtariARI: train until the held-out score stops
  improving).

  The held-out score is the micro bit F1 for bit probes (the metric they are scored by: their
  held-out cross-entropy turns up long before their F1 stops improving) and minus the
  cross-entropy for byte probes.

  Attributes:
    val_fraction: fraction of the probe's training frames held out (never fitted on) to choose
      the stopping step; 0 disables early stopping (exactly ``steps`` steps).
    eval_every: Adam steps between held-out evaluations.
    patience: evaluations without a held-out improvement before stopping; the parameters of
      the best evaluation are returned.
  """
  val_fraction: float = 0.0
  eval_every: int = 50
  patience: int = 5

  def __post_init__(self):
    if not 0.0 <= self.val_fraction < 1.0:
      raise ValueError(f'val_fraction={self.val_fraction!r} must be in [0, 1)')
    if self.eval_every < 1 or self.patience < 1:
      raise ValueError(f'eval_every={self.eval_every!r} and patience={self.patience!r} must '
                       'be >= 1')


NO_EARLY_STOPPING = EarlyStopping()


class FitInfo(NamedTuple):
  """How a probe's fit went (for results.json: a reader sees whether it converged).

  Attributes:
    steps: Adam steps taken.
    best_step: the step whose parameters were kept (== steps without early stopping).
    stopped_early: the held-out score stopped improving before the step budget ran out.
    train_loss: data loss on the fitted frames at ``best_step``.
    val_loss: data loss on the held-out frames at ``best_step`` (NaN without a split).
    fit_index: [N_fit] indices of the fitted frames; val_index: [N_val] of the held-out ones.
  """
  steps: int
  best_step: int
  stopped_early: bool
  train_loss: float
  val_loss: float
  fit_index: np.ndarray
  val_index: np.ndarray


def split_indices(n: int, val_fraction: float, seed: int,
                  groups: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
  """(fit [N - V], held-out [V]) sorted index arrays of N frames, drawn by
  ``numpy.random.default_rng(seed + 7919)``.

  Without ``groups``: V = round(val_fraction * n) frames at random (>= 1 when val_fraction > 0).
  With ``groups`` [N] (each frame's episode id): whole groups are held out, the prefix of a
  random order of the groups whose frame count comes closest to val_fraction * n (the shortest
  such; at least one group, and at least one left to fit), so no group is in both parts.
  """
  if val_fraction <= 0.0:
    return np.arange(n), np.zeros((0,), np.int64)
  if groups is not None:
    return _split_groups(np.asarray(groups), val_fraction, seed)
  v = min(n - 1, max(1, int(round(val_fraction * n))))
  if v < 1:
    raise ValueError(f'{n} probe frames are too few to hold out a validation part')
  perm = np.random.default_rng(seed + 7919).permutation(n)
  return np.sort(perm[v:]), np.sort(perm[:v])


def _split_groups(groups: np.ndarray, val_fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """`split_indices` by whole groups; groups [N] int."""
  if groups.ndim != 1:
    raise ValueError(f'groups must be [N], got {groups.shape}')
  ids, counts = np.unique(groups, return_counts=True)  # [G], [G]
  if len(ids) < 2:
    raise ValueError(f'holding out whole episodes needs frames of >= 2 episodes, got '
                     f'{len(ids)}')
  order = np.random.default_rng(seed + 7919).permutation(len(ids))  # [G]
  held = np.cumsum(counts[order])[:-1]  # [G - 1] frames held out by the first k + 1 groups
  k = int(np.argmin(np.abs(held - val_fraction * len(groups)))) + 1
  val = np.isin(groups, ids[order[:k]])  # [N] bool
  return np.flatnonzero(~val), np.flatnonzero(val)


def _train_linear(emb: np.ndarray, targets: np.ndarray, num_outputs: int, loss_fn, *,
                  steps: int, batch_size: int, learning_rate: float, weight_decay: float,
                  seed: int, early_stopping: EarlyStopping = NO_EARLY_STOPPING,
                  max_components: int = 0, groups: Optional[np.ndarray] = None
                  ) -> tuple[ProbeParams, FitInfo]:
  """Fits ``num_outputs`` linear logits on standardised ``emb`` [N, D] (see module doc).

  With ``early_stopping.val_fraction > 0`` a held-out part of the frames (whole ``groups``
  [N], the frames' episode ids, when given: `split_indices`) chooses the stopping step (at most
  ``steps``); the standardisation and the fit use only the rest. With
  ``max_components > 0`` the standardised embeddings are first whitened onto at most that many
  principal components of the fitted frames (`whitening`): the same linear function class on
  those frames when the embeddings' rank is below it, far cheaper and better conditioned.
  """
  emb = np.asarray(emb, np.float32)
  if emb.ndim != 2 or emb.shape[0] != targets.shape[0] or emb.shape[0] == 0:
    raise ValueError(f'expected emb [N, D] matching targets [N, ...], got {emb.shape} and '
                     f'{targets.shape}')
  if steps < 1 or batch_size < 1:
    raise ValueError(f'steps and batch_size must be >= 1, got {steps}, {batch_size}')
  if groups is not None and np.shape(groups) != (emb.shape[0],):
    raise ValueError(f'groups must be [{emb.shape[0]}], got {np.shape(groups)}')
  fit_idx, val_idx = split_indices(emb.shape[0], early_stopping.val_fraction, seed, groups)
  mean = emb[fit_idx].mean(axis=0, dtype=np.float64).astype(np.float32)  # [D]
  std = emb[fit_idx].std(axis=0, dtype=np.float64).astype(np.float32)  # [D]
  std = np.where(std < _MIN_STD, 1.0, std).astype(np.float32)
  proj = None
  if max_components > 0:
    proj = whitening((emb[fit_idx] - mean) / std, max_components)  # [D, k]
  # The fit runs on the transformed features, computed once: x = ((emb - mean) / std) @ proj.
  feats = (emb - mean) / std  # [N, D]
  feats = jnp.asarray(feats if proj is None else feats @ proj)  # [N, D']
  d = feats.shape[1]
  on_feats = ProbeParams(w=jnp.zeros((d, num_outputs), jnp.float32),
                         b=jnp.zeros((num_outputs,), jnp.float32),
                         mean=jnp.zeros((d,), jnp.float32), std=jnp.ones((d,), jnp.float32))
  to_emb = lambda p: p._replace(mean=jnp.asarray(mean), std=jnp.asarray(std),
                                proj=None if proj is None else jnp.asarray(proj))
  fit_x, fit_y = feats[fit_idx], jnp.asarray(targets[fit_idx])
  idx = batch_indices(len(fit_idx), steps, batch_size, seed)
  opt_state = optax.adam(float(learning_rate)).init((on_feats.w, on_feats.b))
  kw = dict(loss_fn=loss_fn, learning_rate=float(learning_rate),
            weight_decay=float(weight_decay))
  train_loss = lambda p: float(_mean_loss(p, fit_x, fit_y, loss_fn=loss_fn))
  if not len(val_idx):
    params, _ = _fit(on_feats, opt_state, fit_x, fit_y, None if idx is None else
                     jnp.asarray(idx), steps=int(steps), **kw)
    return to_emb(params), FitInfo(int(steps), int(steps), False, train_loss(params),
                                   float('nan'), fit_idx, val_idx)
  val_x, val_y = feats[val_idx], jnp.asarray(targets[val_idx])
  params = best = on_feats
  best_score, best_step, done, waited = -np.inf, 0, 0, 0
  while done < steps and waited < early_stopping.patience:
    chunk = min(early_stopping.eval_every, steps - done)
    chunk_idx = None if idx is None else jnp.asarray(idx[done:done + chunk])
    params, opt_state = _fit(params, opt_state, fit_x, fit_y, chunk_idx, steps=chunk, **kw)
    done += chunk
    score = float(_heldout_score(params, val_x, val_y, loss_fn=loss_fn))
    if score > best_score:
      best, best_score, best_step, waited = params, score, done, 0
    else:
      waited += 1
  val_loss = float(_mean_loss(best, val_x, val_y, loss_fn=loss_fn))
  return to_emb(best), FitInfo(done, best_step, done < steps, train_loss(best), val_loss,
                               fit_idx, val_idx)


def train_bit_probes(train_emb: np.ndarray, train_ram: np.ndarray, **kwargs) -> ProbeParams:
  """`fit_bit_probes`'s probes alone."""
  return fit_bit_probes(train_emb, train_ram, **kwargs)[0]


def fit_bit_probes(train_emb: np.ndarray, train_ram: np.ndarray, *, steps: int,
                   batch_size: int, learning_rate: float, weight_decay: float, seed: int,
                   early_stopping: EarlyStopping = NO_EARLY_STOPPING,
                   max_components: int = 0, slots: Optional[np.ndarray] = None,
                   groups: Optional[np.ndarray] = None) -> tuple[ProbeParams, FitInfo]:
  """Trains one logistic-regression classifier per RAM bit (1024 in all, one matrix).

  Args:
    train_emb: [N, D] float32 frozen-encoder embeddings.
    train_ram: [N, 128] uint8 RAM of the same frames (the labels).
    steps: Adam steps (the most, with early stopping).
    batch_size: minibatch size (full batch when >= N).
    learning_rate: Adam learning rate.
    weight_decay: L2 coefficient on the weights.
    seed: minibatch-order and held-out-split seed (training is deterministic given it).
    early_stopping: hold out part of the frames and stop when their score (bit F1) stops improving.
    max_components: whiten onto at most this many principal components first (0: no).
    slots: None, or [128] bool: fit only these slots' bits (e.g. the scored, high-entropy
      slots; the others are then predicted 0 and must not be scored).
    groups: None, or [N] int episode id of each frame: early stopping holds out whole episodes.

  Returns:
    ``(params, info)``: ProbeParams with w [D, 1024] (column ``8 * slot + k`` predicts bit k,
    MSB first; with ``slots``, w [D, 8 * slots.sum()] and ``outputs`` naming those columns)
    and the fit's `FitInfo`.
  """
  train_ram = np.asarray(train_ram)
  if train_ram.ndim != 2 or train_ram.shape[1] != NUM_SLOTS:
    raise ValueError(f'expected train_ram [N, {NUM_SLOTS}], got {train_ram.shape}')
  targets = bytes_to_bits(train_ram).reshape(len(train_ram), NUM_SLOTS * NUM_BITS)  # [N, 1024]
  outputs = None
  if slots is not None:
    slots = np.asarray(slots, bool)
    if slots.shape != (NUM_SLOTS,) or not slots.any():
      raise ValueError(f'slots must be [{NUM_SLOTS}] bool with at least one True')
    outputs = np.repeat(slots, NUM_BITS).nonzero()[0].astype(np.int32)  # [K']
    targets = targets[:, outputs]
  params, info = _train_linear(
      train_emb, targets.astype(np.float32), targets.shape[1], _bit_loss, steps=steps,
      batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay, seed=seed,
      early_stopping=early_stopping, max_components=max_components, groups=groups)
  return params._replace(outputs=None if outputs is None else jnp.asarray(outputs)), info


def predict_bits(params: ProbeParams, emb: np.ndarray) -> np.ndarray:
  """Thresholded bit predictions.

  Args:
    params: bit probes from `train_bit_probes`.
    emb: [N, D] embeddings.

  Returns:
    [N, 128, 8] uint8 of 0/1 (1 where the logit is > 0), MSB first.
  """
  logits = np.asarray(_logits(params, jnp.asarray(emb, jnp.float32)))  # [N, K']
  bits = (logits > 0).astype(np.uint8)
  if params.outputs is not None:
    full = np.zeros((len(bits), NUM_SLOTS * NUM_BITS), np.uint8)  # [N, 1024]
    full[:, np.asarray(params.outputs)] = bits
    bits = full
  return bits.reshape(-1, NUM_SLOTS, NUM_BITS)


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
  mask = atari_metrics.high_entropy_slots(val_ram)  # [128] bool
  pred_bits = predict_bits(params, val_emb)  # [N, 128, 8]
  return {
      'bit_f1': atari_metrics.bit_f1(pred_bits, bytes_to_bits(val_ram), mask),
      'slot_accuracy': atari_metrics.slot_accuracy(bits_to_bytes(pred_bits), val_ram, mask),
      'num_slots': float(mask.sum()),
  }


def bit_f1_on_slots(params: ProbeParams, emb: np.ndarray, ram: np.ndarray,
                    slots: np.ndarray) -> float:
  """Micro bit F1 of bit probes on (emb [N, D], ram [N, 128]) over the given [128] bool slots
  (e.g. a probe's own training frames, scored on the validation RAM's slots)."""
  return float(atari_metrics.bit_f1(predict_bits(params, emb), bytes_to_bits(np.asarray(ram)),
                                    np.asarray(slots, bool)))


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


def byte_variables(train_ram: np.ndarray, game: str
                   ) -> Optional[tuple[tuple[str, ...], np.ndarray]]:
  """The AtariARI variables of ``game`` its byte probes fit: those whose label entropy (nats,
  over ``train_ram`` [N, 128] uint8) reaches 0.6, as AtariARI filters them.

  Returns:
    (names, RAM indices [V] int), or None when the game has no labels or none passes.
  """
  labels = atari_ram_labels.ATARIARI_LABELS.get(game)
  if not labels:
    return None
  train_ram = np.asarray(train_ram)
  names = tuple(labels)
  indices = np.array([labels[k] for k in names])  # [V]
  keep = atari_metrics.slot_entropy(train_ram[:, indices]) >= atari_metrics.ENTROPY_THRESHOLD  # [V]
  if not keep.any():
    return None
  return tuple(n for n, k in zip(names, keep) if k), indices[keep]


def train_byte_probes(train_emb: np.ndarray, train_ram: np.ndarray, game: str, *, steps: int,
                      batch_size: int, learning_rate: float, weight_decay: float,
                      seed: int, early_stopping: EarlyStopping = NO_EARLY_STOPPING,
                      max_components: int = 0, groups: Optional[np.ndarray] = None
                      ) -> Optional[ByteProbes]:
  """Trains a linear 256-way softmax classifier per AtariARI variable of ``game``.

  As in AtariARI, variables whose label entropy (nats, over ``train_ram``) is below 0.6 are
  dropped before training.

  Args:
    train_emb: [N, D] float32 frozen-encoder embeddings.
    train_ram: [N, 128] uint8 RAM of the same frames.
    game: ale-py ROM id, e.g. ``'pong'``.
    steps, batch_size, learning_rate, weight_decay, seed, early_stopping, max_components,
      groups: as for `fit_bit_probes`.

  Returns:
    ByteProbes, or None when the game has no AtariARI labels or none passes the filter.
  """
  selected = byte_variables(train_ram, game)
  if selected is None:
    return None
  names, indices = selected
  targets = np.asarray(train_ram)[:, indices].astype(np.int32)  # [N, V]
  params, _ = _train_linear(train_emb, targets, len(names) * NUM_BYTE_CLASSES, _byte_loss,
                            steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                            weight_decay=weight_decay, seed=seed, early_stopping=early_stopping,
                            max_components=max_components, groups=groups)
  categories = atari_ram_labels.ATARIARI_CATEGORIES[game]
  return ByteProbes(params=params, variables=names, ram_indices=tuple(int(i) for i in indices),
                    categories=tuple(categories[n] for n in names))


def predict_bytes(probes: ByteProbes, emb: np.ndarray) -> np.ndarray:
  """Arg-max byte values, [N, V] uint8 (one column per ``probes.variables``)."""
  logits = np.asarray(_logits(probes.params, jnp.asarray(emb, jnp.float32)))  # [N, V * 256]
  logits = logits.reshape(len(logits), len(probes.variables), NUM_BYTE_CLASSES)
  return logits.argmax(axis=-1).astype(np.uint8)  # [N, V]


def category_f1(f1: dict[str, float], categories: dict[str, str]
                ) -> tuple[dict[str, float], float]:
  """AtariARI's category averages of per-variable scores (its `compute_category_avgs` and
  "across_categories_avg").

  Args:
    f1: {variable: score}.
    categories: {variable: AtariARI category} (at least the variables of ``f1``).

  Returns:
    ({category: mean score of its variables}, for the categories that have variables, in
    `atari_ram_labels.CATEGORIES` order; the unweighted mean of those category means).
  """
  by_category = {c: [x for n, x in f1.items() if categories[n] == c]
                 for c in atari_ram_labels.CATEGORIES}
  means = {c: float(np.mean(xs)) for c, xs in by_category.items() if xs}
  return means, float(np.mean(list(means.values()))) if means else float('nan')


def _byte_summary(f1: dict[str, float], categories: dict[str, str]) -> dict[str, Any]:
  """The byte-probe F1 summary shared by the probes and the majority control."""
  per_category, across = category_f1(f1, categories)
  return {'f1': f1, 'mean_f1': float(np.mean(list(f1.values()))),
          'category_f1': per_category, 'across_categories_f1': across,
          'num_variables': len(f1)}


def evaluate_byte_probes(probes: Optional[ByteProbes], val_emb: np.ndarray,
                         val_ram: np.ndarray) -> Optional[dict[str, Any]]:
  """Weighted F1 and accuracy of AtariARI byte probes on validation frames, per variable, per
  category and across categories (AtariARI's protocol).

  Args:
    probes: from `train_byte_probes` (None passes through).
    val_emb: [N, D] validation embeddings.
    val_ram: [N, 128] uint8 validation RAM.

  Returns:
    None when ``probes`` is None; else ``f1`` and ``accuracy`` ({variable: value}),
    ``mean_f1`` and ``mean_accuracy`` (unweighted means over variables, AtariARI's
    "overall_avg"), ``category_f1`` ({category: mean F1 of its variables}),
    ``across_categories_f1`` (the mean of ``category_f1``, AtariARI's "across_categories_avg":
    the primary score) and ``num_variables``.
  """
  if probes is None:
    return None
  true = np.asarray(val_ram)[:, list(probes.ram_indices)]  # [N, V]
  pred = predict_bytes(probes, val_emb)  # [N, V]
  f1 = {n: weighted_f1(pred[:, v], true[:, v]) for v, n in enumerate(probes.variables)}
  acc = {n: float(np.mean(pred[:, v] == true[:, v])) for v, n in enumerate(probes.variables)}
  return {**_byte_summary(f1, dict(zip(probes.variables, probes.categories))),
          'accuracy': acc, 'mean_accuracy': float(np.mean(list(acc.values())))}


def majority_bit_f1(train_ram: np.ndarray, val_ram: np.ndarray) -> dict[str, float]:
  """The majority-class-per-bit control, scored like `evaluate_bit_probes`.

  Every bit is predicted as its more frequent value over ``train_ram`` (ties: 0), whatever the
  frame; the scored slots are the validation RAM's high-entropy ones, as for the probes.

  Args:
    train_ram: [N, 128] uint8 RAM the probes are fit on.
    val_ram: [M, 128] uint8 validation RAM.

  Returns:
    ``bit_f1``, ``slot_accuracy`` and ``num_slots``, as `evaluate_bit_probes`.
  """
  val_ram = np.asarray(val_ram)
  majority = (bytes_to_bits(np.asarray(train_ram)).mean(axis=0) > 0.5).astype(np.uint8)
  pred_bits = np.broadcast_to(majority, (len(val_ram),) + majority.shape)  # [M, 128, 8]
  mask = atari_metrics.high_entropy_slots(val_ram)  # [128] bool
  return {
      'bit_f1': atari_metrics.bit_f1(pred_bits, bytes_to_bits(val_ram), mask),
      'slot_accuracy': atari_metrics.slot_accuracy(bits_to_bytes(pred_bits), val_ram, mask),
      'num_slots': float(mask.sum()),
  }


def majority_byte_f1(train_ram: np.ndarray, val_ram: np.ndarray, game: str
                     ) -> Optional[dict[str, Any]]:
  """The majority-class control of the byte probes, scored like `evaluate_byte_probes`.

  Each variable the byte probes fit (`byte_variables`) is predicted as its most frequent value
  over ``train_ram`` (ties: the smallest), whatever the frame.

  Args:
    train_ram: [N, 128] uint8 RAM the probes are fit on.
    val_ram: [M, 128] uint8 validation RAM.
    game: ale-py ROM id.

  Returns:
    None when the game has no byte probes; else ``f1`` ({variable: weighted F1}), ``mean_f1``,
    ``category_f1``, ``across_categories_f1`` and ``num_variables``, as `evaluate_byte_probes`.
  """
  selected = byte_variables(train_ram, game)
  if selected is None:
    return None
  names, indices = selected
  train, true = np.asarray(train_ram)[:, indices], np.asarray(val_ram)[:, indices]  # [N|M, V]
  f1 = {}
  for v, name in enumerate(names):
    majority = np.bincount(train[:, v], minlength=NUM_BYTE_CLASSES).argmax()
    f1[name] = weighted_f1(np.full(len(true), majority), true[:, v])
  return _byte_summary(f1, atari_ram_labels.ATARIARI_CATEGORIES[game])
