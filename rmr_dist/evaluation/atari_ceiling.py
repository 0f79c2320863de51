"""The supervised ceiling of Table 1: f~ trained end to end on the RAM labels it is probed for.

What a frozen-encoder probe could reach if the encoder were trained for the probes' task: the
natural models' f~ (same architecture, initialised exactly as seed s's untrained encoder) plus
two linear heads on its flattened slot embeddings,

  byte head: [D, V * 256] logits of the V AtariARI variables' byte values (softmax CE), and
  bit head:  [D, 8 * S'] logits of the bits of the S' RAM slots whose entropy over the training
             RAM reaches 0.6 nats (sigmoid BCE),

trained together with Adam on the probe training set's frames and RAM, with early stopping on
its held-out episodes (`atari_probes.split_indices` with the frames' episode ids). The loss is the
mean byte CE plus the mean bit BCE. The heads are then discarded: the trained encoder is scored
by fresh linear probes exactly like every other encoder (`rmr_dist.stages.atari_probe.
score_encoder`).

`update_step` is a pure function of (state, batch); `train_ceiling` jits it with the encoder
and optimiser bound (`functools.partial`), once per (encoder, learning rate). Minibatches are
successive slices of per-epoch permutations (`atari_probes.batch_indices`), so training is
deterministic given the seed.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmr_dist.evaluation import atari_metrics
from rmr_dist.evaluation import atari_probes
from rmr_dist.networks.atari_abstract import NUM_BITS, NUM_SLOTS, bytes_to_bits

NUM_BYTE_CLASSES = atari_probes.NUM_BYTE_CLASSES


class CeilingState(NamedTuple):
  """What crosses `update_step`.

  Attributes:
    params: {'encoder': f~ params, 'bytes': {'w': [D, V * 256], 'b': [V * 256]},
      'bits': {'w': [D, K], 'b': [K]}} (K = 8 * S' bit logits).
    opt_state: Adam state of ``params``.
  """
  params: Any
  opt_state: optax.OptState


class Batch(NamedTuple):
  """A labelled minibatch.

  Attributes:
    frames: [B, (K,) H, W, 3] uint8 observations.
    bytes: [B, V] int32 byte values of the probed variables.
    bits: [B, K] float32 0/1 bits of the probed slots.
    weight: [B] float32 1 for real examples, 0 for padding.
  """
  frames: jax.Array
  bytes: jax.Array
  bits: jax.Array
  weight: jax.Array


def init_heads(latent_dim: int, num_variables: int, num_bits: int) -> dict[str, Any]:
  """Zero-initialised linear heads on ``latent_dim`` flattened embedding features."""
  zeros = lambda k: {'w': jnp.zeros((latent_dim, k), jnp.float32),
                     'b': jnp.zeros((k,), jnp.float32)}
  return {'bytes': zeros(num_variables * NUM_BYTE_CLASSES), 'bits': zeros(num_bits)}


def example_losses(params: Any, batch: Batch, encode_fn: atari_probes.EncodeFn) -> jax.Array:
  """Per-example loss [B]: mean CE over the V variables plus mean BCE over the K bits.

  Args:
    params: `CeilingState.params`.
    batch: frames [B, ...], bytes [B, V], bits [B, K].
    encode_fn: f~, ``(params['encoder'], frames) -> [B, S, E]``.

  Returns:
    [B] float32 losses (a term is 0 when V or K is 0).
  """
  slots = encode_fn(params['encoder'], batch.frames)  # [B, S, E]
  z = slots.reshape(slots.shape[0], -1).astype(jnp.float32)  # [B, D]
  loss = jnp.zeros(z.shape[:1], jnp.float32)  # [B]
  if batch.bytes.shape[1]:
    logits = z @ params['bytes']['w'] + params['bytes']['b']  # [B, V * 256]
    logits = logits.reshape(batch.bytes.shape + (NUM_BYTE_CLASSES,))  # [B, V, 256]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.bytes)  # [B, V]
    loss = loss + ce.mean(axis=1)
  if batch.bits.shape[1]:
    logits = z @ params['bits']['w'] + params['bits']['b']  # [B, K]
    loss = loss + optax.sigmoid_binary_cross_entropy(logits, batch.bits).mean(axis=1)
  return loss


def update_step(state: CeilingState, batch: Batch, *, encode_fn: atari_probes.EncodeFn,
                optimizer: optax.GradientTransformation) -> tuple[CeilingState, jax.Array]:
  """One Adam step on the encoder and both heads.

  Args:
    state: parameters and optimiser state.
    batch: a minibatch (every ``weight`` 1).
    encode_fn: f~.
    optimizer: the optimiser (Adam).

  Returns:
    (the new state, the minibatch's mean loss before the step).
  """
  loss_fn = lambda p: jnp.mean(example_losses(p, batch, encode_fn))
  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  return CeilingState(optax.apply_updates(state.params, updates), opt_state), loss


def loss_sum(params: Any, batch: Batch, *, encode_fn: atari_probes.EncodeFn) -> jax.Array:
  """Sum of the weighted per-example losses of ``batch`` (padding has weight 0)."""
  return jnp.sum(example_losses(params, batch, encode_fn) * batch.weight)


def _targets(ram: np.ndarray, game: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
  """(bytes [N, V] int32, bits [N, K] float32, what they are) of RAM [N, 128]."""
  selected = atari_probes.byte_variables(ram, game)
  names, indices = selected if selected is not None else ((), np.zeros((0,), int))
  slots = atari_metrics.high_entropy_slots(ram)  # [128] bool
  bits = bytes_to_bits(ram).reshape(len(ram), NUM_SLOTS * NUM_BITS)  # [N, 1024]
  bits = bits[:, np.repeat(slots, NUM_BITS)].astype(np.float32)  # [N, K]
  return (ram[:, indices].astype(np.int32), bits,
          {'variables': list(names), 'num_bit_slots': int(slots.sum())})


class _Data:
  """Frames and targets of one split, batched (the last batch padded with weight 0)."""

  def __init__(self, frames, byte_t, bit_t, index, batch_size):
    self.frames, self.byte_t, self.bit_t = frames, byte_t, bit_t
    self.index, self.batch_size = index, batch_size

  def batch(self, idx: np.ndarray) -> Batch:
    return Batch(jnp.asarray(self.frames[idx]), jnp.asarray(self.byte_t[idx]),
                 jnp.asarray(self.bit_t[idx]), jnp.ones((len(idx),), jnp.float32))

  def padded_batches(self):
    for start in range(0, len(self.index), self.batch_size):
      idx = self.index[start:start + self.batch_size]
      pad = self.batch_size - len(idx)
      b = self.batch(np.concatenate([idx, np.full(pad, idx[0])]))
      yield b._replace(weight=jnp.asarray(np.arange(self.batch_size) < len(idx),
                                          jnp.float32))


@functools.lru_cache(maxsize=4)
def _compiled(encode_fn: atari_probes.EncodeFn, learning_rate: float):
  """(Adam, jitted `update_step`, jitted `loss_sum`) for ``encode_fn``: built once, so the
  seeds of one game share their compilations."""
  optimizer = optax.adam(learning_rate)
  return (optimizer,
          jax.jit(functools.partial(update_step, encode_fn=encode_fn, optimizer=optimizer)),
          jax.jit(functools.partial(loss_sum, encode_fn=encode_fn)))


def train_ceiling(encode_fn: atari_probes.EncodeFn, encoder_params: Any, frames: np.ndarray,
                  ram: np.ndarray, episode: np.ndarray, game: str, *, steps: int,
                  batch_size: int, learning_rate: float, val_fraction: float, eval_every: int,
                  patience: int, seed: int) -> tuple[Any, dict[str, Any]]:
  """Trains f~ and linear RAM heads end to end; returns the encoder of the best held-out loss.

  Args:
    encode_fn: f~, ``(encoder_params, frames [B, (K,) H, W, 3]) -> [B, S, E]``.
    encoder_params: its initialisation (seed s's untrained encoder).
    frames: [N, (K,) H, W, 3] uint8 training frames (the probe training set).
    ram: [N, 128] uint8 their RAM (the labels).
    episode: [N] int episode id of each frame: the held-out part is whole episodes.
    game: for the AtariARI variables of the byte head.
    steps: the most Adam steps (0: the encoder is returned untouched).
    batch_size: minibatch size (also the held-out evaluation batch).
    learning_rate: Adam learning rate.
    val_fraction: about this part of the frames (whole episodes) is held out; 0: none, no early
      stopping.
    eval_every: steps between held-out evaluations.
    patience: evaluations without a held-out improvement before stopping.
    seed: minibatch order and held-out split.

  Returns:
    (encoder params, info): info holds ``steps``, ``best_step``, ``stopped_early``,
    ``initial_val_loss`` and ``val_loss`` (held-out mean loss at step 0 and at ``best_step``;
    None without a held-out part), ``initial_train_loss`` (the first minibatch's) and
    ``final_train_loss`` (mean over the last ``eval_every`` minibatches), ``variables``,
    ``num_bit_slots``, ``n_fit`` and ``n_val``.
  """
  ram = np.asarray(ram)
  byte_t, bit_t, what = _targets(ram, game)
  fit_idx, val_idx = atari_probes.split_indices(len(ram), val_fraction, seed, episode)
  info: dict[str, Any] = {**what, 'steps': 0, 'best_step': 0, 'stopped_early': False,
                          'initial_val_loss': None, 'val_loss': None,
                          'initial_train_loss': None, 'final_train_loss': None,
                          'n_fit': int(len(fit_idx)), 'n_val': int(len(val_idx))}
  if steps < 1 or not (byte_t.shape[1] or bit_t.shape[1]):
    return encoder_params, info
  optimizer, update, total = _compiled(encode_fn, float(learning_rate))
  encoder_params = jax.tree_util.tree_map(jnp.asarray, encoder_params)
  latent = encode_fn(encoder_params, jnp.asarray(frames[:1]))  # [1, S, E]
  params = {'encoder': encoder_params,
            **init_heads(int(np.prod(latent.shape[1:])), byte_t.shape[1], bit_t.shape[1])}
  state = CeilingState(params, optimizer.init(params))
  fit = _Data(frames, byte_t, bit_t, fit_idx, batch_size)
  val = _Data(frames, byte_t, bit_t, val_idx, batch_size)
  held_out = lambda p: (sum(float(total(p, b)) for b in val.padded_batches()) / len(val_idx)
                        if len(val_idx) else None)
  order = atari_probes.batch_indices(len(fit_idx), steps, batch_size, seed)  # [steps, B] or None
  best, best_loss, waited, recent = state.params, held_out(state.params), 0, []
  info['initial_val_loss'] = best_loss
  done = 0
  while done < steps and (best_loss is None or waited < patience):
    idx = fit_idx if order is None else fit_idx[order[done]]
    state, loss = update(state, fit.batch(idx))
    recent = (recent + [loss])[-eval_every:]
    if not done:
      info['initial_train_loss'] = float(loss)
    done += 1
    if best_loss is not None and (done % eval_every == 0 or done == steps):
      current = held_out(state.params)
      if current < best_loss:
        best, best_loss, waited, info['best_step'] = state.params, current, 0, done
      else:
        waited += 1
  if best_loss is None:
    best, info['best_step'] = state.params, done
  info.update(steps=done, stopped_early=done < steps, val_loss=best_loss,
              final_train_loss=float(np.mean([float(x) for x in recent])))
  return jax.device_get(best['encoder']), info

