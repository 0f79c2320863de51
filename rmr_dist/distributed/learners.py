"""Learner groups: the learned stages' units run in Ray actors, not in the driver.

Both programs use them: Atari's abstract, natural and probe units and the balls abstract and
natural stages (`stages.units.UNITS`). A learner group is one Ray actor per host
(`ray.learner_hosts`, default 1), each reserving `ray.learner_num_cpus` CPUs and
`ray.learner_num_gpus` GPUs. Inside, the stage units of `rmr_dist.stages` run unchanged and
`jax.pmap` over the process's devices (on a GPU node Ray sets CUDA_VISIBLE_DEVICES, so those are
the GPUs it reserved). The driver starts a group when a stage has unfinished units, runs them one at a time in order, prints their status lines and
kills the group when the stage ends: one learner process (per host) is alive at a time. The
abstract, natural and probe stages each get their own group.

Each process writes its TensorBoard scalars itself, to its own event file in `<workdir>/tb`
(the same run directory as the driver's). The processes inherit the driver's JAX_PLATFORMS and
XLA_FLAGS through their runtime_env, so a learner sees the devices the driver asked for (the
tests force 2 CPU devices this way).

Failures. One host: the actor has max_restarts = max_task_retries = `ray.learner_max_restarts`;
when its process dies Ray starts a new one and re-runs the unit, which resumes from its latest
Orbax checkpoint. Several hosts: the processes form one JAX program, so one death ends the
step for all; the driver kills the whole group, starts a new one (new placement group, new
coordinator) and re-runs the unit, which resumes likewise, up to `learner_max_restarts` times.

Multi-host (`learner_hosts` = H > 1): H actors are placed by a STRICT_SPREAD placement group (one
per node); the coordinator is process 0's node IP and a free port there, and every actor calls
`jax.distributed.initialize(coordinator, H, i)` before JAX starts. pmap then spans all hosts'
devices: each host samples batch_size / H of every update, gradients are averaged over every
device, Orbax checkpoints are written by all together (the work directory must be storage all
nodes share), and process 0 alone exports, evaluates, logs and returns the unit's result. On CPU
the cross-process collectives use gloo.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import ray
from ray.util import scheduling_strategies
from ray.util.placement_group import placement_group
from ray.util.placement_group import remove_placement_group

from rmr_dist import config as config_lib
from rmr_dist.distributed import placement
from rmr_dist.stages import units as units_lib

ROLES = ('abstract', 'natural', 'probe')
INHERITED_ENV = ('JAX_PLATFORMS', 'XLA_FLAGS')
_PLACEMENT_STATUS_S = 60.0  # Seconds between "still waiting for learner hosts" lines.


def inherited_runtime_env() -> dict[str, Any] | None:
  """The runtime_env giving learner processes the driver's JAX_PLATFORMS and XLA_FLAGS."""
  env = {k: os.environ[k] for k in INHERITED_ENV if os.environ.get(k)}
  return {'env_vars': env} if env else None


class LearnerWorker:
  """One process of a learner group: runs stage units (`stages.units.UNITS`) in this process.

  Args:
    config: the program config (Atari or balls).
    workdir: the run's `WorkDir` (shared storage on a cluster).
    role: 'abstract', 'natural' or 'probe' (names its TensorBoard event file).
  """

  def __init__(self, config: Any, workdir: Any, role: str):
    self._config = config
    self._workdir = workdir
    self._role = role
    self._logger = None
    self._lines: list[str] = []

  # -------------------------------------------------------------- control (answers while busy)
  @ray.method(concurrency_group='control')
  def info(self) -> dict[str, Any]:
    """{pid, node_ip, gpu_ids}; does not start JAX (safe before `init_distributed`)."""
    return {'pid': os.getpid(), 'node_ip': ray.util.get_node_ip_address(),
            'gpu_ids': [str(g) for g in ray.get_gpu_ids()]}

  @ray.method(concurrency_group='control')
  def log_lines(self) -> list[str]:
    """The status lines this process has printed (e.g. waiting for the processor export)."""
    return list(self._lines)

  # -------------------------------------------------------------- set-up
  def free_port(self) -> int:
    """A free TCP port on this node's IP (for the jax.distributed coordinator)."""
    with socket.socket() as s:
      s.bind((ray.util.get_node_ip_address(), 0))
      return s.getsockname()[1]

  def init_distributed(self, coordinator: str, num_processes: int,
                       process_id: int) -> dict[str, Any]:
    """Joins the group's JAX program; must run before anything starts JAX here.

    Process 0 serves the coordinator on `coordinator` ('ip:port' of its node). Ends with one
    pmapped psum of ones over every device of every process, so hosts that cannot reach each
    other fail here rather than in the first update.

    Returns:
      `devices()` plus 'psum_of_ones' (the global device count when the collective works).
    """
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU cross-process.
    bind = coordinator if process_id == 0 else None
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, coordinator_bind_address=bind)
    ones = np.ones(jax.local_device_count(), np.float32)  # [local devices]
    total = jax.pmap(lambda x: jax.lax.psum(x, 'hosts'), axis_name='hosts')(ones)
    _patch_distributed_client_for_orbax()
    return dict(self.devices(), psum_of_ones=float(np.asarray(total)[0]))

  def devices(self) -> dict[str, Any]:
    """What JAX sees here: backend, process index / count, local and global devices.

    Raises:
      ConfigError: this process reserved GPUs but JAX's backend is not 'gpu'
        (`placement.check_backend`: the message gives the CUDA install command).
    """
    import jax  # pylint: disable=g-import-not-at-top
    placement.check_backend(self._config.ray.learner_num_gpus, jax.default_backend(),
                            [str(g) for g in ray.get_gpu_ids()])
    return {'backend': jax.default_backend(), 'process_index': jax.process_index(),
            'process_count': jax.process_count(),
            'local_devices': [str(d) for d in jax.local_devices()],
            'device_count': jax.device_count()}

  # -------------------------------------------------------------- units
  def run_unit(self, unit: str, *args: Any) -> Any:
    """Runs stage unit `unit` (a `stages.units.UNITS` name) on `args`; returns its record.

    Its scalars go to this process's event file (process 0 only), its status lines to the
    driver's terminal (Ray forwards this process's stdout).
    """
    try:
      return units_lib.run_unit(self._config, self._workdir, unit, *args,
                                log_fn=self._log_fn(), say=self._say)
    finally:
      if self._logger is not None:
        self._logger.flush()  # The driver kills this process when the stage ends.

  # -------------------------------------------------------------- logging
  def _say(self, line: str) -> None:
    print(line, flush=True)  # Ray forwards it to the driver's output.
    self._lines.append(line)

  def _log_fn(self) -> Callable[[dict[str, float], int], None] | None:
    """Writes scalars to this process's event file in `<workdir>/tb` (process 0 only)."""
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_index() != 0:
      return None
    if self._logger is None:
      from rmr_dist import logging as logging_lib  # pylint: disable=g-import-not-at-top
      self._logger = logging_lib.Logger(self._workdir.tb,
                                        filename_suffix=f'.{self._role}-learner.{os.getpid()}')
    return self._logger.scalars


class _OrbaxCompatibleClient:
  """jaxlib 0.4.34's DistributedRuntimeClient plus the `key_value_try_get` that the pinned
  orbax-checkpoint 0.11.5 calls in every multi-process save (newer jaxlibs have it). A get with
  a 1 ms deadline is the same thing: the value if the key is set, else a JaxRuntimeError."""

  def __init__(self, client: Any):
    self._client = client

  def __getattr__(self, name: str) -> Any:
    return getattr(self._client, name)

  def key_value_try_get(self, key: str) -> str:
    return self._client.blocking_key_value_get(key, 1)


def _patch_distributed_client_for_orbax() -> None:
  """Wraps jax.distributed's client (after the backend exists) if it lacks key_value_try_get."""
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  if client is not None and not hasattr(client, 'key_value_try_get'):
    distributed.global_state.client = _OrbaxCompatibleClient(client)


def _user_errors() -> tuple[type[BaseException], ...]:
  from rmr_dist import checkpointing  # pylint: disable=g-import-not-at-top
  return (config_lib.ConfigError, TimeoutError, FloatingPointError, checkpointing.CheckpointError)


def _get_all(refs: list[ray.ObjectRef]) -> list[Any]:
  """ray.get of every ref, failing at the first error in any (not in list order).

  A unit's own errors (bad config, export timeout, non-finite loss, unfit checkpoint) are
  re-raised as themselves, without Ray's remote traceback, so the entry point can print them.
  """
  pending, results = list(refs), {}
  while pending:
    done, pending = ray.wait(pending, num_returns=1)
    try:
      results[done[0]] = ray.get(done[0])
    except ray.exceptions.RayTaskError as e:
      if isinstance(e.cause, _user_errors()):
        raise e.cause from None
      raise
  return [results[r] for r in refs]


class LearnerGroup:
  """The driver's handle on one learner group: its processes, placement and restarts.

  Args:
    config: the program config (its `ray.learner_*` fields place the group).
    role: 'abstract', 'natural' or 'probe' (probes run on one host).
    workdir: the run's `WorkDir`.
  """

  def __init__(self, config: Any, role: str, workdir: Any):
    if role not in ROLES:
      raise ValueError(f'Unknown learner group role {role!r}; valid: {ROLES}')
    self._config = config
    self._role = role
    self._args = (config, workdir, role)
    self.hosts = 1 if role == 'probe' else config.ray.learner_hosts
    self.restarts = 0  # Whole-group restarts by the driver (multi-host only).
    self._actors: list[Any] = []
    self._placement = None
    self.devices: list[dict[str, Any]] = []
    try:
      self._start()
    except BaseException:
      self.close()
      raise

  def _worker_class(self):
    rc = self._config.ray
    # One host: Ray restarts the process and retries its unit. Several: the driver restarts
    # the whole group (a lone restarted process could not rejoin the others' JAX program).
    restarts = rc.learner_max_restarts if self.hosts == 1 else 0
    return ray.remote(num_cpus=rc.learner_num_cpus, num_gpus=rc.learner_num_gpus,
                      max_restarts=restarts, max_task_retries=restarts,
                      runtime_env=inherited_runtime_env(),
                      concurrency_groups={'control': 1})(LearnerWorker)

  def _start(self) -> None:
    rc, cls = self._config.ray, self._worker_class()
    if self.hosts == 1:
      self._actors = [cls.remote(*self._args)]
      self.devices = _get_all([self._actors[0].devices.remote()])
    else:
      bundle = {'CPU': rc.learner_num_cpus}
      if rc.learner_num_gpus:
        bundle['GPU'] = rc.learner_num_gpus
      self._placement = placement_group([bundle] * self.hosts, strategy='STRICT_SPREAD')
      while not ray.wait([self._placement.ready()], timeout=_PLACEMENT_STATUS_S)[0]:
        print(f'{self._role}: waiting for {self.hosts} learner hosts with {bundle} each on '
              'distinct nodes', flush=True)
      self._actors = [
          cls.options(scheduling_strategy=scheduling_strategies.PlacementGroupSchedulingStrategy(
              self._placement, placement_group_bundle_index=i)).remote(*self._args)
          for i in range(self.hosts)]
      head = _get_all([self._actors[0].info.remote()])[0]
      port = _get_all([self._actors[0].free_port.remote()])[0]
      coordinator = f'{head["node_ip"]}:{port}'
      self.devices = _get_all([a.init_distributed.remote(coordinator, self.hosts, i)
                               for i, a in enumerate(self._actors)])
      bad = [d for d in self.devices if d['psum_of_ones'] != d['device_count']]
      if bad:
        raise RuntimeError(f'{self._role}: the learner hosts do not reduce over each other '
                           f'(psum of ones {bad[0]["psum_of_ones"]} over '
                           f'{bad[0]["device_count"]} devices); check the network between them.')
    where = sorted({i['node_ip'] for i in self.info()})
    print(f'{self._role}: learner group of {self.hosts} process(es) on {", ".join(where)}, '
          f'{self.devices[0]["device_count"]} {self.devices[0]["backend"]} device(s) in all',
          flush=True)

  def info(self) -> list[dict[str, Any]]:
    """{pid, node_ip, gpu_ids} of every process (answers while a unit runs)."""
    return ray.get([a.info.remote() for a in self._actors])

  def log_lines(self) -> list[list[str]]:
    """Every process's status lines so far (answers while a unit runs)."""
    return ray.get([a.log_lines.remote() for a in self._actors])

  def run(self, unit: str, *args: Any) -> Any:
    """Runs stage unit `unit` (a `stages.units.UNITS` name, e.g. 'atari_abstract') on every process.

    Args:
      unit: the unit.
      *args: its arguments after (config, workdir), e.g. game, model, replay address.

    Returns:
      Process 0's result (the unit's row / record).

    Raises:
      The unit's own ConfigError, TimeoutError, FloatingPointError or CheckpointError as
      themselves; RayActorError once the group has died more than `learner_max_restarts`
      times.
    """
    while True:
      try:
        return _get_all([a.run_unit.remote(unit, *args) for a in self._actors])[0]
      except ray.exceptions.RayActorError as e:
        if self.hosts == 1 or self.restarts >= self._config.ray.learner_max_restarts:
          raise
        self.restarts += 1
        print(f'{self._role}: a learner host died ({type(e).__name__}); restarting the group of '
              f'{self.hosts} ({self.restarts}/{self._config.ray.learner_max_restarts})',
              file=sys.stderr, flush=True)
        self.close()
        self._start()

  def close(self) -> None:
    """Kills the group's processes (and frees its placement group)."""
    for actor in self._actors:
      ray.kill(actor)
    self._actors = []
    if self._placement is not None:
      remove_placement_group(self._placement)
      self._placement = None


class LazyGroup:
  """`with LazyGroup(...) as group:` - `group()` starts the learner group on first use; the
  group is killed when the block ends, so a stage with nothing left to do starts no process."""

  def __init__(self, config: Any, role: str, workdir: Any):
    self._args = (config, role, workdir)
    self._group: LearnerGroup | None = None

  def __call__(self) -> LearnerGroup:
    if self._group is None:
      self._group = LearnerGroup(*self._args)
    return self._group

  def __enter__(self) -> LazyGroup:
    return self

  def __exit__(self, *exc) -> None:
    if self._group is not None:
      self._group.close()
      self._group = None
