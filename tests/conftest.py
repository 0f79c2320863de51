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


@pytest.fixture(scope='session')
def balls_config():
  """The validated `test` variant of configs/balls.py."""
  from configs import balls as balls_configs
  from rmr_dist import config as config_lib
  return config_lib.load_balls_config(balls_configs.get_config('test'))


@pytest.fixture(scope='session')
def balls_data(balls_config):
  """Random trajectories shaped like the balls test config's (learners only need the shapes)."""
  import numpy as np
  from rmr_dist.replay import balls_data as balls_data_lib
  rng = np.random.default_rng(0)
  c = balls_config
  n, size, frames = c.sim.num_balls, c.sim.image_size, c.data.episode_frames
  return balls_data_lib.TrajectorySet(
      positions=rng.random((4, frames, n, 2), dtype=np.float32),
      frames=rng.integers(0, 256, (4, frames, size, size, 3), dtype=np.uint8),
      radii=np.full((4, n), 0.05, np.float32))


def make_balls_abstract_learner(config, data, checkpoint_dir, seed=0, history=3):
  """A small balls abstract learner on `data` (tests of the abstract and natural learners)."""
  from rmr_dist.learning import balls_abstract
  from rmr_dist.replay import balls_data as balls_data_lib
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  return balls_abstract.BallsAbstractLearner(
      spec, history=history, learning_rate=1e-3, seed=seed,
      iterator=balls_data_lib.WindowBatches(data, history, 8, seed=1, frames=False),
      checkpoint_dir=checkpoint_dir, save_every=2, keep=2)
