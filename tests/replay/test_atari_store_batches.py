"""Store batches against the Reverb tables they stand in for: one `test`-config collection writes
both (a real in-process Reverb server, `collect.store_all_episodes=True`); the store iterator
must give the Reverb iterator's keys, shapes and dtypes over the same items, data fractions
included."""

import dataclasses

import numpy as np
import pytest
import reverb

from rmr_dist import config as config_lib
from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.replay import atari_adders
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import atari_iterators
from rmr_dist.replay import atari_store_batches
from rmr_dist.replay import atari_tables

# Under pytest-xdist (`-n 2 --dist loadgroup`) one worker runs this module's tests, so the
# shared collection runs once.
pytestmark = pytest.mark.xdist_group('store_batches')


@pytest.fixture(scope='module')
def collected(tmp_path_factory):
  from configs import atari as atari_configs
  config = config_lib.load_atari_config(atari_configs.get_config('test'))
  config = dataclasses.replace(
      config, collect=dataclasses.replace(config.collect, store_all_episodes=True))
  root = str(tmp_path_factory.mktemp('store_batches'))
  server = atari_tables.make_server(atari_tables.make_tables(
      config.games, (config.env.frame_height, config.env.frame_width),
      abstract_max_size=1_000, natural_max_size=1_000, min_size_to_sample=1,
      natural_fractions=config.natural.data_fractions))
  address = f'127.0.0.1:{server.port}'
  collector = collector_lib.Collector(config, atari_episode_store.EpisodeStore(root),
                                      atari_adders.TransitionAdder(
      reverb.Client(address), max_episode_steps=40,
      transitions_per_item=config.replay.transitions_per_item))
  collector.run(collector_lib.make_work_units(config.games, config.heads.num_heads,
                                              config.heads.episodes_per_head))
  yield config, root, address
  server.stop()


def _items(batch, keys):
  """The set of items of a batch, each a tuple of its arrays' bytes in `keys` order."""
  return {tuple(batch[k][i].tobytes() for k in keys) for i in range(len(batch[keys[0]]))}


@pytest.mark.parametrize('kind,fraction', [('abstract', 1.0), ('natural', 1.0),
                                           ('natural', 0.5)])
def test_store_batches_are_the_reverb_tables_items_in_their_format(collected, kind, fraction):
  config, root, address = collected
  table = atari_tables.table_name(kind, 'pong', fraction)
  from rmr_dist.replay import splits
  size = reverb.Client(address).server_info()[table].current_size
  data = atari_store_batches.StoreTransitions(root, kind, 'pong', fraction, config.seed)
  lengths = [e['length'] for e in atari_episode_store.EpisodeStore(root).entries('pong', 'train')
             if splits.in_fraction(config.seed, 'pong', e['head'], e['episode'], fraction)]
  # The same transitions: every one of the table's episodes, in windows in Reverb.
  assert len(data) == sum(lengths) > 0
  assert size == sum(atari_tables.num_items(n, config.replay.transitions_per_item) for n in lengths)
  from_reverb = next(atari_iterators.make_table_iterator(address, table, 8))
  store_config = dataclasses.replace(
      config, replay=dataclasses.replace(config.replay, learner_source='store'))
  from_store = next(atari_iterators.make_learner_source(store_config, root, '', kind, 'pong', 8,
                                                        fraction=fraction))
  assert ({k: (v.shape, v.dtype) for k, v in from_store.items()} ==
          {k: (v.shape, v.dtype) for k, v in from_reverb.items()})
  keys = sorted(from_reverb)
  everything = _items(data.batch(np.arange(len(data))), keys)
  assert len(everything) <= len(data) and _items(from_reverb, keys) <= everything
  assert all(from_store['action'].sum(axis=1) == 1)  # One-hot, as the adder writes.


def test_store_sampling_is_uniform_with_replacement_and_seeded(collected):
  config, root, _ = collected
  draw = lambda **kw: next(atari_store_batches.make_store_iterator(root, 'abstract', 'pong', 4096,
                                                                   seed=config.seed, **kw))
  a, b, other = draw(), draw(), draw(process_index=1)
  assert all(np.array_equal(a[k], b[k]) for k in a)  # Seeded: the same draws again.
  assert not np.array_equal(a['ram_t'], other['ram_t'])  # Each learner host its own.
  data = atari_store_batches.StoreTransitions(root, 'abstract', 'pong')
  rng = np.random.default_rng(atari_store_batches.batch_seed(config.seed, data.table))
  counts = np.bincount(rng.integers(0, len(data), 4096), minlength=len(data))
  assert counts.min() > 0 and counts.max() < 4 * 4096 / len(data)  # Every item, evenly.


def test_one_episode_batches_come_from_one_episode_and_keep_items_uniform(collected):
  config, root, _ = collected
  data = atari_store_batches.StoreTransitions(root, 'natural', 'pong')
  offsets = data.episode_offsets
  assert offsets[0] == 0 and offsets[-1] == len(data) and len(offsets) > 2
  batches = atari_store_batches.make_store_iterator(root, 'natural', 'pong', 8, seed=config.seed,
                                                    one_episode=True)
  episode_of = {}  # frame_t bytes -> the episodes holding it
  for e in range(len(offsets) - 1):
    for f in data.batch(np.arange(offsets[e], offsets[e + 1]))['frame_t']:
      episode_of.setdefault(f.tobytes(), set()).add(e)
  for _ in range(20):
    batch = next(batches)
    shared = set.intersection(*(episode_of[f.tobytes()] for f in batch['frame_t']))
    assert shared  # Every row of the batch is a transition of one episode.
  index = atari_store_batches.one_episode_index(offsets, 8, np.random.default_rng(1))
  if np.diff(offsets).min() >= 8:
    assert len(set(index.tolist())) == 8  # Distinct: no next frame is its own negative.
  # Episodes are drawn by length, so every transition's marginal probability is 1/N.
  rng = np.random.default_rng(0)
  index = np.concatenate([atari_store_batches.one_episode_index(offsets, 8, rng)
                          for _ in range(4000)])  # [32000]
  counts = np.bincount(index, minlength=len(data))
  assert counts.min() > 0.5 * 32000 / len(data) and counts.max() < 1.6 * 32000 / len(data)


def test_windowed_batches_are_distinct_consecutive_transitions_of_one_episode():
  offsets = np.array([0, 30, 100, 105])  # Episodes of 30, 70 and 5 transitions.
  rng = np.random.default_rng(3)
  drawn = []
  for _ in range(500):
    index = atari_store_batches.one_episode_index(offsets, 8, rng, window=12)
    e = np.searchsorted(offsets, index[0], side='right') - 1
    assert offsets[e] <= index.min() and index.max() < offsets[e + 1]  # One episode.
    if offsets[e + 1] - offsets[e] >= 12:
      assert index.max() - index.min() < 12  # Within one window of 12 transitions.
      assert len(set(index.tolist())) == 8  # Distinct.
    drawn.append(index)
  # Every transition is reachable, the ends of the long episodes less often than the middle.
  counts = np.bincount(np.concatenate(drawn), minlength=105)
  assert counts.min() > 0 and counts[30] < counts[65]


def test_frame_stacks_are_each_frame_and_its_predecessor_within_the_episode(collected):
  config, root, _ = collected
  plain = atari_store_batches.StoreTransitions(root, 'natural', 'pong')
  stacked = atari_store_batches.StoreTransitions(root, 'natural', 'pong', frame_stack=2)
  every = np.arange(len(plain))
  one, two = plain.batch(every), stacked.batch(every)
  assert two['frame_t'].shape == (len(plain), 2) + one['frame_t'].shape[1:]
  assert np.array_equal(two['frame_t'][:, 1], one['frame_t'])  # newest last
  assert np.array_equal(two['frame_tp1'][:, 1], one['frame_tp1'])
  assert np.array_equal(two['frame_tp1'][:, 0], one['frame_t'])  # x_t+1's predecessor is x_t
  first = np.isin(every, plain.episode_offsets[:-1])  # an episode's first transition
  assert first.sum() == len(plain.episode_offsets) - 1
  # The oldest frame of x_t's stack: x_t-1, or x_t itself at the episode's start.
  assert np.array_equal(two['frame_t'][first, 0], one['frame_t'][first])
  later = np.flatnonzero(~first)
  assert np.array_equal(two['frame_t'][later, 0], one['frame_t'][later - 1])
  assert np.array_equal(two['ram_t'], one['ram_t']) and np.array_equal(two['action'],
                                                                       one['action'])
  assert atari_store_batches.stack_steps(np.array([5, 6]), np.array([5, 3]), 3).tolist() == [
      [5, 5, 5], [4, 5, 6]]


def test_a_store_without_training_episodes_fails_naming_the_setting(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='collect.store_all_episodes=True'):
    atari_store_batches.make_store_iterator(str(tmp_path), 'abstract', 'pong', 4)
