"""Exact evaluation of the abstract models on the validation episodes of the episode store.

Every transition (ram_t, action_t, ram_t+1) of every validation episode of a game is scored, in
a fixed order (head, episode, t), in fixed-size batches: the same numbers on every run. The
learned models predict with their *predicted* overwrite mask (no teacher forcing at evaluation);
the copy baseline predicts ram_t+1 = ram_t. Metrics are `rmr_dist.evaluation.atari_metrics`'
slot accuracy and micro bit F1 over the slots whose target-value entropy exceeds 0.6 nats.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmr_dist import losses
from rmr_dist.evaluation import atari_metrics
from rmr_dist.networks import atari_abstract as abstract_net
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import splits


class Transitions(NamedTuple):
  """All evaluation transitions of a game.

  Attributes:
    ram_t: [N, 128] uint8.
    action: [N] int32.
    ram_tp1: [N, 128] uint8.
    episode_lengths: [E] int, transitions per episode in order (sum N); None: one segment.
  """
  ram_t: np.ndarray
  action: np.ndarray
  ram_tp1: np.ndarray
  episode_lengths: np.ndarray | None = None


def load_transitions(store: atari_episode_store.EpisodeStore, game: str,
                     split: str = splits.VAL) -> Transitions:
  """Concatenates the transitions of every `split` episode of `game`, ordered by (head, ep)."""
  entries = store.entries(game, split)
  if not entries:
    raise FileNotFoundError(f'No {split} episodes of {game!r} in the episode store '
                            f'{store.root}; run the collect stage first.')
  rams, actions, nexts = [], [], []
  for e in entries:
    ep = store.read(game, split, e['head'], e['episode'])
    rams.append(ep.ram[:-1])
    actions.append(ep.action)
    nexts.append(ep.ram[1:])
  return Transitions(np.concatenate(rams), np.concatenate(actions).astype(np.int32),
                     np.concatenate(nexts), np.array([len(a) for a in actions], np.int64))


def make_predict_fn(model: Any):
  """A jitted `(params, ram_t [B,128] uint8, action [B] int32) -> [B,128] uint8` predictor."""

  @jax.jit
  def predict(params, ram_t, action):
    x_bits = abstract_net.bytes_to_bits(ram_t)  # [B, 128, 8]
    one_hot = jax.nn.one_hot(action, abstract_net.NUM_ACTIONS)  # [B, 18]
    out = model.apply({'params': params}, x_bits, one_hot)
    y_bits = losses.predict(out.bit_logits, out.mask_logits, x_bits)  # [B, 128, 8]
    return abstract_net.bits_to_bytes(y_bits)  # [B, 128]

  return predict


def predict_bytes(model: Any | None, params: Any, data: Transitions,
                  batch_size: int) -> np.ndarray:
  """Predicted next RAM [N, 128] uint8; `model=None` is the copy baseline."""
  if model is None:
    return data.ram_t.copy()
  predict = make_predict_fn(model)
  n = len(data.action)
  out = np.empty_like(data.ram_tp1)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    ram, act = data.ram_t[start:stop], data.action[start:stop]
    if stop - start < batch_size:  # Pad the last batch: one compiled shape.
      pad = batch_size - (stop - start)
      ram = np.concatenate([ram, np.zeros((pad, ram.shape[1]), ram.dtype)])
      act = np.concatenate([act, np.zeros(pad, act.dtype)])
    out[start:stop] = np.asarray(predict(params, jnp.asarray(ram), jnp.asarray(act)))[
        :stop - start]
  return out


def evaluate(model: Any | None, params: Any, data: Transitions,
             batch_size: int) -> dict[str, float]:
  """Table 2 metrics of one model on `data`.

  Returns:
    slot_acc, bit_f1 (both over the high-entropy slots), n_eval_slots, n_eval_transitions, and
    episode_slot_acc: [E] slot accuracy of each validation episode on the same slots (every
    model is scored on the same episodes, so models can be compared episode by episode:
    `rmr_dist.evaluation.atari_table2.paired_comparisons`).
  """
  pred = predict_bytes(model, params, data, batch_size)
  m = atari_metrics.table2_metrics(pred, data.ram_tp1)
  mask = atari_metrics.high_entropy_slots(data.ram_tp1)  # [128], the slots table2_metrics scores
  lengths = (data.episode_lengths if data.episode_lengths is not None
             else np.array([len(data.action)]))
  bounds = np.concatenate([[0], np.cumsum(lengths)])
  per_episode = [float(atari_metrics.slot_accuracy(pred[a:b], data.ram_tp1[a:b], mask))
                 for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
  return {'slot_acc': float(m['slot_accuracy']), 'bit_f1': float(m['bit_f1']),
          'n_eval_slots': int(m['num_slots']), 'n_eval_transitions': int(len(data.action)),
          'episode_slot_acc': per_episode}
