"""Ray actors wrapping the plain classes: the Reverb server and the collectors."""

from __future__ import annotations

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
