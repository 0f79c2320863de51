"""The launcher configs validate against Ray's own cluster-config schema."""

import copy
import os

import pytest
import yaml
from ray.autoscaler._private import util as autoscaler_util

from tests.conftest import REPO


@pytest.mark.parametrize('name', ['cluster.yaml', 'local-cluster.yaml'])
def test_launch_config_matches_ray_schema(name):
  with open(os.path.join(REPO, 'launch', name)) as f:
    config = yaml.safe_load(f)
  # What `ray up` does: fill Ray's defaults, then validate against ray-schema.json.
  autoscaler_util.validate_config(autoscaler_util.prepare_config(copy.deepcopy(config)))
  assert any('constraints.txt' in c for c in config['setup_commands'])
  assert config['file_mounts'] == {'~/rmr_dist': '.'}


def test_schema_check_rejects_a_bad_config():
  with open(os.path.join(REPO, 'launch', 'cluster.yaml')) as f:
    config = yaml.safe_load(f)
  config['available_node_types']['collector']['min_workerz'] = 1
  with pytest.raises(Exception, match='min_workerz'):
    autoscaler_util.validate_config(autoscaler_util.prepare_config(config))
