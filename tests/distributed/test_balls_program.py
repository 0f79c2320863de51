"""balls.py end to end on the `test` config: real MuJoCo, real local Ray, real Orbax; then each
stage unit's record read back in one process, and the ladder tool, on that run's directory."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import balls as balls_configs
from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.stages import balls_abstract
from rmr_dist.stages import balls_data
from rmr_dist.stages import balls_natural
from rmr_dist.stages import balls_report
from rmr_dist.tools import balls_ladder
from tests.conftest import FAST_COMPILE_ENV, REPO, scalar_tags

pytestmark = pytest.mark.ray


def _balls(*args, timeout=420):
  env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER='0', **FAST_COMPILE_ENV)
  return subprocess.run([sys.executable, os.path.join(REPO, 'balls.py'), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def program_run(tmp_path_factory):
  """(work directory, completed process) of one `balls.py --config=configs/balls.py:test` run,
  shared by the tests marked xdist_group('balls_program') (one xdist worker runs them)."""
  workdir = str(tmp_path_factory.mktemp('balls_program') / 'run')
  return workdir, _balls('--config=configs/balls.py:test', f'--workdir={workdir}')


@pytest.mark.xdist_group('balls_program')
@pytest.mark.fast_compile  # the ladder tool's few updates of small models: compiling dominates
def test_stage_units_read_back_and_the_ladder_tool_runs(program_run, capsys):
  """Each stage unit's record on the program's work directory: the data are complete, the
  abstract unit trained its budget and exported P, the natural unit trained every variant on
  identical batches and logged its evaluations; a finished unit is read back, not redone; the
  report names the natural fingerprint; the ladder tool runs there with the stage's learner."""
  workdir, proc = program_run
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  config = config_lib.load_balls_config(balls_configs.get_config('test'))
  paths = workdir_lib.WorkDir.reopen(workdir, workdir_lib.BALLS_STAGES)
  assert balls_data.missing_work(config, paths, 1) == []
  abstract = workdir_lib.read_json(os.path.join(paths.stage_dir('abstract'), 'result.json'))
  assert abstract['train_steps'] == config.abstract.num_steps
  assert len(abstract['rollout_mse']) == config.abstract.rollout_steps
  assert os.path.isdir(os.path.join(paths.stage_dir('abstract'), 'processor'))
  assert balls_abstract.run(config, paths, say=lambda line: None) == abstract  # Read back.

  natural = balls_natural.run(config, paths, say=lambda line: None)  # Read back, not redone.
  assert natural == workdir_lib.read_json(os.path.join(paths.stage_dir('natural'),
                                                       'result.json'))
  assert natural['identical_batches']
  assert set(config.natural.variants) <= set(natural['mse'])
  assert {'rmr/seed_0/eval/natural/mse', 'rmr/seed_0/eval/natural/fg_ari'} <= scalar_tags(
      paths.tb)
  for parts in natural['latent_outside_abstract_span'].values():
    assert all(0.0 <= x <= 1.0 for k in ('ball_slots', 'background_slot') for x in parts[k])

  written = balls_report.run(config, paths, say=lambda line: None)
  with open(written['balls.md']) as f:
    text = f.read()
  assert f'natural {paths.fingerprints["natural"]}' in text
  assert '| rmr |' in text and 'span of the abstract f' in text

  balls_ladder.main([f'--workdir={workdir}', 'controls', '--windows=4'])
  balls_ladder.main([f'--workdir={workdir}', 'train', '--variant=rmr', '--steps=2',
                     '--eval-every=1', '--windows=4', '--set', 'natural.slot_init=sampled'])
  lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if line.startswith('{')]
  assert lines[0]['mean_frame_mse'] > 0 and lines[0]['n_windows'] == 4
  assert [x['step'] for x in lines[1:]] == [0, 1, 2]
  assert all(np.isfinite(x['mse']) and x['ratio_copy_last'] > 0 for x in lines[1:])


@pytest.mark.xdist_group('balls_program')
def test_balls_test_config_writes_report_and_resumes(program_run):
  workdir, proc = program_run
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  report = os.path.join(workdir, 'report')
  for name in ('balls.csv', 'balls.md', 'abstract_rollout.png', 'natural_rollout.png',
               'natural_seeds.png'):
    assert os.path.getsize(os.path.join(report, name)) > 0, name
  with open(os.path.join(report, 'balls.csv')) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ['stage', 'variant', 'seed', 'mse', 'fg_ari', 'latent_span',
                           'position_rmse']
  config = config_lib.load_balls_config(balls_configs.get_config('test'))
  stages = {(r['stage'], r['variant']) for r in rows}
  rollout = {(f'abstract_rollout{k}', v) for k in range(1, config.abstract.rollout_steps + 1)
             for v in ('mpnn', 'const_velocity')}
  learned = ('rmr', 'end_to_end', 'rmr_random_p', 'oracle', 'oracle_end_to_end',
             'oracle_random_p')
  references = ('copy_last', 'rendered_abstract', 'rendered_const_velocity')
  assert stages == ({('abstract_1step', 'mpnn'), ('abstract_1step', 'copy_last'),
                     ('abstract_1step', 'const_velocity')} | rollout
                    | {('natural_1step', v) for v in learned + references})
  natural = [r for r in rows if r['stage'] == 'natural_1step']
  assert len(natural) == len(learned) * config.natural.num_seeds + len(references)
  # The renders at constant velocity are exact where no ball bounces: 0 is possible.
  assert all(0.0 < float(r['mse']) < 1.0 or r['variant'].startswith('rendered_')
             and 0.0 <= float(r['mse']) < 1.0 for r in rows)
  assert all(-1.0 <= float(r['fg_ari']) <= 1.0 for r in natural if r['variant'] in learned)
  assert all(0.0 <= float(r['latent_span']) <= 1.0 for r in natural
             if r['variant'] in learned[:3])
  assert all(r['fg_ari'] == '' for r in rows if r['variant'] in references)
  with open(os.path.join(report, 'balls.md')) as f:
    md = f.read()
  assert '7.940e-04' in md and '4.590e-04' in md  # the paper's numbers beside ours
  assert 'RMR vs end-to-end, natural 1-step MSE paired over' in md
  assert '| rmr − rmr_random_p |' in md and '| oracle − end_to_end |' in md
  paths = workdir_lib.WorkDir.reopen(workdir, workdir_lib.BALLS_STAGES)
  # Both learners ran in learner groups (Ray actors) that got the driver's 2 CPU devices.
  for stage in ('abstract', 'natural'):
    assert f'{stage}: learner group of 1 process(es)' in proc.stdout
    with open(os.path.join(paths.stage_dir(stage), 'result.json')) as f:
      result = json.load(f)
    assert result['learner_processes'] == 1 and result['learner_devices'] == 2
  assert result['identical_batches']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tb')))

  again = _balls('--config=configs/balls.py:test', f'--workdir={workdir}')
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'data: complete' in again.stdout
  assert 'natural: 3 variants' not in again.stdout  # finished stages are not re-run
  assert 'learner group' not in again.stdout


@pytest.mark.parametrize('args, message', [
    (['--config.sim.num_balls=0'], 'config.sim.num_balls=0'),
    (['--config.natural.variants=("rmr","cswm")'], "distinct variants from ('rmr', "
                                                   "'end_to_end', 'rmr_random_p')"),
    (['--config.sim.radius=0.1'], 'has no key'),
    (['--stages=data,train'], "Unknown stage(s) ['train']"),
    (['--stages=natural'], 'no abstract learner has run'),
    (['--config.abstract.rollout_steps=20'], 'config.data.episode_frames=10'),
    # More 1-CPU simulation actors than the local Ray's 2 CPUs: refused before Ray starts.
    (['--stages=data', '--config.data.num_workers=3'],
     'data.num_workers=3: each of these actors reserves 1 CPU'),
])
def test_bad_input_fails_fast_with_a_message(tmp_path, args, message):
  proc = _balls('--config=configs/balls.py:test', f'--workdir={tmp_path / "bad"}', *args,
                timeout=120)
  assert proc.returncode != 0
  assert message in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr


def test_study_config_is_the_local_run_with_more_seeds():
  local = config_lib.load_balls_config(balls_configs.get_config('local'))
  study = config_lib.load_balls_config(balls_configs.get_config('study'))
  assert local.natural.slot_latents == 'abstract_f' and local.natural.processor_graph == 'objects'
  assert study.natural.num_seeds == 4 and study.natural.oracle_steps == 0
  assert balls_configs.STUDY_RUNS * study.natural.num_seeds >= 8  # the powered seed count
  assert f'seq 0 {balls_configs.STUDY_RUNS - 1}' in balls_configs.STUDY_COMMAND
  same = dataclasses.replace(study.natural, num_seeds=local.natural.num_seeds,
                             oracle_steps=local.natural.oracle_steps)
  assert same == local.natural
  assert (study.sim, study.data, study.abstract) == (local.sim, local.data, local.abstract)


def test_abstract_stage_without_data_names_the_missing_stage(tmp_path):
  proc = _balls('--config=configs/balls.py:test', f'--workdir={tmp_path / "empty"}',
                '--stages=abstract', timeout=120)
  assert proc.returncode != 0
  assert 'run the data stage first' in proc.stderr, proc.stderr[-2000:]
