"""Ray actors wrapping the plain classes: the Reverb servers and the collectors.

Replay may be sharded over several Reverb servers by game (`config.replay.num_servers`):
`start_replay_servers` starts them and returns `{game: address}`, which collectors (and
learners, per game) are given instead of one address.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist.acting import atari_collector as collector_lib


class ReplayServer:
  """A Reverb server holding the tables of some games (in-process, or inside a Ray actor).

  Args:
    config: the program config (games, frame size, table sizes, port).
    checkpoint_dir: Reverb checkpoint directory; an existing checkpoint there is restored.
    host: the address clients should dial.
    games: the games whose tables this server holds (default: all of `config.games`).
    port: TCP port (default `config.replay.port`; 0 picks a free one).
  """

  def __init__(self, config: config_lib.AtariConfig, checkpoint_dir: str | None, host: str,
               games: Sequence[str] | None = None, port: int | None = None):
    from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top
    self._games = tuple(config.games if games is None else games)
    # Reverb's checkpointer writes local files: with an object-store work directory it writes
    # into a copy on this node, which `publish_checkpoint` copies to the work directory.
    self._mirror = storage.Mirror(checkpoint_dir) if checkpoint_dir else None
    self._server = atari_tables.make_server(
        atari_tables.make_config_tables(config, self._games),
        port=config.replay.port if port is None else port,
        checkpoint_dir=self._mirror.pull() if self._mirror else None)
    self._address = f'{host}:{self._server.port}'

  def publish_checkpoint(self, path: str) -> str:
    """The work-directory path of the checkpoint Reverb just wrote at `path` on this node,
    copied there first when the work directory is an object store."""
    if self._mirror is None:
      return path
    self._mirror.push()
    return self._mirror.to_remote(path)

  def address(self) -> str:
    """'host:port' that clients connect to."""
    return self._address

  def games(self) -> tuple[str, ...]:
    """The games whose tables this server holds."""
    return self._games

  def pid(self) -> int:
    """The serving process (its CPU use is the server's; see `rmr_dist.bench.atari_scaling`)."""
    return os.getpid()

  def stop(self) -> None:
    self._server.stop()


@ray.remote(num_cpus=0)
class ReplayServerActor(ReplayServer):
  """The Reverb server as a Ray actor (clusters): dialled at its node's IP."""

  def __init__(self, config: config_lib.AtariConfig, checkpoint_dir: str | None,
               games: Sequence[str] | None = None, port: int | None = None):
    super().__init__(config, checkpoint_dir, ray.util.get_node_ip_address(), games, port)


def server_checkpoint_dir(root: str | None, server: int, num_servers: int) -> str | None:
  """Checkpoint directory of one server: `root` for a single server, else `root/server_<i>`."""
  if root is None or num_servers == 1:
    return root
  return storage.join(root, f'server_{server}')


def start_replay_servers(config: config_lib.AtariConfig, checkpoint_dir: str | None,
                         host: str) -> tuple[list[Any], dict[str, str]]:
  """Starts `config.replay.num_servers` Reverb servers, replay sharded by game.

  Server s holds the tables of `atari_tables.server_games(config.games, num_servers)[s]` and keeps
  its checkpoints in `server_checkpoint_dir(checkpoint_dir, s, num_servers)`. With
  `replay.server='in_process'` they run in this process (dialled at `host`); with 'actor'
  each is a Ray actor, spread over the nodes. A fixed `replay.port` p gives server s port p + s.

  Args:
    config: the program config.
    checkpoint_dir: the replay checkpoint root, or None for no checkpoints.
    host: the address clients dial in-process servers at.

  Returns:
    (servers: ReplayServer objects or actor handles, in server order,
     addresses: {game: 'host:port' of the server holding its tables}).
  """
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top
  r = config.replay
  servers, addresses = [], {}
  for s, games in enumerate(atari_tables.server_games(config.games, r.num_servers)):
    directory = server_checkpoint_dir(checkpoint_dir, s, r.num_servers)
    port = r.port + s if r.port else 0
    if r.server == 'in_process':
      server = ReplayServer(config, directory, host, games, port)
      address = server.address()
    else:
      server = ReplayServerActor.options(scheduling_strategy='SPREAD').remote(
          config, directory, games, port)
      address = ray.get(server.address.remote())
    servers.append(server)
    addresses.update({game: address for game in games})
  return servers, addresses


def stop_replay_servers(servers: Sequence[Any]) -> None:
  """Stops servers from `start_replay_servers` (in-process ones, or kills the actors)."""
  for server in servers:
    if isinstance(server, ReplayServer):
      server.stop()
    else:
      ray.kill(server)


class CollectorWorker:
  """A Collector connected to the Reverb server(s) and the episode store, run inside an actor.

  Args:
    config: the program config.
    replay_addresses: {game: 'host:port'} of the server holding each game's tables (from
      `start_replay_servers`); a single 'host:port' means one server holds every game.
    store_root: directory of the episode store (shared storage on a cluster).
    checkpoints: {game: policy checkpoints in training order} of checkpoint heads.
    replay_session: this collection's replay session (`Collector`): a restarted actor gets
      the same, so it skips a training episode its previous process had finished.
  """

  def __init__(self, config: config_lib.AtariConfig,
               replay_addresses: Mapping[str, str] | str, store_root: str,
               checkpoints: Mapping[str, Sequence[str]] | None = None,
               replay_session: str = ''):
    from rmr_dist.replay import atari_adders  # pylint: disable=g-import-not-at-top
    from rmr_dist.replay import atari_episode_store  # pylint: disable=g-import-not-at-top
    if isinstance(replay_addresses, str):
      replay_addresses = {game: replay_addresses for game in config.games}
    self._adder = atari_adders.make_adder(dict(replay_addresses),
                                          max_episode_steps=config.env.max_episode_steps,
                                          chunk_length=config.replay.chunk_length,
                                          transitions_per_item=config.replay.transitions_per_item)
    self._collector = collector_lib.Collector(config, atari_episode_store.EpisodeStore(store_root),
                                              self._adder, checkpoints=checkpoints,
                                              replay_session=replay_session)

  def run(self, units: Sequence[collector_lib.WorkUnit]) -> list[collector_lib.EpisodeStats]:
    """Collects `units` (typically one episode) and returns their stats."""
    return self._collector.run(units)

  def counters(self) -> dict[str, float]:
    return dict(self._collector.counters)


def make_collector_actor_class(max_restarts: int):
  """CollectorWorker as a restartable Ray actor class (1 CPU each, spread over the nodes).

  A collector whose process or node dies is restarted (on any node with a free CPU) up to
  `max_restarts` times and its in-flight episodes are re-run there (max_task_retries); past
  that the driver requeues them on the other collectors.
  """
  return ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=max_restarts,
                    scheduling_strategy='SPREAD')(CollectorWorker)


@ray.remote(num_cpus=1)
class SyntheticWriter:
  """Inserts Atari transitions as fast as it can (Reverb saturation benchmark).

  At start it records `episode_steps + 1` real observations of `game` (native 210x160 palette
  frames, as collectors store them, and RAM, random actions), so items are the size of
  collected ones and compress like them; then `write_for` replays them through the collectors'
  TransitionAdder without emulating, so nothing but writing limits it.
  """

  def __init__(self, replay_address: str, game: str, episode_steps: int = 200,
               transitions_per_item: int = 8):
    import numpy as np  # pylint: disable=g-import-not-at-top
    from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
    self._steps = episode_steps
    self._per_item = transitions_per_item
    self._adder = None
    self.connect(replay_address, game)
    rng = np.random.default_rng(os.getpid())
    env = atari.AtariEnv(game, palette_frames=True)
    self._obs = [env.reset(int(rng.integers(1 << 31)))]
    while len(self._obs) <= episode_steps:
      result = env.step(int(rng.integers(atari.NUM_ACTIONS)))
      self._obs.append(result.observation)
      if result.terminal or result.truncated:
        self._obs.append(env.reset(int(rng.integers(1 << 31))))
    self._obs = self._obs[:episode_steps + 1]

  def connect(self, replay_address: str, game: str) -> None:
    """Writes `game`'s tables on the server at `replay_address` from now on."""
    import reverb  # pylint: disable=g-import-not-at-top
    from rmr_dist.replay import atari_adders  # pylint: disable=g-import-not-at-top
    if self._adder is not None:
      self._adder.close()
    self._game = game
    self._adder = atari_adders.TransitionAdder(reverb.Client(replay_address),
                                               max_episode_steps=self._steps, chunk_length=8,
                                               transitions_per_item=self._per_item)

  def ready(self) -> bool:
    return True

  def pid(self) -> int:
    return os.getpid()

  def write_for(self, seconds: float) -> int:
    """Writes whole episodes until `seconds` have passed; returns transitions written."""
    written, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
      self._adder.begin_episode(self._game)
      for t in range(self._steps):
        self._adder.add(self._obs[t], t % 18)
      self._adder.end_episode(self._obs[self._steps])
      written += self._steps
    return written
