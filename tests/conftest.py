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
def patch_traced(monkeypatch):
  """`patch_traced(obj, name, value)`: `monkeypatch.setattr` for a function a learner's update
  traces. Learners built alike share one compiled update (`learning.loop.clear_update_cache`),
  so the shared updates are forgotten now (the patch is traced) and at teardown (no later test
  gets the patched update)."""
  from rmr_dist.learning import loop

  def patch(obj, name, value):
    monkeypatch.setattr(obj, name, value)
    loop.clear_update_cache()

  yield patch
  monkeypatch.undo()
  loop.clear_update_cache()


def scalar_tags(logdir: str) -> set[str]:
  """Every scalar tag of the TensorBoard event files under `logdir` (TensorBoard's own reader),
  as 'RUN/TAG' for the per-model runs ('rmr/seed_1/natural/pong/f100/loss': `rmr_dist.logging`
  writes a lockstep model's tags into its run directory) and 'TAG' for the top directory's."""
  from tensorboard.backend.event_processing import event_multiplexer
  mux = event_multiplexer.EventMultiplexer(size_guidance={'scalars': 0})
  mux.AddRunsFromDirectory(logdir)
  mux.Reload()
  return {tag if run == '.' else f'{run}/{tag}'
          for run, tags in mux.Runs().items() for tag in tags.get('scalars', [])}


FAST_COMPILE_ENV = {'JAX_DISABLE_MOST_OPTIMIZATIONS': '1'}


@pytest.fixture(autouse=True)
def _fast_compile(request):
  """Tests marked `fast_compile` compile with XLA's optimisation passes off
  (`jax_disable_most_optimizations`): they run a few updates of small balls models, where
  compiling takes most of the time and LLVM's passes most of the compiling. What they compute
  is the same, only slower to run: tests that train for long keep the default, and so do the
  Atari models, whose unoptimised updates cost more than the compiling saves. Subprocess runs
  of the balls program and bench pass `FAST_COMPILE_ENV` in their environment instead."""
  if request.node.get_closest_marker('fast_compile') is None:
    yield
    return
  import jax
  before = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', before)


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
  from rmr_dist.envs import balls_trajectories
  rng = np.random.default_rng(0)
  c = balls_config
  n, size, frames = c.sim.num_balls, c.sim.image_size, c.data.episode_frames
  return balls_trajectories.TrajectorySet(
      positions=rng.random((4, frames, n, 2), dtype=np.float32),
      frames=rng.integers(0, 256, (4, frames, size, size, 3), dtype=np.uint8),
      radii=np.full((4, n), 0.05, np.float32))


def make_balls_abstract_learner(config, data, checkpoint_dir, seed=0, history=3):
  """A small balls abstract learner on `data` (tests of the abstract and natural learners)."""
  from rmr_dist.learning import balls_abstract
  from rmr_dist.envs import balls_trajectories
  spec = balls_abstract.abstract_spec(config.abstract, config.sim.num_balls)
  return balls_abstract.BallsAbstractLearner(
      spec, history=history, learning_rate=1e-3, seed=seed,
      iterator=balls_trajectories.WindowBatches(data, history, 8, seed=1, frames=False),
      checkpoint_dir=checkpoint_dir, save_every=2, keep=2)


@pytest.fixture(scope='session')
def s3_server(tmp_path_factory):
  """A real S3-compatible server on 127.0.0.1: moto's server mode, in its own process, on a free
  loopback port, with one bucket, `rmr-test`.

  Yields the environment that points boto3 (and so `rmr_dist.storage`, in this process and in
  every process started with it) at the server: `AWS_ENDPOINT_URL_S3` and test credentials.
  """
  import socket
  import subprocess
  import time
  import boto3
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  log_path = tmp_path_factory.mktemp('s3') / 'moto.log'
  log = open(log_path, 'w')
  proc = subprocess.Popen([sys.executable, '-m', 'moto.server', '-H', '127.0.0.1', '-p',
                           str(port)], stdout=log, stderr=subprocess.STDOUT)
  env = {'AWS_ENDPOINT_URL_S3': f'http://127.0.0.1:{port}', 'AWS_ACCESS_KEY_ID': 'testing',
         'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_DEFAULT_REGION': 'us-east-1',
         'AWS_EC2_METADATA_DISABLED': 'true', 'NO_PROXY': '127.0.0.1'}
  try:
    client = boto3.client('s3', endpoint_url=env['AWS_ENDPOINT_URL_S3'],
                          aws_access_key_id='testing', aws_secret_access_key='testing',
                          region_name='us-east-1')
    deadline = time.monotonic() + 60
    while True:
      try:
        client.list_buckets()
        break
      except Exception:  # pylint: disable=broad-except  (not listening yet)
        if proc.poll() is not None or time.monotonic() > deadline:
          raise AssertionError('moto server did not start:\n' + log_path.read_text()[-3000:])
        time.sleep(0.2)
    client.create_bucket(Bucket='rmr-test')
    yield env
  finally:
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
  """`s3_server`'s environment set in this process (for the test's duration)."""
  for key, value in s3_server.items():
    monkeypatch.setenv(key, value)
  return s3_server


def pytest_collection_modifyitems(items):
  """Tests marked `slow` (ungrouped, tens of seconds each on 2 cores) are collected first, the
  order kept otherwise. `--dist loadgroup` hands out the xdist groups of several tests first,
  then single tests in collection order, a few to a worker at a time: a long test handed out
  last would leave the other worker idle while it runs, so the long ones start early and the
  short ones fill in at the end."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)


_SPLIT_GROUPS = pytest.StashKey[str]()


def pytest_collection_finish(session):
  """Check that `--dist loadgroup` groups: on each worker every xdist_group test must carry its
  group in its node id (pytest-xdist appends it), or the groups are split across workers and
  each runs the group's shared whole-program fixtures again. pytest 9.2 with pytest-xdist 3.8
  does that silently; constraints.txt pins pytest 8. Such a run fails each grouped test, naming
  the cause, before its fixtures start (:func:`pytest_runtest_setup`)."""
  config = session.config
  if not hasattr(config, 'workerinput') or not config.getvalue('loadgroup'):
    return
  split = [item.nodeid for item in session.items
           if item.get_closest_marker('xdist_group') and '@' not in item.nodeid]
  if split:
    config.stash[_SPLIT_GROUPS] = (
        f'--dist loadgroup did not group {len(split)} xdist_group tests: pytest '
        f'{pytest.__version__} with this pytest-xdist splits the groups across workers; '
        'install the pins of constraints.txt (pytest 8)')


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  """Fails a grouped test of a run whose groups were split (:func:`pytest_collection_finish`)."""
  message = item.config.stash.get(_SPLIT_GROUPS, None)
  if message and item.get_closest_marker('xdist_group'):
    pytest.fail(message, pytrace=False)
