"""The pinned installs: constraints-cuda.txt is constraints.txt plus the CUDA wheels of the
`cuda` extra (scripts/make_cuda_constraints.py writes it; this checks it offline)."""

import os
import sys
import tomllib

from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import make_cuda_constraints  # noqa: E402  pylint: disable=g-import-not-at-top


def test_cuda_constraints_keep_every_cpu_pin_and_pin_the_cuda_wheels():
  cpu = make_cuda_constraints.read_pins(make_cuda_constraints.CPU_CONSTRAINTS)
  cuda = make_cuda_constraints.read_pins(make_cuda_constraints.CUDA_CONSTRAINTS)
  assert {k: cuda.get(k) for k in cpu} == cpu
  extra = set(cuda) - set(cpu)
  assert {'jax-cuda12-plugin', 'jax-cuda12-pjrt'} <= extra
  assert cuda['jax-cuda12-plugin'] == cuda['jax-cuda12-pjrt'] == cpu['jax'] == '0.4.34'
  assert {'nvidia-cublas-cu12', 'nvidia-cudnn-cu12', 'nvidia-cuda-runtime-cu12'} <= extra
  assert all(v for v in cuda.values())  # Every line is an exact `name==version` pin.


def test_cuda_extra_is_the_requirement_the_script_resolves():
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    extras = tomllib.load(f)['project']['optional-dependencies']
  assert extras['cuda'] == [make_cuda_constraints.REQUIREMENT]
