"""scripts/gpu_study.sh at tiny size on the CPU: the `gpu` config's learner stages run in one
process (`ray.address='none'`, `stages.atari_in_process`) from a collected episode store, where
importing Ray, Reverb, TensorFlow or MuJoCo raises (as on the lent GPU machine), and write
Table 1, Table 2 with its curve and the per-update timings."""

import json
import os
import subprocess
import sys

import pytest

from configs import atari as atari_configs
from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.replay import atari_episode_store
from rmr_dist.stages import atari_collect
from rmr_dist.tools import atari_diagnosis
from tests.conftest import REPO

# One xdist worker runs this module: its tests share one collected work directory and one run
# of the script (`collected`, `studied`), session-scoped so that tests of other modules run in
# between on that worker do not tear them down.
pytestmark = pytest.mark.xdist_group('gpu_study')

# The gpu config cut to seconds: one game, 84x84 frames and the small trunk, a few updates of
# tiny models, small probes; two-frame natural inputs (read from the store only).
TINY = {
    'games': ('pong',), 'env.max_episode_steps': 40, 'env.frame_height': 84,
    'env.frame_width': 84, 'heads.num_heads': 4, 'natural.trunk': 'small',
    'abstract.models': ('copy', 'mpnn'), 'abstract.num_steps': 6, 'abstract.batch_size': 8,
    'abstract.latent_size': 16, 'abstract.hidden_size': 16, 'abstract.mlp_hidden_size': 32,
    'abstract.save_every': 3, 'abstract.log_every': 2, 'abstract.curve_steps': (3,),
    'natural.num_seeds': 2, 'natural.num_steps': 4, 'natural.batch_size': 4,
    'natural.save_every': 2, 'natural.log_every': 2, 'natural.data_fractions': (0.5, 1.0),
    'natural.frame_stack': 2, 'natural.curve_steps': (2,),
    'natural.export_timeout_s': 5.0, 'probe.train_transitions': 64,
    'probe.steps': 20, 'probe.eval_every': 5, 'probe.batch_size': 32,
    'probe.embed_batch_size': 16, 'probe.max_eval_frames': 100, 'probe.ceiling_steps': 6,
    'probe.ceiling_batch_size': 16,
}

# Imported first by every Python process that has it on its path: these packages look
# uninstalled (a None entry in sys.modules makes their import raise ImportError).
BLOCKER = ("import sys\n"
           "for name in ('ray', 'reverb', 'tensorflow', 'mujoco'):\n"
           "  sys.modules[name] = None\n")


def _tiny_gpu_config():
  c = atari_configs.get_config('gpu')
  for key, value in TINY.items():
    section, _, field = key.rpartition('.')
    (c[section] if section else c)[field] = value
  return c


def _flags():
  return [f'--config.{k}={v!r}' if isinstance(v, tuple) else f'--config.{k}={v}'
          for k, v in TINY.items()]


@pytest.fixture(scope='session')
def collected(tmp_path_factory):
  """A work directory of the tiny gpu config with its collect stage done, every episode
  stored (the plain collector: no Ray, no Reverb)."""
  config = config_lib.load_atari_config(_tiny_gpu_config())
  root = str(tmp_path_factory.mktemp('gpu') / 'work')
  paths = workdir_lib.open_workdir(root, config, workdir_lib.ATARI_STAGES)
  store = atari_episode_store.EpisodeStore(paths.episodes)
  collector = collector_lib.Collector(config, store, None)
  stats = collector.run(atari_collect.work_units(config))
  logger = logging_lib.Logger(paths.tb)
  atari_collect.write_summary(config, paths, stats, {}, None, logger)  # Marks collect done.
  logger.close()
  return config, paths


def _run_script(tmp_path, workdir, out, *extra, timeout=480):
  blocker = tmp_path / 'blocker'
  blocker.mkdir(exist_ok=True)
  (blocker / 'sitecustomize.py').write_text(BLOCKER)
  env = dict(os.environ, PYTHONPATH=str(blocker), PYTHON=sys.executable)
  return subprocess.run(['bash', os.path.join(REPO, 'scripts', 'gpu_study.sh'), workdir, out,
                         *_flags(), *extra], cwd=str(tmp_path), env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_the_blocker_hides_ray_and_reverb(tmp_path):
  blocker = tmp_path / 'blocker'
  blocker.mkdir()
  (blocker / 'sitecustomize.py').write_text(BLOCKER)
  proc = subprocess.run([sys.executable, '-c', 'import ray'], capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=str(blocker)))
  assert proc.returncode != 0 and 'import of ray halted' in proc.stderr


@pytest.fixture(scope='session')
def studied(collected, tmp_path_factory):
  """`collected` after one run of the gpu script: (config, paths, the script's process, its
  output directory)."""
  config, paths = collected
  tmp_path = tmp_path_factory.mktemp('gpu_script')
  out = str(tmp_path / 'out')
  return config, paths, _run_script(tmp_path, paths.root, out), out


def test_gpu_script_runs_the_learner_stages_without_ray_or_reverb(studied, tmp_path):
  config, paths, proc, out = studied
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
  assert 'in-process learners on JAX cpu' in proc.stdout
  assert sorted(os.listdir(out)) == ['results.json', 'run.log', 'table1.md', 'table2.md',
                                     'table2_curve.md', 'timings.json']
  with open(os.path.join(out, 'results.json')) as f:
    results = json.load(f)
  assert [r['model'] for r in results['table2']] == ['copy', 'mpnn']
  assert set(results['table2'][1]['curve']) == {'3'}  # Table 2's curve point.
  assert results['table2_same_batches']  # Store batches: one sequence for every model.
  assert 'pong' in results['table1']
  per_seed = results['table1']['pong']['per_seed']
  assert all(len(per_seed[v]) == config.natural.num_seeds for v in config.natural.variants)
  with open(os.path.join(out, 'timings.json')) as f:
    timings = {t['unit']: t for t in json.load(f)}
  assert set(timings) == {'abstract pong/mpnn', 'natural pong fraction 0.5',
                          'natural pong fraction 1.0'}
  assert timings['natural pong fraction 1.0']['updates'] == config.natural.num_steps
  assert all(t['seconds_per_update'] > 0 for t in timings.values())
  # Two-frame inputs, probes included: the probe set holds stacks [N, 2, H, W, 3].
  import numpy as np
  with np.load(paths.probe_data('pong')) as data:
    assert data['frames'].shape[1:] == (2, config.env.frame_height, config.env.frame_width, 3)

  # Again: every unit is read back, nothing retrains.
  again = _run_script(tmp_path, paths.root, str(tmp_path / 'out2'))
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'steps/s' not in again.stdout and 'abstract: pong / mpnn: slot acc' in again.stdout


def test_in_process_program_refuses_stages_that_need_ray(collected, tmp_path):
  _, paths = collected
  proc = _run_script(tmp_path, paths.root, str(tmp_path / 'out'), '--stages=collect,abstract',
                     timeout=120)
  assert proc.returncode != 0
  assert "with ray.address='none' only abstract, natural, probe, report run" in proc.stdout
  assert 'collect need Ray and Reverb' in proc.stdout and 'Traceback' not in proc.stdout


def test_diagnosis_tool_reads_the_curve_beside_the_controls(studied, capsys):
  """`rmr_dist.tools.atari_diagnosis` on the script's work directory: the controls, one line
  per curve step (0: every variant at the untrained scores), the final encoders' per-variable
  byte F1 (the parts of the category mean), and the pixel controls scored by the probe
  stage's code."""
  config, paths, proc, _ = studied
  assert proc.returncode == 0, proc.stderr[-3000:]
  atari_diagnosis.main([f'--workdir={paths.root}', '--game=pong', '--pixel-control',
                        '--mlp-pixel-probe=8', '--seeds=1'])
  header, *steps, variables = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  probe = workdir_lib.read_json(paths.probe_result('pong', 1.0))
  assert header['untrained_byte_f1'] == [round(x, 4) for x in probe['untrained']['byte_f1']]
  assert len(header['ceiling_bit_f1']) == config.natural.num_seeds
  assert len(header['pixel_byte_f1']) == len(header['pixel_bit_f1']) == 1
  assert 0.0 <= header['pixel_bit_f1'][0] <= 1.0 and 0.0 <= header['mlp_pixel_bit_f1'][0] <= 1.0
  assert [s['step'] for s in steps] == [0, 2, config.natural.num_steps]
  assert all(steps[0]['byte_f1'][v] == header['untrained_byte_f1'] for v in config.natural.variants)
  assert steps[-1]['bit_f1']['rmr'] == [round(x, 4) for x in probe['variants']['rmr']['bit_f1']]
  for v in config.natural.variants:
    per_variable = variables['byte_variable_f1'][v]
    byte = probe['variants'][v]
    for s in range(config.natural.num_seeds):
      parts = [f1[s] for f1 in per_variable.values()]
      assert min(parts) - 1e-4 <= byte['byte_f1'][s] <= max(parts) + 1e-4  # a mean of means


def test_diagnosis_tool_names_a_missing_probe_result(collected, capsys):
  _, paths = collected
  with pytest.raises(SystemExit) as e:
    atari_diagnosis.main([f'--workdir={paths.root}', '--game=breakout'])
  assert e.value.code == 2
  assert "--game='breakout': the work directory's games are pong" in capsys.readouterr().err
