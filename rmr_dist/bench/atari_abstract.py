"""Abstract learner throughput: the jitted MPNN update, compute-bound and fed from Reverb.

In one run:
  (a) the jitted update (`rmr_dist.learning.atari_abstract.update`) on a device-resident batch:
      steps/s, model FLOPs per step counted by XLA's cost analysis of the compiled update,
      achieved GFLOP/s, and this machine's float32 matmul GFLOP/s measured the same way, with
      `efficiency` = achieved / matmul;
  (b) the same update fed from a real Reverb server through the real iterator and prefetcher
      (the table is filled first by a real collector on the chosen game), with
      `input_ratio` = steps/s of (b) / steps/s of (a).
Measurements alternate `--repeats` times; the summary (last JSON line) uses medians and has
`steps_per_s`, `flops_per_step`, `achieved_gflops_per_s`, `matmul_gflops_per_s`, `efficiency`
and, from (b), `reverb_steps_per_s` and `input_ratio`. `--skip-reverb` runs (a) only (e.g. on a
machine without Reverb).
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import tempfile
import time

from rmr_dist.bench import output

# Keys of the summary line (the last), each named in the module docstring.
SUMMARY_KEYS = ('steps_per_s', 'flops_per_step', 'achieved_gflops_per_s', 'matmul_gflops_per_s',
                'efficiency', 'reverb_steps_per_s', 'input_ratio')


def _matmul_gflops(n: int = 2048, trials: int = 3, min_seconds: float = 0.5) -> float:
  """Best of `trials` timings of float32 n x n matmuls, each trial running >= min_seconds."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  mm = jax.jit(jnp.dot)
  mm(a, b).block_until_ready()
  best = 0.0
  for _ in range(trials):
    reps, start = 0, time.perf_counter()
    while True:
      out = mm(a, b)
      reps += 1
      if reps % 10 == 0:
        out.block_until_ready()
        if time.perf_counter() - start >= min_seconds:
          break
    best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9)
  return best


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get('flops', float('nan')))


def _fill_replay(game: str, transitions: int, chunk_length: int):
  """A Reverb server whose abstract table holds >= `transitions` real collected transitions."""
  import reverb  # pylint: disable=g-import-not-at-top
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.acting import atari_collector as collector_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_adders  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_episode_store  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top
  c = atari_configs.get_config('local')
  c.games = (game,)
  c.env.frame_height, c.env.frame_width = 84, 64  # Only the RAM table is read here.
  config = config_lib.load_atari_config(c)
  server = atari_tables.make_server(atari_tables.make_config_tables(
      config, abstract_max_size=transitions * 2, natural_max_size=transitions * 2,
      min_size_to_sample=1))
  client = reverb.Client(f'127.0.0.1:{server.port}')
  collector = collector_lib.Collector(
      config, atari_episode_store.EpisodeStore(tempfile.mkdtemp(prefix='rmr-bench-')),
      atari_adders.TransitionAdder(client, max_episode_steps=config.env.max_episode_steps,
                                   chunk_length=chunk_length,
                                   transitions_per_item=config.replay.transitions_per_item))
  units = [u for u in collector_lib.make_work_units(config.games, config.heads.num_heads,
                                                    config.heads.episodes_per_head)
           if collector.split_of(u) == 'train']
  done = 0
  for unit in units:
    done += collector.run_episode(unit).length
    if done >= transitions:
      break
  return server, f'127.0.0.1:{server.port}', done


def _time_steps(step_fn, state, batches, steps: int):
  state = step_fn(state, next(batches))[0]  # Warm up (compile).
  state.step.block_until_ready()
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step_fn(state, next(batches))
  state.step.block_until_ready()
  return steps / (time.perf_counter() - start), metrics


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench abstract', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default='mpnn', choices=('mlp', 'deepsets', 'mpnn'))
  p.add_argument('--batch-size', type=int, default=50)
  p.add_argument('--latent-size', type=int, default=64)
  p.add_argument('--hidden-size', type=int, default=64)
  p.add_argument('--steps', type=int, default=10, help='timed updates per measurement')
  p.add_argument('--repeats', type=int, default=3, help='alternating (resident, Reverb) pairs')
  p.add_argument('--game', default='pong')
  p.add_argument('--skip-reverb', action='store_true')
  p.add_argument('--transitions', type=int, default=5000,
                 help='real transitions collected into the abstract table before part (b)')
  args = p.parse_args(argv)

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import atari_abstract as learning  # pylint: disable=g-import-not-at-top
  from rmr_dist.networks import processors  # pylint: disable=g-import-not-at-top

  spec = processors.ModelSpec(processor=args.model, latent_size=args.latent_size,
                              hidden_size=args.hidden_size)
  model = learning.make_model(spec)
  optimizer = optax.adam(1e-3)
  state = learning.init_state(model, optimizer, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  b = args.batch_size
  batch = {'ram_t': rng.integers(0, 256, (b, 128), dtype=np.uint8),
           'action': np.eye(18, dtype=np.uint8)[rng.integers(0, 18, b)],
           'ram_tp1': rng.integers(0, 256, (b, 128), dtype=np.uint8)}
  batch = jax.device_put(batch)
  update = jax.jit(functools.partial(learning.update, model=model, optimizer=optimizer))
  flops = _flops(update.lower(state, batch).compile())
  matmul = _matmul_gflops()
  output.emit({'measure': 'matmul_f32', 'gflops_per_s': round(matmul, 1)})

  def repeat(x):
    while True:
      yield x

  prefetcher = server = None
  if not args.skip_reverb:
    from rmr_dist.replay import atari_iterators  # pylint: disable=g-import-not-at-top
    server, address, n = _fill_replay(args.game, args.transitions, 8)
    source = atari_iterators.make_table_iterator(address, f'abstract_{args.game}', b)
    prefetcher = atari_iterators.Prefetcher(source, transform=jax.device_put, size=2)
    output.emit({'measure': 'replay_filled', 'items': n})
  resident, fed = [], []
  for r in range(args.repeats):  # Alternating, so drift in machine speed hits both alike.
    sps, _ = _time_steps(update, state, repeat(batch), args.steps)
    resident.append(sps)
    output.emit({'measure': 'update_device_resident', 'repeat': r,
                 'steps_per_s': round(sps, 3),
                 'achieved_gflops_per_s': round(sps * flops / 1e9, 1)})
    if prefetcher is not None:
      sps, _ = _time_steps(update, state, prefetcher, args.steps)
      fed.append(sps)
      output.emit({'measure': 'update_from_reverb', 'repeat': r,
                   'steps_per_s': round(sps, 3)})
  sps_a = statistics.median(resident)
  achieved = sps_a * flops / 1e9
  summary = {'benchmark': 'abstract', 'device': str(jax.devices()[0].platform),
             'num_devices': jax.local_device_count(), 'model': args.model, 'batch_size': b,
             'steps_per_s': round(sps_a, 3), 'flops_per_step': flops,
             'achieved_gflops_per_s': round(achieved, 1),
             'matmul_gflops_per_s': round(matmul, 1),
             'efficiency': round(achieved / matmul, 3)}
  if prefetcher is not None:
    # The sampling thread and the tf.data pipeline (its own threads) go before the server they
    # read from: stopping a server under an in-process sampler aborts the process.
    prefetcher.close()
    del prefetcher, source
    gc.collect()
    server.stop()
    sps_b = statistics.median(fed)
    summary.update(reverb_steps_per_s=round(sps_b, 3), input_ratio=round(sps_b / sps_a, 3))
  output.emit(summary)
