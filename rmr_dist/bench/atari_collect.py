"""Collector overhead: a bare ale-py loop vs one collector writing into a real Reverb server.

All measured in one run on the same game, frame skip and sticky-action setting, interleaved
episode by episode (each measurement plays one episode in turn, in a rotating order; a round is
the episodes of `--steps` agent steps, repeated `--repeats` times), so that the drifts of a
shared machine's speed hit every measurement alike:
  (a) bare: `ALEInterface` with ALE's own frame skip and sticky actions, replaying the no-op
      starts and actions of the very episodes the collector plays (recorded once beforehand;
      an episode depends only on its seed), RAM and RGB read into preallocated buffers every
      agent step (the reference); also the same loop reading ALE's palette-index screen instead
      of RGB (`bare_ale_palette`). The emulator's cost per step depends on the game state and
      so on the actions, so the reference plays the same frames as the collector;
  (b) collector: `rmr_dist.acting.atari_collector.Collector` (heads, env wrapper, one-hot,
      trajectory writer, two items per `replay.transitions_per_item` steps) writing training
      episodes into an in-process Reverb server, and nothing else
      (`collect.store_all_episodes=False`).
      Frames are native 210x160, so the collector reads and stores palette indices
      (`rmr_dist.envs.atari_palette`).
By default the process is pinned to one core before any thread starts, so the Reverb server's and
writer's threads share that core with the collector, as they would on a busy node.

A third measurement, the same collector writing nothing, separates the cost of the environment
wrapper and heads from the cost of replay writes. A fourth, the collector of the local default
(`store_all_episodes=True`: every episode also goes whole, compressed, into the on-disk episode
store), gives what that choice costs (`ratio_with_store`; `store_bytes_per_step` is the
store's file bytes per step (frame, RAM, action, reward), at zlib level `store_compress_level`).
A fifth, `collector_remote_server`, is the collector writing into a Reverb server in a process of
its own, as in the program (the server lives in the driver or its own actor, never in a
collector), pinned to the next core when there is one (`server_core`: 'own'; else 'shared', the
collector's core): it separates the collector process's own cost from the server's.

Prints one JSON line per measurement and round, and a summary line last with `ale_steps_per_s`,
`collector_steps_per_s`, `ratio` (= collector / bare RGB loop), `ratio_without_replay`,
`ratio_to_bare_palette` (= collector / the bare palette-index loop), `ratio_with_store`,
`ratio_remote_server`, `ratio_cpu` (the same ratio in steps per CPU second of this process, all
its threads, Reverb's included: on a core that other processes share, wall-clock rates move with
their load, CPU time much less) and `bytes_per_transition` (the in-process server's Reverb
checkpoint size on disk / the transitions written to it; both tables share their chunks).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import tempfile
import time

from rmr_dist.bench import output

# Keys of the summary line (the last), each named in the module docstring.
SUMMARY_KEYS = ('ale_steps_per_s', 'collector_steps_per_s', 'ratio', 'ratio_without_replay',
                'ratio_to_bare_palette', 'ratio_with_store', 'ratio_remote_server', 'ratio_cpu',
                'bytes_per_transition')


class _BareAle:
  """The bare ALE loop: ALE's own frame skip and sticky actions, RAM and screen read into
  preallocated buffers every agent step; `play` replays one recorded episode."""

  def __init__(self, game: str, frame_skip: int, sticky: float, seed: int,
               palette_frames: bool = False):
    import ale_py  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from ale_py import roms  # pylint: disable=g-import-not-at-top
    self._ale = ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt('random_seed', seed)
    ale.setInt('frame_skip', frame_skip)
    ale.setFloat('repeat_action_probability', sticky)
    ale.loadROM(roms.get_rom_path(game))
    self._start_state = ale.cloneState(include_rng=True)
    self._actions = sorted(ale_py.Action, key=lambda a: a.value)
    self._ram = np.empty(128, np.uint8)
    self._screen = np.empty((210, 160) if palette_frames else (210, 160, 3), np.uint8)
    self._read_screen = ale.getScreen if palette_frames else ale.getScreenRGB

  def play(self, noops: int, episode: list[int]) -> None:
    """Plays `noops` NOOP steps from power-on, then the agent steps `episode`."""
    ale, actions, ram, screen = self._ale, self._actions, self._ram, self._screen
    ale.restoreState(self._start_state)
    for _ in range(noops):
      ale.act(actions[0])
    ale.getRAM(ram)
    self._read_screen(screen)
    for a in episode:
      ale.act(actions[a])
      ale.getRAM(ram)
      self._read_screen(screen)


def _units(config, collector) -> list:
  """The training units the collector measurements cycle through, in order."""
  from rmr_dist.acting import atari_collector as collector_lib  # pylint: disable=g-import-not-at-top
  return [u for u in collector_lib.make_work_units(config.games, config.heads.num_heads,
                                                   config.heads.episodes_per_head)
          if collector.split_of(u) == 'train']


def _record_episodes(config, steps: int) -> list[tuple[int, list[int]]]:
  """(no-op count, actions) of the episodes a collector measurement of `steps` plays: the units
  are played in order until `steps`, and each episode depends only on its unit's seed, so the
  bare loop can replay exactly the collector's emulation."""
  import dataclasses as dc  # pylint: disable=g-import-not-at-top
  from rmr_dist.acting import atari_collector as collector_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_episode_store  # pylint: disable=g-import-not-at-top
  store = atari_episode_store.EpisodeStore(tempfile.mkdtemp(prefix='rmr-bench-actions-'))
  recorder = collector_lib.Collector(
      dc.replace(config, collect=dc.replace(config.collect, store_all_episodes=True)), store,
      None)
  env = atari.AtariEnv.from_config(config.games[0], config.env)
  out, done, units = [], 0, _units(config, recorder)
  while done < steps:
    unit = units[len(out) % len(units)]
    stats = recorder.run_episode(unit)
    actions = store.read_arrays(unit.game, 'train', unit.head, unit.episode, ('action',))
    env.reset(collector_lib.episode_rngs(config.seed, unit)[0])
    out.append((env.last_noops, [int(a) for a in actions['action']]))
    done += stats.length
  return out


def _make_collector(config, client, store_root: str):
  """A collector writing training episodes to Reverb at `client` (None: no replay) and, with
  `collect.store_all_episodes`, every episode to the episode store at `store_root`; warmed up
  by one untimed episode (emulator, writer stream), as a long-running collector actor is."""
  from rmr_dist.acting import atari_collector as collector_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_adders  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_episode_store  # pylint: disable=g-import-not-at-top
  store = atari_episode_store.EpisodeStore(store_root)
  adder = (atari_adders.TransitionAdder(client, max_episode_steps=config.env.max_episode_steps,
                                        chunk_length=config.replay.chunk_length,
                                        transitions_per_item=config.replay.transitions_per_item)
           if client is not None else None)
  collector = collector_lib.Collector(config, store, adder)
  collector.run_episode(_units(config, collector)[-1])
  return collector


def _serve(config, capacity: int, core: int | None, conn) -> None:
  """Runs in a child process: a Reverb server with the collectors' tables (pinned to `core`
  unless None), sends its port through `conn`, serves until `conn` receives anything."""
  if core is not None:
    os.sched_setaffinity(0, {core})
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top
  server = atari_tables.make_server(atari_tables.make_config_tables(
      config, abstract_max_size=capacity, natural_max_size=capacity, min_size_to_sample=1))
  conn.send(server.port)
  conn.recv()
  server.stop()


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench collect', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--game', default='pong')
  p.add_argument('--steps', type=int, default=3000,
                 help='agent steps of the episodes each measurement plays per round')
  p.add_argument('--repeats', type=int, default=7,
                 help='rounds (ratios: medians over rounds of the per-round ratio)')
  p.add_argument('--frame-skip', type=int, default=4)
  p.add_argument('--sticky', type=float, default=None,
                 help='repeat_action_probability (default: the local config\'s, 0: '
                      'deterministic; with sticky actions the bare loop draws its own)')
  p.add_argument('--chunk-length', type=int, default=None,
                  help='Reverb chunk length (default: the local config\'s replay.chunk_length)')
  p.add_argument('--transitions-per-item', type=int, default=None,
                 help='transitions per Reverb item (default: the local config\'s '
                      'replay.transitions_per_item)')
  p.add_argument('--store-compress-level', type=int, default=None,
                 help='zlib level of the episode store files (default: the store\'s, '
                      'atari_episode_store.COMPRESS_LEVEL)')
  p.add_argument('--cores', type=int, default=1, help='CPU cores to pin to (0: no pinning)')
  p.add_argument('--max-episode-steps', type=int, default=27_000,
                 help='agent steps after which a collector episode is truncated')
  args = p.parse_args(argv)
  available = sorted(os.sched_getaffinity(0))
  if args.cores:
    if args.cores > len(available):
      raise SystemExit(f'--cores={args.cores} but only {len(available)} cores are available')
    os.sched_setaffinity(0, set(available[:args.cores]))

  import reverb  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_episode_store  # pylint: disable=g-import-not-at-top
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top

  if args.store_compress_level is not None:
    if not 1 <= args.store_compress_level <= 9:
      raise SystemExit(f'--store-compress-level={args.store_compress_level}: zlib levels are 1-9')
    atari_episode_store.COMPRESS_LEVEL = args.store_compress_level
  c = atari_configs.get_config('local')
  c.games = (args.game,)
  c.env.frame_skip = args.frame_skip
  if args.sticky is not None:
    c.env.repeat_action_probability = args.sticky
  c.env.max_episode_steps = args.max_episode_steps
  c.env.frame_height, c.env.frame_width = atari.NATIVE_FRAME_SHAPE  # What the bare loop reads.
  c.heads.num_heads = 8
  c.heads.episodes_per_head = 4
  if args.chunk_length is not None:
    c.replay.chunk_length = args.chunk_length
  if args.transitions_per_item is not None:
    c.replay.transitions_per_item = args.transitions_per_item
  c.replay.learner_source = 'reverb'
  c.natural.negatives, c.natural.episode_window = 'batch', 0  # (they need the store source)
  with_store = config_lib.load_atari_config(c)  # (the probe stage needs the stored episodes)
  # The replay data plane alone: training episodes go to Reverb only.
  config = dataclasses.replace(
      with_store, collect=dataclasses.replace(with_store.collect, store_all_episodes=False))
  replay_dir = tempfile.mkdtemp(prefix='rmr-bench-replay-')
  capacity = args.steps * args.repeats + 30_000
  server = atari_tables.make_server(
      atari_tables.make_config_tables(config, abstract_max_size=capacity, natural_max_size=capacity,
                                      min_size_to_sample=1),
      checkpoint_dir=replay_dir)
  client = reverb.Client(f'127.0.0.1:{server.port}')
  # The remote server: on the first core the collector is not pinned to, if any.
  server_core = available[args.cores] if 0 < args.cores < len(available) else None
  context = multiprocessing.get_context('spawn')
  parent_conn, child_conn = context.Pipe()
  remote = context.Process(target=_serve, args=(config, capacity, server_core, child_conn),
                           daemon=True)
  remote.start()
  if not parent_conn.poll(120):
    remote.kill()
    raise SystemExit('bench collect: the remote Reverb server did not start within 120 s')
  remote_client = reverb.Client(f'127.0.0.1:{parent_conn.recv()}')

  sticky = config.env.repeat_action_probability
  episodes = _record_episodes(config, args.steps)  # What every measurement below plays.
  store_root = tempfile.mkdtemp(prefix='rmr-bench-store-')
  collectors = {
      'collector': _make_collector(config, client, tempfile.mkdtemp(prefix='rmr-bench-')),
      'collector_without_replay': _make_collector(config, None,
                                                  tempfile.mkdtemp(prefix='rmr-bench-')),
      'collector_with_store': _make_collector(with_store, client, store_root),
      'collector_remote_server': _make_collector(config, remote_client,
                                                 tempfile.mkdtemp(prefix='rmr-bench-'))}
  bare = {'bare_ale': _BareAle(args.game, args.frame_skip, sticky, config.seed),
          'bare_ale_palette': _BareAle(args.game, args.frame_skip, sticky, config.seed,
                                       palette_frames=True)}
  units = _units(config, collectors['collector'])
  names = [*bare, *collectors]
  rates = {k: [] for k in names}
  cpu_rates = {k: [] for k in names}
  for r in range(args.repeats):
    # Every measure plays each episode in turn, in an order rotated per episode, so slow
    # drifts of the machine's speed hit all of them alike.
    seconds, cpu, steps = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0), 0
    for j, (noops, episode) in enumerate(episodes):
      for name in names[j % len(names):] + names[:j % len(names)]:
        start, start_cpu = time.perf_counter(), time.process_time()
        if name in bare:
          bare[name].play(noops, episode)
        else:
          collectors[name].run_episode(units[j % len(units)])
        seconds[name] += time.perf_counter() - start
        cpu[name] += time.process_time() - start_cpu
      steps += len(episode)
    for name in names:
      rates[name].append(steps / seconds[name])
      cpu_rates[name].append(steps / cpu[name])
      output.emit({'measure': name, 'repeat': r, 'steps_per_s': round(rates[name][-1], 1),
                   'steps': steps})
  # Every transition written to the in-process server, warm-up episodes included (its
  # checkpoint holds them).
  stored = sum(c.counters['train_transitions'] for name, c in collectors.items()
               if name != 'collector_remote_server')  # (that server is not checkpointed)
  # The store holds one file per unit the with-store collector played (re-plays overwrite).
  store = atari_episode_store.EpisodeStore(store_root)
  entries = store.entries()
  store_steps = sum(e['length'] + 1 for e in entries)  # T + 1 frames and RAMs per episode.
  store_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(store_root)
                    for f in fs if f.endswith('.npz'))
  path = client.checkpoint()
  ckpt_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
  server.stop()
  parent_conn.send('stop')
  remote.join(timeout=60)
  # Ratios are paired: the median over repeats of (measure / bare loop) in the same repeat.
  paired = lambda name, ref='bare_ale': statistics.median(
      x / y for x, y in zip(rates[name], rates[ref]))
  median = lambda name: round(statistics.median(rates[name]), 1)
  output.emit({
      'benchmark': 'collect', 'game': args.game, 'frame_skip': args.frame_skip,
      'sticky': sticky, 'chunk_length': config.replay.chunk_length,
      'transitions_per_item': config.replay.transitions_per_item,
      'cores': args.cores or len(os.sched_getaffinity(0)), 'repeats': args.repeats,
      'ale_steps_per_s': median('bare_ale'), 'collector_steps_per_s': median('collector'),
      'ratio': round(paired('collector'), 3),
      'collector_without_replay_steps_per_s': median('collector_without_replay'),
      'ratio_without_replay': round(paired('collector_without_replay'), 3),
      'ale_palette_steps_per_s': median('bare_ale_palette'),
      'ratio_to_bare_palette': round(paired('collector', 'bare_ale_palette'), 3),
      'collector_with_store_steps_per_s': median('collector_with_store'),
      'ratio_with_store': round(paired('collector_with_store'), 3),
      'collector_remote_server_steps_per_s': median('collector_remote_server'),
      'ratio_remote_server': round(paired('collector_remote_server'), 3),
      'server_core': 'shared' if server_core is None else 'own',
      'ratio_cpu': round(statistics.median(
          x / y for x, y in zip(cpu_rates['collector'], cpu_rates['bare_ale'])), 3),
      'stored_transitions': stored,
      'store_compress_level': atari_episode_store.COMPRESS_LEVEL,
      'store_bytes_per_step': round(store_bytes / store_steps, 1),
      'bytes_per_transition': round(ckpt_bytes / stored, 1),
      'raw_bytes_per_transition': 210 * 160 + 128 + 18,
  })
