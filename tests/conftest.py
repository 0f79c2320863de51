"""Test-session environment: CPU JAX with 2 forced host devices, Ray on loopback, quiet TF."""

import ctypes.util
import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=2').strip()
os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# MuJoCo picks its OpenGL backend when first imported, by whichever test: EGL where Mesa's libEGL
# exists (with MUJOCO_GL=egl and no libEGL, `import mujoco` itself fails).
if 'MUJOCO_GL' not in os.environ and ctypes.util.find_library('EGL'):
  os.environ['MUJOCO_GL'] = 'egl'

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)  # For `configs.atari`.

import pytest  # noqa: E402


@pytest.fixture
def test_config():
  """The validated `test` variant of configs/atari.py."""
  from configs import atari as atari_configs
  from rmr_dist import config as config_lib
  return config_lib.load_atari_config(atari_configs.get_config('test'))
