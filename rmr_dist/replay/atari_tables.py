"""Reverb tables for RMR: one abstract (RAM) and one natural (pixel) table per game.

For data-efficiency studies, a fraction f < 1 of the training episodes also feeds
`natural_<game>_f<percent>` (e.g. `natural_pong_f10`): the same items over nested subsets of
episodes (`rmr_dist.replay.splits.in_fraction`), referencing the same chunks, so they cost only
item metadata.

Items are windows of n <= `replay.transitions_per_item` consecutive transitions t..t+n-1 of one
episode (an episode of T transitions gives ceil(T / n_max) items per table; only its last window
may be shorter):
  abstract_<game>: action [n, 18] uint8 one-hot, ram [n+1, 128] uint8
  natural_<game>:  action [n, 18] uint8 one-hot, frame [n+1] + F uint8,
                   ram [n+1, 128] uint8 (probe labels only)
where row i of `action` was taken between rows i and i+1 of `ram` / `frame`, and a frame F is
[210, 160] ALE palette indices at the native size (the learner rebuilds RGB with
`rmr_dist.envs.atari_palette`), or [H, W, 3] RGB for resized frames (`atari.stored_frame_shape`).
An item's priority is its n, and the tables sample in proportion to priority, so picking one of
a sampled item's n transitions uniformly (`transition`, what the learners' iterators do) draws
every stored transition with the same probability, as one item per transition would. Windows
rather than single transitions because each Reverb item costs its own metadata, validation,
gRPC message and server insert: with one item per transition that was most of a collector's
replay cost (`python -m rmr_dist.bench collect`, `scripts/replay_write_cost.py`).

Both tables reference the same chunks, so each frame and RAM array is stored once on the server
(compressed) however many items point at it. Table names and the game -> server assignment live in
`rmr_dist.replay.atari_table_names` (no Reverb import), re-exported here.

Table choices, and why:
  * Sampler `Prioritized(priority_exponent=1)` with priority = transitions in the item: the
    learners fit one-step transition models on a fixed dataset of episodes (the paper trains on
    48 episodes per game for many epochs); i.i.d. minibatches, uniform over transitions, are what
    that optimisation assumes, and this sampler plus a uniform pick inside the item gives exactly
    that. There are no learned priorities.
  * Remover `Fifo`: tables are sized (config) to hold every training transition of the collection
    budget, so nothing is evicted in a normal run; if a user shrinks them, the oldest episodes go
    first, which keeps whole recent episodes rather than a random subset.
  * `max_times_sampled=0` (unlimited) and rate limiter `MinSize(min_size_to_sample)`: collection is
    a one-off budget, not a stream the learners must keep up with. A SampleToInsertRatio limiter
    would block the learners once the collectors stop (they must sample each item thousands of
    times over training) or throttle collection for no benefit; MinSize only keeps learners from
    sampling an empty table and never blocks writers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import reverb
import tree
import tensorflow as tf

from rmr_dist.envs import atari
from rmr_dist.replay import atari_table_names

# Re-exported: callers that build or write the tables name them through this module.
ABSTRACT = atari_table_names.ABSTRACT
NATURAL = atari_table_names.NATURAL
table_name = atari_table_names.table_name
server_games = atari_table_names.server_games
num_items = atari_table_names.num_items

def abstract_signature() -> dict[str, tf.TensorSpec]:
  """TensorSpecs of an abstract item (a window of n transitions; n varies, so None)."""
  return {
      'action': tf.TensorSpec([None, atari.NUM_ACTIONS], tf.uint8),
      'ram': tf.TensorSpec([None, atari.RAM_SIZE], tf.uint8),
  }


def natural_signature(frame_shape: Sequence[int],
                      rgb_frames: bool = False) -> dict[str, tf.TensorSpec]:
  """TensorSpecs of a natural item for frames of (height, width) (palette indices if native,
  unless `rgb_frames`: RGB at every size, the format before palette frames)."""
  h, w = frame_shape
  frame = [h, w, 3] if rgb_frames else list(atari.stored_frame_shape((h, w)))
  return {
      'action': tf.TensorSpec([None, atari.NUM_ACTIONS], tf.uint8),
      'frame': tf.TensorSpec([None] + frame, tf.uint8),
      'ram': tf.TensorSpec([None, atari.RAM_SIZE], tf.uint8),
  }


def transition(window: Mapping[str, Any], i) -> dict[str, Any]:
  """Transition `i` of an item (a window as the signatures above give it), in the learners'
  format: the keys `atari_store_batches` yields for the same table (abstract: ram_t, action,
  ram_tp1; natural: frame_t, action, frame_tp1, ram_t). Works on numpy arrays and on tf tensors.
  """
  out = {'action': window['action'][i], 'ram_t': window['ram'][i]}
  if 'frame' in window:
    out['frame_t'], out['frame_tp1'] = window['frame'][i], window['frame'][i + 1]
  else:
    out['ram_tp1'] = window['ram'][i + 1]
  return out


def as_dict(flat_data, signature: dict[str, tf.TensorSpec]) -> dict:
  """Restores the dict structure of a sample's flat data (`Client.sample` returns it flattened)."""
  return tree.unflatten_as(signature, list(flat_data))


def make_tables(games: Sequence[str], frame_shape: Sequence[int], *, abstract_max_size: int,
                natural_max_size: int, min_size_to_sample: int,
                natural_fractions: Sequence[float] = (),
                rgb_frames: bool = False) -> list[reverb.Table]:
  """The tables of every game (see the module docstring for the choices).

  Args:
    games: game ids.
    frame_shape: (height, width) of stored frames.
    abstract_max_size: capacity (items) of each abstract table.
    natural_max_size: capacity (items) of each natural table (fraction tables too).
    min_size_to_sample: MinSize rate limiter of every table (items).
    natural_fractions: data fractions; those < 1 get their own natural table.
    rgb_frames: natural items hold RGB frames even at the native size (see natural_signature).
  """
  tables = []
  fractions = sorted({f for f in natural_fractions if f < 1.0})
  for game in games:
    natural = natural_signature(frame_shape, rgb_frames)
    specs = [(table_name(ABSTRACT, game), abstract_max_size, abstract_signature()),
             (table_name(NATURAL, game), natural_max_size, natural)]
    specs += [(table_name(NATURAL, game, f), natural_max_size, natural) for f in fractions]
    for name, size, signature in specs:
      tables.append(reverb.Table(
          name=name,
          sampler=reverb.selectors.Prioritized(priority_exponent=1.0),
          remover=reverb.selectors.Fifo(),
          max_size=size,
          max_times_sampled=0,
          rate_limiter=reverb.rate_limiters.MinSize(min_size_to_sample),
          signature=signature))
  return tables


def make_config_tables(config, games: Sequence[str] | None = None, *,
                       abstract_max_size: int | None = None, natural_max_size: int | None = None,
                       min_size_to_sample: int | None = None) -> list[reverb.Table]:
  """The tables a program with `config` writes and reads (every table its collectors name).

  Frame shape and data fractions always come from the config (so a benchmark or test cannot
  build tables the collectors do not write); sizes default to `config.replay`'s.

  Args:
    config: a validated `rmr_dist.config.AtariConfig`.
    games: the games to hold (default: all of `config.games`).
    abstract_max_size, natural_max_size, min_size_to_sample: overrides of `config.replay`.
  """
  r = config.replay
  pick = lambda value, default: default if value is None else value
  return make_tables(tuple(config.games if games is None else games),
                     (config.env.frame_height, config.env.frame_width),
                     abstract_max_size=pick(abstract_max_size, r.abstract_max_size),
                     natural_max_size=pick(natural_max_size, r.natural_max_size),
                     min_size_to_sample=pick(min_size_to_sample, r.min_size_to_sample),
                     natural_fractions=config.natural.data_fractions)


def make_server(tables: list[reverb.Table], *, port: int = 0,
                checkpoint_dir: str | None = None) -> reverb.Server:
  """Starts a Reverb server; with `checkpoint_dir` it restores the latest checkpoint there.

  Args:
    tables: the tables to serve.
    port: TCP port, 0 to pick a free one.
    checkpoint_dir: where `Client.checkpoint()` writes; an existing checkpoint is loaded.
  """
  checkpointer = None
  if checkpoint_dir:
    os.makedirs(checkpoint_dir, exist_ok=True)
    checkpointer = reverb.checkpointers.DefaultCheckpointer(checkpoint_dir)
  return reverb.Server(tables, port=port or None, checkpointer=checkpointer)
