"""The launcher configs validate against Ray's own cluster-config schema, and each node type
installs the right pinned stack: the GPU learner type the CUDA extra, every other node the CPU set."""

import copy
import os

import jsonschema
import pytest
import yaml
from ray.autoscaler._private import util as autoscaler_util

from tests.conftest import REPO


def _load(name):
  with open(os.path.join(REPO, 'launch', name)) as f:
    return yaml.safe_load(f)


def _prepared(config):
  """What `ray up` does: fill Ray's defaults (merging the setup commands), then validate
  against ray-schema.json."""
  prepared = autoscaler_util.prepare_config(copy.deepcopy(config))
  autoscaler_util.validate_config(prepared)
  return prepared


def _setup_commands(prepared, node_type):
  """The setup commands Ray runs on a node of `node_type` (as the autoscaler's
  `_get_node_type_specific_fields`: a node type's own list replaces the merged global one)."""
  if node_type == prepared['head_node_type']:
    return prepared['head_setup_commands']
  return prepared['available_node_types'][node_type].get('worker_setup_commands',
                                                         prepared['worker_setup_commands'])


@pytest.mark.parametrize('name', ['cluster.yaml', 'local-cluster.yaml'])
def test_launch_config_matches_ray_schema(name):
  config = _load(name)
  prepared = _prepared(config)
  for node_type in prepared['available_node_types']:
    assert any('constraints' in c and 'pip install' in c
               for c in _setup_commands(prepared, node_type)), node_type
  assert config['file_mounts'] == {'~/rmr_dist': '.'}


def test_gpu_learner_nodes_install_the_cuda_extra_and_the_rest_the_cpu_set():
  prepared = _prepared(_load('cluster.yaml'))
  for node_type, spec in prepared['available_node_types'].items():
    commands = _setup_commands(prepared, node_type)
    installs = [c for c in commands if 'pip install' in c]
    assert len(installs) == 1, (node_type, installs)
    gpu = spec['node_config']['InstanceType'].startswith(('p3.', 'p4', 'p5', 'g4', 'g5', 'g6'))
    if gpu:
      assert '-c ~/rmr_dist/constraints-cuda.txt' in installs[0]
      assert '"$HOME/rmr_dist[cuda]"' in installs[0]
      # Its own list replaces the global one: it must still make the venv first.
      venv = next(i for i, c in enumerate(commands) if 'venv ~/rmr-venv' in c)
      assert venv < commands.index(installs[0])
    else:
      assert '-c ~/rmr_dist/constraints.txt' in installs[0] and 'cuda' not in installs[0]
  assert prepared['available_node_types']['learner']['node_config']['InstanceType'] == 'p3.8xlarge'


def test_schema_check_rejects_a_bad_config():
  config = _load('cluster.yaml')
  config['available_node_types']['collector']['min_workerz'] = 1
  with pytest.raises(jsonschema.ValidationError, match='min_workerz'):
    autoscaler_util.validate_config(autoscaler_util.prepare_config(config))


def test_every_node_type_mounts_the_shared_work_directory_the_docs_use():
  """One EFS file system at /shared on every node type (the learner type's own setup list
  included), and the README's cluster example and the YAML's header use a path under it."""
  config = _load('cluster.yaml')
  prepared = _prepared(config)
  for node_type in prepared['available_node_types']:
    mounts = [c for c in _setup_commands(prepared, node_type) if 'mount -t nfs4' in c]
    assert len(mounts) == 1, node_type
    assert ':/" /shared)' in mounts[0] and mounts[0].startswith('EFS=fs-'), mounts[0]
  with open(os.path.join(REPO, 'launch', 'cluster.yaml')) as f:
    header = f.read()
  with open(os.path.join(REPO, 'README.md')) as f:
    readme = f.read()
  submit = ('ray submit launch/cluster.yaml atari.py --config=configs/atari.py:paper '
            '--workdir=/shared/run')
  assert submit in header and submit in readme
