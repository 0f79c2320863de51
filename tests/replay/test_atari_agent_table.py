"""The agent table's rate limiter on a real Reverb server: a learner that runs ahead blocks."""

import time

import numpy as np
import reverb

from rmr_dist.replay import atari_agent_table
from rmr_dist.replay import atari_tables


def _item(i):
  return {'ram_t': np.full(128, i % 256, np.uint8), 'action': i % 18, 'reward': float(i),
          'discount': 0.99, 'ram_tn': np.full(128, (i + 1) % 256, np.uint8)}


def _count_batches(address, batch_size, timeout_ms):
  n = 0
  for _ in atari_agent_table.make_batch_iterator(address, 'pong', batch_size, timeout_ms):
    n += 1
  return n


def test_rate_limiter_blocks_a_learner_that_runs_ahead_of_collection():
  # SampleToInsertRatio(spi, min_size, buffer) lets the learner take a sample while
  # inserts * spi - samples stays >= spi * min_size - buffer: after 10 inserts, at most
  # (10 - 2) * 4 + 40 = 72 samples; each later insert releases 4 more.
  spi, min_size, buffer, batch = 4.0, 2, 40.0, 2
  server = atari_tables.make_server([atari_agent_table.make_table(
      'pong', max_size=1000, min_size=min_size, samples_per_insert=spi, error_buffer=buffer)])
  address = f'127.0.0.1:{server.port}'
  try:
    adder = atari_agent_table.NStepAdder(reverb.Client(address),
                                         atari_agent_table.table_name('pong'), flush_every=2)
    for i in range(10):
      adder.add(_item(i))
    adder._writer.flush()  # pylint: disable=protected-access
    # Collection stops: the learner takes its share, then its next sample blocks and the
    # iterator ends after the timeout.
    start = time.perf_counter()
    first = _count_batches(address, batch, timeout_ms=300)
    assert time.perf_counter() - start >= 0.3  # It waited on the limiter, then gave up.
    allowed = (10 - min_size) * spi + buffer
    assert allowed - batch <= first * batch <= allowed
    # Nothing new inserted: a new learner iterator gets at most what the last one left.
    assert _count_batches(address, batch, timeout_ms=200) <= 1
    for i in range(10, 15):  # Collection resumes: 5 inserts release 5 x 4 samples.
      adder.add(_item(i))
    adder._writer.flush()  # pylint: disable=protected-access
    more = _count_batches(address, batch, timeout_ms=300)
    assert 5 * spi - 2 * batch <= more * batch <= 5 * spi + batch
    info = reverb.Client(address).server_info()[atari_agent_table.table_name('pong')]
    assert info.current_size == 15
    adder.close()
  finally:
    server.stop()


def test_items_round_trip_with_their_types():
  server = atari_tables.make_server([atari_agent_table.make_table(
      'pong', max_size=100, min_size=1, samples_per_insert=1.0, error_buffer=100.0)])
  address = f'127.0.0.1:{server.port}'
  try:
    adder = atari_agent_table.NStepAdder(reverb.Client(address),
                                         atari_agent_table.table_name('pong'))
    adder.add(_item(7))
    adder._writer.flush()  # pylint: disable=protected-access
    batch = next(atari_agent_table.make_batch_iterator(address, 'pong', 1, timeout_ms=2000))
    assert batch['ram_t'].dtype == np.uint8 and batch['ram_t'].shape == (1, 128)
    assert batch['action'].tolist() == [7] and batch['reward'].tolist() == [7.0]
    np.testing.assert_allclose(batch['discount'], [0.99], rtol=1e-6)
    assert int(batch['ram_tn'][0, 0]) == 8
    adder.close()
  finally:
    server.stop()
