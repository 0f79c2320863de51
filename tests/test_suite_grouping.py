"""The suite's premise: `--dist loadgroup` (the README's test command) runs each xdist_group on
one worker, so a group's shared whole-program fixture runs once (tests/conftest.py)."""

import collections
import os
import subprocess
import sys

_INNER = '''
import os
import time

import pytest


@pytest.mark.parametrize('i', range(6))
@pytest.mark.xdist_group('shared')
def test_grouped(i):
  time.sleep(0.2)
  with open(os.path.join(os.environ['GROUPING_OUT'], f'grouped-{i}'), 'w') as f:
    f.write(os.environ['PYTEST_XDIST_WORKER'])


@pytest.mark.parametrize('i', range(6))
def test_free(i):
  time.sleep(0.2)
  with open(os.path.join(os.environ['GROUPING_OUT'], f'free-{i}'), 'w') as f:
    f.write(os.environ['PYTEST_XDIST_WORKER'])
'''


def test_loadgroup_runs_a_group_on_one_worker(tmp_path):
  (tmp_path / 'test_inner.py').write_text(_INNER)
  out = tmp_path / 'out'
  out.mkdir()
  env = dict(os.environ, GROUPING_OUT=str(out))
  proc = subprocess.run(
      [sys.executable, '-m', 'pytest', '-q', '-n', '2', '--dist', 'loadgroup', '-p',
       'no:cacheprovider', '-p', 'no:benchmark', '--rootdir', str(tmp_path), 'test_inner.py'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  workers = collections.defaultdict(set)
  for path in out.iterdir():
    workers[path.name.split('-')[0]].add(path.read_text())
  assert len(list(out.iterdir())) == 12
  assert len(workers['grouped']) == 1, f'the group ran on {sorted(workers["grouped"])}'
  assert workers['free'] <= {'gw0', 'gw1'}
