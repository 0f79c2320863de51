"""Natural learner throughput: one lockstep update of all variants x seeds.

`--shape` picks every default: `reference` is the C-SWM reference point of issue 33 (batch 50,
3x210x160 frames, 128 slots x 64, the MPNN at hidden 128, 18 actions, 3 variants x 5 seeds);
`local`, `study` and `gpu` take the natural stage's shape from that `configs/atari.py` variant
(batch, seeds, variants, frame size, trunk, readout, loss, the frozen processor and its width).
Any flag overrides its setting. Prints, as JSON lines with the summary last: the `device`
(backend), lockstep `steps_per_s`, `model_updates_per_s` (models x lockstep steps per second),
`samples_per_s_per_model` (transitions each model sees per second), `frames_per_s` (2 frames per
transition per model), `seconds_per_model` (= lockstep seconds / number of models; C-SWM's
public PyTorch code took ~5.9 s per step on 2 cores of another machine, a constant printed as
`cswm_seconds_per_step_elsewhere`, not a ratio measured here), model `flops_per_step` from
XLA's cost analysis, `achieved_gflops_per_s`, this machine's float32 `matmul_gflops_per_s`
(same method as the abstract benchmark) and `peak_memory_gib` (host max RSS on CPU, the
device's peak bytes in use on an accelerator).

Batches hold frames as the learner receives them (`--frames`): at the native 210x160 size ALE
palette indices [B, 210, 160], which the step turns into RGB with one gather
(`rmr_dist.envs.atari_palette`), and RGB [B, H, W, 3] otherwise; `--frames rgb` at the native size
measures the step without the lookup. With palette batches the summary also has
`lookup_seconds_per_step`: the lookup of both frames of the batch alone, jitted and timed
apart (its share of the step is `lookup_fraction`).

`--over-models` picks how the update runs the M models (`learning.lockstep.per_model`): 'vmap'
(what the learners use), 'sequence', or 'both': vmap then sequence on the same state and batch,
each printed as a `measure` line with its step time and compile seconds, and the summary (vmap's)
gains `sequence_speedup` = vmap's step time / sequence's.

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
SUMMARY_KEYS = ('steps_per_s', 'model_updates_per_s', 'samples_per_s_per_model', 'frames_per_s',
                'seconds_per_model', 'flops_per_step', 'achieved_gflops_per_s',
                'matmul_gflops_per_s', 'peak_memory_gib')


# The C-SWM reference point (`--shape reference`): batch 50, 210x160 frames, 5 seeds, the
# paper's trunk and projection, the MPNN at hidden 128, C-SWM's hinge.
REFERENCE = {'batch_size': 50, 'seeds': 5, 'hidden_size': 128, 'height': 210, 'width': 160,
             'trunk': 'full', 'readout': 'latent', 'loss': 'hinge', 'processor': 'mpnn',
             'latent_size': 64, 'variants': ('rmr', 'cswm', 'rmr_random_p')}
SHAPES = ('reference', 'local', 'study', 'gpu')


def shape_settings(shape: str) -> dict[str, object]:
  """The natural update's shape: REFERENCE, or a `configs/atari.py` variant's own settings
  (natural batch, seeds, variants, frames, trunk, readout, loss, the frozen processor at its
  abstract width)."""
  if shape == 'reference':
    return dict(REFERENCE)
  from configs import atari as atari_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  c = config_lib.load_atari_config(atari_configs.get_config(shape))
  return {'batch_size': c.natural.batch_size, 'seeds': c.natural.num_seeds,
          'hidden_size': c.abstract.hidden_size, 'height': c.env.frame_height,
          'width': c.env.frame_width, 'trunk': c.natural.trunk, 'readout': c.natural.readout,
          'loss': c.natural.loss, 'processor': c.natural.processor_model,
          'latent_size': c.abstract.latent_size, 'variants': tuple(c.natural.variants)}


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench natural', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--shape', choices=SHAPES, default='reference',
                 help='defaults for every setting below: the C-SWM reference point or a '
                      'configs/atari.py variant (its natural stage)')
  p.add_argument('--batch-size', type=int)
  p.add_argument('--seeds', type=int, help='seeds per variant (models = variants x seeds)')
  p.add_argument('--hidden-size', type=int, help="the processor's width")
  p.add_argument('--height', type=int)
  p.add_argument('--width', type=int)
  p.add_argument('--steps', type=int, default=3, help='timed lockstep updates')
  p.add_argument('--trunk', choices=('small', 'full'))
  p.add_argument('--readout', choices=('latent', 'bits'))
  p.add_argument('--loss', choices=('hinge', 'infonce', 'slot_infonce'))
  p.add_argument('--processor', choices=('mpnn', 'deepsets', 'mlp'))
  p.add_argument('--over-models', choices=('vmap', 'sequence', 'both'), default='vmap',
                 help="how the update runs the models (lockstep.per_model); 'both' times vmap, "
                      'then sequence, side by side (the summary is vmap\'s)')
  p.add_argument('--frames', choices=('stored', 'rgb'), default='stored',
                 help='stored: as collectors store them (palette indices at 210x160); rgb: RGB')
  args = p.parse_args(argv)
  settings = shape_settings(args.shape)
  for key in settings:
    if getattr(args, key, None) is not None:
      settings[key] = getattr(args, key)

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from rmr_dist.bench import atari_abstract as abstract_bench  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  from rmr_dist.envs import atari_palette  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import atari_abstract as abstract_learning  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import lockstep  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import atari_natural  # pylint: disable=g-import-not-at-top
  from rmr_dist.networks import processors  # pylint: disable=g-import-not-at-top

  variants = settings['variants']
  seeds, height, width = settings['seeds'], settings['height'], settings['width']
  readout, loss = settings['readout'], settings['loss']
  spec = processors.ModelSpec(processor=settings['processor'],
                              latent_size=settings['latent_size'],
                              hidden_size=settings['hidden_size'])
  abstract_model = abstract_learning.make_model(spec)
  abstract_params = jax.device_get(abstract_learning.init_state(
      abstract_model, optax.adam(1e-3), jax.random.PRNGKey(1)).params)
  model = atari_natural.make_model(spec, maps_per_slot=1, latent_size=settings['latent_size'],
                                   slot_embedding=True, trunk=settings['trunk'], readout=readout)
  optimizer = lockstep.make_optimizer(
      5e-4, variants, seeds, paths=atari_natural.frozen_paths(readout, True))
  state = atari_natural.init_state(model, optimizer, jax.random.PRNGKey(0), variants=variants,
                                   num_seeds=seeds, processor_params=abstract_params['processor'],
                                   frame_shape=(height, width),
                                   abstract_encoder=abstract_params['encoder'])
  rng = np.random.default_rng(0)
  frame_shape = (height, width, 3) if args.frames == 'rgb' else (
      atari.stored_frame_shape((height, width)))
  b = settings['batch_size']
  shape = (b, *frame_shape)
  batch = jax.device_put({
      'frame_t': rng.integers(0, 256, shape, dtype=np.uint8),
      'action': np.eye(18, dtype=np.uint8)[rng.integers(0, 18, b)],
      'frame_tp1': rng.integers(0, 256, shape, dtype=np.uint8)})
  matmul = abstract_bench._matmul_gflops()  # pylint: disable=protected-access
  output.emit({'measure': 'matmul_f32', 'gflops_per_s': round(matmul, 1)})
  modes = lockstep.OVER_MODELS if args.over_models == 'both' else (args.over_models,)
  timed = {}
  for mode in modes:  # The same state and batch, one way of running the models after another.
    update = jax.jit(functools.partial(atari_natural.update, model=model, optimizer=optimizer,
                                       variants=variants, loss=loss, over_models=mode))
    start = time.perf_counter()
    compiled = update.lower(state, batch).compile()
    compile_seconds = time.perf_counter() - start
    flops = abstract_bench._flops(compiled)  # pylint: disable=protected-access
    after, _ = compiled(state, batch)  # Warm-up.
    jax.block_until_ready(after)
    start = time.perf_counter()
    for _ in range(args.steps):
      after, metrics = compiled(after, batch)
    jax.block_until_ready(after)
    timed[mode] = ((time.perf_counter() - start) / args.steps, compile_seconds, metrics, flops)
    output.emit({'measure': 'over_models', 'over_models': mode,
                 'lockstep_seconds_per_step': round(timed[mode][0], 3),
                 'compile_seconds': round(compile_seconds, 1)})
  seconds, compile_seconds, metrics, flops = timed[modes[0]]
  lookup = None
  if len(frame_shape) == 2:
    lookup_fn = jax.jit(lambda x: (atari_palette.to_rgb_jnp(x['frame_t']),
                                   atari_palette.to_rgb_jnp(x['frame_tp1'])))
    jax.block_until_ready(lookup_fn(batch))
    start = time.perf_counter()
    for _ in range(20):
      jax.block_until_ready(lookup_fn(batch))
    lookup = (time.perf_counter() - start) / 20
  models = len(variants) * seeds
  device = jax.devices()[0]
  if device.platform == 'cpu':
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB.
    peak_what = 'host_max_rss'
  else:
    peak = (device.memory_stats() or {}).get('peak_bytes_in_use', float('nan'))
    peak_what = 'device_peak_bytes_in_use'
  output.emit({
      'benchmark': 'natural', 'shape': args.shape, 'device': device.platform,
      'models': models, 'variants': list(variants), 'seeds': seeds, 'batch_size': b,
      'frame_shape': [height, width], 'processor': settings['processor'],
      'hidden_size': settings['hidden_size'], 'trunk': settings['trunk'], 'readout': readout,
      'loss': loss,
      'batch_frames': 'palette' if len(frame_shape) == 2 else 'rgb',
      'lookup_seconds_per_step': None if lookup is None else round(lookup, 6),
      'lookup_fraction': None if lookup is None else round(lookup / seconds, 5),
      'lockstep_seconds_per_step': round(seconds, 3), 'steps_per_s': round(1 / seconds, 3),
      'frames_per_s': round(2 * b * models / seconds, 1),
      'seconds_per_model': round(seconds / models, 3),
      'model_updates_per_s': round(models / seconds, 3),
      'samples_per_s_per_model': round(b / seconds, 1),
      'cswm_seconds_per_step_elsewhere': 5.9,  # A constant from another machine.
      'flops_per_step': flops, 'achieved_gflops_per_s': round(flops / seconds / 1e9, 1),
      'matmul_gflops_per_s': round(matmul, 1),
      'efficiency': round(flops / seconds / 1e9 / matmul, 3),
      'peak_memory_gib': round(peak / 2 ** 30, 2), 'peak_memory_kind': peak_what,
      'finite_loss': bool(np.all(np.isfinite(np.asarray(metrics['loss'])))),
      'over_models': modes[0], 'compile_seconds': round(compile_seconds, 1),
      # Measured in this run, on the same state and batch: 'vmap' time / 'sequence' time.
      'sequence_speedup': (round(seconds / timed['sequence'][0], 2)
                           if args.over_models == 'both' else None),
  })
