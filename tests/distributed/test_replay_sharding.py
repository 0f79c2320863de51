"""Replay sharded over two Reverb servers by game, and the collector's TensorBoard counters.

One real collection (the `test` config with Pong and Breakout, `replay.num_servers=2`, real
in-process Reverb servers, a real local Ray on 127.0.0.1) is shared by the tests here.
"""

import os

import pytest

from tests.test_logging import read_events

# Under pytest-xdist (`-n 2 --dist loadgroup`) one worker runs this module's tests, so the
# shared collection runs once.
pytestmark = [pytest.mark.ray, pytest.mark.xdist_group('replay_sharding')]

GAMES = ('pong', 'breakout')


def _config(num_servers: int = 2):
  from configs import atari as atari_configs
  from rmr_dist import config as config_lib
  c = atari_configs.get_config('test')
  c.games = GAMES
  c.replay.num_servers = num_servers
  return config_lib.load_atari_config(c)


def _tables(game):
  return {f'abstract_{game}', f'natural_{game}', f'natural_{game}_f50'}


@pytest.fixture(scope='module')
def collected(tmp_path_factory):
  """(workdir, summary, {address: {table: size}}, addresses) of a 2-server collection."""
  import ray
  import reverb
  from rmr_dist.distributed import atari_program as program_lib
  workdir = str(tmp_path_factory.mktemp('sharded') / 'run')
  program = program_lib.AtariProgram(_config(), workdir)
  try:
    summary = program.collect()
    addresses = dict(program.replay_addresses(restore=True))
    servers = {a: {name: info.current_size for name, info in
                   reverb.Client(a).server_info().items()} for a in set(addresses.values())}
    yield workdir, summary, servers, addresses, program
  finally:
    program.close()
    ray.shutdown()


def test_each_game_lives_on_exactly_one_server_and_both_collected(collected):
  _, summary, servers, addresses, _ = collected
  assert len(servers) == 2
  # Round-robin by game index: pong on server 0, breakout on server 1.
  assert addresses['pong'] != addresses['breakout']
  for game in GAMES:
    on = [a for a, tables in servers.items() if _tables(game) <= set(tables)]
    assert on == [addresses[game]]
    assert not any(set(tables) & _tables(game) for a, tables in servers.items()
                   if a != addresses[game])
    sizes = servers[addresses[game]]
    train = summary['games'][game]['train_transitions']
    assert train > 0
    items = summary['games'][game]['train_items']
    assert sizes[f'abstract_{game}'] == sizes[f'natural_{game}'] == items
    assert summary['games'][game]['replay_items'] == {
        name: sizes[name] for name in (f'abstract_{game}', f'natural_{game}')}
    assert 0 < sizes[f'natural_{game}_f50'] < items  # Half of the training episodes.
  paths = summary['replay_checkpoint']
  assert isinstance(paths, list) and len(paths) == 2
  assert all(os.path.isdir(p) for p in paths)
  assert {os.path.basename(os.path.dirname(p)) for p in paths} == {'server_0', 'server_1'}


def test_learners_read_each_game_from_its_server(collected):
  from rmr_dist import config as config_lib
  from rmr_dist.replay import atari_iterators
  _, _, _, addresses, program = collected
  assert program.address_for('breakout') == addresses['breakout']
  batch = next(atari_iterators.make_table_iterator(program.address_for('breakout'),
                                                   'abstract_breakout', 4))
  assert batch['ram_t'].shape == (4, 128)
  # The single-address API refuses a sharded replay and says what to call instead.
  with pytest.raises(config_lib.ConfigError, match='address_for'):
    program.replay_address(restore=True)


def test_collect_writes_collector_and_replay_counters_to_tensorboard(collected):
  workdir, summary, servers, addresses, program = collected
  program.close()  # Flushes the event file, with a last poll of the replay counters.
  events = read_events(os.path.join(workdir, 'tb'))
  scalars = set(events.Tags()['scalars'])
  expected = {'collector/steps_per_s', 'collector/episodes', 'collector/actor_0/steps_per_s',
              'collector/actor_1/steps_per_s', 'collector/pong/episodes',
              *(f'collector/head_{h}/episodes' for h in range(4))}
  for game in GAMES:
    for table in _tables(game):
      expected |= {f'replay/{table}/{k}' for k in ('size', 'episodes', 'inserts',
                                                   'inserts_per_s', 'samples_per_s')}
  assert expected <= scalars, sorted(expected - scalars)
  last = lambda tag: events.Scalars(tag)[-1].value
  # 4 heads x 2 episodes x 2 games: every head played 2 episodes of each game.
  assert all(last(f'collector/head_{h}/episodes') == 4 for h in range(4))
  assert last('collector/episodes') == 16
  assert sum(last(f'collector/actor_{i}/steps_per_s') for i in range(2)) == pytest.approx(
      last('collector/steps_per_s'), rel=1e-6)
  for game in GAMES:
    items = summary['games'][game]['train_items']
    assert last(f'replay/abstract_{game}/size') == items
    assert last(f'replay/abstract_{game}/inserts') == items
    assert last(f'replay/natural_{game}/episodes') == summary['games'][game]['train_episodes']


def test_resume_restores_both_servers(collected):
  import reverb
  from rmr_dist.distributed import atari_program as program_lib
  workdir, _, servers, addresses, first = collected
  first.close()
  program = program_lib.AtariProgram(_config(), workdir)
  try:
    program.collect()  # Already complete: restores each server from its own checkpoint.
    restored = program.replay_addresses(restore=True)
    for game in GAMES:
      sizes = {n: i.current_size
               for n, i in reverb.Client(restored[game]).server_info().items()}
      assert sizes == servers[addresses[game]]
  finally:
    program.close()


def test_num_servers_must_not_exceed_games():
  from rmr_dist import config as config_lib
  from configs import atari as atari_configs
  c = atari_configs.get_config('test')
  c.replay.num_servers = 2  # The test config has one game.
  with pytest.raises(config_lib.ConfigError, match='replay.num_servers'):
    config_lib.load_atari_config(c)
