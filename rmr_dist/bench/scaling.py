"""Collection scaling over Ray nodes, and where one Reverb server saturates.

Starts a multi-node `ray.cluster_utils.Cluster` on this machine (every node on 127.0.0.1) and an
in-process Reverb server in the driver, then:
  (a) for each actor count n in `--actors`, n collector actors (spread over the nodes, 1 CPU
      each) collect the same kind of training episodes into Reverb; prints total agent steps/s
      and the scaling efficiency total / (n x the 1-actor rate);
  (b) for each writer count n in `--writers`, n actors insert synthetic natural+abstract items
      (210x160 frames) as fast as they can; prints the server's insert rate, which stops growing
      where one server (or this machine) saturates.
Actor start-up (imports) is excluded from every timing. This machine has few cores, so past
that count the numbers show the machine's limit, not the design's: the summary says so.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def _int_list(text: str) -> list[int]:
  try:
    values = [int(x) for x in text.split(',') if x]
  except ValueError as e:
    raise argparse.ArgumentTypeError(f'expected comma-separated ints, got {text!r}') from e
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f'expected ints >= 1, got {text!r}')
  return values


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench scaling', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--nodes', type=int, default=2, help='Ray nodes on this machine')
  p.add_argument('--cpus-per-node', type=int, default=2)
  p.add_argument('--actors', type=_int_list, default=[1, 2, 4])
  p.add_argument('--writers', type=_int_list, default=[1, 2, 4])
  p.add_argument('--episodes-per-actor', type=int, default=6)
  p.add_argument('--writer-seconds', type=float, default=5.0)
  p.add_argument('--game', default='pong')
  args = p.parse_args(argv)

  os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
  import ray  # pylint: disable=g-import-not-at-top
  from ray import cluster_utils  # pylint: disable=g-import-not-at-top
  import reverb  # pylint: disable=g-import-not-at-top
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.acting import collector as collector_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.distributed import actors  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import splits  # pylint: disable=g-import-not-at-top

  c = atari_configs.get_config('local')
  c.games = (args.game,)
  c.env.max_episode_steps = 500
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
  print(json.dumps({'measure': 'cluster', 'nodes': len(ray.nodes()), 'addresses': nodes,
                    'cpus': ray.cluster_resources().get('CPU')}), flush=True)
  replay = actors.ReplayServer(config, None, '127.0.0.1')
  client = reverb.Client(replay.address())
  store = tempfile.mkdtemp(prefix='rmr-scaling-')
  actor_cls = actors.make_collector_actor_class(0).options(scheduling_strategy='SPREAD')
  train_units = [u for u in collector_lib.make_work_units(config.games, 64, 2)
                 if splits.episode_split(u.head, u.episode, 2, 0.5) == splits.TRAIN]

  single = None
  for n in args.actors:
    workers = [actor_cls.remote(config, replay.address(), store) for _ in range(n)]
    ray.get([w.counters.remote() for w in workers])  # Started and imported.
    units = train_units[:n * args.episodes_per_actor]
    start = time.perf_counter()
    results = ray.get([w.run.remote(units[i::n]) for i, w in enumerate(workers)])
    seconds = time.perf_counter() - start
    steps = sum(s.length for r in results for s in r)
    rate = steps / seconds
    single = single or rate / n
    print(json.dumps({'measure': 'collectors', 'actors': n, 'steps': steps,
                      'steps_per_s': round(rate, 1), 'per_actor': round(rate / n, 1),
                      'efficiency': round(rate / (n * single), 3)}), flush=True)
    for w in workers:
      ray.kill(w)

  writer_rates = []
  for n in args.writers:
    writers = [actors.SyntheticWriter.options(scheduling_strategy='SPREAD').remote(
        replay.address(), args.game) for _ in range(n)]
    ray.get([w.ready.remote() for w in writers])
    before = sum(i.current_size for name, i in client.server_info().items()
                 if name.startswith('natural'))
    start = time.perf_counter()
    ray.get([w.write_for.remote(args.writer_seconds) for w in writers])
    seconds = time.perf_counter() - start
    after = sum(i.current_size for name, i in client.server_info().items()
                if name.startswith('natural'))
    rate = (after - before) / seconds
    writer_rates.append((n, rate))
    print(json.dumps({'measure': 'reverb_inserts', 'writers': n,
                      'natural_items_per_s': round(rate, 1)}), flush=True)
    for w in writers:
      ray.kill(w)
  saturation = next((n for (n, r), (_, prev) in zip(writer_rates[1:], writer_rates)
                     if r < 1.2 * prev), None)
  replay.stop()
  ray.shutdown()
  cluster.shutdown()
  print(json.dumps({
      'benchmark': 'scaling', 'nodes': args.nodes, 'cpus': args.nodes * args.cpus_per_node,
      'machine_cores': os.cpu_count(), 'collector_steps_per_s_1_actor': round(single, 1),
      'reverb_items_per_s': {str(n): round(r, 1) for n, r in writer_rates},
      'reverb_saturates_at_writers': saturation,
      'note': 'actor counts above machine_cores measure this machine, not the design',
  }), flush=True)
