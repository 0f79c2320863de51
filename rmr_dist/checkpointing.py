"""Orbax checkpoints shared between actors and learners.

Every save is atomic: Orbax writes into a temporary directory and renames it when complete, so a
crash never leaves a half-written checkpoint under the final name. Restores check the stored
config and shapes and fail with a message that names the checkpoint path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

POLICY_KIND = 'ram_q_network'


class CheckpointError(ValueError):
  """A checkpoint is missing, of the wrong kind, or does not fit the model."""


def save_policy(path: str, params: Any, hidden_sizes: Sequence[int], num_actions: int = 18) -> str:
  """Saves a RamQNetwork policy (params + the config to rebuild it) atomically at `path`.

  Args:
    path: target directory; must not exist yet.
    params: the network's parameters.
    hidden_sizes: the network's hidden layer widths.
    num_actions: its number of actions.

  Returns:
    The absolute path written.
  """
  path = os.path.abspath(path)
  meta = {'kind': POLICY_KIND, 'hidden_sizes': list(hidden_sizes), 'num_actions': num_actions}
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    ckptr.save(path, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                             meta=ocp.args.JsonSave(meta)))
  return path


def load_policy(path: str) -> tuple[dict[str, Any], Any]:
  """Restores a policy saved by `save_policy`.

  Args:
    path: the checkpoint directory.

  Returns:
    (meta, params): meta has 'hidden_sizes' and 'num_actions'; params are numpy arrays.

  Raises:
    CheckpointError: if the path is not a policy checkpoint or its shapes do not match its meta.
  """
  from rmr_dist.networks import policy  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(path)
  if not os.path.isdir(os.path.join(path, 'meta')):
    raise CheckpointError(f'No policy checkpoint at {path!r}: expected a directory written by '
                          f'rmr_dist.checkpointing.save_policy (with "meta" and "params").')
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    meta = ckptr.restore(path, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    if meta.get('kind') != POLICY_KIND:
      raise CheckpointError(f'Checkpoint {path!r} holds kind {meta.get("kind")!r}, '
                            f'expected {POLICY_KIND!r}.')
    target = policy.init_params(jax.random.PRNGKey(0), meta['hidden_sizes'], meta['num_actions'])
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    try:
      params = ckptr.restore(path, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract)))['params']
    except ValueError as e:
      raise CheckpointError(f'Policy checkpoint {path!r} does not match its meta {meta}: {e}') \
          from e
  params = jax.tree_util.tree_map(np.asarray, params)
  return meta, params
