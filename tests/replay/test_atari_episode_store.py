"""Episode store: round trip, index, and atomic writes."""

import os

import numpy as np
import pytest

from rmr_dist.replay import atari_episode_store


def _episode(t=5, h=6, w=4, seed=0):
  rng = np.random.default_rng(seed)
  return atari_episode_store.Episode(
      ram=rng.integers(0, 256, (t + 1, 128), dtype=np.uint8),
      action=rng.integers(0, 18, t).astype(np.int32),
      reward=rng.normal(size=t).astype(np.float32),
      frames=rng.integers(0, 256, (t + 1, h, w, 3), dtype=np.uint8))


def test_round_trip_and_index(tmp_path):
  store = atari_episode_store.EpisodeStore(str(tmp_path))
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
    atari_episode_store.Episode(ram=ep.ram[:-1], action=ep.action, reward=ep.reward,
                                frames=ep.frames)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
  store = atari_episode_store.EpisodeStore(str(tmp_path))

  def broken_write_array(f, array, **kwargs):
    f.write(b'half an array')
    raise OSError('disk full')

  monkeypatch.setattr(np.lib.format, 'write_array', broken_write_array)
  with pytest.raises(OSError, match='disk full'):
    store.write(_episode(), game='pong', split='val', head=0, episode_index=0)
  assert not store.contains('pong', 'val', 0, 0)
  assert store.entries() == []
  leftovers = [f for _, _, fs in os.walk(tmp_path) for f in fs]
  assert leftovers == []


def test_read_missing_episode_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match='head=2 episode=0'):
    atari_episode_store.EpisodeStore(str(tmp_path)).read('pong', 'val', 2, 0)


def test_palette_frames_are_stored_as_screens_and_read_as_rgb(tmp_path):
  from rmr_dist.envs import atari_palette
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  rng = np.random.default_rng(2)
  index = rng.integers(0, 256, (6, 210, 160), dtype=np.uint8)  # [T+1, 210, 160]
  ep = atari_episode_store.Episode(ram=np.zeros((6, 128), np.uint8), action=np.zeros(5, np.int32),
                                   reward=np.zeros(5, np.float32), frames=index)
  store.write(ep, game='pong', split='val', head=0, episode_index=0)
  with np.load(os.path.join(str(tmp_path), 'pong', 'val', 'h000_e000.npz')) as data:
    assert 'screens' in data.files and 'frames' not in data.files
  np.testing.assert_array_equal(store.read('pong', 'val', 0, 0).frames, atari_palette.to_rgb(index))
  raw = store.read_arrays('pong', 'val', 0, 0, ('frames',), rgb=False)['frames']
  np.testing.assert_array_equal(raw, index)
  # A store written before palette frames (RGB under `frames`) reads as it always did.
  old = _episode(h=210, w=160)
  store.write(old, game='pong', split='val', head=1, episode_index=0)
  with np.load(os.path.join(str(tmp_path), 'pong', 'val', 'h001_e000.npz')) as data:
    assert 'frames' in data.files
  for rgb in (True, False):
    np.testing.assert_array_equal(
        store.read_arrays('pong', 'val', 1, 0, ('frames',), rgb=rgb)['frames'], old.frames)
  with pytest.raises(ValueError, match='palette indices'):
    atari_episode_store.Episode(ram=ep.ram, action=ep.action, reward=ep.reward, frames=index[:, :8])


def test_episode_files_are_npz_at_the_store_level(tmp_path):
  """Written with zlib at `COMPRESS_LEVEL` (faster than numpy's 6), read back by `np.load`."""
  import zipfile
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  ep = _episode()
  store.write(ep, game='pong', split='val', head=0, episode_index=0)
  path = os.path.join(tmp_path, 'pong', 'val', 'h000_e000.npz')
  with zipfile.ZipFile(path) as archive:
    assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
  with np.load(path) as data:
    np.testing.assert_array_equal(data['ram'], ep.ram)
  back = store.read('pong', 'val', 0, 0)
  np.testing.assert_array_equal(back.frames, ep.frames)
  np.testing.assert_array_equal(back.action, ep.action)
  np.testing.assert_array_equal(back.reward, ep.reward)
