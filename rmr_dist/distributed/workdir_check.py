"""Start-up check that every node sees the work directory.

Collectors write the episode store, learner groups write checkpoints, results and exports, and
the driver reads them back, so the work directory must be the same storage on every node (a
shared file system mounted at one path, or an object-store bucket). Before the first stage the
driver writes a token file `<workdir>/.node-check-<token>` and runs a tiny task pinned to every alive
node that can host collectors or learners (any node with CPUs or GPUs); each reads the token
back through `rmr_dist.storage`. A node that cannot (a node-local directory, a missing mount, no
credentials for the bucket) fails the run at once, naming the node and the path.

For tests only: `RMR_TEST_WORKDIR_VIEW='<from>=<to>'` in a node's environment makes the check on
that node read a path that starts with `<from>` at `<to>` instead, as a node would whose
"shared" directory is really its own.
"""

from __future__ import annotations

import os
import uuid

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rmr_dist import config as config_lib
from rmr_dist import storage

TEST_VIEW_ENV = 'RMR_TEST_WORKDIR_VIEW'
TIMEOUT_S = 300.0  # Each node starts one worker process for the task.


def _node_view(path: str) -> str:
  """`path` as this node sees it (only `TEST_VIEW_ENV` changes it)."""
  src, sep, dst = os.environ.get(TEST_VIEW_ENV, '').partition('=')
  if sep and path.startswith(src):
    return dst + path[len(src):]
  return path


@ray.remote(num_cpus=0, max_retries=0)
def _read_token(path: str, token: str) -> str | None:
  """None when `path` holds `token` on this node, else why not."""
  try:
    seen = storage.read_text(_node_view(path))
  except Exception as e:  # pylint: disable=broad-except  (any failure is the answer)
    return f'{type(e).__name__}: {e}'
  return None if seen == token else f'it holds {seen[:80]!r}, not the token written'


def worker_nodes() -> list[dict]:
  """The alive nodes that can host collectors or learners (those with CPUs or GPUs)."""
  return [n for n in ray.nodes() if n.get('Alive') and
          (n.get('Resources', {}).get('CPU', 0) > 0 or n.get('Resources', {}).get('GPU', 0) > 0)]


def check_nodes_see(root: str) -> int:
  """Checks that every worker node reads a token written into `root` (Ray is running).

  Returns:
    The number of nodes checked.

  Raises:
    ConfigError: naming each node (address and id) that cannot read the token, the path and
      the error it got.
  """
  token = uuid.uuid4().hex
  path = storage.join(root, f'.node-check-{token}')
  storage.write_text(path, token)
  try:
    nodes = worker_nodes()
    refs = [_read_token.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n['NodeID'], soft=False)).remote(path, token) for n in nodes]
    answers = ray.get(refs, timeout=TIMEOUT_S)
  finally:
    storage.remove(path)
  failed = [f'node {n["NodeManagerAddress"]} (id {n["NodeID"][:12]}): {why}'
            for n, why in zip(nodes, answers) if why is not None]
  if failed:
    raise config_lib.ConfigError(
        f'The work directory {root} is not the same storage on every node: the token written '
        f'to {path} could not be read on ' + '; '.join(failed) + '. Give a --workdir that every '
        'node sees: a shared file system mounted at the same path on every node, or an '
        'object-store URI (s3://bucket/path) (launch/cluster.yaml mounts one at /shared).')
  return len(nodes)
