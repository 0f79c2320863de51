"""Does writing replay between emulator steps cost more than writing alone?

Plays the first `--steps` agent steps of one Pong episode, fewer if the game ends first
(palette frames, seeded random actions over Pong's minimal set, no sticky actions), and times,
in CPU microseconds per step of this whole process (writer, gRPC and in-process server threads
included), on one core:
  emulate: `AtariEnv.step` alone (RAM and palette screen read every step);
  write:   the recorded observations written through the collectors' `TransitionAdder` into an
           in-process Reverb server (abstract + natural tables), no emulation;
  both:    emulation and writes interleaved step by step, as a collector does.
`interaction` = both - emulate - write: what the two cost together beyond their sum (cache
and scheduling effects). The three are interleaved over `--repeats` rounds; medians.

  python scripts/replay_write_interleaved.py            # pins itself to the first core
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--steps', type=int, default=1000)
  p.add_argument('--repeats', type=int, default=7)
  p.add_argument('--chunk-length', type=int, default=8)
  p.add_argument('--transitions-per-item', type=int, default=8)
  a = p.parse_args()
  for flag in ('steps', 'repeats', 'chunk_length', 'transitions_per_item'):
    if getattr(a, flag) < 1:
      p.error(f'--{flag.replace("_", "-")}={getattr(a, flag)}: needs an int >= 1')
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # Before Reverb starts threads.

  import reverb  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_adders  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top

  env = atari.AtariEnv('pong', palette_frames=True, max_episode_steps=10 * a.steps)
  minimal = atari.agent_actions('pong', 'minimal')
  actions = [minimal[i] for i in np.random.default_rng(0).integers(len(minimal), size=a.steps)]
  recorded = [env.reset(0)]
  for t, action in enumerate(actions):
    result = env.step(action)
    recorded.append(result.observation)
    if result.terminal:  # The game ended first: time the steps it has.
      actions = actions[:t + 1]
      break
  a.steps = len(actions)
  server = atari_tables.make_server(atari_tables.make_tables(
      ('pong',), atari.NATIVE_FRAME_SHAPE, abstract_max_size=100 * a.steps,
      natural_max_size=100 * a.steps, min_size_to_sample=1, rgb_frames=False))
  adder = atari_adders.TransitionAdder(reverb.Client(f'127.0.0.1:{server.port}'),
                                       max_episode_steps=a.steps, chunk_length=a.chunk_length,
                                       transitions_per_item=a.transitions_per_item)

  def emulate() -> None:
    env.reset(0)
    for action in actions:
      env.step(action)

  def write() -> None:
    adder.begin_episode('pong')
    for obs, action in zip(recorded, actions):
      adder.add(obs, action)
    adder.end_episode(recorded[-1])

  def both() -> None:
    obs = env.reset(0)
    adder.begin_episode('pong')
    for action in actions:
      adder.add(obs, action)
      obs = env.step(action).observation
    adder.end_episode(obs)

  measures = {'emulate': emulate, 'write': write, 'both': both}
  both()  # Warm-up: the writer's stream, the emulator.
  us = {k: [] for k in measures}
  for _ in range(a.repeats):
    for name, fn in measures.items():
      start = time.process_time()
      fn()
      us[name].append((time.process_time() - start) / a.steps * 1e6)
  adder.close()
  server.stop()
  m = {k: statistics.median(v) for k, v in us.items()}
  print(json.dumps({
      'steps': a.steps, 'repeats': a.repeats, 'chunk_length': a.chunk_length,
      'transitions_per_item': a.transitions_per_item,
      **{f'{k}_us_per_step': round(v, 1) for k, v in m.items()},
      'interaction_us_per_step': round(m['both'] - m['emulate'] - m['write'], 1),
      'write_share_of_both': round(m['write'] / m['both'], 3)}))


if __name__ == '__main__':
  main()
