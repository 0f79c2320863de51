"""The Atari RMR program: one Ray program, embedded on a laptop or spread over a cluster.

Work directory layout (`workdir`, a local path or shared storage):
  config.json            the validated config the directory was created with
  episodes/              episode store (validation episodes; all with store_all_episodes)
  replay/                Reverb checkpoints (written after collection; restored by later runs);
                         with replay.num_servers > 1, one server_<i>/ per server
  collect/summary.json   per-game episode/transition counts and throughput
  abstract/<game>/<model>/  learner checkpoints, processor export, result.json (Table 2 row)
  natural/<game>/f<pct>/  lockstep RMR/C-SWM checkpoints, trained.json, probe.json
  report/                table1/table2 (.csv, .md), results.json, figures (.png)
  tb/                    TensorBoard run directory: collector counters, replay size and insert /
                         sample rates, learner scalars, evaluation tables and figures

The abstract, natural and probe units run in learner groups (`learners.py`): Ray actors that
reserve `ray.learner_num_cpus` / `learner_num_gpus` each, one group alive at a time, killed
when their stage ends. The driver keeps the order and prints the status lines.

Stages run in order; a stage whose outputs exist (for the same config) is skipped, so a crashed
or interrupted run resumes by running the same command again.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import sys
import time
from typing import Any

import ray

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist.acting import collector as collector_lib
from rmr_dist.distributed import actors
from rmr_dist.distributed import learners
from rmr_dist.distributed import ray_setup
from rmr_dist.distributed import workdir as workdir_lib
from rmr_dist.replay import episode_store
from rmr_dist.replay import monitor as monitor_lib
from rmr_dist.replay import splits

STAGES = ('collect', 'abstract', 'natural', 'probe', 'report')


def check_stages(stages: list[str]) -> list[str]:
  """Validates stage names (order is normalised to the pipeline order)."""
  return workdir_lib.check_stage_names(stages, STAGES)


def _read_json(path: str) -> Any:
  """The JSON at `path`, or None if there is none (a unit's result: present iff complete)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class _LazyGroup:
  """`with _LazyGroup(...) as group:` - `group()` starts the learner group on first use; the
  group is killed when the block ends, so a stage with nothing left to do starts no process."""

  def __init__(self, config: config_lib.AtariConfig, role: str, workdir: str):
    self._args = (config, role, workdir)
    self._group: learners.LearnerGroup | None = None

  def __call__(self) -> learners.LearnerGroup:
    if self._group is None:
      self._group = learners.LearnerGroup(*self._args)
    return self._group

  def __enter__(self) -> _LazyGroup:
    return self

  def __exit__(self, *exc) -> None:
    if self._group is not None:
      self._group.close()
      self._group = None


def _dir_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


class AtariProgram:
  """Builds and runs the stages of the Atari program.

  Args:
    config: the validated config.
    workdir: the run's work directory (created if missing).
  """

  def __init__(self, config: config_lib.AtariConfig, workdir: str):
    self.config = config
    self.workdir = os.path.abspath(workdir)
    self.episodes_dir = os.path.join(self.workdir, 'episodes')
    self.replay_dir = os.path.join(self.workdir, 'replay')
    self.collect_dir = os.path.join(self.workdir, 'collect')
    os.makedirs(self.workdir, exist_ok=True)
    workdir_lib.check_workdir_config(self.workdir, config)
    self.logger = logging_lib.Logger(os.path.join(self.workdir, 'tb'))
    self._replay: list[Any] = []  # The Reverb servers (objects or actor handles).
    self._replay_addresses: dict[str, str] | None = None  # game -> 'host:port'
    self._replay_monitor: monitor_lib.ReplayMonitor | None = None

  # ---------------------------------------------------------------- replay
  def replay_addresses(self, restore: bool) -> dict[str, str]:
    """Starts the Reverb server(s) once and returns {game: 'host:port' of its server}.

    `replay.num_servers` servers hold the tables, sharded by game
    (`actors.start_replay_servers`). With `restore` each loads its checkpoint; without, stale
    checkpoints of an interrupted collection are removed first. A background monitor logs
    every table's size and insert / sample rates to TensorBoard until `close`.
    """
    if self._replay_addresses is not None:
      return self._replay_addresses
    if not restore and os.path.isdir(self.replay_dir):
      shutil.rmtree(self.replay_dir)  # Stale contents of an interrupted collection.
    ray_setup.init_ray(self.config.ray)
    checkpoint_dir = self.replay_dir if self.config.replay.checkpoint else None
    host = ray_setup.LOOPBACK if not self.config.ray.address else ray.util.get_node_ip_address()
    self._replay, self._replay_addresses = actors.start_replay_servers(self.config,
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

  def _replay_sizes(self, clients: list[Any]) -> dict[str, int]:
    """{table: current size} over every server."""
    return {name: info.current_size for client in clients
            for name, info in client.server_info().items()}

  # ---------------------------------------------------------------- collect
  def collect(self) -> dict[str, Any]:
    """Runs the collect stage (or returns its summary if already complete)."""
    summary_path = os.path.join(self.collect_dir, 'summary.json')
    if os.path.exists(summary_path) and (not self.config.replay.checkpoint
                                         or os.path.isdir(self.replay_dir)):
      print(f'collect: already complete ({summary_path}); restoring replay from its checkpoint.')
      self.replay_addresses(restore=True)
      with open(summary_path) as f:
        return json.load(f)

    cfg = self.config
    addresses = self.replay_addresses(restore=False)
    units = collector_lib.make_work_units(cfg.games, cfg.heads.num_heads,
                                          cfg.heads.episodes_per_head)
    actor_cls = actors.make_collector_actor_class(cfg.collect.max_actor_restarts)
    num_actors = min(cfg.collect.num_collectors, len(units))
    workers = [actor_cls.remote(cfg, addresses, self.episodes_dir) for _ in range(num_actors)]
    servers = sorted(set(addresses.values()))
    where = servers[0] if len(servers) == 1 else f'{len(servers)} servers {addresses}'
    print(f'collect: {len(units)} episodes ({len(cfg.games)} games x {cfg.heads.num_heads} heads '
          f'x {cfg.heads.episodes_per_head}) on {num_actors} collector actors; replay at '
          f'{where}')
    stats = self._dispatch(workers, units)
    for w in workers:
      ray.kill(w)
    return self._finish_collect(stats, summary_path)

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
        self._log_progress(done, len(done) + len(pending) + len(queue), now - start,
                           actor_steps, clients)
    return done

  def _log_progress(self, done: list[collector_lib.EpisodeStats], total: int, elapsed: float,
                    actor_steps: list[int], clients: list[Any]) -> None:
    """Collector counters to TensorBoard (step: agent steps) and one status line.

    (Replay sizes and insert / sample rates are logged by the replay monitor.)
    """
    steps = sum(s.length for s in done if not s.skipped)
    elapsed = max(elapsed, 1e-9)
    scalars = {'collector/steps_per_s': steps / elapsed,
               'collector/frames_per_s': steps * self.config.env.frame_skip / elapsed,
               'collector/episodes': len(done)}
    for i, n in enumerate(actor_steps):
      scalars[f'collector/actor_{i}/steps_per_s'] = n / elapsed
    for game in self.config.games:
      scalars[f'collector/{game}/episodes'] = sum(s.game == game for s in done)
    for head in range(self.config.heads.num_heads):
      scalars[f'collector/head_{head}/episodes'] = sum(s.head == head for s in done)
    self.logger.scalars(scalars, step=steps)
    eta = (logging_lib.format_duration(elapsed * (total - len(done)) / len(done)) if done
           else '?')
    items = sum(self._replay_sizes(clients).values())
    print(f'collect: {len(done)}/{total} episodes, {steps} steps, '
          f'{scalars["collector/steps_per_s"]:.0f} steps/s, ETA {eta}, replay items {items}',
          flush=True)

  def _finish_collect(self, stats: list[collector_lib.EpisodeStats],
                      summary_path: str) -> dict[str, Any]:
    cfg = self.config
    clients = self._replay_clients()
    sizes = self._replay_sizes(clients)
    games = {}
    for game in cfg.games:
      g = [s for s in stats if s.game == game]
      played = [s for s in g if not s.skipped]
      seconds = sum(s.seconds for s in played)
      steps = sum(s.length for s in played)
      games[game] = {
          'train_episodes': sum(s.split == splits.TRAIN for s in g),
          'val_episodes': sum(s.split == splits.VAL for s in g),
          'train_transitions': sum(s.length for s in g if s.split == splits.TRAIN),
          'val_transitions': sum(s.length for s in g if s.split == splits.VAL),
          'mean_return': sum(s.episode_return for s in g) / max(len(g), 1),
          'agent_steps_per_s': steps / seconds if seconds else None,
          'frames_per_s': steps * cfg.env.frame_skip / seconds if seconds else None,
          'replay_items': {k: v for k, v in sizes.items() if k.endswith(f'_{game}')},
      }
    summary: dict[str, Any] = {'games': games, 'episodes_dir': self.episodes_dir}
    if cfg.replay.checkpoint:
      paths = [client.checkpoint() for client in clients]  # One per server.
      train = sum(g['train_transitions'] for g in games.values())
      summary['replay_checkpoint'] = paths[0] if len(paths) == 1 else paths
      summary['replay_checkpoint_bytes_per_transition'] = (
          sum(_dir_bytes(p) for p in paths) / max(train, 1))
    store = episode_store.EpisodeStore(self.episodes_dir)
    store.write_index()
    episode_store.atomic_write_json(summary_path, summary)
    self.logger.text('collect/summary', '```\n' + json.dumps(summary, indent=1) + '\n```')
    self.logger.flush()
    print(f'collect: done; summary at {summary_path}')
    return summary

  # ---------------------------------------------------------------- abstract
  def abstract(self) -> list[dict[str, Any]]:
    """Trains and evaluates every configured abstract model on every game (resumable).

    The units run in order in the abstract learner group (`learners.LearnerGroup`), started
    when the first unfinished unit comes up and killed when the stage ends.
    """
    from rmr_dist.learning import stages  # pylint: disable=g-import-not-at-top
    self._require_collect('abstract')
    rows = []
    with _LazyGroup(self.config, 'abstract', self.workdir) as group:
      for game in self.config.games:
        address = self.address_for(game)
        for model in self.config.abstract.models:
          print(f'abstract: {game} / {model} ...', flush=True)
          row = (_read_json(os.path.join(stages.unit_dir(self.workdir, game, model),
                                         'result.json'))
                 or group().run('abstract_unit', address, game, model))
          print(f'abstract: {game} / {model}: slot acc {100 * row["slot_acc"]:.2f}%, bit F1 '
                f'{row["bit_f1"]:.3f} over {row["n_eval_slots"]} slots, '
                f'{row["n_eval_transitions"]} transitions ({row["train_seconds"]:.0f} s)',
                flush=True)
          rows.append(row)
    return rows

  def _require_collect(self, stage: str) -> None:
    if not os.path.exists(os.path.join(self.collect_dir, 'summary.json')):
      raise config_lib.ConfigError(
          f'The {stage} stage needs the collect stage\'s outputs, and {self.workdir} has none: '
          f'run with --stages=collect,{stage} (or point --workdir at a collected run).')

  # ---------------------------------------------------------------- natural + probe
  def natural(self) -> list[dict[str, Any]]:
    """Trains RMR and C-SWM x seeds in lockstep for every game and data fraction (resumable).

    The units run in order in the natural learner group (a separate group from the abstract
    one), each waiting up to `natural.export_timeout_s` for its processor export.
    """
    from rmr_dist.learning import natural_stage  # pylint: disable=g-import-not-at-top
    self._require_collect('natural')
    records = []
    with _LazyGroup(self.config, 'natural', self.workdir) as group:
      for game in self.config.games:
        address = self.address_for(game)
        for fraction in self.config.natural.data_fractions:
          print(f'natural: {game} fraction {fraction}: {len(self.config.natural.variants)} '
                f'variants x {self.config.natural.num_seeds} seeds in lockstep ...', flush=True)
          rec = (_read_json(os.path.join(natural_stage.fraction_dir(self.workdir, game, fraction),
                                         'trained.json'))
                 or group().run('natural_unit', address, game, fraction))
          print(f'natural: {game} fraction {fraction}: {rec["steps"]} steps in '
                f'{rec["seconds"]:.0f} s; identical batches: {rec["identical_batches"]}',
                flush=True)
          records.append(rec)
    return records

  def probe(self) -> list[dict[str, Any]]:
    """Fits linear RAM-bit probes on every frozen natural encoder (in a one-host group)."""
    from rmr_dist.learning import natural_stage  # pylint: disable=g-import-not-at-top
    self._require_collect('probe')
    records = []
    with _LazyGroup(self.config, 'probe', self.workdir) as group:
      for game in self.config.games:
        address = self.address_for(game)
        for fraction in self.config.natural.data_fractions:
          rec = (_read_json(os.path.join(natural_stage.fraction_dir(self.workdir, game, fraction),
                                         'probe.json'))
                 or group().run('probe_unit', address, game, fraction))
          summary = ', '.join(f'{v} ' + ' '.join(f'{x:.3f}' for x in r['bit_f1'])
                              for v, r in rec['variants'].items())
          print(f'probe: {game} fraction {fraction}: bit F1 per seed: {summary}', flush=True)
          records.append(rec)
    return records

  # ---------------------------------------------------------------- report
  def report(self) -> dict[str, str]:
    """Writes Table 2 (abstract units) and Table 1 + data efficiency (probed natural units)."""
    paths = {}
    if self._abstract_rows():
      paths.update(self._report_table2())
    paths.update(self._report_table1())
    if not paths:
      raise config_lib.ConfigError(f'Nothing to report in {self.workdir}: run the abstract '
                                   f'(and natural, probe) stages first.')
    return paths

  def _abstract_rows(self) -> list[dict[str, Any]]:
    from rmr_dist.learning import stages  # pylint: disable=g-import-not-at-top
    rows = []
    for game in self.config.games:
      for model in self.config.abstract.models:
        path = os.path.join(stages.unit_dir(self.workdir, game, model), 'result.json')
        if os.path.exists(path):
          with open(path) as f:
            rows.append(json.load(f))
    return rows

  def _report_table1(self) -> dict[str, str]:
    from rmr_dist.evaluation import table1  # pylint: disable=g-import-not-at-top
    from rmr_dist.learning import natural_stage  # pylint: disable=g-import-not-at-top
    nc = self.config.natural
    by_fraction: dict[float, dict[str, dict[str, list[float]]]] = {}
    for game in self.config.games:
      for fraction in nc.data_fractions:
        path = os.path.join(natural_stage.fraction_dir(self.workdir, game, fraction),
                            'probe.json')
        if os.path.exists(path):
          with open(path) as f:
            rec = json.load(f)
          by_fraction.setdefault(fraction, {})[game] = {
              v: r['bit_f1'] for v, r in rec['variants'].items()}
    if not by_fraction or set(nc.variants) != {'rmr', 'cswm'}:
      return {}
    paths = {}
    full = by_fraction.get(max(nc.data_fractions))
    if full:
      paths.update(table1.write_table1(os.path.join(self.workdir, 'report'), full))
      with open(paths['table1.md']) as f:
        text = f.read()
      self.logger.text('eval/table1', text)
      self.logger.image('eval/table1_probe_f1', paths['table1_probe_f1.png'])
      print(f'report: Table 1 written to {paths["table1.csv"]}\n{text}', flush=True)
    if len(nc.data_fractions) > 1:
      paths.update(table1.write_data_efficiency(os.path.join(self.workdir, 'report'),
                                                by_fraction))
      self.logger.image('eval/data_efficiency', paths['data_efficiency.png'])
    return paths

  def _report_table2(self) -> dict[str, str]:
    """Writes Table 2 from the finished abstract units."""
    from rmr_dist.evaluation import table2 as report_tables  # pylint: disable=g-import-not-at-top
    rows = self._abstract_rows()
    done = {(r['game'], r['model']) for r in rows}
    missing = [f'{g}/{m}' for g in self.config.games for m in self.config.abstract.models
               if (g, m) not in done]
    if missing:
      print(f'report: missing abstract results for {", ".join(missing)}', file=sys.stderr)
    paths = report_tables.write_table2(os.path.join(self.workdir, 'report'), rows)
    with open(paths['table2.md']) as f:
      table = f.read()
    self.logger.text('eval/table2', table)
    print(f'report: Table 2 written to {paths["table2.csv"]}\n{table}', flush=True)
    return paths

  # ---------------------------------------------------------------- driver
  def run(self, stages: list[str]) -> None:
    """Runs `stages` (validated names) in pipeline order."""
    for stage in check_stages(stages):
      getattr(self, stage)()

  def close(self) -> None:
    """Stops the replay servers and flushes logs (Ray itself is left to the caller)."""
    if self._replay_monitor is not None:
      try:
        self._replay_monitor.stop(log_fn=self.logger.scalars)  # A last poll of the counters.
      except Exception as e:  # pylint: disable=broad-except
        print(f'replay monitor: last poll failed ({e})', file=sys.stderr)
      self._replay_monitor = None
    actors.stop_replay_servers(self._replay)
    self._replay, self._replay_addresses = [], None
    self.logger.close()

