"""One collector on one core, for a profiler: where does a collector step's time go?

Builds the collector that `python -m rmr_dist.bench collect` measures (the local config, native
210x160 palette frames, Pong, training episodes only) writing into an in-process Reverb server,
pins the process to one core, warms it up, then plays episodes for `--seconds` and prints its
steps per second. `--no-replay` runs the same collector writing nothing. Run it under a
sampling profiler, e.g.

  perf record -F 2000 -g -o /tmp/collector.perf -- python scripts/profile_collector.py
  perf report -i /tmp/collector.perf --no-children --sort dso -g none

The 2 s pause before the timed loop (after the line `ready <pid>`) lets `perf record -p <pid>`
attach after start-up instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--game', default='pong')
  p.add_argument('--seconds', type=float, default=20.0)
  p.add_argument('--core', type=int, default=0, help='the core to pin to (-1: no pinning)')
  p.add_argument('--no-replay', action='store_true', help='the collector writes nothing')
  a = p.parse_args()
  if a.core >= 0:
    os.sched_setaffinity(0, {a.core})  # Before any thread starts: Reverb's share the core.

  import reverb  # pylint: disable=g-import-not-at-top
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.bench import atari_collect as collect_bench  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top

  c = atari_configs.get_config('local')
  c.games = (a.game,)
  c.env.max_episode_steps = 27_000
  c.env.frame_height, c.env.frame_width = atari.NATIVE_FRAME_SHAPE
  c.heads.num_heads, c.heads.episodes_per_head = 8, 4
  c.replay.learner_source = 'reverb'
  c.natural.negatives, c.natural.episode_window = 'batch', 0  # (they need the store source)
  config = config_lib.load_atari_config(c)  # (store_all_episodes: the probe stage needs it)
  config = dataclasses.replace(  # Training episodes go to Reverb only.
      config, collect=dataclasses.replace(config.collect, store_all_episodes=False))
  server = atari_tables.make_server(
      atari_tables.make_config_tables(config, abstract_max_size=200_000, natural_max_size=200_000,
                                      min_size_to_sample=1),
      checkpoint_dir=tempfile.mkdtemp(prefix='rmr-profile-replay-'))
  client = None if a.no_replay else reverb.Client(f'127.0.0.1:{server.port}')
  collector = collect_bench._make_collector(  # pylint: disable=protected-access
      config, client, tempfile.mkdtemp(prefix='rmr-profile-'))
  units = collect_bench._units(config, collector)  # pylint: disable=protected-access
  print('ready', os.getpid(), flush=True)
  time.sleep(2.0)
  start, steps, episodes = time.perf_counter(), 0, 0
  while time.perf_counter() - start < a.seconds:
    steps += collector.run_episode(units[episodes % len(units)]).length
    episodes += 1
  seconds = time.perf_counter() - start
  print(f'{"no replay" if a.no_replay else "replay"}: {steps} steps in {episodes} episodes, '
        f'{steps / seconds:.0f} steps/s', flush=True)
  server.stop()


if __name__ == '__main__':
  main()
