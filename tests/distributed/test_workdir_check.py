"""The start-up check that every node sees the work directory, on a multi-node Cluster on 127.0.0.1.

A `ray.cluster_utils.Cluster` (a head without CPUs, worker nodes with one CPU) on this machine:
every node really shares the file system, so the negative case is a node started with
`RMR_TEST_WORKDIR_VIEW` (honoured by the check only), which makes the node read the work
directory at a node-local directory instead, as a node without the shared mount would.
"""

import os

import pytest

from rmr_dist import config as config_lib
from rmr_dist.distributed import workdir_check


@pytest.mark.ray
@pytest.mark.filterwarnings('ignore:os.fork:RuntimeWarning')
@pytest.mark.xdist_group('workdir_check_cluster')
def test_every_node_reads_the_token_and_a_node_that_cannot_is_named(tmp_path):
  import ray
  from ray import cluster_utils
  shared = str(tmp_path / 'run')
  node_local = str(tmp_path / 'node-local')
  os.makedirs(shared)
  os.makedirs(node_local)
  cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
      'num_cpus': 0, 'node_ip_address': '127.0.0.1', 'include_dashboard': False})
  good = cluster.add_node(num_cpus=1, node_ip_address='127.0.0.1')
  try:
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    assert {n['NodeManagerAddress'] for n in ray.nodes()} == {'127.0.0.1'}
    assert workdir_check.check_nodes_see(shared) == 1  # The head has no CPU: not a worker node.
    assert os.listdir(shared) == []  # The token is removed.

    bad = cluster.add_node(num_cpus=1, node_ip_address='127.0.0.1',
                           env_vars={workdir_check.TEST_VIEW_ENV: f'{shared}={node_local}'})
    cluster.wait_for_nodes()
    with pytest.raises(config_lib.ConfigError) as e:
      workdir_check.check_nodes_see(shared)
    message = str(e.value)
    assert f'node 127.0.0.1 (id {bad.node_id[:12]})' in message, message
    assert good.node_id[:12] not in message, message  # Only the node that cannot see it.
    assert os.path.join(shared, '.node-check-') in message and 'FileNotFoundError' in message
    assert os.listdir(shared) == []
  finally:
    ray.shutdown()
    cluster.shutdown()
