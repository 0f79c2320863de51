"""Episode store: round trip, index, and atomic writes."""

import os

import numpy as np
import pytest

from rmr_dist.replay import episode_store


def _episode(t=5, h=6, w=4, seed=0):
  rng = np.random.default_rng(seed)
  return episode_store.Episode(
      ram=rng.integers(0, 256, (t + 1, 128), dtype=np.uint8),
      action=rng.integers(0, 18, t).astype(np.int32),
      reward=rng.normal(size=t).astype(np.float32),
      frames=rng.integers(0, 256, (t + 1, h, w, 3), dtype=np.uint8))


def test_round_trip_and_index(tmp_path):
  store = episode_store.EpisodeStore(str(tmp_path))
  ep = _episode()
  entry = store.write(ep, game='pong', split='val', head=3, episode_index=1, terminal=True)
  assert entry == dict(game='pong', head=3, episode=1, split='val', length=5, terminal=True)
  back = store.read('pong', 'val', 3, 1)
  for name in ('ram', 'action', 'reward', 'frames'):
    got, want = getattr(back, name), getattr(ep, name)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
  assert store.contains('pong', 'val', 3, 1) and not store.contains('pong', 'train', 3, 1)
  store.write(_episode(seed=1), game='pong', split='train', head=0, episode_index=0)
  assert [(e['split'], e['head']) for e in store.entries()] == [('train', 0), ('val', 3)]
  assert [e['head'] for e in store.entries('pong', 'val')] == [3]
  import json
  with open(store.write_index()) as f:
    assert len(json.load(f)) == 2


def test_shapes_are_checked():
  ep = _episode()
  with pytest.raises(ValueError, match='ram must be'):
    episode_store.Episode(ram=ep.ram[:-1], action=ep.action, reward=ep.reward, frames=ep.frames)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
  store = episode_store.EpisodeStore(str(tmp_path))

  def broken_savez(f, **arrays):
    f.write(b'half an episode')
    raise OSError('disk full')

  monkeypatch.setattr(np, 'savez_compressed', broken_savez)
  with pytest.raises(OSError, match='disk full'):
    store.write(_episode(), game='pong', split='val', head=0, episode_index=0)
  assert not store.contains('pong', 'val', 0, 0)
  assert store.entries() == []
  leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs]
  assert leftovers == []


def test_read_missing_episode_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match='head=2 episode=0'):
    episode_store.EpisodeStore(str(tmp_path)).read('pong', 'val', 2, 0)
