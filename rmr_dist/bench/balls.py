"""Bouncing-balls throughput: simulation + rendering per core, and the natural lockstep update.

Two parts (`--parts sim,natural`), printed as JSON lines with a summary line each:

  sim      one core: MuJoCo physics alone, physics + the numpy rasteriser (the path the data
           stage uses), and physics + MuJoCo's own renderer (`mujoco.Renderer`, needs an
           OpenGL backend: MUJOCO_GL=egl), in frames/s, measured side by side on the same
           trajectories; ratios fast/mujoco.
  natural  one lockstep update of all variants x seeds of the natural model (Slot Attention,
           frozen or trained P, broadcast decoder) at the sizes of a balls config
           (`--config test|local|gpu|paper`), jitted on one device: steps/s, model FLOPs per step
           from XLA's cost analysis, achieved GFLOP/s against this device's float32 matmul
           GFLOP/s measured in the same run, and peak memory.

The sim summary has `physics_frames_per_s` and `physics_and_numpy_render_frames_per_s`; the
natural summary (the last line when `natural` runs) has `steps_per_s`, `seconds_per_model_step`,
`flops_per_step`, `achieved_gflops_per_s`, `matmul_gflops_per_s` and `peak_memory_gib`.
"""

from __future__ import annotations

import argparse
import ctypes.util
import functools
import os
import resource
import sys
import time

from rmr_dist.bench import output

# Keys of the sim summary line and of the natural summary line, named in the module docstring.
SIM_KEYS = ('physics_frames_per_s', 'physics_and_numpy_render_frames_per_s')
SUMMARY_KEYS = ('steps_per_s', 'seconds_per_model_step', 'flops_per_step',
                'achieved_gflops_per_s', 'matmul_gflops_per_s', 'peak_memory_gib')


def _sim(config, seconds: float) -> None:
  if 'MUJOCO_GL' not in os.environ and ctypes.util.find_library('EGL'):
    os.environ['MUJOCO_GL'] = 'egl'  # MuJoCo's renderer; read when mujoco is first imported.
  from rmr_dist.envs import balls  # pylint: disable=g-import-not-at-top
  s = config.sim
  sim = balls.BallsSimulator(num_balls=s.num_balls, radius_range=(s.radius_min, s.radius_max),
                             speed_range=(s.speed_min, s.speed_max), frame_dt=s.frame_dt,
                             physics_dt=s.physics_dt)
  frames_per_episode = config.data.episode_frames

  def run(render_fn) -> float:
    frames, start, seed = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
      episode = sim.episode(seed, frames_per_episode)
      render_fn(episode)
      frames += frames_per_episode
      seed += 1
    return frames / (time.perf_counter() - start)

  physics = run(lambda ep: None)
  fast = run(lambda ep: balls.render_frames(ep.positions, ep.radii, s.image_size))
  result = {'benchmark': 'balls_sim', 'num_balls': s.num_balls, 'image_size': s.image_size,
            'physics_frames_per_s': round(physics, 1),
            'physics_and_numpy_render_frames_per_s': round(fast, 1)}
  try:
    renderers: dict = {}

    def mujoco_render(ep):
      key = tuple(ep.radii.tolist())
      if key not in renderers:
        renderers[key] = balls.MujocoRenderer(ep.radii, s.image_size)
      for positions in ep.positions:
        renderers[key].render(positions)

    try:
      slow = run(mujoco_render)
    finally:
      for r in renderers.values():
        r.close()
    result.update(physics_and_mujoco_render_frames_per_s=round(slow, 1),
                  ratio_numpy_to_mujoco_render=round(fast / slow, 1))
  except (RuntimeError, ImportError) as e:
    result['mujoco_render'] = f'unavailable: {e}'
  output.emit(result)


def _natural(config, steps: int) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rmr_dist.bench import atari_abstract as abstract_bench  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import balls_abstract  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import balls_natural  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import lockstep  # pylint: disable=g-import-not-at-top

  nc, size, history = config.natural, config.sim.image_size, config.data.history
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  abstract_model = balls_abstract.make_abstract_model(spec)
  processor_params = abstract_model.init(
      jax.random.PRNGKey(1), np.zeros((1, history, config.sim.num_balls, 2), np.float32)
  )['params']['processor']
  model = balls_natural.make_natural_model(nc, spec, size, config.sim.displacement_scale)
  variants = balls_natural.check_variants(nc.variants)
  optimizer = lockstep.make_optimizer(nc.learning_rate, variants, nc.num_seeds)
  state = balls_natural.init_natural_state(
      model, optimizer, jax.random.PRNGKey(0), variants=variants, num_seeds=nc.num_seeds,
      processor_params=processor_params, history=history, image_size=size)
  rng = np.random.default_rng(0)
  batch = jax.device_put({
      'frames': rng.integers(0, 256, (nc.batch_size, history, size, size, 3), dtype=np.uint8),
      'target_frame': rng.integers(0, 256, (nc.batch_size, size, size, 3), dtype=np.uint8)})
  update = jax.jit(functools.partial(balls_natural.natural_update, model=model,
                                     optimizer=optimizer, variants=variants))
  compiled = update.lower(state, batch).compile()
  flops = abstract_bench._flops(compiled)  # pylint: disable=protected-access
  matmul = abstract_bench._matmul_gflops()  # pylint: disable=protected-access
  state, _ = update(state, batch)  # Warm-up.
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = update(state, batch)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / steps
  device = jax.devices()[0]
  if device.platform == 'cpu':
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB.
  else:
    peak = (device.memory_stats() or {}).get('peak_bytes_in_use', float('nan'))
  models = len(variants) * nc.num_seeds
  output.emit({
      'benchmark': 'balls_natural', 'device': device.platform, 'device_kind': device.device_kind,
      'models': models, 'batch_size': nc.batch_size, 'image_size': size,
      'num_slots': nc.num_slots, 'encoder_channels': nc.encoder_channels,
      'decoder_channels': nc.decoder_channels,
      'lockstep_seconds_per_step': round(seconds, 4), 'steps_per_s': round(1 / seconds, 3),
      'seconds_per_model_step': round(seconds / models, 4),
      'flops_per_step': flops, 'achieved_gflops_per_s': round(flops / seconds / 1e9, 1),
      'matmul_gflops_per_s': round(matmul, 1),
      'efficiency': round(flops / seconds / 1e9 / matmul, 3),
      'peak_memory_gib': round(peak / 2 ** 30, 2),
      'finite_loss': bool(np.all(np.isfinite(np.asarray(metrics['loss'])))),
  })


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(prog='python -m rmr_dist.bench balls', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--config', default='local', help='configs/balls.py variant: test|local|gpu|paper')
  p.add_argument('--parts', default='sim,natural', help='comma-separated: sim, natural')
  p.add_argument('--seconds', type=float, default=5.0, help='timed seconds per sim variant')
  p.add_argument('--steps', type=int, default=3, help='timed natural updates')
  p.add_argument('--batch-size', type=int, default=0, help='override natural.batch_size')
  p.add_argument('--seeds', type=int, default=0, help='override natural.num_seeds')
  args = p.parse_args(argv)
  if args.steps < 1 or args.seconds <= 0:
    sys.exit(f'rmr_dist.bench balls: --steps={args.steps} must be >= 1 and '
             f'--seconds={args.seconds} > 0')
  parts = args.parts.split(',')
  bad = [x for x in parts if x not in ('sim', 'natural')]
  if bad:
    sys.exit(f'rmr_dist.bench balls: unknown part(s) {bad}; valid: sim, natural')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
      __file__)))))
  from configs import balls as balls_configs  # pylint: disable=g-import-not-at-top
  from rmr_dist import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    c = balls_configs.get_config(args.config)
  except ValueError as e:
    sys.exit(f'rmr_dist.bench balls: {e}')
  if args.batch_size:
    c.natural.batch_size = args.batch_size
  if args.seeds:
    c.natural.num_seeds = args.seeds
  try:
    config = config_lib.load_balls_config(c)
  except config_lib.ConfigError as e:
    sys.exit(f'rmr_dist.bench balls: {e}')
  if 'sim' in parts:
    _sim(config, args.seconds)
  if 'natural' in parts:
    _natural(config, args.steps)
