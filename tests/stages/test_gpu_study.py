"""scripts/gpu_study.sh at tiny size on the CPU: the `gpu` config's learner stages run in one
process (`ray.address='none'`, `stages.atari_in_process`) from a collected episode store, where
importing Ray, Reverb, TensorFlow or MuJoCo raises (as on the lent GPU machine), and write
Table 1, Table 2 with its curve and the per-update timings. The stage units that run are those
of the Ray program's learners (`stages.atari_abstract`, `atari_natural`, `atari_probe`,
`atari_report`): `test_stage_units_read_back_and_score_every_encoder_alike` checks their records
on the script's work directory (the Ray program's all-stages tests cover the units reading a
Reverb server)."""

import csv
import dataclasses
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
from rmr_dist.evaluation import atari_probes
from rmr_dist.evaluation import atari_ram_labels
from rmr_dist.evaluation import atari_table1
from rmr_dist.replay import atari_episode_store
from rmr_dist.stages import atari_collect
from rmr_dist.stages import atari_natural
from rmr_dist.stages import atari_probe
from rmr_dist.stages import atari_report
from rmr_dist.tools import atari_diagnosis
from tests.conftest import REPO, scalar_tags

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


def test_stage_units_read_back_and_score_every_encoder_alike(studied, monkeypatch):
  """The stage units' records on the script's work directory: the abstract and natural units
  trained their budgets and logged; a finished probe unit is read back, not redone; every
  encoder of Table 1 (each variant, the untrained control, the supervised ceiling) is scored by
  one function, on whole held-out episodes; the report's Table 1 holds those records."""
  config, paths, proc, _ = studied
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
  rows = [workdir_lib.read_json(os.path.join(paths.abstract_unit('pong', m), 'result.json'))
          for m in ('copy', 'mpnn')]
  assert [r['model'] for r in rows] == ['copy', 'mpnn']
  assert rows[1]['train_steps'] == config.abstract.num_steps and rows[1]['resumed_from'] is None
  assert os.path.isdir(paths.processor_export('pong', 'mpnn'))
  trained = workdir_lib.read_json(os.path.join(paths.natural_unit('pong', 1.0), 'trained.json'))
  assert trained['identical_batches'] and trained['steps'] == config.natural.num_steps
  tags = scalar_tags(paths.tb)
  assert {'eval/abstract/pong/mpnn/bit_f1', 'abstract/pong/mpnn/loss',
          'rmr/seed_1/natural/pong/f100/loss'} <= tags, sorted(tags)

  probe = workdir_lib.read_json(paths.probe_result('pong', 1.0))
  assert set(probe['variants']) == set(config.natural.variants)
  assert all(len(v['bit_f1']) == config.natural.num_seeds for v in probe['variants'].values())
  # A finished unit is read back, not redone.
  assert atari_probe.run(config, paths, 'pong', 1.0, None) == probe
  assert probe['ceiling'] is not None and len(probe['ceiling_fit']) == config.natural.num_seeds
  for rec in list(probe['variants'].values()) + [probe['untrained'], probe['ceiling']]:
    assert sorted(rec) == sorted(atari_probe.SCORE_KEYS)
    assert all(0.0 <= f <= 1.0 for f in rec['train_f1'] + rec['holdout_f1'])
    assert all(0 < b <= n <= config.probe.steps
               for b, n in zip(rec['best_step'], rec['probe_steps']))
    # AtariARI byte probes on Pong's labelled variables: the across-categories F1 is the
    # mean of the per-category F1s.
    assert all(0.0 <= f <= 1.0 for f in rec['byte_f1'])
    for f, cats in zip(rec['byte_f1'], rec['byte_category_f1']):
      assert set(cats) <= set(atari_ram_labels.CATEGORIES)
      assert f == pytest.approx(sum(cats.values()) / len(cats))
  for fit in probe['ceiling_fit']:
    assert 0 < fit['steps'] <= config.probe.ceiling_steps and fit['n_val'] > 0
  assert len(probe['untrained']['bit_f1']) == config.natural.num_seeds
  assert 0.0 <= probe['majority_f1'] <= 1.0 and 0.0 <= probe['majority_byte_f1'] <= 1.0

  data = atari_probe.ProbeData(*atari_probe.make_train_data(config, paths, 'pong'),
                               *atari_probe.make_eval_data(config, paths, 'pong'))
  # The probe set: distinct frame stacks of the stored training episodes, each with its episode.
  frames, ram, episode = data.train_frames, data.train_ram, data.train_episode
  assert 0 < len(ram) <= config.probe.train_transitions
  assert len({f.tobytes() + r.tobytes() for f, r in zip(frames, ram)}) == len(ram)
  store = atari_episode_store.EpisodeStore(paths.episodes)
  entries = store.entries('pong', 'train')
  assert probe['n_train_episodes'] == len(set(episode.tolist())) > 1
  for i in range(0, len(ram), 7):
    ep = store.read('pong', 'train', entries[episode[i]]['head'], entries[episode[i]]['episode'])
    assert any((ep.ram[t] == ram[i]).all() and (ep.frames[t] == frames[i][-1]).all()
               for t in range(ep.length))
  encode_fn = atari_probe.make_encode_fn(config)
  # The controls: the untrained encoders are the learners' initialisations, scored by the very
  # function that scores the trained ones (same numbers when called again); the probes' early
  # stopping holds out whole episodes, none in both parts.
  splits_made = []
  split_indices = atari_probes.split_indices

  def recording_split(n, val_fraction, seed, groups=None):
    out = split_indices(n, val_fraction, seed, groups)
    splits_made.append((groups, out))
    return out

  untrained = atari_probe.untrained_encoders(config, paths, 'pong')
  monkeypatch.setattr(atari_probes, 'split_indices', recording_split)
  for seed, params in untrained.items():
    again = atari_probe.score_encoder(config, encode_fn, params, data, 'pong', seed)
    assert again['bit_f1'] == probe['untrained']['bit_f1'][seed]
    assert again['byte_f1'] == probe['untrained']['byte_f1'][seed]
  monkeypatch.undo()
  assert len(splits_made) == 2 * config.natural.num_seeds  # bit and byte probes
  for groups, (fit, val) in splits_made:
    assert groups is episode and len(val) and not set(episode[fit]) & set(episode[val])
  # The ceiling: each seed's initialisation trained on the probe set's labels, then scored by
  # the same function.
  ceiling, fits = atari_probe.ceiling_encoders(config, paths, 'pong', data, encode_fn)
  assert fits == probe['ceiling_fit']
  for seed, params in ceiling.items():
    again = atari_probe.score_encoder(config, encode_fn, params, data, 'pong', seed)
    assert again['byte_f1'] == probe['ceiling']['byte_f1'][seed]
    assert again['bit_f1'] == probe['ceiling']['bit_f1'][seed]
  # Snapshots are the largest fraction's alone (the learning curve's); the others save none.
  assert atari_natural.curve_steps(config, 1.0) == [2]
  assert atari_natural.curve_steps(config, 0.5) == []
  assert set(probe['learning_curve']) == set(probe['learning_curve_byte']) == {'2'}
  assert all(len(f1) == config.natural.num_seeds
             for f1 in probe['learning_curve']['2'].values())

  # The report (written by the script's run): Table 1 holds those records.
  report = os.path.join(paths.root, 'report')
  with open(os.path.join(report, 'table1.md')) as f:
    md = f.read()
  nc = config.natural
  assert (f'Every variant ({", ".join(nc.variants)}): natural.loss={nc.loss!r} (not the '
          f"paper's hinge), {nc.num_steps} updates of batch {nc.batch_size}, {nc.num_seeds} "
          'seeds.') in md
  hinge = atari_report._objective_line(  # pylint: disable=protected-access
      dataclasses.replace(nc, loss='hinge'))
  assert "C-SWM's contrastive hinge (the paper's), 4 updates" in hinge
  assert 'RMR − C-SWM [95% CI]' in md and 'ceiling' in md
  with open(os.path.join(report, 'results.json')) as f:
    results = json.load(f)
  assert results['fingerprints']['table1'] == paths.stage_fingerprints('probe')
  assert results['probes']['pong/f100']['untrained'] == probe['untrained']
  # Table 1's primary score is the across-categories byte F1; bit F1 is the second table.
  with open(os.path.join(report, 'table1.csv')) as f:
    assert f.readline().strip() == ','.join(atari_table1.table1_columns(nc.variants))
  with open(os.path.join(report, 'table1.csv')) as f:
    byte_rows = list(csv.DictReader(f))
  assert [r['game'] for r in byte_rows] == ['pong']
  assert float(byte_rows[0]['majority_f1']) == pytest.approx(probe['majority_byte_f1'])
  assert float(byte_rows[0]['untrained_f1_mean']) == pytest.approx(
      sum(probe['untrained']['byte_f1']) / nc.num_seeds)
  assert float(byte_rows[0]['ceiling_f1_mean']) == pytest.approx(
      sum(probe['ceiling']['byte_f1']) / nc.num_seeds)
  per_seed = results['table1']['pong']['per_seed']
  assert per_seed['untrained'] == probe['untrained']['byte_f1']
  assert per_seed['ceiling'] == probe['ceiling']['byte_f1']
  assert per_seed['rmr'] == probe['variants']['rmr']['byte_f1']
  assert results['table1_bit']['pong']['per_seed']['untrained'] == probe['untrained']['bit_f1']
  with open(os.path.join(report, 'table1_bit.csv')) as f:
    bit_rows = list(csv.DictReader(f))
  assert float(bit_rows[0]['majority_f1']) == pytest.approx(probe['majority_f1'])
  for stem in ('learning_curve', 'learning_curve_bit'):
    with open(os.path.join(report, f'{stem}.csv')) as f:
      steps = {line.split(',')[1] for line in f.read().splitlines()[1:]}
    assert steps == {'0', '2', str(nc.num_steps)}


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
