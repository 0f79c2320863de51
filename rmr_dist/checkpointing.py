"""Orbax checkpoints shared between actors and learners.

Every save is atomic: Orbax writes into a temporary directory and renames it when complete, so a
crash never leaves a half-written checkpoint under the final name. Restores check the stored
config and shapes and fail with a message that names the checkpoint path.

Object-store work directories (`s3://...`): Orbax 0.11 writes only local paths (and `gs://`), so
learner checkpoints and processor exports are written into a node-local copy and copied to the
work directory (`rmr_dist.storage.Mirror`: the changed files, then an index last) after every
save; a learner that starts reads back the last complete copy. One learner process per
checkpoint directory (a multi-host group needs a shared file system).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rmr_dist import storage
from rmr_dist.networks import processors

POLICY_KIND = 'ram_q_network'


class CheckpointError(ValueError):
  """A checkpoint is missing, incomplete, of the wrong kind, does not fit the model, or would be
  written where one already exists. The functions here that document it raise it in place of
  Orbax's own exceptions for such a checkpoint, with a message that names its path."""


def _check_new(path: str, what: str) -> None:
  """CheckpointError when ``path`` (local) exists: saves here never overwrite in place."""
  if os.path.exists(path):
    raise CheckpointError(f'A {what} exists at {path!r}.')


def _read_json_item(ckptr: ocp.Checkpointer, path: str, item: str, what: str) -> Any:
  """The JSON item ``item`` of the composite checkpoint at ``path``.

  Raises:
    CheckpointError: Orbax cannot read it (an incomplete or damaged ``what``; names the path).
  """
  try:
    return ckptr.restore(path, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
  except (OSError, ValueError) as e:
    raise CheckpointError(f'The {what} at {path!r} cannot be read (incomplete or damaged): '
                          f'{e}') from e


def save_policy(path: str, params: Any, hidden_sizes: Sequence[int], num_actions: int = 18,
                encoding: str = 'bits', actions: Sequence[int] | None = None) -> str:
  """Saves a RamQNetwork policy (params + the config to rebuild it) atomically at `path`.

  Args:
    path: target directory; must not exist yet.
    params: the network's parameters.
    hidden_sizes: the network's hidden layer widths.
    num_actions: its number of actions.
    encoding: its RAM input encoding (`rmr_dist.networks.atari_policy.ENCODINGS`).
    actions: the output indices the policy acts over (its game's minimal set); None: all.

  Returns:
    The absolute path written.

  Raises:
    CheckpointError: `path` exists, or `actions` are not indices in [0, num_actions).
  """
  path = os.path.abspath(path)
  _check_new(path, 'policy checkpoint')
  actions = list(range(num_actions)) if actions is None else sorted(int(a) for a in actions)
  if not actions or actions[0] < 0 or actions[-1] >= num_actions:
    raise CheckpointError(f'save_policy: actions={actions} must be non-empty indices in '
                          f'[0, {num_actions}).')
  meta = {'kind': POLICY_KIND, 'hidden_sizes': list(hidden_sizes), 'num_actions': num_actions,
          'encoding': encoding, 'actions': actions}
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    ckptr.save(path, args=ocp.args.Composite(params=ocp.args.StandardSave(params),
                                             meta=ocp.args.JsonSave(meta)))
  return path


def load_policy(path: str) -> tuple[dict[str, Any], Any]:
  """Restores a policy saved by `save_policy`.

  Args:
    path: the checkpoint directory.

  Returns:
    (meta, params): meta has 'hidden_sizes', 'num_actions', 'encoding' ('bits' for
    checkpoints written before encodings existed) and 'actions' (the indices it acts over; all
    for checkpoints written before action sets existed); params are numpy arrays.

  Raises:
    CheckpointError: if the path is not a policy checkpoint, cannot be read, or its shapes do
      not match its meta.
  """
  from rmr_dist.networks import atari_policy  # pylint: disable=g-import-not-at-top
  path = os.path.abspath(path)
  if not os.path.isdir(os.path.join(path, 'meta')):
    raise CheckpointError(f'No policy checkpoint at {path!r}: expected a directory written by '
                          f'rmr_dist.checkpointing.save_policy (with "meta" and "params").')
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    meta = _read_json_item(ckptr, path, 'meta', 'policy checkpoint')
    if meta.get('kind') != POLICY_KIND:
      raise CheckpointError(f'Checkpoint {path!r} holds kind {meta.get("kind")!r}, '
                            f'expected {POLICY_KIND!r}.')
    meta.setdefault('encoding', 'bits')
    meta.setdefault('actions', list(range(meta['num_actions'])))
    target = atari_policy.init_params(jax.random.PRNGKey(0), meta['hidden_sizes'],
                                      meta['num_actions'], meta['encoding'])
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    try:
      params = ckptr.restore(path, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract)))['params']
    except ValueError as e:
      raise CheckpointError(f'Policy checkpoint {path!r} does not match its meta {meta}: {e}') \
          from e
  params = jax.tree_util.tree_map(np.asarray, params)
  return meta, params


# ---------------------------------------------------------------------------------------------
# Learner state (resumable training) and the processor-only export.
#
# Learner checkpoints: one Orbax CheckpointManager directory per learner,
#   <dir>/<step>/default/...   the TrainState as a dict {params, opt_state, step, rng}
# (StandardSave; NamedTuples inside optax's state round-trip through the restore target).
# Saves are asynchronous and atomic: Orbax writes into a temporary directory and renames it to
# <dir>/<step> once complete, so a killed learner leaves only whole checkpoints behind.
#
# Processor export: one directory
#   <path>/params/   the processor's parameter subtree (StandardSave)
#   <path>/spec/     the spec that rebuilds it (JsonSave; ModelSpec.to_dict())
# also written atomically.
# ---------------------------------------------------------------------------------------------

_STATE_FIELDS = ('params', 'opt_state', 'step', 'rng')


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'key/path': shape} of every leaf (arrays, ShapeDtypeStructs, Orbax array metadata)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in leaves}


def _shape_mismatches(stored: Any, target: Any) -> list[str]:
  """Human-readable differences between two trees' keys and leaf shapes (empty if none)."""
  stored_shapes, target_shapes = _shapes(stored), _shapes(target)
  problems = [f'{k}: stored {stored_shapes[k]}, expected {target_shapes[k]}'
              for k in sorted(set(stored_shapes) & set(target_shapes))
              if stored_shapes[k] != target_shapes[k]]
  problems += [f'{k}: missing from the checkpoint (expected {target_shapes[k]})'
               for k in sorted(set(target_shapes) - set(stored_shapes))]
  problems += [f'{k}: unexpected in the checkpoint ({stored_shapes[k]})'
               for k in sorted(set(stored_shapes) - set(target_shapes))]
  return problems


def tree_digest(tree: Any) -> str:
  """SHA-256 of every leaf's key path, dtype, shape and bytes: equal iff bit-identical trees.

  Lets a resumed learner record exactly which parameters it restored (and a test compare them
  with a checkpoint read independently).
  """
  import hashlib  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    leaf = np.ascontiguousarray(leaf)
    digest.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype.str}:{leaf.shape};'.encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def make_checkpoint_manager(directory: str, *, max_to_keep: int,
                            save_interval_steps: int = 1) -> ocp.CheckpointManager:
  """An Orbax CheckpointManager for learner state (created if missing).

  Saves are asynchronous (call ``wait_until_finished()`` before relying on them) and atomic:
  Orbax writes each step into a temporary directory and renames it when complete.

  Args:
    directory: the checkpoint directory.
    max_to_keep: how many of the newest checkpoints to keep.
    save_interval_steps: Orbax skips saves at steps that are not a multiple of this.

  Returns:
    The manager; save with :func:`save_learner_state`, restore with
    :func:`restore_learner_state`.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         save_interval_steps=save_interval_steps)
  if storage.is_remote(directory):
    mirror = storage.Mirror(directory)
    return _MirroredManager(ocp.CheckpointManager(mirror.pull(), options=options), mirror)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


class _MirroredManager:
  """An Orbax CheckpointManager on a node-local copy of an object-store directory: every save
  is finished and copied to the work directory before `save` returns."""

  def __init__(self, manager: ocp.CheckpointManager, mirror: storage.Mirror):
    self._manager, self._mirror = manager, mirror
    self.directory = mirror.remote

  def __getattr__(self, name: str) -> Any:
    return getattr(self._manager, name)

  def save(self, step: int, *args: Any, **kwargs: Any) -> bool:
    saved = self._manager.save(step, *args, **kwargs)
    if saved:
      self._manager.wait_until_finished()
      self._mirror.push()
    return saved

  def close(self) -> None:
    self._manager.close()  # Every save was copied when it finished.


def save_learner_state(manager: ocp.CheckpointManager, step: int, state: Any) -> bool:
  """Saves a learner TrainState (any NamedTuple with params, opt_state, step, rng) at `step`.

  Args:
    manager: from :func:`make_checkpoint_manager`.
    step: the checkpoint's step number.
    state: the UNREPLICATED state (host numpy or single-device arrays).

  Returns:
    Whether Orbax started a save (False when ``save_interval_steps`` skips this step).
  """
  tree = {name: getattr(state, name) for name in _STATE_FIELDS}
  return manager.save(step, args=ocp.args.StandardSave(jax.device_get(tree)))


def restore_learner_state(manager: ocp.CheckpointManager, target_state: Any
                          ) -> tuple[Any, int] | None:
  """Restores the newest learner state, shaped like `target_state`.

  Args:
    manager: from :func:`make_checkpoint_manager`.
    target_state: a state of the same model and optimiser (e.g. freshly initialised); gives
      the structure, shapes, dtypes and the NamedTuple type to rebuild. Its values are unused.

  Returns:
    ``(state, step)`` with host numpy leaves, or None when the directory has no checkpoint.

  Raises:
    CheckpointError: the stored state does not fit the target (message names the
      checkpoint and the mismatching keys / shapes).
  """
  step = manager.latest_step()
  if step is None:
    return None
  target = jax.device_get({name: getattr(target_state, name) for name in _STATE_FIELDS})
  where = os.path.join(str(manager.directory), str(step))
  try:
    tree = manager.restore(step, args=ocp.args.StandardRestore(target))
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f'Learner checkpoint {where!r} does not fit the learner state: {e}') \
        from e
  problems = _shape_mismatches(tree, target)
  if problems:
    raise CheckpointError(f'Learner checkpoint {where!r} does not fit the learner state: '
                          + '; '.join(problems))
  if int(tree['step']) != step:
    raise CheckpointError(f'Learner checkpoint {where!r} holds step {int(tree["step"])}, '
                          f'not {step}.')
  return type(target_state)(**tree), step


def export_processor(path: str, processor_params: Any, spec_dict: dict[str, Any], *,
                     overwrite: bool = False, encoder_params: Any = None) -> str:
  """Saves the processor P: its params and the spec that rebuilds it, atomically.

  With ``encoder_params`` the export also carries the abstract encoder f that fed P in
  training (its slot-index embedding and projection; :func:`restore_abstract_encoder`), so a
  natural model can give P inputs with the slot identities and scale P was trained on.

  Under `jax.distributed` (a multi-host learner group) every process calls this together with
  the same params, as Orbax saves are collective: process 0 writes, the others take part in
  the barriers, and all return once the export is in place.

  Args:
    path: target directory.
    processor_params: ``params['processor']`` of the abstract model.
    spec_dict: ``ModelSpec.to_dict()`` of the model it came from.
    encoder_params: ``params['encoder']`` of the abstract model, or None (P alone).
    overwrite: replace an existing export. The new one is written completely first (under a
      temporary name), then swapped in by two renames; a reader never sees a partial export.
      Without it an existing `path` is an error.

  Returns:
    The absolute path written.

  Raises:
    CheckpointError: an export exists at `path` and `overwrite` is False.
  """
  import shutil  # pylint: disable=g-import-not-at-top
  if storage.is_remote(path):
    mirror = storage.Mirror(path)
    if mirror.complete() and not overwrite:
      raise CheckpointError(f'A processor export exists at {path!r}.')
    shutil.rmtree(mirror.local, ignore_errors=True)
    export_processor(mirror.local, processor_params, spec_dict, encoder_params=encoder_params)
    if jax.process_index() == 0:
      mirror.push()
    _sync_processes(f'export_processor:pushed:{path}')
    return path
  path = os.path.abspath(path)
  if not overwrite:
    _check_new(path, 'processor export')
  final = path
  primary = jax.process_index() == 0
  if overwrite and os.path.exists(path):
    # Named by the params, so every process of a group saves to the same temporary path.
    path = f'{final}.tmp-{tree_digest(processor_params)[:16]}'
    if primary and os.path.exists(path):
      shutil.rmtree(path)  # Left by an export interrupted before its renames.
    _sync_processes(f'export_processor:clear:{path}')
  items = dict(params=ocp.args.StandardSave(jax.device_get(processor_params)),
               spec=ocp.args.JsonSave(dict(spec_dict)))
  if encoder_params is not None:
    items['encoder'] = ocp.args.StandardSave(jax.device_get(encoder_params))
  args = ocp.args.Composite(**items)
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    ckptr.save(path, args=args)
  if path != final and primary:
    old = f'{path}.old'
    os.rename(final, old)
    os.rename(path, final)
    shutil.rmtree(old, ignore_errors=True)
  _sync_processes(f'export_processor:done:{final}')
  return final


def _sync_processes(name: str) -> None:
  """A barrier across the processes of a jax.distributed program (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def restore_processor(path: str, expected_spec: dict[str, Any] | None = None
                      ) -> tuple[dict[str, Any], Any]:
  """Restores a processor export written by :func:`export_processor`, with checks.

  Args:
    path: the export directory.
    expected_spec: if given, every key in it must equal the stored spec's value (pass the
      full ``ModelSpec.to_dict()`` to require the exact spec).

  Returns:
    ``(spec_dict, params)``: the stored spec and the processor params as numpy arrays.

  Raises:
    CheckpointError: the path is missing, not a processor export or unreadable (an incomplete
      export), the stored spec differs
      from `expected_spec`, or the stored params do not have the shapes the stored spec
      implies. The message names the path and the mismatching keys / shapes.
  """
  if storage.is_remote(path):
    mirror = storage.Mirror(path)
    if not mirror.complete():
      raise CheckpointError(f'No processor export at {path!r}: the path does not exist.')
    return restore_processor(mirror.pull(), expected_spec)
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise CheckpointError(f'No processor export at {path!r}: the path does not exist.')
  if not (os.path.isdir(os.path.join(path, 'spec')) and
          os.path.isdir(os.path.join(path, 'params'))):
    raise CheckpointError(f'{path!r} is not a processor export: expected a directory written '
                          'by rmr_dist.checkpointing.export_processor (with "params" and "spec").')
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    spec = _read_json_item(ckptr, path, 'spec', 'processor export')
  if expected_spec is not None:
    diffs = [f'{k}: stored {spec.get(k, "<missing>")!r}, expected {v!r}'
             for k, v in expected_spec.items() if spec.get(k, '<missing>') != v]
    if diffs:
      raise CheckpointError(f'Processor export {path!r} has a different spec: '
                            + '; '.join(diffs))
  try:
    model_spec = processors.ModelSpec.from_dict(spec)
  except (TypeError, ValueError) as e:
    raise CheckpointError(f'Processor export {path!r} holds an invalid spec {spec}: {e}') from e
  processor = processors.make_spec_processor(model_spec)
  z = jax.ShapeDtypeStruct((1, model_spec.num_slots, model_spec.latent_size), np.float32)
  action = jax.ShapeDtypeStruct((1, model_spec.action_size), np.float32)
  target = jax.eval_shape(processor.init, jax.random.PRNGKey(0), z, action)['params']
  with ocp.StandardCheckpointer() as reader:
    stored = reader.metadata(os.path.join(path, 'params'))
    # Newer Orbax wraps the tree in a StepMetadata; 0.11 returns the tree itself.
    stored = getattr(stored, 'item_metadata', stored)
  problems = _shape_mismatches(getattr(stored, 'tree', stored), target)
  if problems:
    raise CheckpointError(f'Processor export {path!r} does not match its spec {spec}: '
                          + '; '.join(problems))
  target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), target)
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    params = ckptr.restore(path, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(target)))['params']
  return spec, jax.tree_util.tree_map(np.asarray, params)


def restore_abstract_encoder(path: str) -> Any | None:
  """The abstract encoder f stored beside P in a processor export (host numpy), or None when
  the export holds P alone.

  Raises:
    CheckpointError: the path is not a processor export.
  """
  if storage.is_remote(path):
    mirror = storage.Mirror(path)
    if not mirror.complete():
      raise CheckpointError(f'No processor export at {path!r}: the path does not exist.')
    return restore_abstract_encoder(mirror.pull())
  path = os.path.abspath(path)
  if not os.path.isdir(os.path.join(path, 'spec')):
    raise CheckpointError(f'{path!r} is not a processor export: expected a directory written '
                          'by rmr_dist.checkpointing.export_processor (with "params" and "spec").')
  if not os.path.isdir(os.path.join(path, 'encoder')):
    return None
  with ocp.StandardCheckpointer() as reader:
    stored = reader.metadata(os.path.join(path, 'encoder'))
    stored = getattr(stored, 'item_metadata', stored)  # Newer Orbax wraps the tree.
    target = jax.tree_util.tree_map(lambda m: np.zeros(m.shape, m.dtype),
                                    getattr(stored, 'tree', stored))
    tree = reader.restore(os.path.join(path, 'encoder'), target)
  return jax.tree_util.tree_map(np.asarray, tree)


def wait_for_export(path: str, timeout_s: float, poll_s: float = 5.0,
                    log: Callable[[str], None] = print) -> str:
  """Blocks until the processor export at ``path`` exists (it is written atomically).

  Args:
    path: the export directory.
    timeout_s: how long to wait.
    poll_s: seconds between checks.
    log: receives one line when waiting starts (nothing if the export is already there).

  Returns:
    The absolute path.

  Raises:
    TimeoutError: no export at ``path`` after ``timeout_s`` (the message names the path).
  """
  if storage.is_remote(path):
    ready = storage.Mirror(path).complete
  else:
    path = os.path.abspath(path)
    ready = lambda: all(os.path.isdir(os.path.join(path, d)) for d in ('params', 'spec'))
  if ready():
    return path
  log(f'Natural learner: waiting up to {timeout_s:.0f}s for the processor export at {path}')
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
    if ready():
      return path
  raise TimeoutError(f'No processor export at {path} after {timeout_s}s (is the abstract '
                     'learner that writes it running?)')


def restore_latest_tree(directory: str) -> tuple[int, Any]:
  """The newest checkpoint of a learner's Orbax directory as a plain tree (no target needed).

  Returns:
    (step, tree): dicts and lists of numpy arrays, as saved.

  Raises:
    CheckpointError: the directory holds no checkpoint (names it).
  """
  manager = make_checkpoint_manager(directory, max_to_keep=1_000_000)
  try:
    step = manager.latest_step()
    if step is None:
      raise CheckpointError(f'No learner checkpoint in {storage.normalize(directory)!r}.')
    return step, manager.restore(step)
  finally:
    manager.close()
