"""The diagnosis script behind the README's Atari natural tables runs end to end at tiny sizes
(real ALE episodes, a real natural model, the probe stage's probes), and its per-slot scores
are the pooled F1's parts; with a processor export it trains RMR beside C-SWM."""

import json
import os
import subprocess
import sys

import jax

from rmr_dist import checkpointing
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.networks import processors
from tests.conftest import REPO

SCRIPT = os.path.join(REPO, 'scripts', 'atari_natural_diagnosis.py')


def test_diagnosis_script_gives_each_scored_slot_its_own_f1():
  flags = ['--game=pong', '--episodes=3', '--episode-steps=30', '--steps=0,2', '--seeds=1',
           '--probe-frames=40', '--batch=8', '--window=16', '--processor=deepsets',
           '--loss=slot_infonce', '--slot-embedding', '--probe-components=16', '--per-slot',
           '--pixel-control', '--frame-stack=2']
  proc = subprocess.run([sys.executable, SCRIPT, *flags],
                        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  header, *steps = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith('{')]
  slots = list(header['slot_entropy'])
  assert len(slots) == header['scored_slots'] > 0
  assert all(e >= 0.6 for e in header['slot_entropy'].values())  # > 0.6, to 2 decimals
  assert '49:ball_x' in slots  # AtariARI's names where it labels a byte
  assert list(header['pixel_per_slot']) == slots
  assert [s['step'] for s in steps] == [0, 2]
  for line in steps:
    assert list(line['per_slot']) == slots
    for f1 in line['per_slot'].values():
      assert len(f1) == 1 and 0.0 <= f1[0] <= 1.0
    # Micro F1 pools the slots: it lies between the worst and the best slot's F1.
    per_slot = [f1[0] for f1 in line['per_slot'].values()]
    assert min(per_slot) <= line['probe_f1'][0] <= max(per_slot)
  assert steps[1]['positive_energy'][0] > 0


def test_diagnosis_script_trains_rmr_on_an_export_beside_cswm(tmp_path):
  spec = processors.ModelSpec('deepsets', latent_size=16, hidden_size=8)
  model = natural_learning.make_model(spec, maps_per_slot=1, latent_size=16)
  params = natural_learning.init_per_seed(model, jax.random.PRNGKey(0), 1, (84, 64))[0]
  export = checkpointing.export_processor(str(tmp_path / 'processor'), params['processor'],
                                          spec.to_dict())
  flags = ['--game=pong', '--episodes=3', '--episode-steps=30', '--steps=0,2', '--seeds=2',
           '--probe-frames=40', '--batch=8', '--loss=infonce', '--probe-components=16',
           f'--export={export}', '--windows-per-batch=2', '--window=16']
  proc = subprocess.run([sys.executable, SCRIPT, *flags], cwd=REPO, capture_output=True,
                        text=True, timeout=240, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  _, *steps = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith('{')]
  assert [s['step'] for s in steps] == [0, 2]
  # Both variants start from the same encoders (one untrained control), then part.
  assert steps[0]['probe_f1']['rmr'] == steps[0]['probe_f1']['cswm']
  assert all(len(f1) == 2 for f1 in steps[1]['probe_f1'].values())
  assert len(steps[1]['positive_energy']) == 4  # rmr x 2 seeds, cswm x 2 seeds
