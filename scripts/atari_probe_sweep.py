"""Re-probes a finished Atari work directory's encoders under several probe settings.

Reads the probe stage's fixed training set (`probe/<fp>/<game>/probe_data.npz`), the validation
episodes, the untrained encoders (the control) and the trained ones of one data fraction, embeds
every frame once per encoder, then fits the probe stage's probes (`atari_probe.score_encoder`'s
code path: `atari_probes.fit_bit_probes` + `evaluate_bit_probes`) once per listed setting of
`probe.max_components` and `probe.weight_decay`. Prints one JSON line per (setting, encoder
kind): validation bit F1 per seed, seed mean and std, and the probes' held-out F1; then, per
setting, whether each variant's seed mean beats the untrained mean by more than its std (the
Atari issue's item 4).

  python scripts/atari_probe_sweep.py --workdir=/tmp/runs/atari-local --game=breakout \
      --components=1024,256,64 --weight-decay=1e-4
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import atari_metrics
from rmr_dist.evaluation import atari_probes
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.stages import atari_probe


def _floats(text: str) -> list[float]:
  return [float(x) for x in text.split(',') if x]


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True, help='a work directory whose probe stage ran')
  p.add_argument('--game', default='breakout')
  p.add_argument('--fraction', type=float, default=1.0)
  p.add_argument('--components', default='1024,256,64', help='probe.max_components values')
  p.add_argument('--weight-decay', default='1e-4', help='probe.weight_decay values')
  args = p.parse_args()

  with open(os.path.join(args.workdir, 'config.json')) as f:
    config = config_lib.load_atari_config(json.load(f))
  if args.game not in config.games:
    raise SystemExit(f'--game={args.game!r} is not one of the run\'s games {config.games}')
  workdir = workdir_lib.open_workdir(args.workdir, config,
                                     workdir_lib.ATARI_STAGES)
  data_files = glob.glob(os.path.join(workdir.stage_dir('probe'), '..', '*', args.game,
                                      'probe_data.npz'))
  own = workdir.probe_data(args.game)
  path = own if os.path.exists(own) else (sorted(data_files)[-1] if data_files else None)
  if path is None:
    raise SystemExit(f'No probe_data.npz for {args.game!r} under {args.workdir}/probe: run its '
                     f'probe stage first.')
  with np.load(path) as d:
    train_frames, train_ram = d['frames'], d['ram']
  val_frames, val_ram = atari_probe.make_eval_data(config, workdir, args.game)
  mask = atari_metrics.high_entropy_slots(val_ram)
  encode_fn = atari_probe.make_encode_fn(config)
  nc = config.natural
  encoders = {('untrained', s): prm for s, prm in
              atari_probe.untrained_encoders(config, workdir, args.game).items()}
  natural_dir = workdir.natural_unit(args.game, args.fraction)
  encoders.update(natural_learning.restore_encoder_params(
      os.path.join(natural_dir, 'checkpoints'), nc.variants, nc.num_seeds))
  start = time.perf_counter()
  batch_size = config.probe.embed_batch_size
  emb = {k: (atari_probes.frozen_embeddings(encode_fn, prm, train_frames, batch_size),
             atari_probes.frozen_embeddings(encode_fn, prm, val_frames, batch_size))
         for k, prm in encoders.items()}
  print(json.dumps({'probe_data': path, 'n_train': len(train_ram), 'n_val': len(val_ram),
                    'n_slots': int(mask.sum()), 'embed_s': round(time.perf_counter() - start, 1)}))
  pc = config.probe
  for components in (int(c) for c in _floats(args.components)):
    for wd in _floats(args.weight_decay):
      scores: dict[str, list] = {}
      for (kind, seed), (tr, va) in emb.items():
        params, info = atari_probes.fit_bit_probes(
            tr, train_ram, slots=mask, steps=pc.steps, batch_size=pc.batch_size,
            learning_rate=pc.learning_rate, weight_decay=wd, seed=config.seed + seed,
            early_stopping=atari_probes.EarlyStopping(pc.val_fraction, pc.eval_every, pc.patience),
            max_components=components)
        val_f1 = float(atari_probes.evaluate_bit_probes(params, va, val_ram)['bit_f1'])
        hold = float(atari_probes.bit_f1_on_slots(params, tr[info.val_index],
                                                  train_ram[info.val_index], mask))
        scores.setdefault(kind, []).append((val_f1, hold))
      summary = {}
      for kind, s in scores.items():
        v = np.array([x[0] for x in s])
        summary[kind] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        print(json.dumps({'components': components, 'weight_decay': wd, 'encoder': kind,
                          'val_f1': [round(x[0], 4) for x in s],
                          'holdout_f1': [round(x[1], 4) for x in s],
                          'mean': round(summary[kind][0], 4), 'std': round(summary[kind][1], 4)}))
      u_mean, u_std = summary['untrained']
      print(json.dumps({'components': components, 'weight_decay': wd,
                        'beats_untrained': {k: bool(m - u_mean > u_std)
                                            for k, (m, _) in summary.items() if k != 'untrained'},
                        'seconds': round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == '__main__':
  main()
