"""Ray actors wrapping the plain classes: the Reverb server and the collectors."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import ray

from rmr_dist import config as config_lib
from rmr_dist.acting import collector as collector_lib


class ReplayServer:
  """A Reverb server holding every game's tables (in-process, or inside a Ray actor).

  Args:
    config: the program config (games, frame size, table sizes, port).
    checkpoint_dir: Reverb checkpoint directory; an existing checkpoint there is restored.
    host: the address clients should dial.
  """

  def __init__(self, config: config_lib.AtariConfig, checkpoint_dir: str | None, host: str):
    from rmr_dist.replay import tables  # pylint: disable=g-import-not-at-top
    r = config.replay
    self._server = tables.make_server(
        tables.make_tables(config.games, (config.env.frame_height, config.env.frame_width),
                           abstract_max_size=r.abstract_max_size,
                           natural_max_size=r.natural_max_size,
                           min_size_to_sample=r.min_size_to_sample,
                           natural_fractions=config.natural.data_fractions),
        port=r.port, checkpoint_dir=checkpoint_dir)
    self._address = f'{host}:{self._server.port}'

  def address(self) -> str:
    """'host:port' that clients connect to."""
    return self._address

  def stop(self) -> None:
    self._server.stop()


@ray.remote(num_cpus=0)
class ReplayServerActor(ReplayServer):
  """The Reverb server as a Ray actor (clusters): dialled at its node's IP."""

  def __init__(self, config: config_lib.AtariConfig, checkpoint_dir: str | None):
    super().__init__(config, checkpoint_dir, ray.util.get_node_ip_address())


class CollectorWorker:
  """A Collector connected to a Reverb server and the episode store, run inside an actor.

  Args:
    config: the program config.
    replay_address: 'host:port' of the Reverb server.
    store_root: directory of the episode store (shared storage on a cluster).
  """

  def __init__(self, config: config_lib.AtariConfig, replay_address: str, store_root: str):
    import reverb  # pylint: disable=g-import-not-at-top
    from rmr_dist.replay import adders  # pylint: disable=g-import-not-at-top
    from rmr_dist.replay import episode_store  # pylint: disable=g-import-not-at-top
    self._client = reverb.Client(replay_address)
    self._adder = adders.TransitionAdder(self._client,
                                         max_episode_steps=config.env.max_episode_steps,
                                         chunk_length=config.replay.chunk_length)
    self._collector = collector_lib.Collector(config, episode_store.EpisodeStore(store_root),
                                              self._adder)

  def run(self, units: Sequence[collector_lib.WorkUnit]) -> list[collector_lib.EpisodeStats]:
    """Collects `units` (typically one episode) and returns their stats."""
    return self._collector.run(units)

  def counters(self) -> dict[str, float]:
    return dict(self._collector.counters)


def make_collector_actor_class(max_restarts: int):
  """CollectorWorker as a restartable Ray actor class (1 CPU each)."""
  return ray.remote(num_cpus=1, max_restarts=max_restarts,
                    max_task_retries=max_restarts)(CollectorWorker)


@ray.remote(num_cpus=1)
class SyntheticWriter:
  """Inserts synthetic 210x160 transitions as fast as it can (Reverb saturation benchmark).

  Frames are random-walk images (compressible like game frames, never identical), written
  through the same TransitionAdder as real collection.
  """

  def __init__(self, replay_address: str, game: str, episode_steps: int = 200):
    import numpy as np  # pylint: disable=g-import-not-at-top
    import reverb  # pylint: disable=g-import-not-at-top
    from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
    from rmr_dist.replay import adders  # pylint: disable=g-import-not-at-top
    self._game, self._steps = game, episode_steps
    self._adder = adders.TransitionAdder(reverb.Client(replay_address),
                                         max_episode_steps=episode_steps, chunk_length=8)
    rng = np.random.default_rng(os.getpid())
    base = rng.integers(0, 8, (210, 160, 3), dtype=np.uint8) * 32
    self._obs = [atari.Observation(rng.integers(0, 256, 128, dtype=np.uint8),
                                   np.roll(base, t, axis=1)) for t in range(episode_steps + 1)]

  def ready(self) -> bool:
    return True

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
