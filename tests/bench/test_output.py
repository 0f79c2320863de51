"""Every benchmark JSON line says where it ran: backend, device kind and count, JAX version."""

import ast
import glob
import json
import os

import jax

from rmr_dist.bench import output
from tests.conftest import REPO


def test_emit_adds_the_platform_fields(capsys):
  output.emit({'measure': 'x', 'steps_per_s': 1.5})
  line = json.loads(capsys.readouterr().out)
  assert line == {'measure': 'x', 'steps_per_s': 1.5, 'backend': 'cpu', 'device_kind': 'cpu',
                  'device_count': jax.device_count(), 'jax_version': '0.4.34',
                  'jaxlib_version': '0.4.34'}
  assert line['device_count'] == 2  # The tests force 2 CPU devices.


def test_benchmarks_print_json_only_through_emit():
  for path in glob.glob(os.path.join(REPO, 'rmr_dist', 'bench', '*.py')):
    if path.endswith('output.py'):
      continue
    with open(path) as f:
      tree = ast.parse(f.read())
    dumps = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute)
             and n.attr == 'dumps' and getattr(n.value, 'id', None) == 'json']
    assert not dumps, f'{path}:{dumps} prints JSON without output.emit'
