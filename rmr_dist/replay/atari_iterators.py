"""Batches for the learners, from Reverb or the episode store, prefetched so the devices stay busy.

`make_table_iterator` samples items (windows of transitions) from a table through Reverb's
`TrajectoryDataset` (its batched, parallel tf.data path), takes one transition of each, uniformly,
and yields dicts of numpy arrays `[B, ...]`.
`make_learner_source` picks that or the same items from the episode store
(`atari_store_batches`, no Reverb import) by `replay.learner_source`. `Prefetcher`
runs any such iterator in a background thread, applies a transform there (e.g. sharding over
devices and `jax.device_put`), and keeps `size` ready batches queued; an exception in the thread
is re-raised to the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist.replay import atari_store_batches
from rmr_dist.replay import atari_table_names


def make_table_iterator(address: str, table: str, batch_size: int) -> Iterator[dict[str, Any]]:
  """Uniform i.i.d. batches of transitions from `table` at `address`: dicts of [B, ...] numpy.

  The table samples items in proportion to their transitions (`rmr_dist.replay.atari_tables`), and
  one transition of each sampled item is picked uniformly, so every stored transition is equally
  likely; the batch has `atari_tables.transition`'s keys.

  Args:
    address: 'host:port' of the Reverb server.
    table: the table's name (its signature gives the structure).
    batch_size: transitions per batch.
  """
  import reverb  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top

  def pick(sample):
    window = sample.data
    n = tf.shape(window['action'])[0]
    return atari_tables.transition(window, tf.random.uniform([], 0, n, dtype=tf.int32))

  dataset = reverb.TrajectoryDataset.from_table_signature(
      server_address=address, table=table, max_in_flight_samples_per_worker=2 * batch_size)
  dataset = dataset.map(pick, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(2)
  return dataset.as_numpy_iterator()


def make_learner_source(config: config_lib.AtariConfig, episodes_dir: str, replay_address: str,
                        kind: str, game: str, batch_size: int, *, fraction: float = 1.0,
                        process_index: int = 0,
                        one_episode: bool = False, window: int = 0,
                        frame_stack: int = 1) -> Iterator[dict[str, Any]]:
  """Uniform i.i.d. batches of the `kind` table of `game` from `config.replay.learner_source`.

  Args:
    config: the program config (replay.learner_source, seed).
    episodes_dir: the episode store ('store').
    replay_address: 'host:port' of the Reverb server holding the table ('reverb').
    kind: 'abstract' or 'natural'.
    game: the game.
    batch_size: items per batch (this process's share).
    fraction: the natural table's data fraction.
    process_index: this learner process (seeds the store's sampling).
    one_episode: each batch from one training episode (store only; natural.negatives).
    window: with one_episode, from this many consecutive transitions of it (0 = all).
    frame_stack: K > 1 stacks each natural frame with its K - 1 predecessors (store only;
      natural.frame_stack; `atari_store_batches`).

  Returns:
    An iterator of dicts of [batch_size, ...] numpy arrays, the same keys, shapes and dtypes
    from either source (`rmr_dist.replay.atari_tables` lists them).
  """
  if config.replay.learner_source == 'store':
    return atari_store_batches.make_store_iterator(episodes_dir, kind, game, batch_size,
                                                   fraction=fraction, seed=config.seed,
                                                   process_index=process_index,
                                                   one_episode=one_episode, window=window,
                                                   frame_stack=frame_stack)
  if frame_stack > 1:
    raise config_lib.ConfigError(f'natural.frame_stack={frame_stack} stacks frames from the '
                                 "episode store: set replay.learner_source='store' (or "
                                 'natural.frame_stack=1).')
  if one_episode:
    raise config_lib.ConfigError('One-episode batches are drawn from the episode store: set '
                                 "replay.learner_source='store'.")
  return make_table_iterator(replay_address, atari_table_names.table_name(kind, game, fraction),
                             batch_size)


_DONE = object()


class Prefetcher:
  """Iterates `source` in a background thread, `transform`ing each item, `size` items ahead.

  Args:
    source: the iterator to read.
    transform: applied in the background thread (e.g. shard + device_put); identity if None.
    size: how many transformed items to keep ready.
  """

  def __init__(self, source: Iterator[Any], transform: Callable[[Any], Any] | None = None,
               size: int = 2):
    self._source = source
    self._transform = transform or (lambda x: x)
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True, name='prefetcher')
    self._thread.start()

  def _run(self) -> None:
    try:
      for item in self._source:
        item = self._transform(item)
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if self._stop.is_set():
          return
      self._queue.put(_DONE)
    except BaseException as e:  # pylint: disable=broad-except
      self._queue.put(e)

  def __iter__(self) -> Prefetcher:
    return self

  def __next__(self) -> Any:
    item = self._queue.get()
    if item is _DONE:
      raise StopIteration
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self, timeout: float = 10.0) -> None:
    """Stops the background thread (it exits at its next queue put) and waits up to `timeout`
    seconds for it, so that it is not inside `source` afterwards (e.g. while the Reverb server
    it samples from is stopped)."""
    self._stop.set()
    if self._thread is not threading.current_thread():
      self._thread.join(timeout)
