"""The training loop shared by the pmapped learners (abstract and natural), and its helpers.

`replicate`, `unreplicate` and `shard_batch` move learner state and batches to and from the
pmap layout ([D, ...] leading device axis); `Batch` and `Metrics` are the dicts every learner's
update takes and returns.

`PmapLearner` is the one learner scaffold. A learner's constructor builds its model, optimiser
and initial (host) state, then calls `_setup`, which does what every learner does the same way:
checkpoint manager -> restore the newest checkpoint (recording `restored_step` and the digest of
the restored parameters) -> replicate over the local devices -> pmap the pure update over
`devices` (None: every device, every process's under jax.distributed). A learner then
implements three hooks: `_check(metrics)` (bring metrics to the host, raise FloatingPointError
if not finite), `_save_state(step, state)` and `_scalars(metrics)` (the dict handed to
`log_fn`); `_dispatch` feeds the next batch's `_batch_keys` to the update.

`run(num_steps, progress_label=...)` also prints one compact status line per log period
(step / total, steps/s, ETA, loss) to stdout; inside a Ray actor, Ray forwards it to the
driver's terminal.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

from rmr_dist import checkpointing
from rmr_dist import logging as logging_lib

Batch = dict[str, Any]
Metrics = dict[str, Any]
AXIS_NAME = 'devices'  # The pmap axis every learner averages its gradients over.


def _pmap_update(update_fn: Callable[[Any, Batch], tuple[Any, Metrics]],
                 devices: tuple[jax.Device, ...] | None) -> Callable:
  """``update_fn`` pmapped over ``devices`` (axis 'devices', state donated)."""
  return jax.pmap(functools.partial(update_fn, axis_name=AXIS_NAME), axis_name=AXIS_NAME,
                  devices=devices, donate_argnums=(0,))


@functools.lru_cache(maxsize=16)
def _cached_pmap(key: tuple[Any, ...]) -> Callable:
  """The pmapped update of ``key`` = (function, args, sorted keywords, devices)."""
  func, args, keywords, devices = key
  return _pmap_update(functools.partial(func, *args, **dict(keywords)), devices)


def clear_update_cache() -> None:
  """Forgets the pmapped updates shared by learners built alike (`PmapLearner._pmap`): a test
  that patches a function traced into an update calls it so its learner compiles afresh."""
  _cached_pmap.cache_clear()


def replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
  """Copies every leaf once per device, host-side: [...] -> [D, ...] (pmap shards axis 0).

  Stacking on the host (rather than `jax.device_put_replicated`, gone from newer JAX) keeps
  this working across the JAX versions of the pinned CPU stack and of accelerator images.
  """
  num = len(devices or jax.local_devices())
  return jax.tree_util.tree_map(lambda x: np.stack([np.asarray(x)] * num), tree)


def shard_batch(batch: Batch, num_devices: int) -> Batch:
  """Splits every leaf [B, ...] into [D, B / D, ...] (device d gets rows d*B/D ...).

  Args:
    batch: a dict of numpy arrays [B, ...].
    num_devices: D.

  Returns:
    The same dict with leaves [D, B / D, ...].

  Raises:
    ValueError: B is not divisible by ``num_devices``.
  """

  def split(x):
    x = np.asarray(x)
    if x.shape[0] % num_devices:
      raise ValueError(f'Batch size {x.shape[0]} is not divisible by the {num_devices} '
                       f'devices; pick a batch size that is a multiple of {num_devices}.')
    return x.reshape((num_devices, x.shape[0] // num_devices) + x.shape[1:])

  return jax.tree_util.tree_map(split, batch)


def unreplicate(tree: Any) -> Any:
  """The first device's copy of a replicated tree: [D, ...] -> [...]."""
  return jax.tree_util.tree_map(lambda x: x[0], tree)


def format_progress(label: str, step: int, num_steps: int, scalars: dict[str, float]) -> str:
  """One status line, e.g. 'abstract pong/mpnn: step 50/200, 12.3 steps/s, ETA 12s, loss 0.1234'.

  The loss is `scalars['loss']`, or the mean of the `.../loss` entries (lockstep models).
  """
  rate = scalars.get('steps_per_s', 0.0)
  eta = logging_lib.format_duration((num_steps - step) / rate) if rate > 0 else '?'
  losses = ([scalars['loss']] if 'loss' in scalars else
            [v for k, v in scalars.items() if k.endswith('/loss')])
  loss = f', loss {np.mean(losses):.4g}' if losses else ''
  if len(losses) > 1:
    loss += f' (mean of {len(losses)} models)'
  return f'{label}: step {step}/{num_steps}, {rate:.1f} steps/s, ETA {eta}{loss}'


class TrainState(NamedTuple):
  """A learner's state (abstract models of both programs); crosses ``pmap`` (replicated) and
  Orbax (as a dict)."""
  params: Any  # {'encoder', 'processor', 'decoder'}
  opt_state: optax.OptState
  step: jax.Array  # [] int32, updates applied so far
  rng: jax.Array  # [2] uint32 PRNGKey, split once per update


class PmapLearner:
  """Resumable loop: `run(num_steps)` dispatches updates without a host sync, and checks the
  metrics at every log, save and the last step, always before saving, so a non-finite state
  never reaches a checkpoint.

  Attributes set by subclasses: `_state` (replicated), `_step`, `_manager` (or None),
  `_save_every`, `_log_fn` (or None), `_log_every`; and, when they resumed from a checkpoint,
  `restored_step` and `restored_params_digest` (`checkpointing.tree_digest` of the restored
  parameters), else None.

  Under `jax.distributed` (a multi-host learner group) the pmap spans every process's devices:
  each process feeds its local share of the batch and all of them save together (Orbax).
  """

  _name = 'Learner'  # Names the learner in error messages.
  _schedule: Callable[[int], Any]  # step -> learning rate (learning.optimizers)
  restored_step: int | None = None
  restored_params_digest: str | None = None
  _state: Any
  _step: int
  _manager: Any
  _save_every: int
  _log_fn: Callable[[dict, int], None] | None
  _log_every: int

  _iterator: Any
  _update: Callable[[Any, Batch], tuple[Any, Metrics]]
  _num_local_devices: int
  _batch_keys: tuple[str, ...]

  def _setup(self, state: Any, update_fn: Callable[[Any, Batch], tuple[Any, Metrics]], *,
             iterator: Any, batch_keys: Sequence[str], checkpoint_dir: str | None, keep: int,
             save_every: int, log_fn: Callable[[dict, int], None] | None, log_every: int,
             devices: Sequence[jax.Device] | None,
             restore_fn: Callable[[Any, Any], Any | None] | None = None) -> None:
    """Checkpoint manager -> restore -> replicate -> pmap (module docstring).

    Args:
      state: the initial host state (a NamedTuple with `params` and `step`).
      update_fn: the pure update `(state, batch, axis_name=...) -> (state, metrics)` with
        everything else bound; it is pmapped over axis 'devices'.
      iterator: yields batches (dicts of numpy arrays [B, ...]).
      batch_keys: the batch entries the update reads.
      checkpoint_dir: Orbax directory, or None for no checkpoints.
      keep: checkpoints to keep.
      save_every: save period in steps (0: only at the end of `run`).
      log_fn: `log_fn(scalars, step)` every `log_every` steps, or None.
      log_every: logging period.
      devices: the devices to pmap over; None maps over all devices (every process's under
        jax.distributed), each process feeding its local ones.
      restore_fn: `(manager, target_state) -> state or None`; default
        `checkpointing.restore_learner_state`.
    """
    self._iterator = iter(iterator)
    self._batch_keys = tuple(batch_keys)
    self._save_every, self._log_fn, self._log_every = save_every, log_fn, log_every
    self._manager = None
    if checkpoint_dir is not None:
      self._manager = checkpointing.make_checkpoint_manager(checkpoint_dir, max_to_keep=keep)
      if restore_fn is None:
        restored = checkpointing.restore_learner_state(self._manager, state)
        restored = None if restored is None else restored[0]
      else:
        restored = restore_fn(self._manager, state)
      if restored is not None:
        state = restored
        self.restored_step = int(state.step)
        self.restored_params_digest = checkpointing.tree_digest(state.params)
    self._step = int(state.step)
    local = [d for d in devices if d.process_index == jax.process_index()] if devices \
        else jax.local_devices()
    self._num_local_devices = len(local)
    self._state = replicate(state, local)
    self._devices = devices
    self._update = self._pmap(update_fn)

  def _pmap(self, update_fn: Callable[[Any, Batch], tuple[Any, Metrics]]) -> Callable:
    """``update_fn`` pmapped over this learner's devices (axis 'devices', state donated).

    When ``update_fn`` is a ``functools.partial`` whose bound arguments are all hashable (the
    learners bind their model, optimiser and settings), learners built alike in one process
    (a learner group running several units, a test building a learner twice) get the same
    pmapped function, so its compiled executables are reused instead of compiled again. What
    the update traced is then fixed: `clear_update_cache` after patching a function it calls.
    """
    devices = None if self._devices is None else tuple(self._devices)
    if isinstance(update_fn, functools.partial):
      key = (update_fn.func, update_fn.args, tuple(sorted(update_fn.keywords.items())), devices)
      try:
        return _cached_pmap(key)
      except TypeError:  # An unhashable bound argument: pmap this learner's own.
        pass
    return _pmap_update(update_fn, devices)

  def _update_for_step(self, step: int) -> Callable:
    """The pmapped update that performs update number ``step`` (0-based); one by default."""
    del step
    return self._update

  @property
  def learning_rate(self) -> float:
    """The learning rate of the next update (the schedule at the current step)."""
    return float(self._schedule(self._step))

  @property
  def resumed_from(self) -> dict[str, Any] | None:
    """{step, params_sha256} of the checkpoint this learner restored, or None."""
    if self.restored_step is None:
      return None
    return {'step': self.restored_step, 'params_sha256': self.restored_params_digest}

  def _dispatch(self) -> Metrics:
    """Launches one update on the next batch; returns its metrics still on device."""
    batch = next(self._iterator)
    batch = {k: batch[k] for k in self._batch_keys}
    update = self._update_for_step(self._step)
    self._state, metrics = update(self._state, shard_batch(batch, self._num_local_devices))
    self._step += 1
    return metrics

  def _check(self, metrics: Metrics) -> dict[str, Any]:
    """Brings scalar metrics to the host; FloatingPointError if loss or grad norm is not finite.

    (The lockstep learners, whose metrics are [M] per model, override it.)
    """
    metrics = {k: float(v) for k, v in jax.device_get(unreplicate(metrics)).items()}
    if not (math.isfinite(metrics['loss']) and math.isfinite(metrics['grad_norm'])):
      raise FloatingPointError(
          f'{self._name}: non-finite loss detected at step {self._step} (loss='
          f'{metrics["loss"]}, grad_norm={metrics["grad_norm"]}); the bad state was not saved; '
          f'{self._where_last_good()}.')
    return metrics

  def _save_state(self, step: int, state: Any) -> None:
    """Saves the unreplicated state (a TrainState) at `step`."""
    checkpointing.save_learner_state(self._manager, step, state)

  def _scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
    """What `log_fn` gets: the checked metrics and the learning rate."""
    return dict(metrics, learning_rate=self.learning_rate)

  @property
  def global_step(self) -> int:
    """Updates applied so far (restored ones included)."""
    return self._step

  @property
  def state(self) -> Any:
    """The full state, unreplicated, as host numpy."""
    return jax.device_get(unreplicate(self._state))

  @property
  def params(self) -> Any:
    """The parameters, unreplicated, as host numpy."""
    return jax.device_get(unreplicate(self._state.params))

  def _last_checkpoint(self) -> int | None:
    if self._manager is None:
      return None
    self._manager.wait_until_finished()
    return self._manager.latest_step()

  def _where_last_good(self) -> str:
    last = self._last_checkpoint()
    return ('no checkpoint' if last is None else
            f'last good checkpoint: step {last} in {self._manager.directory}')

  def step(self) -> dict[str, Any]:
    """Runs one update on the next batch and returns its host metrics.

    Raises:
      FloatingPointError: a loss or gradient norm is not finite (nothing is saved).
    """
    return self._check(self._dispatch())

  def save(self) -> None:
    """Saves the current state (asynchronously) unless this step is already saved."""
    if self._manager is not None and self._manager.latest_step() != self._step:
      self._save_state(self._step, self.state)

  def run(self, num_steps: int, progress_label: str | None = None,
          eval_fn: Callable[[int], None] | None = None, eval_every: int = 0) -> dict[str, Any]:
    """Trains until `num_steps` updates in all; saves periodically and at the end.

    Args:
      num_steps: the total step count to reach (a resumed learner does the rest only).
      progress_label: if set, every `log_every` steps prints a status line starting with it
        (`format_progress`), e.g. 'abstract pong/mpnn'.
      eval_fn: called as `eval_fn(step)` every `eval_every` steps (after the step's metrics
        are checked), e.g. to log validation scores over training.
      eval_every: its period in steps (0: never).

    Returns:
      The last checked step's metrics (empty if there was nothing left to do).
    """
    metrics: dict[str, Any] = {}
    window_start, window_steps = time.perf_counter(), 0
    reporting = self._log_fn is not None or progress_label is not None
    while self._step < num_steps:
      device_metrics = self._dispatch()
      window_steps += 1
      save_due = bool(self._save_every) and self._step % self._save_every == 0
      log_due = reporting and self._step % self._log_every == 0
      eval_due = eval_fn is not None and eval_every > 0 and self._step % eval_every == 0
      if not (save_due or log_due or eval_due or self._step == num_steps):
        continue  # No host sync: the next update is dispatched while this one runs.
      metrics = self._check(device_metrics)  # Before any save: no non-finite checkpoint.
      if save_due:
        self.save()
      if log_due:
        now = time.perf_counter()
        scalars = self._scalars(metrics)
        scalars['steps_per_s'] = window_steps / max(now - window_start, 1e-9)
        if self._log_fn is not None:
          self._log_fn(scalars, self._step)
        if progress_label is not None:
          print(format_progress(progress_label, self._step, num_steps, scalars), flush=True)
        window_start, window_steps = now, 0
      if eval_due:
        eval_fn(self._step)
    self.save()
    if self._manager is not None:
      self._manager.wait_until_finished()
    return metrics

  def close(self) -> None:
    """Waits for pending saves and releases the checkpoint manager."""
    if self._manager is not None:
      self._manager.wait_until_finished()
      self._manager.close()
      self._manager = None  # A closed manager is not used again (save, _where_last_good).
