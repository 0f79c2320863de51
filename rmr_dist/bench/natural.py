"""Natural learner throughput: one lockstep update of all variants x seeds.

Shapes default to the C-SWM reference point of the issue (batch 50, 3x210x160 frames, 128 slots
x 64, hidden 128, 18 actions). Prints, as JSON lines with the summary last: lockstep
`steps_per_s`, `frames_per_s` (2 frames per transition per model), `seconds_per_model` (=
lockstep seconds / number of models; C-SWM's public PyTorch code took ~5.9 s per step on 2
cores of another machine, a constant printed as `cswm_seconds_per_step_elsewhere`, not a ratio
measured here), model `flops_per_step` from XLA's cost analysis,
`achieved_gflops_per_s`, this machine's float32 `matmul_gflops_per_s` (same method as the
abstract benchmark) and `peak_memory_gib` (host max RSS on CPU, the device's peak bytes in use
on an accelerator).

Batches hold frames as the learner receives them (`--frames`): at the native 210x160 size ALE
palette indices [B, 210, 160], which the step turns into RGB with one gather
(`rmr_dist.envs.palette`), and RGB [B, H, W, 3] otherwise; `--frames rgb` at the native size
measures the step without the lookup. With palette batches the summary also has
`lookup_seconds_per_step`: the lookup of both frames of the batch alone, jitted and timed
apart (its share of the step is `lookup_fraction`).

On a 24 GiB machine the full 5-seed lockstep does not fit at batch 50 (XLA plans ~24.5 GiB of
scratch); `--seeds 1` (one model of each variant) measures the same per-model cost.
"""

from __future__ import annotations

import argparse
import functools
import resource
import time

from rmr_dist.bench import output

# Keys of the summary line (the last), each named in the module docstring.
SUMMARY_KEYS = ('steps_per_s', 'frames_per_s', 'seconds_per_model', 'flops_per_step',
                'achieved_gflops_per_s', 'matmul_gflops_per_s', 'peak_memory_gib')


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench natural', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--batch-size', type=int, default=50)
  p.add_argument('--seeds', type=int, default=5, help='seeds per variant (models = 3 x seeds)')
  p.add_argument('--hidden-size', type=int, default=128)
  p.add_argument('--height', type=int, default=210)
  p.add_argument('--width', type=int, default=160)
  p.add_argument('--steps', type=int, default=3, help='timed lockstep updates')
  p.add_argument('--trunk', choices=('small', 'full'), default=None,
                 help="f~'s trunk (default: 'full' above 100 pixels of height, else 'small')")
  p.add_argument('--readout', choices=('latent', 'bits'), default='latent')
  p.add_argument('--loss', choices=('hinge', 'infonce', 'slot_infonce'), default='hinge')
  p.add_argument('--frames', choices=('stored', 'rgb'), default='stored',
                 help='stored: as collectors store them (palette indices at 210x160); rgb: RGB')
  args = p.parse_args(argv)

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from rmr_dist.bench import abstract as abstract_bench  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import palette  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import abstract as abstract_learning  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import lockstep  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import natural  # pylint: disable=g-import-not-at-top
  from rmr_dist.networks import natural as natural_net  # pylint: disable=g-import-not-at-top
  from rmr_dist.networks import processors  # pylint: disable=g-import-not-at-top

  variants = natural.VARIANTS
  spec = processors.ModelSpec(processor='mpnn', hidden_size=args.hidden_size)
  processor = processors.make_spec_processor(spec)
  abstract_model = abstract_learning.make_model(spec)
  processor_params = abstract_learning.init_state(
      abstract_model, optax.adam(1e-3), jax.random.PRNGKey(1)).params['processor']
  trunk = args.trunk or ('full' if args.height > 100 else 'small')
  model = natural_net.NaturalModel(processor=processor, trunk=trunk, readout=args.readout,
                                   slot_embedding=True)
  optimizer = lockstep.make_optimizer(
      5e-4, variants, args.seeds, paths=natural.frozen_paths(args.readout, True))
  abstract_params = jax.device_get(abstract_learning.init_state(
      abstract_model, optax.adam(1e-3), jax.random.PRNGKey(1)).params)
  state = natural.init_state(model, optimizer, jax.random.PRNGKey(0), variants=variants,
                             num_seeds=args.seeds, processor_params=processor_params,
                             frame_shape=(args.height, args.width),
                             abstract_encoder=abstract_params['encoder'])
  rng = np.random.default_rng(0)
  frame_shape = (args.height, args.width, 3) if args.frames == 'rgb' else (
      atari.stored_frame_shape((args.height, args.width)))
  b, shape = args.batch_size, (args.batch_size, *frame_shape)
  batch = jax.device_put({
      'frame_t': rng.integers(0, 256, shape, dtype=np.uint8),
      'action': np.eye(18, dtype=np.uint8)[rng.integers(0, 18, b)],
      'frame_tp1': rng.integers(0, 256, shape, dtype=np.uint8)})
  update = jax.jit(functools.partial(natural.update, model=model, optimizer=optimizer,
                                     variants=variants, loss=args.loss))
  compiled = update.lower(state, batch).compile()
  flops = abstract_bench._flops(compiled)  # pylint: disable=protected-access
  matmul = abstract_bench._matmul_gflops()  # pylint: disable=protected-access
  output.emit({'measure': 'matmul_f32', 'gflops_per_s': round(matmul, 1)})
  state, _ = update(state, batch)  # Warm-up.
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = update(state, batch)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / args.steps
  lookup = None
  if len(frame_shape) == 2:
    lookup_fn = jax.jit(lambda x: (palette.to_rgb_jnp(x['frame_t']),
                                   palette.to_rgb_jnp(x['frame_tp1'])))
    jax.block_until_ready(lookup_fn(batch))
    start = time.perf_counter()
    for _ in range(20):
      jax.block_until_ready(lookup_fn(batch))
    lookup = (time.perf_counter() - start) / 20
  models = len(variants) * args.seeds
  device = jax.devices()[0]
  if device.platform == 'cpu':
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB.
    peak_what = 'host_max_rss'
  else:
    peak = (device.memory_stats() or {}).get('peak_bytes_in_use', float('nan'))
    peak_what = 'device_peak_bytes_in_use'
  output.emit({
      'benchmark': 'natural', 'device': device.platform, 'models': models,
      'variants': list(variants), 'seeds': args.seeds, 'batch_size': b,
      'frame_shape': [args.height, args.width], 'hidden_size': args.hidden_size,
      'trunk': trunk, 'readout': args.readout, 'loss': args.loss,
      'batch_frames': 'palette' if len(frame_shape) == 2 else 'rgb',
      'lookup_seconds_per_step': None if lookup is None else round(lookup, 6),
      'lookup_fraction': None if lookup is None else round(lookup / seconds, 5),
      'lockstep_seconds_per_step': round(seconds, 3), 'steps_per_s': round(1 / seconds, 3),
      'frames_per_s': round(2 * b * models / seconds, 1),
      'seconds_per_model': round(seconds / models, 3),
      'cswm_seconds_per_step_elsewhere': 5.9,  # A constant from another machine.
      'flops_per_step': flops, 'achieved_gflops_per_s': round(flops / seconds / 1e9, 1),
      'matmul_gflops_per_s': round(matmul, 1),
      'efficiency': round(flops / seconds / 1e9 / matmul, 3),
      'peak_memory_gib': round(peak / 2 ** 30, 2), 'peak_memory_kind': peak_what,
      'finite_loss': bool(np.all(np.isfinite(np.asarray(metrics['loss'])))),
  })
