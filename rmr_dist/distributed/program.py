"""The Atari RMR program: one Ray program, embedded on a laptop or spread over a cluster.

Work directory layout (`workdir`, a local path or shared storage):
  config.json            the validated config the directory was created with
  episodes/              episode store (validation episodes; all with store_all_episodes)
  replay/                Reverb checkpoints (written after collection; restored by later runs)
  collect/summary.json   per-game episode/transition counts and throughput
  abstract/<game>/<model>/  learner checkpoints, processor export, result.json (Table 2 row)
  natural/<game>/f<pct>/  lockstep RMR/C-SWM checkpoints, trained.json, probe.json
  report/                table1/table2 (.csv, .md), results.json, figures (.png)
  tb/                    TensorBoard run directory (collector, learner, evaluator scalars)

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
from rmr_dist.distributed import ray_setup
from rmr_dist.replay import episode_store
from rmr_dist.replay import splits

STAGES = ('collect', 'abstract', 'natural', 'probe', 'report')


def check_stages(stages: list[str]) -> list[str]:
  """Validates stage names (order is normalised to the pipeline order)."""
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise config_lib.ConfigError(f'Unknown stage(s) {unknown or stages}; valid stages, in '
                                 f'order: {",".join(STAGES)}.')
  return [s for s in STAGES if s in stages]


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
    self._check_workdir_config()
    self.logger = logging_lib.Logger(os.path.join(self.workdir, 'tb'))
    self._replay: Any = None
    self._replay_address: str | None = None

  def _check_workdir_config(self) -> None:
    """Refuses to mix runs of different configs in one work directory."""
    path = os.path.join(self.workdir, 'config.json')
    current = json.loads(json.dumps(config_lib.to_dict(self.config)))
    if os.path.exists(path):
      with open(path) as f:
        previous = json.load(f)
      if previous != current:
        diffs = [k for k in sorted(set(previous) | set(current))
                 if previous.get(k) != current.get(k)]
        raise config_lib.ConfigError(
            f'Work directory {self.workdir} was created with a different config (sections '
            f'differing: {", ".join(diffs)}). Use a fresh --workdir, or the config of '
            f'{path}.')
    else:
      episode_store.atomic_write_json(path, current)

  # ---------------------------------------------------------------- replay
  def replay_address(self, restore: bool) -> str:
    """Starts the Reverb server once (restoring its checkpoint if `restore`) and returns it."""
    if self._replay_address is not None:
      return self._replay_address
    if not restore and os.path.isdir(self.replay_dir):
      shutil.rmtree(self.replay_dir)  # Stale contents of an interrupted collection.
    ray_setup.init_ray(self.config.ray)
    checkpoint_dir = self.replay_dir if self.config.replay.checkpoint else None
    if self.config.replay.server == 'in_process':
      host = ray_setup.LOOPBACK if not self.config.ray.address else ray.util.get_node_ip_address()
      self._replay = actors.ReplayServer(self.config, checkpoint_dir, host)
      self._replay_address = self._replay.address()
    else:
      self._replay = actors.ReplayServerActor.remote(self.config, checkpoint_dir)
      self._replay_address = ray.get(self._replay.address.remote())
    return self._replay_address

  def _replay_client(self):
    import reverb  # pylint: disable=g-import-not-at-top
    return reverb.Client(self.replay_address(restore=True))

  # ---------------------------------------------------------------- collect
  def collect(self) -> dict[str, Any]:
    """Runs the collect stage (or returns its summary if already complete)."""
    summary_path = os.path.join(self.collect_dir, 'summary.json')
    if os.path.exists(summary_path) and (not self.config.replay.checkpoint
                                         or os.path.isdir(self.replay_dir)):
      print(f'collect: already complete ({summary_path}); restoring replay from its checkpoint.')
      self.replay_address(restore=True)
      with open(summary_path) as f:
        return json.load(f)

    cfg = self.config
    address = self.replay_address(restore=False)
    units = collector_lib.make_work_units(cfg.games, cfg.heads.num_heads,
                                          cfg.heads.episodes_per_head)
    actor_cls = actors.make_collector_actor_class(cfg.collect.max_actor_restarts)
    num_actors = min(cfg.collect.num_collectors, len(units))
    workers = [actor_cls.remote(cfg, address, self.episodes_dir) for _ in range(num_actors)]
    print(f'collect: {len(units)} episodes ({len(cfg.games)} games x {cfg.heads.num_heads} heads '
          f'x {cfg.heads.episodes_per_head}) on {num_actors} collector actors; replay at '
          f'{address}')
    stats = self._dispatch(workers, units)
    for w in workers:
      ray.kill(w)
    return self._finish_collect(stats, summary_path)

  def _dispatch(self, workers: list[Any],
                units: list[collector_lib.WorkUnit]) -> list[collector_lib.EpisodeStats]:
    """Feeds units to workers (two in flight each) until all are done; logs progress."""
    queue = collections.deque(units)
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
    client = self._replay_client()
    while pending:
      ready, _ = ray.wait(list(pending), num_returns=1,
                          timeout=self.config.collect.status_interval_s)
      for ref in ready:
        i, unit = pending.pop(ref)
        try:
          done.extend(ray.get(ref))
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
        self._log_progress(done, len(done) + len(pending) + len(queue), now - start, client)
    return done

  def _log_progress(self, done: list[collector_lib.EpisodeStats], total: int, elapsed: float,
                    client) -> None:
    steps = sum(s.length for s in done if not s.skipped)
    sizes = {name: info.current_size for name, info in client.server_info().items()}
    scalars = {'collector/steps_per_s': steps / max(elapsed, 1e-9),
               'collector/frames_per_s': steps * self.config.env.frame_skip / max(elapsed, 1e-9),
               'collector/episodes': len(done)}
    for game in self.config.games:
      scalars[f'collector/{game}/episodes'] = sum(s.game == game for s in done)
    for name, size in sizes.items():
      scalars[f'replay/{name}/size'] = size
    self.logger.scalars(scalars, step=steps)
    print(f'collect: {len(done)}/{total} episodes, {steps} steps, '
          f'{scalars["collector/steps_per_s"]:.0f} steps/s, replay items '
          f'{sum(sizes.values())}', flush=True)

  def _finish_collect(self, stats: list[collector_lib.EpisodeStats],
                      summary_path: str) -> dict[str, Any]:
    cfg = self.config
    client = self._replay_client()
    sizes = {name: info.current_size for name, info in client.server_info().items()}
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
      path = client.checkpoint()
      train = sum(g['train_transitions'] for g in games.values())
      summary['replay_checkpoint'] = path
      summary['replay_checkpoint_bytes_per_transition'] = _dir_bytes(path) / max(train, 1)
    store = episode_store.EpisodeStore(self.episodes_dir)
    store.write_index()
    episode_store.atomic_write_json(summary_path, summary)
    self.logger.text('collect/summary', '```\n' + json.dumps(summary, indent=1) + '\n```')
    self.logger.flush()
    print(f'collect: done; summary at {summary_path}')
    return summary

  # ---------------------------------------------------------------- abstract
  def abstract(self) -> list[dict[str, Any]]:
    """Trains and evaluates every configured abstract model on every game (resumable)."""
    from rmr_dist.learning import stages  # pylint: disable=g-import-not-at-top
    self._require_collect('abstract')
    address = self.replay_address(restore=True)
    rows = []
    for game in self.config.games:
      for model in self.config.abstract.models:
        prefix = f'abstract/{game}/{model}/'

        def log_fn(scalars, step, prefix=prefix):
          self.logger.scalars({prefix + k: v for k, v in scalars.items()}, step)

        print(f'abstract: {game} / {model} ...', flush=True)
        row = stages.run_abstract_unit(self.config, game, model, address, self.workdir,
                                       log_fn=log_fn)
        print(f'abstract: {game} / {model}: slot acc {100 * row["slot_acc"]:.2f}%, bit F1 '
              f'{row["bit_f1"]:.3f} over {row["n_eval_slots"]} slots, '
              f'{row["n_eval_transitions"]} transitions ({row["train_seconds"]:.0f} s)',
              flush=True)
        self.logger.scalars({prefix + 'eval/slot_acc': row['slot_acc'],
                             prefix + 'eval/bit_f1': row['bit_f1']}, row['train_steps'])
        rows.append(row)
    return rows

  def _require_collect(self, stage: str) -> None:
    if not os.path.exists(os.path.join(self.collect_dir, 'summary.json')):
      raise config_lib.ConfigError(
          f'The {stage} stage needs the collect stage\'s outputs, and {self.workdir} has none: '
          f'run with --stages=collect,{stage} (or point --workdir at a collected run).')

  # ---------------------------------------------------------------- natural + probe
  def natural(self) -> list[dict[str, Any]]:
    """Trains RMR and C-SWM x seeds in lockstep for every game and data fraction (resumable)."""
    from rmr_dist.learning import natural_stage  # pylint: disable=g-import-not-at-top
    self._require_collect('natural')
    address = self.replay_address(restore=True)
    records = []
    for game in self.config.games:
      for fraction in self.config.natural.data_fractions:
        prefix = f'natural/{game}/f{round(100 * fraction):d}/'

        def log_fn(scalars, step, prefix=prefix):
          self.logger.scalars({prefix + k: v for k, v in scalars.items()}, step)

        print(f'natural: {game} fraction {fraction}: {len(self.config.natural.variants)} '
              f'variants x {self.config.natural.num_seeds} seeds in lockstep ...', flush=True)
        rec = natural_stage.run_natural_unit(self.config, game, fraction, address,
                                             self.workdir, log_fn=log_fn)
        print(f'natural: {game} fraction {fraction}: {rec["steps"]} steps in '
              f'{rec["seconds"]:.0f} s; identical batches: {rec["identical_batches"]}',
              flush=True)
        records.append(rec)
    return records

  def probe(self) -> list[dict[str, Any]]:
    """Fits linear RAM-bit probes on every frozen natural encoder."""
    from rmr_dist.learning import natural_stage  # pylint: disable=g-import-not-at-top
    self._require_collect('probe')
    address = self.replay_address(restore=True)
    records = []
    for game in self.config.games:
      for fraction in self.config.natural.data_fractions:
        rec = natural_stage.run_probe_unit(self.config, game, fraction, address, self.workdir)
        summary = ', '.join(f'{v} ' + ' '.join(f'{x:.3f}' for x in r['bit_f1'])
                            for v, r in rec['variants'].items())
        print(f'probe: {game} fraction {fraction}: bit F1 per seed: {summary}', flush=True)
        for v, r in rec['variants'].items():
          for seed, f1 in enumerate(r['bit_f1']):
            self.logger.scalars({f'eval/{game}/f{round(100 * fraction):d}/{v}/seed_{seed}/'
                                 'probe_bit_f1': f1}, self.config.natural.num_steps)
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
      print(f'report: Table 1 written to {paths["table1.csv"]}\n{text}', flush=True)
    if len(nc.data_fractions) > 1:
      paths.update(table1.write_data_efficiency(os.path.join(self.workdir, 'report'),
                                                by_fraction))
    return paths

  def _report_table2(self) -> dict[str, str]:
    """Writes Table 2 from the finished abstract units."""
    from rmr_dist.evaluation import tables as report_tables  # pylint: disable=g-import-not-at-top
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
    """Stops the replay server and flushes logs (Ray itself is left to the caller)."""
    if isinstance(self._replay, actors.ReplayServer):
      self._replay.stop()
    elif self._replay is not None:
      ray.kill(self._replay)
    self._replay = self._replay_address = None
    self.logger.close()

