"""The agent stage's Reverb table of n-step transitions, its adder and its batch iterator.

Item (one per n-step transition, `rmr_dist.learning.atari_dqn` documents the fields):
  agent_<game>: ram_t [128] uint8, action [] int32, reward [] float32, discount [] float32,
                ram_tn [128] uint8

Table choices, and why:
  * Sampler `Uniform`, remover `Fifo`, `max_size` a sliding window of recent transitions:
    DQN's experience replay (Mnih et al., 2015).
  * Rate limiter `SampleToInsertRatio(samples_per_insert, min_size, error_buffer)`. Unlike the
    RMR tables (a one-off dataset, `rmr_dist.replay.atari_tables`), this table is a stream that the
    learner and the collectors share, and the ratio fixes how often each transition is replayed
    however fast either side runs: the learner's sample blocks when it runs ahead of
    collection, a collector's insert blocks when it runs ahead of learning. The default ratio 8
    is DQN's (one update of 32 transitions every 4 agent steps = 8 samples per insert), which
    keeps the replay ratio of the published agent whatever the number of collectors or cores.
    `error_buffer` lets either side run that many samples ahead before it blocks (slack for
    batching and for the param pulls).
  * `min_size_to_sample`: DQN's replay warm-up; the learner waits for that many transitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import reverb
import tensorflow as tf

from rmr_dist.envs import atari

AGENT = 'agent'


def table_name(game: str) -> str:
  """The agent table of `game`."""
  return f'{AGENT}_{game}'


def signature() -> dict[str, tf.TensorSpec]:
  """TensorSpecs of an agent item."""
  return {
      'ram_t': tf.TensorSpec([atari.RAM_SIZE], tf.uint8),
      'action': tf.TensorSpec([], tf.int32),
      'reward': tf.TensorSpec([], tf.float32),
      'discount': tf.TensorSpec([], tf.float32),
      'ram_tn': tf.TensorSpec([atari.RAM_SIZE], tf.uint8),
  }


def make_table(game: str, *, max_size: int, min_size: int, samples_per_insert: float,
               error_buffer: float) -> reverb.Table:
  """The agent table of `game` (module docstring for the choices).

  Args:
    game: the game id.
    max_size: replay capacity (transitions).
    min_size: transitions needed before the first sample.
    samples_per_insert: the target ratio of sampled to inserted items.
    error_buffer: how far (in samples) either side may run ahead of the ratio.
  """
  return reverb.Table(
      name=table_name(game),
      sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(),
      max_size=max_size,
      max_times_sampled=0,
      rate_limiter=reverb.rate_limiters.SampleToInsertRatio(
          samples_per_insert=samples_per_insert, min_size_to_sample=min_size,
          error_buffer=error_buffer),
      signature=signature())


class NStepAdder:
  """Writes n-step transitions (dicts of numpy fields) as single-step items of one table.

  Args:
    client: a Reverb client.
    table: the table written.
    flush_every: items between waits for the server's confirmations; the wait is where a
      collector that runs ahead of the learner blocks (the rate limiter holds its inserts).
  """

  def __init__(self, client: reverb.Client, table: str, flush_every: int = 32):
    self._writer = client.trajectory_writer(num_keep_alive_refs=1)
    self._table = table
    self._flush_every = flush_every
    self._pending = 0

  def add(self, item: dict[str, Any]) -> None:
    """Inserts one transition {'ram_t', 'action', 'reward', 'discount', 'ram_tn'}."""
    self._writer.append({
        'ram_t': np.asarray(item['ram_t'], np.uint8),
        'action': np.int32(item['action']),
        'reward': np.float32(item['reward']),
        'discount': np.float32(item['discount']),
        'ram_tn': np.asarray(item['ram_tn'], np.uint8)})
    history = self._writer.history
    self._writer.create_item(self._table, 1.0, {k: history[k][-1] for k in signature()})
    self._pending += 1
    if self._pending >= self._flush_every:
      self._writer.flush(block_until_num_items=self._flush_every // 2)
      self._pending = self._flush_every // 2

  def close(self) -> None:
    self._writer.end_episode()
    self._writer.close()


def make_batch_iterator(address: str, game: str, batch_size: int,
                        timeout_ms: int = -1) -> Iterator[dict[str, np.ndarray]]:
  """Uniform batches of `game`'s agent table: dicts of [B, ...] numpy.

  The rate limiter decides when a sample may be taken. With `timeout_ms` >= 0 a sample that
  stays blocked that long ends the iterator (StopIteration): the learner stops when the
  collectors have stopped and it has used up its share of samples; -1 waits forever.
  """
  dataset = reverb.TrajectoryDataset.from_table_signature(
      server_address=address, table=table_name(game),
      max_in_flight_samples_per_worker=batch_size, rate_limiter_timeout_ms=timeout_ms)
  dataset = dataset.map(lambda sample: sample.data)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.as_numpy_iterator()
