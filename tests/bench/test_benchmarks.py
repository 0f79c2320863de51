"""Every benchmark runs at tiny sizes and prints its documented summary (never a speed check).

Each runs as `python -m rmr_dist.bench NAME ...` in a subprocess (the collect and scaling
benchmarks pin cores or start a Ray cluster, which must not leak into the test process). The
test asserts that every line is JSON, that the last line has the keys the module's docstring
documents (`SUMMARY_KEYS`), and that those figures are finite and positive.
"""

import importlib
import json
import math
import os
import subprocess
import sys

import pytest

from rmr_dist.bench.__main__ import BENCHMARKS
from tests.conftest import FAST_COMPILE_ENV, REPO


def _run(name: str, *flags: str, timeout: float = 240, **env_vars: str) -> list[dict]:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [REPO] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]), **env_vars)
  env['XLA_FLAGS'] = ''  # One CPU device, as a user runs it.
  proc = subprocess.run([sys.executable, '-m', 'rmr_dist.bench', name, *flags], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]


def _numbers(value):
  """Every number in a (nested) JSON value."""
  if isinstance(value, bool) or value is None or isinstance(value, str):
    return []
  if isinstance(value, (int, float)):
    return [value]
  if isinstance(value, dict):
    value = list(value.values())
  return [x for v in value for x in _numbers(v)]


def _check_summary(name: str, line: dict, keys_attr: str = 'SUMMARY_KEYS') -> None:
  module_name = BENCHMARKS[name]
  module = importlib.import_module(f'rmr_dist.bench.{module_name}')
  keys = getattr(module, keys_attr)
  for key in keys:
    assert f'`{key}`' in module.__doc__, f'{module_name}: {key} not documented'
    assert key in line, f'{module_name}: summary lacks {key}: {line}'
    numbers = _numbers(line[key])
    assert numbers, f'{module_name}: {key}={line[key]!r} holds no figure'
    assert all(math.isfinite(x) and x > 0 for x in numbers), f'{module_name}: {key}={line[key]}'


def test_collect():
  lines = _run('collect', '--steps', '60', '--repeats', '1', '--max-episode-steps', '30')
  assert {l.get('measure') for l in lines[:-1]} == {
      'bare_ale', 'bare_ale_palette', 'collector', 'collector_without_replay',
      'collector_with_store', 'collector_remote_server'}
  assert lines[-1]['benchmark'] == 'collect'
  assert lines[-1]['server_core'] in ('own', 'shared')
  _check_summary('collect', lines[-1])


def test_abstract():
  lines = _run('abstract', '--batch-size', '2', '--latent-size', '4', '--hidden-size', '4',
               '--steps', '1', '--repeats', '1', '--transitions', '40')
  assert lines[-1]['benchmark'] == 'abstract'
  _check_summary('abstract', lines[-1])


@pytest.mark.slow
def test_natural():
  lines = _run('natural', '--batch-size', '2', '--seeds', '1', '--hidden-size', '4',
               '--height', '84', '--width', '64', '--trunk', 'small', '--steps', '1',
               '--over-models', 'both')
  assert lines[-1]['benchmark'] == 'natural' and lines[-1]['finite_loss']
  _check_summary('natural', lines[-1])
  assert lines[-1]['shape'] == 'reference' and lines[-1]['loss'] == 'hinge'
  timed = [l for l in lines if l.get('measure') == 'over_models']
  assert [l['over_models'] for l in timed] == ['vmap', 'sequence']
  assert lines[-1]['over_models'] == 'vmap' and lines[-1]['sequence_speedup'] > 0


def test_natural_at_a_config_variants_shape():
  """--shape local takes the local config's natural stage (84x84 frames, the small trunk,
  bits readout, InfoNCE, the Deep Sets export, 3 variants); flags still override."""
  lines = _run('natural', '--shape', 'local', '--batch-size', '2', '--seeds', '1',
               '--hidden-size', '4', '--steps', '1')
  got = lines[-1]
  _check_summary('natural', got)
  assert (got['frame_shape'], got['trunk'], got['readout'], got['loss'], got['processor']) == (
      [84, 84], 'small', 'bits', 'infonce', 'deepsets')
  assert got['models'] == 3 and got['batch_size'] == 2 and got['hidden_size'] == 4
  assert got['model_updates_per_s'] == pytest.approx(3 * got['steps_per_s'], rel=0.01)


@pytest.mark.slow
def test_balls():
  lines = _run('balls', '--config', 'test', '--seconds', '0.2', '--steps', '1', '--seeds', '1',
               **FAST_COMPILE_ENV)  # one update of a small balls model: compiling dominates
  sim = next(l for l in lines if l.get('benchmark') == 'balls_sim')
  _check_summary('balls', sim, 'SIM_KEYS')
  assert lines[-1]['benchmark'] == 'balls_natural' and lines[-1]['finite_loss']
  _check_summary('balls', lines[-1])


@pytest.mark.slow
def test_scaling():
  lines = _run('scaling', '--nodes', '1', '--cpus-per-node', '2', '--actors', '1',
               '--episodes-per-actor', '1', '--writers', '1', '--repeats', '1',
               '--writer-seconds', '0.5', '--warmup-seconds', '0.2', '--episode-steps', '20')
  assert lines[-1]['benchmark'] == 'scaling'
  _check_summary('scaling', lines[-1])


def _run_script(name: str, *flags: str) -> list[dict]:
  """The JSON lines a `scripts/` measurement prints, run at tiny sizes in a subprocess."""
  proc = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', name), *flags], cwd=REPO,
                        capture_output=True, text=True, timeout=240, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]


def test_replay_write_interleaved_script():
  """The README's write-interaction figures come from this script: it runs and reports them."""
  line = _run_script('replay_write_interleaved.py', '--steps', '20', '--repeats', '1')[-1]
  assert line['steps'] == 20
  for key in ('emulate_us_per_step', 'write_us_per_step', 'both_us_per_step'):
    assert math.isfinite(line[key]) and line[key] > 0, line
  assert math.isfinite(line['interaction_us_per_step'])


def test_replay_write_cost_script_episode_lengths():
  """The README's long-episode write costs come from this mode of the script."""
  lines = _run_script('replay_write_cost.py', '--episode-lengths', '30', '--repeats', '1')
  assert [(l['episode_steps'], l['segment_steps']) for l in lines] == [(30, 30)]
  assert math.isfinite(lines[0]['cpu_us_per_step']) and lines[0]['cpu_us_per_step'] > 0
