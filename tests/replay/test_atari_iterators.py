"""Reverb batch iterator and the background prefetcher."""

import numpy as np
import pytest
import reverb

from rmr_dist.envs import atari
from rmr_dist.replay import atari_adders
from rmr_dist.replay import atari_iterators
from rmr_dist.replay import atari_tables


def _serve_episode(obs: list[atari.Observation]):
  """A server whose pong tables hold one episode of `obs` (action t % 18 after obs[t]), in
  windows of 4 transitions."""
  server = atari_tables.make_server(atari_tables.make_tables(
      ('pong',), obs[0].frame.shape[:2], abstract_max_size=100, natural_max_size=100,
      min_size_to_sample=1))
  adder = atari_adders.TransitionAdder(reverb.Client(f'127.0.0.1:{server.port}'),
                                       max_episode_steps=20, chunk_length=4,
                                       transitions_per_item=4)
  adder.begin_episode('pong')
  for t in range(len(obs) - 1):
    adder.add(obs[t], t % 18)
  adder.end_episode(obs[-1])
  adder.close()
  return server


def test_table_iterator_yields_batches_from_a_real_server():
  rng = np.random.default_rng(0)
  obs = [atari.Observation(rng.integers(0, 256, 128, dtype=np.uint8),
                           rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(11)]
  server = _serve_episode(obs)
  try:
    it = atari_iterators.make_table_iterator(f'127.0.0.1:{server.port}', 'abstract_pong', 6)
    batch = next(it)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        'ram_t': ((6, 128), np.uint8), 'action': ((6, 18), np.uint8),
        'ram_tp1': ((6, 128), np.uint8)}
    known = {(o.ram.tobytes(), n.ram.tobytes()) for o, n in zip(obs[:-1], obs[1:])}
    for r0, r1 in zip(batch['ram_t'], batch['ram_tp1']):
      assert (r0.tobytes(), r1.tobytes()) in known
    natural = next(atari_iterators.make_table_iterator(f'127.0.0.1:{server.port}',
                                                       'natural_pong', 5))
    assert {k: (v.shape, v.dtype) for k, v in natural.items()} == {
        'frame_t': ((5, 8, 8, 3), np.uint8), 'action': ((5, 18), np.uint8),
        'frame_tp1': ((5, 8, 8, 3), np.uint8), 'ram_t': ((5, 128), np.uint8)}
    steps = {o.ram.tobytes(): t for t, o in enumerate(obs)}
    for f0, f1, a, r in zip(natural['frame_t'], natural['frame_tp1'], natural['action'],
                            natural['ram_t']):
      t = steps[r.tobytes()]  # The transition's row lines up across columns.
      assert np.array_equal(f0, obs[t].frame) and np.array_equal(f1, obs[t + 1].frame)
      assert a.argmax() == t % 18
  finally:
    server.stop()


def test_table_iterator_draws_every_transition_equally_often():
  """Windows of 4, 4 and 1 transitions: sampling items uniformly would give the last transition
  a third of the draws; sampling by priority = length gives each of the 9 a ninth."""
  server = _serve_episode([atari.Observation(np.full(128, t, np.uint8),
                                             np.zeros((4, 4, 3), np.uint8)) for t in range(10)])
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    assert client.server_info()['abstract_pong'].current_size == 3
    it = atari_iterators.make_table_iterator(f'127.0.0.1:{server.port}', 'abstract_pong', 100)
    ram_t = np.concatenate([next(it)['ram_t'][:, 0] for _ in range(18)])
    counts = np.bincount(ram_t, minlength=9)
    assert counts.sum() == 1800 and len(counts) == 9
    # 200 expected each; binomial std ~13. Item-uniform sampling would give ~600 to the last.
    assert np.all(np.abs(counts - 200) < 70), counts
  finally:
    server.stop()


def test_prefetcher_transforms_in_order_and_stops():
  p = atari_iterators.Prefetcher(iter(range(5)), transform=lambda x: x * 10, size=2)
  assert list(p) == [0, 10, 20, 30, 40]


def test_prefetcher_reraises_source_errors():
  def source():
    yield 1
    raise RuntimeError('replay went away')

  p = atari_iterators.Prefetcher(source())
  assert next(p) == 1
  with pytest.raises(RuntimeError, match='replay went away'):
    next(p)


def test_an_unfinished_episode_leaves_nothing_in_replay():
  server = atari_tables.make_server(atari_tables.make_tables(
      ('pong',), (8, 8), abstract_max_size=100, natural_max_size=100, min_size_to_sample=1))
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    rng = np.random.default_rng(0)
    obs = [atari.Observation(rng.integers(0, 256, 128, dtype=np.uint8),
                             rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(6)]
    crashed = atari_adders.TransitionAdder(client, max_episode_steps=20, chunk_length=2,
                                           transitions_per_item=2)
    crashed.begin_episode('pong')
    for t in range(5):
      crashed.add(obs[t], t)
    crashed.close()  # The collector died before end_episode.
    assert client.server_info()['abstract_pong'].current_size == 0
    retry = atari_adders.TransitionAdder(client, max_episode_steps=20, chunk_length=2,
                                         transitions_per_item=2)
    retry.begin_episode('pong')
    for t in range(5):
      retry.add(obs[t], t)
    retry.end_episode(obs[5])
    info = client.server_info()
    # 5 transitions in windows of 2, 2 and 1.
    assert info['abstract_pong'].current_size == 3 and info['natural_pong'].current_size == 3
  finally:
    server.stop()
