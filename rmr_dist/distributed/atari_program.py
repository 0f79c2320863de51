"""The Atari RMR program: one Ray program, embedded on a laptop or spread over a cluster.

This module owns placement, restarts and stage order; what each stage computes lives in
`rmr_dist.stages` (`atari_agent`, `atari_collect`, `atari_abstract`, `atari_natural`,
`atari_probe`, `atari_report`) and the work directory's paths in `rmr_dist.workdir`. Collection
is the distributed stage proper: collector actors (`atari_actors.py`) play the policy heads into the
Reverb server(s) started here, fed work units by the driver, which records what
`stages.atari_collect` counts and summarises.
The abstract, natural and probe units run in learner groups (`learners.py`): Ray actors that
reserve `ray.learner_num_cpus` / `learner_num_gpus` each, one group alive at a time, killed
when their stage ends. The driver keeps the order and prints the status lines.

Stages run in order; a finished unit's result file is read back instead of redoing it, so a
crashed or interrupted run resumes by running the same command again, and a run whose config
changes only later stages reuses the earlier ones (`rmr_dist.workdir`, stage fingerprints). The
stage loop, closing and the read-back-or-run of learner units are `driver.Program`'s, shared
with the bouncing-balls program.
"""

from __future__ import annotations

import collections
import sys
import time
import uuid
from typing import Any

import ray

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.distributed import atari_actors
from rmr_dist.distributed import atari_agent as agent_lib
from rmr_dist.distributed import driver
from rmr_dist.distributed import placement
from rmr_dist.distributed import ray_setup
from rmr_dist.replay import monitor as monitor_lib
from rmr_dist.stages import atari_agent
from rmr_dist.stages import atari_collect
from rmr_dist.stages import atari_units

STAGES = workdir_lib.ATARI_STAGE_NAMES
LEARNER_STAGES = atari_units.LEARNER_STAGES  # Their units run in learner groups.


def check_stages(stages: list[str]) -> list[str]:
  """Validates stage names (order is normalised to the pipeline order)."""
  return workdir_lib.check_stage_names(stages, STAGES)


def check_policy_checkpoint(path: str) -> None:
  """Loads the heads' policy checkpoint once in the driver, before any actor needs it.

  Raises:
    ConfigError: naming `heads.checkpoint_path` and why it cannot be used.
  """
  from rmr_dist import checkpointing  # pylint: disable=g-import-not-at-top
  try:
    checkpointing.load_policy(path)
  except (checkpointing.CheckpointError, OSError, ValueError) as e:
    raise config_lib.ConfigError(
        f'heads.checkpoint_path={path!r} is not a usable policy checkpoint ({e}); give a '
        'directory written by rmr_dist.checkpointing.save_policy, or heads.base_policy=random.'
    ) from e


class AtariProgram(driver.Program):
  """Builds and runs the stages of the Atari program (`driver.Program`: run, close, units).

  Args:
    config: the validated config.
    workdir: the run's work directory (created if missing).
  """

  STAGES = STAGES
  LEARNER_STAGES = LEARNER_STAGES

  def __init__(self, config: config_lib.AtariConfig, workdir: str):
    if (config.heads.base_policy == 'checkpoint'
        and config.heads.checkpoint_path != config_lib.AGENT_CHECKPOINTS):
      for paths in atari_agent.resolve_checkpoints(config.heads, config.games, '').values():
        for path in paths:
          check_policy_checkpoint(path)
    super().__init__(config, workdir, workdir_lib.ATARI_STAGES)
    self.episodes_dir = self.paths.episodes
    self.replay_dir = self.paths.replay
    self.collect_dir = storage.dirname(self.paths.collect_summary)
    self._replay: list[Any] = []  # The Reverb servers (objects or actor handles).
    self._replay_addresses: dict[str, str] | None = None  # game -> 'host:port'
    self._replay_monitor: monitor_lib.ReplayMonitor | None = None

  # ---------------------------------------------------------------- replay
  def replay_addresses(self, restore: bool) -> dict[str, str]:
    """Starts the Reverb server(s) once and returns {game: 'host:port' of its server}.

    `replay.num_servers` servers hold the tables, sharded by game
    (`atari_actors.start_replay_servers`). With `restore` each loads its checkpoint; without, stale
    checkpoints of an interrupted collection are removed first. A background monitor logs
    every table's size and insert / sample rates to TensorBoard until `close`.
    """
    if self._replay_addresses is not None:
      return self._replay_addresses
    if not restore:
      storage.remove_tree(self.replay_dir)  # Stale contents of an interrupted collection.
    ray_setup.init_ray(self.config.ray)
    checkpoint_dir = self.replay_dir if self.config.replay.checkpoint else None
    host = ray_setup.LOOPBACK if not self.config.ray.address else ray.util.get_node_ip_address()
    self._replay, self._replay_addresses = atari_actors.start_replay_servers(self.config,
                                                                        checkpoint_dir, host)
    self._replay_monitor = monitor_lib.ReplayMonitor(self._replay_addresses.values())
    self._replay_monitor.start(self.logger.scalars, self.config.collect.status_interval_s)
    return self._replay_addresses

  def address_for(self, game: str) -> str:
    """'host:port' of the Reverb server holding `game`'s tables (starting / restoring them)."""
    addresses = self.replay_addresses(restore=True)
    if game not in addresses:
      raise config_lib.ConfigError(f'No replay tables for game {game!r}; games: '
                                   f'{", ".join(addresses)}.')
    return addresses[game]

  def replay_address(self, restore: bool) -> str:
    """The address of the single Reverb server (`replay.num_servers=1`).

    Raises:
      ConfigError: replay is sharded over several servers; use `address_for(game)`.
    """
    addresses = set(self.replay_addresses(restore).values())
    if len(addresses) != 1:
      raise config_lib.ConfigError(
          f'replay.num_servers={self.config.replay.num_servers}: replay is sharded by game '
          f'over {sorted(addresses)}; ask address_for(game) for the server of a game.')
    return addresses.pop()

  def _replay_clients(self) -> list[Any]:
    """One Reverb client per server, in server order."""
    import reverb  # pylint: disable=g-import-not-at-top
    addresses = self.replay_addresses(restore=True)
    return [reverb.Client(a) for a in dict.fromkeys(addresses.values())]

  # ---------------------------------------------------------------- agent
  def uses_agent_checkpoints(self) -> bool:
    """The heads act from the agent stage's checkpoints (heads.checkpoint_path='agent')."""
    h = self.config.heads
    return h.base_policy == 'checkpoint' and h.checkpoint_path == config_lib.AGENT_CHECKPOINTS

  def agent(self) -> list[dict[str, Any]]:
    """Trains a policy per game (`distributed.atari_agent`), or reads the finished games.

    Raises:
      ConfigError: agent/ holds policies trained with other agent settings (stage.json).
    """
    if storage.is_remote(self.workdir):
      raise config_lib.ConfigError(
          f'The agent stage writes its policies with Orbax to a local (or shared) file system; '
          f'--workdir={self.workdir} is an object store. Run it with a local --workdir.')
    spec = next(s for s in workdir_lib.ATARI_STAGES if s.name == 'agent')
    record = {'stage': 'agent', 'fingerprint': self.paths.fingerprints['agent'],
              'values': workdir_lib.stage_values(self.paths.config_dict, spec)}
    path = self.paths.path('agent', 'stage.json')
    previous = workdir_lib.read_json(path)
    if previous is not None and previous != record:
      trained = [g for g in self.config.games
                 if storage.exists(self.paths.path('agent', g, 'result.json'))]
      if trained:
        diffs = [k for k in sorted(set(previous['values']) | set(record['values']))
                 if previous['values'].get(k) != record['values'].get(k)]
        raise config_lib.ConfigError(
            f'{self.paths.path("agent")} holds policies of {trained} trained with other agent '
            f'settings (differing: {", ".join(diffs)}); use a fresh --workdir or the recorded '
            f'values ({path}).')
    workdir_lib.atomic_write_json(path, record)
    ray_setup.init_ray(self.config.ray)
    host = ray_setup.LOOPBACK if not self.config.ray.address else ray.util.get_node_ip_address()
    return agent_lib.run(self.config, self.paths, self.logger, host)

  # ---------------------------------------------------------------- collect
  def collect(self) -> dict[str, Any]:
    """Runs the collect stage (`stages.atari_collect`) on collector actors, or returns its
    summary if already complete."""
    self.paths.record_stage('collect')
    summary = atari_collect.read_summary(self.config, self.paths)
    if summary is not None:
      print(f'collect: already complete ({self.paths.collect_summary}); restoring replay from '
            'its checkpoint.')
      self.replay_addresses(restore=True)
      return summary

    cfg = self.config
    addresses = self.replay_addresses(restore=False)
    units = atari_collect.work_units(cfg)
    actor_cls = atari_actors.make_collector_actor_class(cfg.collect.max_actor_restarts)
    num_actors = self._num_collectors(units)
    placement.check_actor_cpus(cfg.ray, num_actors, 'collect.num_collectors')
    checkpoints = atari_collect.head_checkpoints(cfg, self.workdir)
    # One session per replay server lifetime: an episode re-run after its collector died is
    # skipped when it already reached this server (its store entry says so).
    session = uuid.uuid4().hex
    workers = [actor_cls.remote(cfg, addresses, self.episodes_dir, checkpoints, session)
               for _ in range(num_actors)]
    print(atari_collect.plan_line(cfg, len(units), num_actors, addresses))
    stats = self._dispatch(workers, units)
    for w in workers:
      ray.kill(w)
    clients = self._replay_clients()
    sizes = atari_collect.replay_sizes(clients)
    replay_checkpoints = None
    if cfg.replay.checkpoint:
      # One per server, written on its node, then copied to the work directory if need be.
      replay_checkpoints = [self._publish(server, client.checkpoint())
                            for server, client in zip(self._replay, clients)]
    return atari_collect.write_summary(cfg, self.paths, stats, sizes, replay_checkpoints,
                                       self.logger)

  def _dispatch(self, workers: list[Any],
                units: list[collector_lib.WorkUnit]) -> list[collector_lib.EpisodeStats]:
    """Feeds units to workers (two in flight each) until all are done; logs progress."""
    queue = collections.deque(units)
    actor_steps = [0] * len(workers)  # Agent steps played by each actor.
    pending: dict[Any, tuple[int, collector_lib.WorkUnit]] = {}
    alive = set(range(len(workers)))

    def submit(i: int) -> None:
      if queue:
        unit = queue.popleft()
        pending[workers[i].run.remote([unit])] = (i, unit)

    for i in range(len(workers)):
      submit(i)
      submit(i)
    done: list[collector_lib.EpisodeStats] = []
    start = last_status = time.perf_counter()
    clients = self._replay_clients()
    while pending:
      ready, _ = ray.wait(list(pending), num_returns=1,
                          timeout=self.config.collect.status_interval_s)
      for ref in ready:
        i, unit = pending.pop(ref)
        try:
          result = ray.get(ref)
          done.extend(result)
          actor_steps[i] += sum(s.length for s in result if not s.skipped)
        except ray.exceptions.RayActorError as e:
          alive.discard(i)
          queue.appendleft(unit)
          if not alive:
            raise RuntimeError(f'All collector actors died; last error: {e}') from e
          print(f'collect: collector {i} died ({type(e).__name__}); requeued {unit}',
                file=sys.stderr)
          i = min(alive)
        submit(i)
      now = time.perf_counter()
      if now - last_status >= self.config.collect.status_interval_s or not pending:
        last_status = now
        atari_collect.log_progress(
            self.config, done, len(done) + len(pending) + len(queue), now - start, actor_steps,
            sum(atari_collect.replay_sizes(clients).values()), self.logger.scalars,
            say=lambda line: print(line, flush=True))
    return done

  @staticmethod
  def _publish(server: Any, path: str) -> str:
    """`ReplayServer.publish_checkpoint` of an in-process server or a server actor."""
    if isinstance(server, atari_actors.ReplayServer):
      return server.publish_checkpoint(path)
    return ray.get(server.publish_checkpoint.remote(path))

  # ---------------------------------------------------------------- learner stages
  def _units(self, stage: str) -> list[dict[str, Any]]:
    """Runs the units of learner stage `stage` (`stages.atari_units`) in its learner group,
    reading finished ones back (`read_or_run`). With `replay.learner_source='store'` the units
    read the episode store: no Reverb server is started for them."""
    atari_units.require_collect(self.paths, stage)
    units = atari_units.learner_units(self.config, self.paths, stage, self.address_for)
    return self.read_or_run(stage, units, atari_units.report(stage))

  def abstract(self) -> list[dict[str, Any]]:
    """Trains and evaluates every configured abstract model on every game (resumable)."""
    return self._units('abstract')

  def natural(self) -> list[dict[str, Any]]:
    """Trains RMR and C-SWM x seeds in lockstep for every game and data fraction (resumable).

    The units run in order in the natural learner group (a separate group from the abstract
    one), each waiting up to `natural.export_timeout_s` for its processor export.
    """
    return self._units('natural')

  def probe(self) -> list[dict[str, Any]]:
    """Fits linear RAM probes on every frozen natural encoder (in a one-host group)."""
    return self._units('probe')

  def report(self) -> dict[str, str]:
    """Writes Table 2 (abstract units) and Table 1 + data efficiency (probed natural units)."""
    from rmr_dist.stages import atari_report  # pylint: disable=g-import-not-at-top
    return atari_report.run(self.config, self.paths, self.logger,
                            say=lambda line: print(line, flush=True))

  # ---------------------------------------------------------------- driver
  def add_stages(self, stages: list[str]) -> list[str]:
    """Adds the agent stage before collect when the heads act from its checkpoints and the
    collection is still to do."""
    if ('collect' in stages and 'agent' not in stages and self.uses_agent_checkpoints()
        and not storage.exists(self.paths.collect_summary)):
      print("atari: heads.checkpoint_path='agent': adding the agent stage before collect "
            '(it reuses the policies already trained in this work directory).', flush=True)
      stages = self.check_stages(['agent'] + stages)
    return stages

  def actor_pools(self, stages: list[str]) -> list[tuple[int, str]]:
    """The agent stage's actors, and the collectors while the collection is still to do."""
    pools = []
    if 'agent' in stages:
      pools.append((self.config.agent.num_actors, 'agent.num_actors'))
    if 'collect' in stages and not storage.exists(self.paths.collect_summary):
      pools.append((self._num_collectors(atari_collect.work_units(self.config)),
                    'collect.num_collectors'))
    return pools

  def _num_collectors(self, units: list[collector_lib.WorkUnit]) -> int:
    """Collector actors the collect stage starts for `units`: no more than there are units."""
    return min(self.config.collect.num_collectors, len(units))

  def check_inputs(self, stages: list[str]) -> None:
    """The learner stages need the collect stage's outputs: chosen, or already there."""
    if 'collect' not in stages:
      for stage in stages:
        if stage in LEARNER_STAGES:
          atari_units.require_collect(self.paths, stage)

  def close(self) -> None:
    """Stops the replay servers and flushes logs (Ray itself is left to the caller)."""
    if self._replay_monitor is not None:
      try:
        self._replay_monitor.stop(log_fn=self.logger.scalars)  # A last poll of the counters.
      except Exception as e:  # pylint: disable=broad-except
        print(f'replay monitor: last poll failed ({e})', file=sys.stderr)
      self._replay_monitor = None
    atari_actors.stop_replay_servers(self._replay)
    self._replay, self._replay_addresses = [], None
    super().close()

