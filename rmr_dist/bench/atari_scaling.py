"""Collection scaling over Ray nodes, and where one Reverb server saturates.

Starts a multi-node `ray.cluster_utils.Cluster` on this machine (every node on 127.0.0.1), then:
  (a) for each actor count n in `--actors`, n collector actors (spread over the nodes, 1 CPU
      each) collect the same kind of training episodes into an in-process Reverb server; prints
      total agent steps/s and the scaling efficiency total / (n x the 1-actor rate);
  (b) for each server count S in `--servers` and writer count n in `--writers`, S Reverb
      servers (Ray actors, each its own process, replay sharded by game as the program does)
      take items from n synthetic writer actors. A writer replays precomputed Atari-sized
      observations (210x160 palette frames + RAM, through the collectors' TransitionAdder, in
      items of `replay.transitions_per_item` transitions as the config writes them), so
      nothing limits it but the writing itself. All server sets run at
      once and one writer pool is re-pointed between them, so server counts are measured
      interleaved under the same background load; each point is measured `--repeats` times
      (median kept), on emptied tables, server-side (Reverb's insert counters) over a window
      that starts after a warm-up. Per (S, n) it prints the aggregate and per-writer rates
      (items/s, transitions/s, MB/s), the CPU used by the server processes, the writers and
      everything else, and how busy the machine's cores were; per S, the saturation point (the
      first n where the aggregate grows < 10%) and whether the machine's cores or the server
      were the limit, with the server's CPU cost per item.
Actor start-up (imports) is excluded from every timing. The summary (last JSON line) has
`collector_steps_per_s_1_actor` and `reverb_saturation` (per server count: `peak_items_per_s`,
`server_cpu_us_per_item`, `saturates_at_writers`, `limit`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from rmr_dist.bench import output
from rmr_dist.replay import atari_table_names

# Keys of the summary line (the last), each named in the module docstring.
SUMMARY_KEYS = ('collector_steps_per_s_1_actor', 'reverb_saturation')

# One agent step's uncompressed data: frame + RAM + one-hot action. A natural item references
# two frames, but consecutive items share them, so each transition adds one step's data.
STEP_BYTES = 210 * 160 + 128 + 18  # Palette-index frame + RAM + one-hot action.
SATURATION_GROWTH = 1.10  # Saturated: the aggregate grows less than 10% with more writers.
MACHINE_BOUND_BUSY = 0.9  # Cores this busy at saturation: the machine, not the server, limits.


def _int_list(text: str) -> list[int]:
  try:
    values = [int(x) for x in text.split(',') if x]
  except ValueError as e:
    raise argparse.ArgumentTypeError(f'expected comma-separated ints, got {text!r}') from e
  if values and min(values) < 1:
    raise argparse.ArgumentTypeError(f'expected ints >= 1, got {text!r}')
  return values


def _loopback_bytes() -> int | None:
  """Bytes sent over the loopback interface so far (Linux), or None."""
  try:
    with open('/proc/net/dev') as f:
      for line in f:
        name, _, fields = line.partition(':')
        if name.strip() == 'lo':
          return int(fields.split()[8])  # Transmit bytes.
  except OSError:
    pass
  return None


class _Snapshot:
  """Server-side insert counters and CPU times at one moment."""

  def __init__(self, clients, server_pids, writer_pids):
    import psutil  # pylint: disable=g-import-not-at-top
    self.time = time.perf_counter()
    self.items = [sum(info.rate_limiter_info.insert_stats.completed
                      for name, info in c.server_info().items() if name.startswith('natural'))
                  for c in clients]  # Per server.
    cpu = lambda pid: sum(psutil.Process(pid).cpu_times()[:2])  # user + system
    self.server_cpu = [cpu(p) for p in server_pids]
    self.writer_cpu = sum(cpu(p) for p in writer_pids)
    t = psutil.cpu_times()
    self.machine_idle = t.idle + getattr(t, 'iowait', 0.0)
    self.machine_total = sum(t)
    self.lo_bytes = _loopback_bytes()


def _measure(before: _Snapshot, after: _Snapshot, servers: int, writers: int,
             per_item: float) -> dict:
  """The insert rates between two snapshots; items hold `per_item` transitions on average."""
  seconds = after.time - before.time
  items = [(a - b) / seconds for a, b in zip(after.items, before.items)]
  total = sum(items)
  server_cpu = [(a - b) / seconds for a, b in zip(after.server_cpu, before.server_cpu)]
  writer_cpu = (after.writer_cpu - before.writer_cpu) / seconds
  busy = 1.0 - (after.machine_idle - before.machine_idle) / max(
      after.machine_total - before.machine_total, 1e-9)
  wire = (None if before.lo_bytes is None else
          (after.lo_bytes - before.lo_bytes) / seconds / 1e6)
  return {'measure': 'reverb_inserts', 'servers': servers, 'writers': writers,
          'seconds': round(seconds, 2), 'items_per_s': round(total, 1),
          'items_per_s_per_writer': round(total / writers, 1),
          'items_per_s_per_server': [round(x, 1) for x in items],
          'transitions_per_s': round(total * per_item, 1),
          'payload_mb_per_s': round(total * per_item * STEP_BYTES / 1e6, 1),
          'wire_mb_per_s': None if wire is None else round(wire, 1),
          'server_cpu_cores': [round(x, 2) for x in server_cpu],
          'writer_cpu_cores': round(writer_cpu, 2),
          # Everything else on the machine: Ray, the driver, other users' processes.
          'other_cpu_cores': round(busy * os.cpu_count() - sum(server_cpu) - writer_cpu, 2),
          'server_cpu_us_per_item': round(1e6 * sum(server_cpu) / max(total, 1e-9), 1),
          'machine_busy': round(busy, 3)}


def _saturation(rows: list[dict]) -> dict:
  """The first writer count whose aggregate grew < 10% over the previous count, and why."""
  cost = [r['server_cpu_us_per_item'] for r in rows]
  cost = sorted(cost)[len(cost) // 2] if cost else None  # Median server CPU us per item.
  for prev, row in zip(rows, rows[1:]):
    if row['items_per_s'] < SATURATION_GROWTH * prev['items_per_s']:
      machine = prev['machine_busy'] >= MACHINE_BOUND_BUSY
      return {'servers': row['servers'], 'saturates_at_writers': row['writers'],
              'peak_items_per_s': max(r['items_per_s'] for r in rows),
              'server_cpu_us_per_item': cost,
              'limit': 'machine' if machine else 'server',
              'why': (f'{os.cpu_count()} cores {100 * prev["machine_busy"]:.0f}% busy at '
                      f'{prev["writers"]} writers; the server processes used '
                      f'{sum(prev["server_cpu_cores"]):.2f} cores' if machine else
                      f'cores only {100 * prev["machine_busy"]:.0f}% busy at '
                      f'{prev["writers"]} writers while the aggregate stopped growing')}
  busy = next((r for r in rows if r['machine_busy'] >= MACHINE_BOUND_BUSY), None)
  return {'servers': rows[0]['servers'] if rows else None, 'saturates_at_writers': None,
          'peak_items_per_s': max((r['items_per_s'] for r in rows), default=None),
          'server_cpu_us_per_item': cost,
          'limit': 'machine' if busy else None,
          'why': f'still growing >= 10% at {rows[-1]["writers"] if rows else 0} writers' + (
              f', but the {os.cpu_count()} cores were >= {100 * MACHINE_BOUND_BUSY:.0f}% busy '
              f'from {busy["writers"]} writer(s) on, so the growth came from taking CPU from '
              f'other processes (other CPU column), not from server headroom; the server '
              f'processes used at most {max(sum(r["server_cpu_cores"]) for r in rows):.2f} '
              'cores' if busy else '')}


class _ServerSet:
  """`num_servers` Reverb servers (Ray actors) with the program's sharding by game."""

  def __init__(self, base_config, num_servers: int, ray, actors):
    import dataclasses  # pylint: disable=g-import-not-at-top
    import reverb  # pylint: disable=g-import-not-at-top
    config = dataclasses.replace(base_config, replay=dataclasses.replace(
        base_config.replay, server='actor', num_servers=num_servers, port=0))
    config.replay.validate('config.replay')
    config.validate('config')
    self.num_servers = num_servers
    self.servers, self.addresses = actors.start_replay_servers(config, None, '127.0.0.1')
    self.clients = [reverb.Client(a) for a in dict.fromkeys(self.addresses.values())]
    self.pids = ray.get([s.pid.remote() for s in self.servers])
    self._tables = [list(c.server_info()) for c in self.clients]

  def reset(self) -> None:
    """Empties every table (so each measurement starts from empty tables)."""
    for client, names in zip(self.clients, self._tables):
      for name in names:
        client.reset(name)


def _reverb_saturation(args, config, ray, actors) -> list[dict]:
  """Part (b): per server count and writer count, the server-side insert rate.

  Every server set is up at once and one pool of writers is re-pointed between them, so the
  server counts are measured interleaved (same background load); each (servers, writers)
  point is measured `--repeats` times and the median (by items/s) is kept.
  """
  games = config.games
  sets = {n: _ServerSet(config, n, ray, actors) for n in args.servers}
  writer_cls = actors.SyntheticWriter.options(num_cpus=0, scheduling_strategy='SPREAD')
  first = sets[args.servers[0]]
  # Writer w writes game w mod G (so with G servers every server gets writers).
  pool = [writer_cls.remote(first.addresses[games[w % len(games)]], games[w % len(games)],
                            args.episode_steps, config.replay.transitions_per_item)
          for w in range(max(args.writers))]
  writer_pids = ray.get([w.pid.remote() for w in pool])
  # Mean transitions per item: an episode's last window may be shorter.
  per_item = args.episode_steps / atari_table_names.num_items(args.episode_steps,
                                                              config.replay.transitions_per_item)
  samples: dict[tuple[int, int], list[dict]] = {}
  for repeat in range(args.repeats):
    for n in args.writers:
      for num_servers, server_set in sets.items():
        ray.get([w.connect.remote(server_set.addresses[games[i % len(games)]],
                                  games[i % len(games)]) for i, w in enumerate(pool[:n])])
        server_set.reset()
        refs = [w.write_for.remote(args.warmup_seconds + args.writer_seconds + 0.5)
                for w in pool[:n]]
        time.sleep(args.warmup_seconds)
        before = _Snapshot(server_set.clients, server_set.pids, writer_pids[:n])
        time.sleep(args.writer_seconds)
        after = _Snapshot(server_set.clients, server_set.pids, writer_pids[:n])
        ray.get(refs)
        row = dict(_measure(before, after, num_servers, n, per_item), repeat=repeat)
        samples.setdefault((num_servers, n), []).append(row)
        output.emit(row)
  for w in pool:
    ray.kill(w)
  for server_set in sets.values():
    actors.stop_replay_servers(server_set.servers)
  rows = []
  for num_servers in args.servers:
    for n in args.writers:
      runs = sorted(samples[num_servers, n], key=lambda r: r['items_per_s'])
      rows.append(dict(runs[len(runs) // 2], repeats=[r['items_per_s'] for r in runs]))
  return rows


def _print_tables(rows: list[dict], servers: list[int]) -> list[dict]:
  """Prints the saturation table(s) and verdicts; returns the verdicts."""
  print('\n| servers | writers | items/s (aggregate) | items/s per writer | payload MB/s '
        '| wire MB/s | server CPU (cores) | writer CPU (cores) | other CPU (cores) '
        '| machine busy |')
  print('| --- ' * 10 + '|')
  for r in rows:
    wire = '—' if r['wire_mb_per_s'] is None else f'{r["wire_mb_per_s"]:.0f}'
    cpu = ' + '.join(f'{x:.2f}' for x in r['server_cpu_cores'])
    print(f'| {r["servers"]} | {r["writers"]} | {r["items_per_s"]:.0f} '
          f'| {r["items_per_s_per_writer"]:.0f} | {r["payload_mb_per_s"]:.0f} | {wire} '
          f'| {cpu} | {r["writer_cpu_cores"]:.2f} | {r["other_cpu_cores"]:.2f} '
          f'| {100 * r["machine_busy"]:.0f}% |')
  verdicts = []
  for s in servers:
    v = _saturation([r for r in rows if r['servers'] == s])
    verdicts.append(v)
    at = v['saturates_at_writers']
    print(f'\n{s} server(s): ' + (f'saturates at {at} writers (aggregate grew < 10%), peak '
                                   f'{v["peak_items_per_s"]:.0f} items/s; limit: {v["limit"]} '
                                   f'({v["why"]}).' if at else
                                   f'no saturation point; limit: {v["limit"]} ({v["why"]}).') +
          f' Server CPU per item: {v["server_cpu_us_per_item"]:.0f} us (median), i.e. about '
          f'{1e6 / max(v["server_cpu_us_per_item"], 1e-9):.0f} items/s per server core.')
  if len(servers) > 1:
    base = {r['writers']: r['items_per_s'] for r in rows if r['servers'] == servers[0]}
    print('\n| writers | ' + ' | '.join(f'{s} server(s) items/s' for s in servers) +
          f' | ratio {servers[-1]} vs {servers[0]} |')
    print('| --- ' * (len(servers) + 2) + '|')
    for n in sorted(base):
      by = {r['servers']: r['items_per_s'] for r in rows if r['writers'] == n}
      print(f'| {n} | ' + ' | '.join(f'{by.get(s, float("nan")):.0f}' for s in servers) +
            f' | {by.get(servers[-1], float("nan")) / base[n]:.2f} |')
  return verdicts


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench scaling', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--nodes', type=int, default=2, help='Ray nodes on this machine')
  p.add_argument('--cpus-per-node', type=int, default=2)
  p.add_argument('--actors', type=_int_list, default=[1, 2, 4],
                 help="collector actor counts; '' skips part (a)")
  p.add_argument('--writers', type=_int_list, default=[1, 2, 4, 8],
                 help="synthetic writer counts; '' skips part (b)")
  p.add_argument('--servers', type=_int_list, default=[1],
                 help='Reverb server counts to compare side by side, e.g. 1,2 (replay sharded '
                      'by game over max(servers) games)')
  p.add_argument('--episodes-per-actor', type=int, default=6)
  p.add_argument('--writer-seconds', type=float, default=5.0,
                 help='measurement window per (servers, writers)')
  p.add_argument('--warmup-seconds', type=float, default=2.0,
                 help='writing before the window opens')
  p.add_argument('--repeats', type=int, default=3,
                 help='measurements per (servers, writers); the median is reported')
  p.add_argument('--episode-steps', type=int, default=500,
                 help='steps per synthetic episode (items are created at episode end)')
  p.add_argument('--game', default='pong')
  args = p.parse_args(argv)
  if not args.servers:
    p.error('--servers needs at least one count')

  os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
  import ray  # pylint: disable=g-import-not-at-top
  from ray import cluster_utils  # pylint: disable=g-import-not-at-top
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.acting import atari_collector as collector_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.distributed import atari_actors as actors  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import splits  # pylint: disable=g-import-not-at-top

  c = atari_configs.get_config('local')
  # As many games as the most servers compared: replay is sharded by game.
  others = [g for g in atari_configs.PAPER_GAMES if g != args.game]
  c.games = (args.game, *others[:max(args.servers) - 1])
  c.env.max_episode_steps = 500
  # Native frames: the synthetic writers replay native observations (module docstring).
  c.env.frame_height, c.env.frame_width = 210, 160
  c.heads.num_heads = 64
  c.heads.episodes_per_head = 2
  c.replay.abstract_max_size = c.replay.natural_max_size = 2_000_000
  config = config_lib.load_atari_config(c)

  cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
      'num_cpus': args.cpus_per_node, 'node_ip_address': '127.0.0.1'})
  for _ in range(args.nodes - 1):
    cluster.add_node(num_cpus=args.cpus_per_node, node_ip_address='127.0.0.1')
  ray.init(address=cluster.address)
  nodes = sorted({n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']})
  output.emit({'measure': 'cluster', 'nodes': len(ray.nodes()), 'addresses': nodes,
               'cpus': ray.cluster_resources().get('CPU'),
               'machine_cores': os.cpu_count()})

  single = None
  if args.actors:
    replay = actors.ReplayServer(config, None, '127.0.0.1')
    addresses = {game: replay.address() for game in config.games}
    store = tempfile.mkdtemp(prefix='rmr-scaling-')
    actor_cls = actors.make_collector_actor_class(0).options(scheduling_strategy='SPREAD')
    train_units = [u for u in collector_lib.make_work_units((args.game,), 64, 2)
                   if splits.episode_split(u.head, u.episode, 2, 0.5) == splits.TRAIN]
    for n in args.actors:
      workers = [actor_cls.remote(config, addresses, store) for _ in range(n)]
      ray.get([w.counters.remote() for w in workers])  # Started and imported.
      units = train_units[:n * args.episodes_per_actor]
      start = time.perf_counter()
      results = ray.get([w.run.remote(units[i::n]) for i, w in enumerate(workers)])
      seconds = time.perf_counter() - start
      steps = sum(s.length for r in results for s in r)
      rate = steps / seconds
      single = single or rate / n
      output.emit({'measure': 'collectors', 'actors': n, 'steps': steps,
                   'steps_per_s': round(rate, 1), 'per_actor': round(rate / n, 1),
                   'efficiency': round(rate / (n * single), 3)})
      for w in workers:
        ray.kill(w)
    replay.stop()

  rows = _reverb_saturation(args, config, ray, actors) if args.writers else []
  ray.shutdown()
  cluster.shutdown()
  verdicts = _print_tables(rows, args.servers) if rows else []
  output.emit({
      'benchmark': 'scaling', 'nodes': args.nodes, 'cpus': args.nodes * args.cpus_per_node,
      'machine_cores': os.cpu_count(),
      'collector_steps_per_s_1_actor': None if single is None else round(single, 1),
      'reverb_saturation': verdicts,
      'note': 'writers and servers share this machine\'s cores: where the limit is "machine", '
              'the saturation point is this machine\'s, not one Reverb server\'s',
  })
