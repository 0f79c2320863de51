"""Reverb batch iterator and the background prefetcher."""

import numpy as np
import pytest
import reverb

from rmr_dist.envs import atari
from rmr_dist.replay import adders
from rmr_dist.replay import iterators
from rmr_dist.replay import tables


def test_table_iterator_yields_batches_from_a_real_server():
  server = tables.make_server(tables.make_tables(('pong',), (8, 8), abstract_max_size=100,
                                                 natural_max_size=100, min_size_to_sample=1))
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    adder = adders.TransitionAdder(client, max_episode_steps=20, chunk_length=4)
    adder.begin_episode('pong')
    rng = np.random.default_rng(0)
    obs = [atari.Observation(rng.integers(0, 256, 128, dtype=np.uint8),
                             rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(11)]
    for t in range(10):
      adder.add(obs[t], t % 18)
    adder.end_episode(obs[10])
    it = iterators.make_table_iterator(f'127.0.0.1:{server.port}', 'abstract_pong', 6)
    batch = next(it)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        'ram_t': ((6, 128), np.uint8), 'action': ((6, 18), np.uint8),
        'ram_tp1': ((6, 128), np.uint8)}
    known = {(o.ram.tobytes(), n.ram.tobytes()) for o, n in zip(obs[:-1], obs[1:])}
    for r0, r1 in zip(batch['ram_t'], batch['ram_tp1']):
      assert (r0.tobytes(), r1.tobytes()) in known
  finally:
    server.stop()


def test_prefetcher_transforms_in_order_and_stops():
  p = iterators.Prefetcher(iter(range(5)), transform=lambda x: x * 10, size=2)
  assert list(p) == [0, 10, 20, 30, 40]


def test_prefetcher_reraises_source_errors():
  def source():
    yield 1
    raise RuntimeError('replay went away')

  p = iterators.Prefetcher(source())
  assert next(p) == 1
  with pytest.raises(RuntimeError, match='replay went away'):
    next(p)


def test_an_unfinished_episode_leaves_nothing_in_replay():
  server = tables.make_server(tables.make_tables(('pong',), (8, 8), abstract_max_size=100,
                                                 natural_max_size=100, min_size_to_sample=1))
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    rng = np.random.default_rng(0)
    obs = [atari.Observation(rng.integers(0, 256, 128, dtype=np.uint8),
                             rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(6)]
    crashed = adders.TransitionAdder(client, max_episode_steps=20, chunk_length=2)
    crashed.begin_episode('pong')
    for t in range(5):
      crashed.add(obs[t], t)
    crashed.close()  # The collector died before end_episode.
    assert client.server_info()['abstract_pong'].current_size == 0
    retry = adders.TransitionAdder(client, max_episode_steps=20, chunk_length=2)
    retry.begin_episode('pong')
    for t in range(5):
      retry.add(obs[t], t)
    retry.end_episode(obs[5])
    info = client.server_info()
    assert info['abstract_pong'].current_size == 5 and info['natural_pong'].current_size == 5
  finally:
    server.stop()
