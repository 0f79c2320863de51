"""The bouncing-balls natural ladder: cheap experiments that show what a natural model learns.

Runs on the trajectories of a balls work directory (`python balls.py --stages=data` first; the
`rmr` processor also needs `--stages=abstract`), one model at a time, in this process:

  python scripts/balls_ladder.py --workdir=/tmp/runs/balls controls
  python scripts/balls_ladder.py --workdir=/tmp/runs/balls train --steps=400 --eval-every=50
  python scripts/balls_ladder.py --workdir=/tmp/runs/balls train --processor=rmr
  python scripts/balls_ladder.py --workdir=/tmp/runs/balls train --overfit   # one fixed batch
  python scripts/balls_ladder.py --workdir=/tmp/runs/balls train \\
      --set natural.slot_init=sampled --set natural.position_scale=1.0   # ablations

`controls` prints the no-learning scores on the validation windows the natural stage scores
(black frame, the training set's mean frame, copying the last frame). `train` trains one
model (``--processor``: `end_to_end`, P trained from scratch; `rmr`, the work directory's frozen
abstract export) with the work directory's natural config and any ``--set`` overrides, and
prints one JSON line per evaluation: step, validation MSE (frames in [0, 1]), its ratio to
copy-last, FG-ARI, mask entropy and training seconds (with ``--overfit``: the MSE and ratio on
the one training batch it sees every step).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import json
import os
import sys
import time

import jax
import numpy as np

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import balls_eval
from rmr_dist.learning import balls_abstract
from rmr_dist.learning import balls_natural
from rmr_dist.learning import lockstep
from rmr_dist.learning import optimizers
from rmr_dist.envs import balls_trajectories
from rmr_dist.stages import balls_data as data_stage
from rmr_dist.stages import balls_natural as balls_natural_stage


def _config(workdir: str, overrides: list[str]) -> config_lib.BallsConfig:
  """The work directory's latest config with `section.key=value` overrides applied."""
  config_dict = workdir_lib.read_json(os.path.join(workdir, 'config.json'))
  if config_dict is None:
    raise config_lib.ConfigError(f'--workdir={workdir} holds no balls run (no config.json).')
  sections = {f.name: f.type for f in dataclasses.fields(config_lib.BallsConfig)}
  for item in overrides:
    key, sep, text = item.partition('=')
    section, _, name = key.partition('.')
    # Keys of the section's dataclass count too: a work directory written before a field
    # with a default existed has no entry for it.
    known = (section in config_dict and isinstance(config_dict[section], dict) and
             (name in config_dict[section] or
              name in {f.name for f in dataclasses.fields(getattr(config_lib, sections[section]))}))
    if not sep or not known:
      raise config_lib.ConfigError(f'--set {item!r}: expected SECTION.KEY=VALUE with a key of '
                                   f'the config (sections: {", ".join(config_dict)})')
    old = config_dict[section].get(name)
    if old is None:
      try:
        config_dict[section][name] = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        config_dict[section][name] = text
    else:
      config_dict[section][name] = type(old)(text) if not isinstance(old, str) else text
  return config_lib.load_balls_config(config_dict)


def _controls(config, train, val, indices) -> dict[str, float]:
  w = val.windows(indices, config.data.history)
  target = w['target_frame'].astype(np.float64) / 255.0
  mean_frame = train.frames.astype(np.float64).mean(axis=(0, 1)) / 255.0  # [H, W, 3]
  return {'black_mse': float(np.mean(target**2)),
          'mean_frame_mse': float(np.mean((target - mean_frame)**2)),
          'copy_last_mse': balls_eval.copy_last_frame_mse(val, config.data.history, indices),
          'n_windows': int(len(indices))}


def _train(args, config, workdir, train, val, indices) -> None:
  history, size = config.data.history, config.sim.image_size
  scale = config.sim.displacement_scale
  variant = 'rmr' if args.processor == 'rmr' else 'end_to_end'
  nc = dataclasses.replace(config.natural, variants=(variant,), num_seeds=1)
  abstract_encoder = None  # The trained abstract f: RMR's slot latents read it ('abstract_f').
  if args.processor == 'rmr':
    spec_dict, processor = checkpointing.restore_processor(
        os.path.join(workdir.stage_dir('abstract'), 'processor'))
    spec = balls_natural.processors.ModelSpec.from_dict(spec_dict)
    abstract_encoder = balls_natural_stage.abstract_params(workdir)['encoder']
  else:
    spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
    processor = balls_abstract.make_abstract_model(spec, scale).init(
        jax.random.PRNGKey(1), train.positions[:1, :history])['params']['processor']
  model = balls_natural.make_natural_model(nc, spec, size, scale)
  schedule = optimizers.make_schedule(nc.learning_rate, nc.warmup_steps, nc.decay_rate,
                                      nc.decay_steps, nc.lr_decay)
  optimizer = lockstep.make_optimizer(schedule, (variant,), 1, nc.grad_clip_norm)
  state = balls_natural.init_natural_state(
      model, optimizer, jax.random.PRNGKey(args.seed), variants=(variant,), num_seeds=1,
      processor_params=processor, history=history, image_size=size,
      abstract_encoder=abstract_encoder)
  updates = [jax.jit(functools.partial(
      balls_natural.natural_update, model=model, optimizer=optimizer, variants=(variant,),
      autoencode=autoencode, restart_step=nc.autoencode_steps)) for autoencode in (False, True)]
  predict = balls_natural.make_predict_fn(model)
  batches = balls_trajectories.WindowBatches(train, history, nc.batch_size, seed=args.seed + 1)
  fixed = next(batches) if args.overfit else None
  if args.overfit:  # score on the one batch it trains on
    copy_last = float(np.mean(np.square(
        (fixed['frames'][:, -1].astype(np.float64) - fixed['target_frame']) / 255.0)))
  else:
    copy_last = balls_eval.copy_last_frame_mse(val, history, indices)
  steps = args.steps or nc.num_steps
  seconds = 0.0
  for step in range(steps + 1):
    if step % args.eval_every == 0 or step == steps:
      params = jax.tree_util.tree_map(lambda x: x[0], state.params)
      if args.overfit:
        recon = np.asarray(predict(params, fixed['frames'])['recon'], np.float64)
        scores = {'mse': float(np.mean((recon - fixed['target_frame'] / 255.0)**2))}
      else:
        scores = balls_eval.evaluate_natural(predict, params, val, history, indices, 32, size)
      print(json.dumps({'step': step, **scores, 'ratio_copy_last': scores['mse'] / copy_last,
                        'train_seconds': round(seconds, 1)}), flush=True)
    if step == steps:
      break
    batch = fixed if fixed is not None else next(batches)
    start = time.perf_counter()
    update = updates[step < nc.autoencode_steps]  # the warm-start's first (README)
    state, metrics = update(state, {k: batch[k] for k in ('frames', 'target_frame')})
    jax.block_until_ready(metrics['loss'])
    seconds += time.perf_counter() - start
    if not np.isfinite(np.asarray(metrics['loss'])).all():
      raise FloatingPointError(f'non-finite loss at step {step}')


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('rung', choices=('controls', 'train'))
  parser.add_argument('--workdir', required=True, help='a balls work directory with data')
  parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                      help='config override, e.g. natural.position_scale=1.0 (repeatable)')
  parser.add_argument('--processor', choices=('end_to_end', 'rmr'), default='end_to_end')
  parser.add_argument('--steps', type=int, default=0, help='updates (0: natural.num_steps)')
  parser.add_argument('--eval-every', type=int, default=50)
  parser.add_argument('--windows', type=int, default=0,
                      help='validation windows scored (0: natural.eval_windows)')
  parser.add_argument('--overfit', action='store_true', help='train on one fixed batch')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.eval_every < 1 or args.steps < 0:
    parser.error('--eval-every must be >= 1 and --steps >= 0')
  try:
    config = _config(args.workdir, args.set)
    workdir = workdir_lib.WorkDir.reopen(args.workdir, workdir_lib.BALLS_STAGES)
    train = data_stage.load_split(config, workdir, balls_trajectories.TRAIN)
    val = data_stage.load_split(config, workdir, balls_trajectories.VAL)
  except (config_lib.ConfigError, ValueError) as e:
    raise SystemExit(f'balls_ladder.py: error: {e}') from None
  indices = balls_trajectories.eval_indices(val.window_count(config.data.history),
                                            args.windows or config.natural.eval_windows)
  if args.rung == 'controls':
    print(json.dumps(_controls(config, train, val, indices)))
  else:
    _train(args, config, workdir, train, val, indices)


if __name__ == '__main__':
  main(sys.argv[1:])
