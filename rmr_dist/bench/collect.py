"""Collector overhead: a bare ale-py loop vs one collector writing into a real Reverb server.

Both measured in one run, alternating, on the same game, frame skip and sticky-action setting:
  (a) bare: `ALEInterface` with ALE's own frame skip and sticky actions, a uniformly random
      action, RAM and RGB read into preallocated buffers every agent step (the reference);
      also the same loop reading ALE's palette-index screen instead of RGB (`bare_ale_palette`);
  (b) collector: `rmr_dist.acting.collector.Collector` (heads, env wrapper, one-hot, trajectory
      writer, two items per step) writing training episodes into an in-process Reverb server.
      Frames are native 210x160, so the collector reads and stores palette indices
      (`rmr_dist.envs.palette`).
By default the process is pinned to one core before any thread starts, so the Reverb server's and
writer's threads share that core with the collector, as they would on a busy node.

A third measurement, the same collector writing nothing, separates the cost of the environment
wrapper and heads from the cost of replay writes.

Prints one JSON line per measurement and a summary line last with `ale_steps_per_s`,
`collector_steps_per_s`, `ratio` (= collector / bare RGB loop), `ratio_without_replay`,
`ratio_to_bare_palette` (= collector / the bare palette-index loop), `ratio_cpu` (the same
ratio in steps per CPU second of this process, all its threads, Reverb's included: on a core
that other processes share, wall-clock rates move with their load, CPU time much less) and
`bytes_per_transition` (Reverb checkpoint size on disk / transitions; both tables share their
chunks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from rmr_dist.bench import output

# Keys of the summary line (the last), each named in the module docstring.
SUMMARY_KEYS = ('ale_steps_per_s', 'collector_steps_per_s', 'ratio', 'ratio_without_replay',
                'ratio_to_bare_palette', 'ratio_cpu', 'bytes_per_transition')


def _bare(game: str, steps: int, frame_skip: int, sticky: float, seed: int,
          palette_frames: bool = False) -> tuple[float, float]:
  """(steps per wall second, steps per CPU second of this process) of the bare ALE loop."""
  import ale_py  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ale_py import roms  # pylint: disable=g-import-not-at-top
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  ale.setInt('random_seed', seed)
  ale.setInt('frame_skip', frame_skip)
  ale.setFloat('repeat_action_probability', sticky)
  ale.loadROM(roms.get_rom_path(game))
  actions = sorted(ale_py.Action, key=lambda a: a.value)
  ram = np.empty(128, np.uint8)
  screen = np.empty((210, 160) if palette_frames else (210, 160, 3), np.uint8)
  read_screen = ale.getScreen if palette_frames else ale.getScreenRGB
  choices = np.random.default_rng(seed).integers(0, 18, steps)
  start, cpu = time.perf_counter(), time.process_time()
  for i in range(steps):
    ale.act(actions[choices[i]])
    ale.getRAM(ram)
    read_screen(screen)
    if ale.game_over():
      ale.reset_game()
  return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu)


def _collector(config, client, steps: int) -> tuple[float, float, int]:
  """(steps per wall second, steps per CPU second of this process, steps) of a collector writing
  training episodes to Reverb (client None: writing nothing)."""
  from rmr_dist.acting import collector as collector_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import adders  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import episode_store  # pylint: disable=g-import-not-at-top
  store = episode_store.EpisodeStore(tempfile.mkdtemp(prefix='rmr-bench-store-'))
  adder = (adders.TransitionAdder(client, max_episode_steps=config.env.max_episode_steps,
                                  chunk_length=config.replay.chunk_length)
           if client is not None else None)
  collector = collector_lib.Collector(config, store, adder)
  # Training episodes only: they are the ones that go through Reverb.
  units = [u for u in collector_lib.make_work_units(config.games, config.heads.num_heads,
                                                    config.heads.episodes_per_head)
           if collector.split_of(u) == 'train']
  done, seconds, i, cpu = 0, 0.0, 0, time.process_time()
  while done < steps:
    unit = units[i % len(units)]
    stats = collector.run_episode(unit)
    done += stats.length
    seconds += stats.seconds
    i += 1
  return done / seconds, done / (time.process_time() - cpu), done


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench collect', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--game', default='pong')
  p.add_argument('--steps', type=int, default=5000, help='agent steps per measurement')
  p.add_argument('--repeats', type=int, default=3, help='alternating (bare, collector) pairs')
  p.add_argument('--frame-skip', type=int, default=4)
  p.add_argument('--sticky', type=float, default=0.25, help='repeat_action_probability')
  p.add_argument('--chunk-length', type=int, default=None,
                  help='Reverb chunk length (default: the local config\'s replay.chunk_length)')
  p.add_argument('--cores', type=int, default=1, help='CPU cores to pin to (0: no pinning)')
  p.add_argument('--max-episode-steps', type=int, default=27_000,
                 help='agent steps after which a collector episode is truncated')
  args = p.parse_args(argv)
  if args.cores:
    available = sorted(os.sched_getaffinity(0))
    if args.cores > len(available):
      raise SystemExit(f'--cores={args.cores} but only {len(available)} cores are available')
    os.sched_setaffinity(0, set(available[:args.cores]))

  import reverb  # pylint: disable=g-import-not-at-top
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import tables  # pylint: disable=g-import-not-at-top

  c = atari_configs.get_config('local')
  c.games = (args.game,)
  c.env.frame_skip = args.frame_skip
  c.env.repeat_action_probability = args.sticky
  c.env.max_episode_steps = args.max_episode_steps
  c.env.frame_height, c.env.frame_width = atari.NATIVE_FRAME_SHAPE  # What the bare loop reads.
  c.heads.num_heads = 8
  c.heads.episodes_per_head = 4
  if args.chunk_length is not None:
    c.replay.chunk_length = args.chunk_length
  config = config_lib.load_atari_config(c)
  replay_dir = tempfile.mkdtemp(prefix='rmr-bench-replay-')
  capacity = args.steps * args.repeats + 30_000
  server = tables.make_server(
      tables.make_config_tables(config, abstract_max_size=capacity, natural_max_size=capacity,
                                min_size_to_sample=1),
      checkpoint_dir=replay_dir)
  client = reverb.Client(f'127.0.0.1:{server.port}')

  bare, bare_palette, coll, no_replay, stored = [], [], [], [], 0
  bare_cpu, coll_cpu = [], []
  for r in range(args.repeats):
    b, b_cpu = _bare(args.game, args.steps, args.frame_skip, args.sticky, seed=r)
    bare.append(b)
    bare_cpu.append(b_cpu)
    output.emit({'measure': 'bare_ale', 'repeat': r, 'steps_per_s': round(b, 1)})
    bp, _ = _bare(args.game, args.steps, args.frame_skip, args.sticky, seed=r,
                  palette_frames=True)
    bare_palette.append(bp)
    output.emit({'measure': 'bare_ale_palette', 'repeat': r, 'steps_per_s': round(bp, 1)})
    cs, cs_cpu, n = _collector(config, client, args.steps)
    coll.append(cs)
    coll_cpu.append(cs_cpu)
    stored += n
    output.emit({'measure': 'collector', 'repeat': r, 'steps_per_s': round(cs, 1),
                 'steps': n})
    nr, _, _ = _collector(config, None, args.steps)
    no_replay.append(nr)
    output.emit({'measure': 'collector_without_replay', 'repeat': r,
                 'steps_per_s': round(nr, 1)})
  path = client.checkpoint()
  ckpt_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
  server.stop()
  ale_sps, col_sps = statistics.median(bare), statistics.median(coll)
  output.emit({
      'benchmark': 'collect', 'game': args.game, 'frame_skip': args.frame_skip,
      'sticky': args.sticky, 'chunk_length': config.replay.chunk_length,
      'cores': args.cores or len(os.sched_getaffinity(0)),
      'ale_steps_per_s': round(ale_sps, 1), 'collector_steps_per_s': round(col_sps, 1),
      'ratio': round(col_sps / ale_sps, 3),
      'collector_without_replay_steps_per_s': round(statistics.median(no_replay), 1),
      'ratio_without_replay': round(statistics.median(no_replay) / ale_sps, 3),
      'ale_palette_steps_per_s': round(statistics.median(bare_palette), 1),
      'ratio_to_bare_palette': round(col_sps / statistics.median(bare_palette), 3),
      'ratio_cpu': round(statistics.median(coll_cpu) / statistics.median(bare_cpu), 3),
      'stored_transitions': stored,
      'bytes_per_transition': round(ckpt_bytes / stored, 1),
      'raw_bytes_per_transition': 210 * 160 + 128 + 18,
  })
