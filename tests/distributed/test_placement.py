"""Fail-fast checks in the driver: learner groups that no node can hold, GPU learners without a
GPU JAX, and learner stages whose inputs are missing (refused before Ray starts)."""

import dataclasses
import os
import subprocess
import sys
import time

import pytest

from rmr_dist import config as config_lib
from rmr_dist.distributed import placement
from tests.conftest import REPO

CPU_NODE = {'address': '127.0.0.1', 'resources': {'CPU': 2.0}}
GPU_NODE = {'address': 'gpu-host',  # a label: nothing connects to it
             'resources': {'CPU': 32.0, 'GPU': 4.0}}


def _ray(test_config, **fields):
  return dataclasses.replace(test_config.ray, **fields)


def test_shortfall_names_the_settings_and_what_the_cluster_has(test_config):
  assert placement.learner_shortfall(_ray(test_config), [CPU_NODE]) is None
  message = placement.learner_shortfall(_ray(test_config, learner_num_gpus=1.0), [CPU_NODE])
  assert message.startswith('ray.learner_num_gpus=1: ')
  assert '127.0.0.1: 2 CPU, 0 GPU' in message and 'can add: none' in message
  assert placement.GPU_INSTALL in message
  cpus = placement.learner_shortfall(_ray(test_config, learner_num_cpus=4.0), [CPU_NODE])
  assert cpus.startswith('ray.learner_num_cpus=4 (local Ray: ray.num_cpus=2)')
  # Two hosts need two distinct nodes: one GPU node is not enough, two are.
  two = _ray(test_config, learner_num_gpus=4.0, learner_hosts=2, address='auto')
  assert 'ray.learner_hosts=2' in placement.learner_shortfall(two, [CPU_NODE, GPU_NODE])
  assert placement.learner_shortfall(two, [GPU_NODE, dict(GPU_NODE, address='x')]) is None


def test_a_local_ray_node_is_known_before_ray_starts(test_config, monkeypatch):
  """`local_node` counts what `ray.init` will: ray.num_cpus (else this machine's CPUs), the
  visible GPUs; a cluster address leaves it unknown. The checks before the stages then need
  no Ray: a learner group or an actor pool that does not fit fails naming its setting."""

  def no_ray(*args, **kwargs):
    raise AssertionError('Ray started')
  monkeypatch.setattr(placement.ray_setup, 'init_ray', no_ray)
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
  node = placement.local_node(_ray(test_config, num_cpus=3))
  assert node == {'address': '127.0.0.1', 'resources': {'CPU': 3.0, 'GPU': 0.0}}
  from ray._private import utils
  mine = placement.local_node(_ray(test_config, num_cpus=0))['resources']['CPU']
  assert mine == utils.get_num_cpus()  # what ray.init(num_cpus=None) gives the local node
  assert placement.local_node(_ray(test_config, address='auto')) is None
  rc = _ray(test_config, num_cpus=2)
  placement.check_before_stages(rc, ['collect', 'abstract'], ['abstract'],
                                [(2, 'collect.num_collectors')])
  with pytest.raises(config_lib.ConfigError, match='collect.num_collectors=3: each of these'):
    placement.check_before_stages(rc, ['collect'], ['abstract'], [(3, 'collect.num_collectors')])
  with pytest.raises(config_lib.ConfigError, match=r'ray.learner_num_cpus=3 \(local Ray'):
    placement.check_before_stages(_ray(test_config, num_cpus=2, learner_num_cpus=3.0),
                                  ['abstract'], ['abstract'])
  # Without learner stages a learner group that would not fit is not checked.
  placement.check_before_stages(_ray(test_config, num_cpus=2, learner_num_gpus=1.0),
                                ['collect'], ['abstract'], [(1, 'collect.num_collectors')])


def test_nodes_the_autoscaler_can_add_count(test_config):
  rc = _ray(test_config, learner_num_gpus=4.0, learner_num_cpus=8.0, address='auto')
  group = {'name': 'learner', 'resources': {'CPU': 32.0, 'GPU': 4.0}, 'max_count': 2}
  assert placement.learner_shortfall(rc, [CPU_NODE], [group]) is None
  assert placement.learner_shortfall(rc, [CPU_NODE], [dict(group, max_count=-1)]) is None
  small = dict(group, resources={'CPU': 8.0, 'GPU': 1.0})
  assert 'learner (8 CPU, 1 GPU, up to 2)' in placement.learner_shortfall(rc, [CPU_NODE], [small])


def test_a_gpu_learner_on_a_cpu_backend_fails_with_the_install_command():
  placement.check_backend(0.0, 'cpu', [])
  placement.check_backend(1.0, 'gpu', ['0'])
  with pytest.raises(config_lib.ConfigError) as e:
    placement.check_backend(1.0, 'cpu', ['0'])
  assert "ray.learner_num_gpus=1: this learner process reserved GPU(s) ['0']" in str(e.value)
  assert "JAX runs on 'cpu'" in str(e.value) and placement.GPU_INSTALL in str(e.value)


# configs/balls.py leaves the ray.learner_* fields to their defaults (so no command-line
# override of them): its `test` config with one GPU per learner, as a config file.
BALLS_ONE_GPU = f"""
import sys
sys.path.insert(0, {REPO!r})
from configs import balls


def get_config(variant='test'):
  c = balls.get_config(variant)
  c.ray.learner_num_gpus = 1.0
  return c
"""


@pytest.mark.ray
@pytest.mark.parametrize('entry', ['atari.py', 'balls.py'])
def test_more_gpus_than_local_ray_has_fails_within_seconds(tmp_path, entry):
  if entry == 'atari.py':
    args = ['--config=configs/atari.py:test', '--config.ray.learner_num_gpus=1']
  else:
    (tmp_path / 'balls_gpu.py').write_text(BALLS_ONE_GPU)
    args = [f'--config={tmp_path}/balls_gpu.py:test']
  env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER='0')
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, os.path.join(REPO, entry), *args,
                         f'--workdir={tmp_path}/w'],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  elapsed = time.perf_counter() - start
  assert proc.returncode != 0
  assert f'{entry}: error: ray.learner_num_gpus=1: ' in proc.stderr, proc.stderr[-2000:]
  assert '127.0.0.1: 2 CPU, 0 GPU' in proc.stderr and 'Traceback' not in proc.stderr
  assert 'collect:' not in proc.stdout and 'data:' not in proc.stdout  # Before any stage.
  assert 'Started a local Ray' not in proc.stderr  # The local node is known without Ray.
  assert elapsed < 60


@pytest.mark.ray
def test_learner_that_reserved_a_gpu_but_has_cpu_jax_fails(test_config, tmp_path, capsys):
  import ray
  from rmr_dist import workdir as workdir_lib
  from rmr_dist.distributed import learners
  config = dataclasses.replace(test_config, ray=_ray(test_config, learner_num_gpus=1.0))
  paths = workdir_lib.open_workdir(str(tmp_path), config, workdir_lib.ATARI_STAGES)
  # A local Ray that advertises one GPU it does not have: Ray hands it to the learner process,
  # whose JAX (JAX_PLATFORMS=cpu, CPU jaxlib) has no GPU backend.
  ray.init(address='local', num_cpus=2, num_gpus=1, include_dashboard=False,
           _node_ip_address='127.0.0.1')
  try:
    with pytest.raises(config_lib.ConfigError, match='this learner process reserved GPU'):
      learners.LearnerGroup(config, 'abstract', paths)
    # The driver's check on the same Ray: 2 GPUs per learner fail a local Ray at once; on a
    # cluster whose autoscaler reports no node types they are only warned about.
    with pytest.raises(config_lib.ConfigError, match='ray.learner_num_gpus=2: '):
      placement.check_learner_resources(_ray(test_config, learner_num_gpus=2.0))
    placement.check_learner_resources(_ray(test_config, learner_num_gpus=2.0, address='auto'))
    assert 'placement: warning: ray.learner_num_gpus=2: ' in capsys.readouterr().err
  finally:
    ray.shutdown()


@pytest.mark.parametrize('program, stages, message', [
    ('atari', ['abstract', 'natural'], "needs the collect stage's outputs"),
    ('balls', ['abstract'], 'run the data stage first'),
    ('balls', ['natural'], 'no abstract learner has run'),
    ('balls', ['data', 'natural'], 'no abstract learner has run'),
])
def test_missing_stage_inputs_fail_before_ray_starts(tmp_path, monkeypatch, program, stages,
                                                     message):
  """A learner stage whose inputs are neither in the work directory nor written by an earlier
  chosen stage stops the run in the driver before Ray (or any stage) starts."""
  from configs import atari as atari_configs
  from configs import balls as balls_configs
  from rmr_dist.distributed import atari_program
  from rmr_dist.distributed import balls_program
  from rmr_dist.distributed import ray_setup

  def no_ray(*args, **kwargs):
    raise AssertionError('Ray was started before the inputs were checked')

  monkeypatch.setattr(ray_setup, 'init_ray', no_ray)
  if program == 'atari':
    run = atari_program.AtariProgram(
        config_lib.load_atari_config(atari_configs.get_config('test')), str(tmp_path / 'w'))
  else:
    run = balls_program.BallsProgram(
        config_lib.load_balls_config(balls_configs.get_config('test')), str(tmp_path / 'w'))
  try:
    with pytest.raises(config_lib.ConfigError, match=message):
      run.run(stages)
  finally:
    run.close()
