"""The bouncing-balls natural ladder: one natural model at a time, with the natural stage's code.

Runs on the trajectories of a balls work directory (`python balls.py --stages=data,abstract`
first: every natural model's P takes its architecture from the abstract export), in this
process:

  python -m rmr_dist.tools.balls_ladder --workdir=runs/balls controls
  python -m rmr_dist.tools.balls_ladder --workdir=runs/balls train --steps=400 --eval-every=50
  python -m rmr_dist.tools.balls_ladder --workdir=runs/balls train --variant=rmr
  python -m rmr_dist.tools.balls_ladder --workdir=runs/balls train --overfit   # one fixed batch
  python -m rmr_dist.tools.balls_ladder --workdir=runs/balls train \\
      --set natural.slot_init=sampled --set natural.position_scale=1.0   # ablations

`controls` prints the no-learning scores on the validation windows the natural stage scores
(black frame, the training set's mean frame, copying the last frame). `train` trains one model
(``--variant``: a natural variant, e.g. `end_to_end`, `rmr` or `rmr_random_p`) with the natural
stage's learner (`stages.balls_natural.make_learner`: the same initialisation, warm-start,
schedule and batches as the stage at that seed) under the work directory's config and any
``--set`` overrides, nothing written to the work directory, and prints one JSON line per
evaluation: step, the stage's validation scores (MSE with frames in [0, 1], FG-ARI, mask
entropy, slot position error), the MSE's ratio to copy-last and the wall seconds so far (with
``--overfit``: the MSE and ratio on the one training batch it sees every step).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import balls_eval
from rmr_dist.envs import balls_trajectories
from rmr_dist.learning import balls_natural as balls_natural_learning
from rmr_dist.stages import balls_data as data_stage
from rmr_dist.stages import balls_natural as natural_stage
from rmr_dist.tools import overrides


def _controls(config: config_lib.BallsConfig, train: balls_trajectories.TrajectorySet,
              val: balls_trajectories.TrajectorySet, indices: np.ndarray) -> dict[str, float]:
  w = val.windows(indices, config.data.history)
  target = w['target_frame'].astype(np.float64) / 255.0  # [N, H, W, 3]
  mean_frame = train.frames.astype(np.float64).mean(axis=(0, 1)) / 255.0  # [H, W, 3]
  return {'black_mse': float(np.mean(target**2)),
          'mean_frame_mse': float(np.mean((target - mean_frame)**2)),
          'copy_last_mse': balls_eval.copy_last_frame_mse(val, config.data.history, indices),
          'n_windows': int(len(indices))}


def _train(args: argparse.Namespace, config: config_lib.BallsConfig,
           workdir: workdir_lib.WorkDir, train: balls_trajectories.TrajectorySet,
           val: balls_trajectories.TrajectorySet, indices: np.ndarray) -> None:
  config = dataclasses.replace(config, seed=args.seed, natural=dataclasses.replace(
      config.natural, variants=(args.variant,), num_seeds=1, eval_every=0))
  export = storage.join(workdir.stage_dir('abstract'), 'processor')
  batches = natural_stage.make_iterator(config, train)
  fixed = next(batches) if args.overfit else None
  learner = natural_stage.make_learner(
      config, export, itertools.repeat(fixed) if args.overfit else batches,
      checkpoint_dir=None, abstract_encoder=natural_stage.abstract_params(workdir)['encoder'])
  predict = balls_natural_learning.make_predict_fn(learner.model)
  if args.overfit:  # Scored on the one batch it trains on.
    copy_last = float(np.mean(np.square(
        (fixed['frames'][:, -1].astype(np.float64) - fixed['target_frame']) / 255.0)))
  else:
    copy_last = balls_eval.copy_last_frame_mse(val, config.data.history, indices)
  start = time.perf_counter()

  def evaluate(step: int) -> None:
    params = learner.model_params(args.variant, 0)
    if args.overfit:
      recon = np.asarray(predict(params, fixed['frames'])['recon'], np.float64)
      scores = {'mse': float(np.mean((recon - fixed['target_frame'] / 255.0)**2))}
    else:
      scores = balls_eval.evaluate_natural(predict, params, val, config.data.history, indices,
                                           32, config.sim.image_size)
    print(json.dumps({'step': step, **scores, 'ratio_copy_last': scores['mse'] / copy_last,
                      'wall_seconds': round(time.perf_counter() - start, 1)}), flush=True)

  steps = args.steps or config.natural.num_steps
  try:
    evaluate(0)
    learner.run(steps, eval_fn=evaluate, eval_every=args.eval_every)
    if steps % args.eval_every:
      evaluate(steps)
  finally:
    learner.close()


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(prog='python -m rmr_dist.tools.balls_ladder',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('rung', choices=('controls', 'train'))
  parser.add_argument('--workdir', required=True, help='a balls work directory with data')
  parser.add_argument('--set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                      help='config override, e.g. natural.position_scale=1.0 (repeatable)')
  parser.add_argument('--variant', default='end_to_end',
                      help=f'natural variant to train ({", ".join(config_lib.BALLS_VARIANTS)})')
  parser.add_argument('--steps', type=int, default=0, help='updates (0: natural.num_steps)')
  parser.add_argument('--eval-every', type=int, default=50)
  parser.add_argument('--windows', type=int, default=0,
                      help='validation windows scored (0: natural.eval_windows)')
  parser.add_argument('--overfit', action='store_true', help='train on one fixed batch')
  parser.add_argument('--seed', type=int, default=0, help='root seed (init, batch order)')
  args = parser.parse_args(argv)
  if args.eval_every < 1 or args.steps < 0:
    parser.error('--eval-every must be >= 1 and --steps >= 0')
  if args.variant not in config_lib.BALLS_VARIANTS:
    parser.error(f'--variant={args.variant!r}: one of {", ".join(config_lib.BALLS_VARIANTS)}')
  try:
    config = config_lib.load_balls_config(overrides.apply(
        overrides.read_config_dict(args.workdir), args.set, config_lib.BallsConfig))
    workdir = workdir_lib.WorkDir.reopen(args.workdir, workdir_lib.BALLS_STAGES)
    train = data_stage.load_split(config, workdir, balls_trajectories.TRAIN)
    val = data_stage.load_split(config, workdir, balls_trajectories.VAL)
  except (config_lib.ConfigError, ValueError) as e:
    parser.exit(2, f'{parser.prog}: error: {e}\n')
  indices = balls_trajectories.eval_indices(val.window_count(config.data.history),
                                            args.windows or config.natural.eval_windows)
  if args.rung == 'controls':
    print(json.dumps(_controls(config, train, val, indices)), flush=True)
  else:
    _train(args, config, workdir, train, val, indices)


if __name__ == '__main__':
  main(sys.argv[1:])
