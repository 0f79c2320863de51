"""The collector against a real in-process Reverb server."""

import dataclasses

import numpy as np
import pytest
import reverb

from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.envs import atari
from rmr_dist.replay import atari_adders
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import atari_tables


@pytest.fixture
def server_and_client(test_config):
  cfg = test_config
  server = atari_tables.make_server(atari_tables.make_tables(
      cfg.games, (cfg.env.frame_height, cfg.env.frame_width), abstract_max_size=10_000,
      natural_max_size=10_000, min_size_to_sample=1,
      natural_fractions=cfg.natural.data_fractions))
  yield server, reverb.Client(f'127.0.0.1:{server.port}')
  server.stop()


def test_items_counts_shapes_and_content(tmp_path, test_config, server_and_client):
  _, client = server_and_client
  cfg = dataclasses.replace(test_config, collect=dataclasses.replace(
      test_config.collect, store_all_episodes=True))
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  per_item = cfg.replay.transitions_per_item
  assert per_item > 1
  collector = collector_lib.Collector(cfg, store, atari_adders.TransitionAdder(
      client, max_episode_steps=cfg.env.max_episode_steps, transitions_per_item=per_item))
  units = collector_lib.make_work_units(cfg.games, cfg.heads.num_heads,
                                        cfg.heads.episodes_per_head)
  stats = collector.run(units)
  train = [s for s in stats if s.split == 'train']
  assert sum(s.length for s in train) > 0 and len(train) == len(units) // 2
  expected = sum(atari_tables.num_items(s.length, per_item) for s in train)
  info = client.server_info()
  assert info['abstract_pong'].current_size == expected
  assert info['natural_pong'].current_size == expected

  # Every sampled abstract item is a window of consecutive transitions of a train episode:
  # each of its (ram_t, action, ram_t+1) is a real one.
  transitions = set()
  for s in train:
    ep = store.read('pong', 'train', s.head, s.episode)
    for t in range(ep.length):
      transitions.add((ep.ram[t].tobytes(), int(ep.action[t]), ep.ram[t + 1].tobytes()))
  h, w = cfg.env.frame_height, cfg.env.frame_width
  for sample in client.sample('abstract_pong', num_samples=50, emit_timesteps=False):
    window = atari_tables.as_dict(sample.data, atari_tables.abstract_signature())
    n = len(window['action'])
    assert 1 <= n <= per_item and window['ram'].shape == (n + 1, 128)
    assert window['action'].dtype == np.uint8 and np.all(window['action'].sum(axis=1) == 1)
    for i in range(n):
      d = atari_tables.transition(window, i)
      assert d['ram_t'].shape == (128,) and d['ram_t'].dtype == np.uint8
      key = (d['ram_t'].tobytes(), int(np.argmax(d['action'])), d['ram_tp1'].tobytes())
      assert key in transitions
  for sample in client.sample('natural_pong', num_samples=20, emit_timesteps=False):
    window = atari_tables.as_dict(sample.data, atari_tables.natural_signature((h, w)))
    n = len(window['action'])
    d = atari_tables.transition(window, n - 1)
    assert window['frame'].shape == (n + 1, h, w, 3) and window['ram'].shape == (n + 1, 128)
    assert d['frame_t'].shape == (h, w, 3) and d['frame_t'].dtype == np.uint8
    assert d['frame_tp1'].shape == (h, w, 3) and d['frame_tp1'].dtype == np.uint8
    assert d['ram_t'].shape == (128,) and d['action'].shape == (18,)


def test_val_episodes_only_in_store_and_resume_skips_them(tmp_path, test_config,
                                                          server_and_client):
  _, client = server_and_client
  # Without collect.store_all_episodes (the test config sets it: the probe set's episodes).
  test_config = dataclasses.replace(test_config, collect=dataclasses.replace(
      test_config.collect, store_all_episodes=False))
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  collector = collector_lib.Collector(test_config, store, atari_adders.TransitionAdder(
      client, max_episode_steps=test_config.env.max_episode_steps))
  units = collector_lib.make_work_units(test_config.games, 2, test_config.heads.episodes_per_head)
  first = collector.run(units)
  val = [s for s in first if s.split == 'val']
  assert {(e['head'], e['episode']) for e in store.entries(split='val')} == {
      (s.head, s.episode) for s in val}
  assert store.entries(split='train') == []
  size = client.server_info()['abstract_pong'].current_size
  assert size == sum(s.length for s in first if s.split == 'train')  # Windows of 1.
  # A resumed run skips complete validation episodes, replays train ones identically.
  again = collector.run(units)
  assert all(s.skipped for s in again if s.split == 'val')
  assert [s.length for s in again] == [s.length for s in first]


def test_fraction_tables_hold_the_items_of_their_episodes(tmp_path, test_config):
  cfg = dataclasses.replace(test_config, heads=dataclasses.replace(test_config.heads,
                                                                   num_heads=8))
  assert cfg.natural.data_fractions == (0.5, 1.0)
  server = atari_tables.make_server(atari_tables.make_tables(
      cfg.games, (cfg.env.frame_height, cfg.env.frame_width), abstract_max_size=10_000,
      natural_max_size=10_000, min_size_to_sample=1, natural_fractions=cfg.natural.data_fractions))
  try:
    client = reverb.Client(f'127.0.0.1:{server.port}')
    collector = collector_lib.Collector(cfg, atari_episode_store.EpisodeStore(str(tmp_path)),
                                        atari_adders.TransitionAdder(
      client, max_episode_steps=cfg.env.max_episode_steps, transitions_per_item=4))
    units = collector_lib.make_work_units(cfg.games, 8, cfg.heads.episodes_per_head)
    stats = collector.run(units)
    from rmr_dist.replay import splits
    expected = sum(atari_tables.num_items(s.length, 4) for s in stats if s.split == 'train' and
                   splits.in_fraction(cfg.seed, s.game, s.head, s.episode, 0.5))
    info = client.server_info()
    assert info['natural_pong_f50'].current_size == expected
    assert 0 < expected < info['natural_pong'].current_size
  finally:
    server.stop()


def test_no_pending_items_warning(capfd, test_config, server_and_client, tmp_path):
  """Reverb's writer warns ("The number of pending items is alarmingly high") once 50 items
  are unconfirmed; the adder flushes before that, with several natural tables per game."""
  _, client = server_and_client
  cfg = dataclasses.replace(test_config, env=dataclasses.replace(test_config.env,
                                                                 max_episode_steps=400))
  collector = collector_lib.Collector(cfg, atari_episode_store.EpisodeStore(str(tmp_path)),
                                      atari_adders.TransitionAdder(client, max_episode_steps=400))
  stats = collector.run(collector_lib.make_work_units(cfg.games, 2, 1))
  assert sum(s.length for s in stats) > 300  # Long enough episodes to have warned before.
  assert 'alarmingly high' not in capfd.readouterr().err


def test_native_frames_are_palette_indices_in_replay_and_store(tmp_path, test_config):
  from rmr_dist.envs import atari_palette
  cfg = dataclasses.replace(
      test_config, env=dataclasses.replace(test_config.env, frame_height=210, frame_width=160),
      collect=dataclasses.replace(test_config.collect, store_all_episodes=True))
  server = atari_tables.make_server(atari_tables.make_config_tables(
      cfg, abstract_max_size=1000, natural_max_size=1000, min_size_to_sample=1))
  client = reverb.Client(f'127.0.0.1:{server.port}')
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  collector = collector_lib.Collector(cfg, store, atari_adders.TransitionAdder(
      client, max_episode_steps=cfg.env.max_episode_steps, chunk_length=4,
      transitions_per_item=4))
  stats = collector.run(collector_lib.make_work_units(cfg.games, 2, cfg.heads.episodes_per_head))
  pairs = {}  # palette (frame_t, frame_tp1) bytes -> RGB frame_t, of the stored train episodes.
  for s in stats:
    if s.split != 'train':
      continue
    raw = store.read_arrays('pong', 'train', s.head, s.episode, ('frames',), rgb=False)['frames']
    assert raw.shape == (s.length + 1, 210, 160)  # Indices on disk, not RGB.
    rgb = store.read('pong', 'train', s.head, s.episode).frames  # [T+1, 210, 160, 3]
    for t in range(s.length):
      pairs[raw[t].tobytes() + raw[t + 1].tobytes()] = rgb[t]
  signature = atari_tables.natural_signature((210, 160))
  for sample in client.sample('natural_pong', num_samples=20, emit_timesteps=False):
    window = atari_tables.as_dict(sample.data, signature)
    for i in range(len(window['action'])):
      d = atari_tables.transition(window, i)
      assert d['frame_t'].shape == (210, 160) and d['frame_t'].dtype == np.uint8
      key = d['frame_t'].tobytes() + d['frame_tp1'].tobytes()
      np.testing.assert_array_equal(atari_palette.to_rgb(d['frame_t']), pairs[key])
  server.stop()


def _windows(client, table, signature):
  """The distinct windows (RAM bytes of their steps) that sampling `table` returns."""
  out = set()
  for sample in client.sample(table, num_samples=500, emit_timesteps=False):
    out.add(atari_tables.as_dict(sample.data, signature)['ram'].tobytes())
  return out


def _table_size(client, table):
  return client.server_info()[table].current_size


def test_long_episodes_are_written_in_segments_with_the_same_items(test_config):
  """An episode longer than `segment_steps` gives the same windows, and a finished segment's
  items reach replay before the episode ends (the at-least-once price of bounded writes);
  shorter episodes stay atomic (nothing before `end_episode`)."""
  import time
  cfg = test_config
  shape = (cfg.env.frame_height, cfg.env.frame_width)
  env = atari.AtariEnv.from_config('pong', cfg.env)
  observations = [env.reset(3)]
  actions = [i % 6 for i in range(50)]
  for a in actions:
    result = env.step(a)
    observations.append(result.observation)
  assert not result.terminal  # 50 transitions.
  sizes, windows = {}, {}
  for name, segment in (('whole', 1024), ('segments', 16)):
    server = atari_tables.make_server(atari_tables.make_tables(
        ('pong',), shape, abstract_max_size=1_000, natural_max_size=1_000, min_size_to_sample=1))
    client = reverb.Client(f'127.0.0.1:{server.port}')
    try:
      adder = atari_adders.TransitionAdder(client, max_episode_steps=50, chunk_length=8,
                                           transitions_per_item=8, segment_steps=segment)
      adder.begin_episode('pong')
      for t in range(33):  # Two segments of 16 transitions are complete.
        adder.add(observations[t], actions[t])
      deadline = time.monotonic() + 10
      while name == 'segments' and _table_size(client, 'abstract_pong') < 2:
        assert time.monotonic() < deadline, 'the first segment never reached replay'
        time.sleep(0.02)
      time.sleep(0.3)
      # First segment written (2 windows); an episode within one segment: nothing yet.
      assert _table_size(client, 'abstract_pong') == (2 if name == 'segments' else 0)
      for t in range(33, 50):
        adder.add(observations[t], actions[t])
      adder.end_episode(observations[50])
      adder.close()
      sizes[name] = (_table_size(client, 'abstract_pong'), _table_size(client, 'natural_pong'))
      windows[name] = (_windows(client, 'abstract_pong', atari_tables.abstract_signature()),
                       _windows(client, 'natural_pong', atari_tables.natural_signature(shape)))
    finally:
      server.stop()
  assert sizes['whole'] == sizes['segments'] == (7, 7)  # 6 windows of 8, one of 2.
  assert windows['whole'] == windows['segments'] and len(windows['whole'][0]) == 7
  with pytest.raises(ValueError, match='segment_steps'):
    atari_adders.TransitionAdder(None, max_episode_steps=10, segment_steps=0)


def test_a_rerun_in_the_same_replay_session_skips_a_stored_training_episode(
    tmp_path, test_config, server_and_client):
  """An episode whose collector died after reporting nothing re-runs: when its store entry
  (written after its replay items) names this collection's replay session it is skipped, so
  its items are not inserted twice; in another session (a fresh server) it is played again."""
  _, client = server_and_client
  cfg = dataclasses.replace(test_config, collect=dataclasses.replace(
      test_config.collect, store_all_episodes=True))
  store = atari_episode_store.EpisodeStore(str(tmp_path))
  per_item = cfg.replay.transitions_per_item

  def collector(session):
    return collector_lib.Collector(cfg, store, atari_adders.TransitionAdder(
        client, max_episode_steps=cfg.env.max_episode_steps, transitions_per_item=per_item),
                                   replay_session=session)

  unit = next(u for u in collector_lib.make_work_units(cfg.games, cfg.heads.num_heads,
                                                       cfg.heads.episodes_per_head)
              if collector('').split_of(u) == 'train')
  first = collector('a').run_episode(unit)
  size = client.server_info()['abstract_pong'].current_size
  assert not first.skipped and size == atari_tables.num_items(first.length, per_item)
  again = collector('a').run_episode(unit)  # The restarted actor: same session.
  assert again.skipped and (again.length, again.episode_return) == (
      first.length, first.episode_return)
  assert client.server_info()['abstract_pong'].current_size == size
  other = collector('b').run_episode(unit)  # A fresh server's session: played again.
  assert not other.skipped and client.server_info()['abstract_pong'].current_size == 2 * size
