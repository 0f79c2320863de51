"""What one transition costs on the replay write path, by frame format, chunk length and
transitions per item.

Records 800 steps of Pong once (palette indices and their exact RGB), then replays them as one
episode through the collectors' `TransitionAdder` into an in-process Reverb server (abstract +
natural table, as the collectors write them), for each (frame format, chunk length, transitions
per item). No
emulation runs while timing, so this isolates the replay cost that `python -m rmr_dist.bench
collect` sees as the gap between its collector with and without replay. Prints one JSON line
per configuration: CPU microseconds per step of this whole process (writer, gRPC and server
threads; the minimum over `--repeats` interleaved rounds, since other jobs inflate CPU time
too), and the Reverb checkpoint bytes per transition split into items (`items.tfrecord`: item
metadata) and chunks (`chunks.tfrecord`: the compressed steps); and the read side: natural
transitions per second that `atari_iterators.make_table_iterator` then draws in batches of 32 (the
max over rounds: a sampled item fetches and decompresses every chunk it references).

  python scripts/replay_write_cost.py            # on one core: taskset -c 0 python ...

With `--episode-lengths 1000,27000` it measures instead what an episode's length costs: the
recorded steps, cycled, written as one episode of each length (palette frames, windows of 8)
with the adder's default segments (`atari_adders.SEGMENT_STEPS`) and with one segment spanning the
whole episode (the writer then keeps every step alive until the episode ends); one JSON line
per (length, segments) with the write CPU us per step (min over `--repeats`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import reverb

from rmr_dist.envs import atari
from rmr_dist.envs import atari_palette
from rmr_dist.replay import atari_adders
from rmr_dist.replay import atari_iterators
from rmr_dist.replay import atari_tables

STEPS = 800
SAMPLE_BATCHES = 20  # Natural batches of 32 timed on the read side.


def _record() -> tuple[list[atari.Observation], list[atari.Observation]]:
  env = atari.AtariEnv('pong', palette_frames=True, repeat_action_probability=0.25)
  rng = np.random.default_rng(0)
  obs = [env.reset(1)]
  while len(obs) <= STEPS:
    result = env.step(int(rng.integers(atari.NUM_ACTIONS)))
    obs.append(result.observation if not (result.terminal or result.truncated)
               else env.reset(len(obs)))
  return obs, [atari.Observation(o.ram, atari_palette.to_rgb(o.frame)) for o in obs]


def _write(observations, rgb: bool, chunk_length: int,
           per_item: int) -> tuple[float, dict[str, float], float]:
  """(CPU us per step, checkpoint bytes per transition by file) of one episode's writes, and the
  natural transitions per second the learners' iterator then draws from the table."""
  directory = tempfile.mkdtemp(prefix='rmr-replay-cost-')
  server = atari_tables.make_server(atari_tables.make_tables(
      ('pong',), atari.NATIVE_FRAME_SHAPE, abstract_max_size=10 * STEPS,
      natural_max_size=10 * STEPS, min_size_to_sample=1, rgb_frames=rgb),
      checkpoint_dir=directory)
  client = reverb.Client(f'127.0.0.1:{server.port}')
  adder = atari_adders.TransitionAdder(client, max_episode_steps=STEPS, chunk_length=chunk_length,
                                       transitions_per_item=per_item)
  cpu = time.process_time()
  adder.begin_episode('pong')
  for t in range(STEPS):
    adder.add(observations[t], t % atari.NUM_ACTIONS)
  adder.end_episode(observations[STEPS])
  adder.close()  # end_episode returned once the server had confirmed every item.
  cpu = (time.process_time() - cpu) / STEPS * 1e6
  path = client.checkpoint()
  sizes = {name.split('.')[0]: os.path.getsize(os.path.join(path, name)) / STEPS
           for name in os.listdir(path) if name.endswith('.tfrecord')}
  batches = atari_iterators.make_table_iterator(f'127.0.0.1:{server.port}', 'natural_pong', 32)
  for _ in range(3):  # Warm-up: the dataset's graph and first fetches.
    next(batches)
  start = time.perf_counter()
  for _ in range(SAMPLE_BATCHES):
    next(batches)
  sample_rate = SAMPLE_BATCHES * 32 / (time.perf_counter() - start)
  del batches
  server.stop()
  return cpu, sizes, sample_rate


def _episode_cost(observations, length: int, segment_steps: int) -> float:
  """CPU us per step of writing one episode of `length` steps (the recorded ones, cycled)."""
  server = atari_tables.make_server(atari_tables.make_tables(
      ('pong',), atari.NATIVE_FRAME_SHAPE, abstract_max_size=length,
      natural_max_size=length, min_size_to_sample=1, rgb_frames=False))
  client = reverb.Client(f'127.0.0.1:{server.port}')
  adder = atari_adders.TransitionAdder(client, max_episode_steps=length, chunk_length=8,
                                       transitions_per_item=8, segment_steps=segment_steps)
  cpu = time.process_time()
  adder.begin_episode('pong')
  for t in range(length):
    adder.add(observations[t % STEPS], t % atari.NUM_ACTIONS)
  adder.end_episode(observations[length % STEPS])
  adder.close()
  cpu = (time.process_time() - cpu) / length * 1e6
  server.stop()
  return cpu


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--configs', default='rgb:8:1,palette:8:1,palette:8:8,palette:32:32',
                 help='comma-separated frames:chunk_length:transitions_per_item')
  p.add_argument('--episode-lengths', default='',
                 help='comma-separated episode lengths: measure segments instead (docstring)')
  args = p.parse_args()
  if args.episode_lengths:
    try:
      lengths = [int(x) for x in args.episode_lengths.split(',')]
    except ValueError:
      lengths = []
    if not lengths or min(lengths) < 1:
      p.error(f'--episode-lengths={args.episode_lengths!r}: comma-separated ints >= 1')
    indices, _ = _record()
    for length in lengths:
      for segment in sorted({min(atari_adders.SEGMENT_STEPS, length), length}):
        runs = [_episode_cost(indices, length, segment) for _ in range(args.repeats)]
        print(json.dumps({'episode_steps': length, 'segment_steps': segment,
                          'cpu_us_per_step': round(min(runs), 1),
                          'cpu_us_per_step_runs': [round(x, 1) for x in runs]}), flush=True)
    return
  configs = [(f, int(c), int(t)) for f, c, t in (x.split(':') for x in args.configs.split(','))]
  indices, rgb = _record()
  cpu: dict = {c: [] for c in configs}
  reads: dict = {c: [] for c in configs}
  sizes: dict = {}
  for _ in range(args.repeats):  # Interleaved: drifting load hits every configuration alike.
    for frames, chunk, per_item in configs:
      us, sizes[frames, chunk, per_item], rate = _write(
          rgb if frames == 'rgb' else indices, frames == 'rgb', chunk, per_item)
      cpu[frames, chunk, per_item].append(us)
      reads[frames, chunk, per_item].append(rate)
  for (frames, chunk, per_item), runs in cpu.items():
    s = sizes[frames, chunk, per_item]
    print(json.dumps({'frames': frames, 'chunk_length': chunk,
                      'transitions_per_item': per_item,
                      'cpu_us_per_step': round(min(runs), 1),
                      'cpu_us_per_step_runs': [round(x, 1) for x in runs],
                      'item_bytes_per_transition': round(s.get('items', 0.0), 1),
                      'chunk_bytes_per_transition': round(s.get('chunks', 0.0), 1),
                      'natural_sample_transitions_per_s': round(
                          max(reads[frames, chunk, per_item]), 1)}), flush=True)


if __name__ == '__main__':
  main()
