"""Fail-fast placement checks for the learner groups.

Ray queues an actor that no node can hold and waits forever (its autoscaler prints "No available
node types can fulfill resource request" every half minute). Before a program starts any stage
whose units run in learner groups, `check_learner_resources` compares what one group asks for,
`ray.learner_hosts` nodes with `ray.learner_num_cpus` CPUs and `ray.learner_num_gpus` GPUs each,
with the nodes the cluster has plus those its autoscaler may add, and fails at once naming the
settings and what the cluster has (on a cluster whose autoscaler does not report its node types
to Ray, it warns instead: nodes may still join). A local Ray's one node is known before it
starts (`local_node`), so there the learner group and the pools of 1-CPU actors (collectors,
agent actors, balls simulation actors) are checked before Ray starts. Inside a learner
process that reserved GPUs, `check_backend` fails when JAX found no GPU (a CPU-only jaxlib),
with the install command.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from rmr_dist import config as config_lib
from rmr_dist.distributed import ray_setup

GPU_INSTALL = 'python -m pip install -c constraints-cuda.txt -e ".[cuda]"'


def _describe(resources: Mapping[str, float]) -> str:
  return f'{resources.get("CPU", 0):g} CPU, {resources.get("GPU", 0):g} GPU'


def learner_shortfall(ray_config: config_lib.RayConfig, nodes: Sequence[Mapping[str, Any]],
                      node_groups: Sequence[Mapping[str, Any]] | None = ()) -> str | None:
  """Why a learner group cannot be placed, or None when it can.

  Args:
    ray_config: the `ray` section (learner_num_cpus, learner_num_gpus, learner_hosts, ...).
    nodes: the alive nodes, each {'address': str, 'resources': {'CPU': n, 'GPU': n, ...}}
      (totals, not what is free now).
    node_groups: node types the autoscaler may add, each {'name': str, 'resources': {...},
      'max_count': n (-1: unlimited)}; empty for a local Ray, None when unknown.

  Returns:
    None if `learner_hosts` distinct nodes (present or addable) each have the CPUs and GPUs one
    learner process reserves; else a message naming the settings and what the cluster has.
  """
  rc = ray_config
  cpus, gpus, hosts = rc.learner_num_cpus, rc.learner_num_gpus, rc.learner_hosts

  def fits(resources: Mapping[str, float]) -> bool:
    return resources.get('CPU', 0) >= cpus and resources.get('GPU', 0) >= gpus

  can_hold = sum(fits(n['resources']) for n in nodes)
  for group in node_groups or ():
    if fits(group['resources']) and group['max_count']:
      can_hold += hosts if group['max_count'] < 0 else group['max_count']
  if can_hold >= hosts:
    return None
  short = []
  if not any(n['resources'].get('GPU', 0) >= gpus for n in nodes) and gpus:
    short.append(f'ray.learner_num_gpus={gpus:g}')
  if not any(n['resources'].get('CPU', 0) >= cpus for n in nodes):
    short.append(f'ray.learner_num_cpus={cpus:g}' + ('' if rc.address else
                                                     f' (local Ray: ray.num_cpus={rc.num_cpus})'))
  if hosts > 1 or not short:
    short.append(f'ray.learner_hosts={hosts}')
  have = '; '.join(f'{n["address"]}: {_describe(n["resources"])}' for n in nodes) or 'none'
  addable = ('(unknown)' if node_groups is None else
             ', '.join(f'{g["name"]} ({_describe(g["resources"])}, up to {g["max_count"]})'
                       for g in node_groups) or 'none')
  total = {k: sum(n['resources'].get(k, 0) for n in nodes) for k in ('CPU', 'GPU')}
  return (f'{" and ".join(short)}: each learner group needs {hosts} node(s) with at least '
          f'{cpus:g} CPU and {gpus:g} GPU each (ray.learner_num_gpus x ray.learner_hosts = '
          f'{gpus * hosts:g} GPUs), but the Ray cluster has {len(nodes)} node(s) with '
          f'{_describe(total)} in all ({have}) and its autoscaler can add: {addable}. Lower '
          'these settings (ray.learner_num_gpus=0 runs JAX on the CPU), or run on a cluster '
          f'with such nodes (GPU nodes need the CUDA extra: {GPU_INSTALL}).')


def cluster_nodes() -> list[dict[str, Any]]:
  """The alive Ray nodes: [{'address', 'resources'}] (total resources of each)."""
  return [{'address': n['NodeManagerAddress'], 'resources': dict(n.get('Resources', {}))}
          for n in ray.nodes() if n.get('Alive')]


def autoscaler_node_groups() -> list[dict[str, Any]] | None:
  """The node types the cluster's autoscaler may start, as it reported them to Ray's GCS;
  None when none were reported (an autoscaler that does not report them, or none at all)."""
  try:
    from ray._private import state  # pylint: disable=g-import-not-at-top
    config = state.state.get_cluster_config()
  except Exception:  # pylint: disable=broad-except  (a private API: treat as unknown)
    return None
  if config is None or not config.node_group_configs:
    return None
  return [{'name': g.name, 'resources': dict(g.resources), 'max_count': g.max_count}
          for g in config.node_group_configs]


def check_learner_resources(ray_config: config_lib.RayConfig) -> None:
  """Fails unless the connected Ray cluster can place a learner group (call after `init_ray`).

  A local Ray (`ray.address=''`) has no autoscaler, so its nodes decide. On a cluster whose
  autoscaler's node types are unknown here, a shortfall is only warned about (on stderr): an
  autoscaler may still add the nodes, and Ray then places the group when they join.

  Raises:
    ConfigError: `learner_shortfall`'s message.
  """
  groups = autoscaler_node_groups() if ray_config.address else []
  message = learner_shortfall(ray_config, cluster_nodes(), groups)
  if message is None:
    return
  if groups is None:
    print(f'placement: warning: {message} The learner groups wait until such nodes join.',
          file=sys.stderr, flush=True)
    return
  raise config_lib.ConfigError(message)


def check_actor_cpus(ray_config: config_lib.RayConfig, count: int, setting: str) -> None:
  """Fails unless `count` actors of 1 CPU each fit the connected Ray cluster at once (call after
  `init_ray`). Such actors (collectors, agent actors) hold their CPU until the stage ends, so one
  that cannot be placed never runs and the stage would wait for it forever.

  On a cluster (`ray.address` set) an autoscaler may still add nodes, so a shortfall is only
  warned about there.

  Raises:
    ConfigError: on a local Ray, naming `setting`, its value and the CPUs there are.
  """
  cpus = sum(n['resources'].get('CPU', 0.0) for n in cluster_nodes())
  message = actor_shortfall(cpus, count, setting)
  if message is None:
    return
  if ray_config.address:
    print(f'placement: warning: {message} The stage waits until such nodes join.',
          file=sys.stderr, flush=True)
    return
  raise config_lib.ConfigError(message)


def local_node(ray_config: config_lib.RayConfig) -> dict[str, Any] | None:
  """The one node a local Ray (`ray.address=''`) will have, known before it starts:
  {'address', 'resources': {'CPU', 'GPU'}}, counted as `ray.init` counts them (`ray.num_cpus`,
  else Ray's CPU count of this machine; the GPUs Ray's NVIDIA manager finds, limited to
  CUDA_VISIBLE_DEVICES when set). None on a cluster, or when Ray's counting is not available
  (its private helpers moved): the checks then run after Ray starts."""
  if ray_config.address:
    return None
  try:
    from ray._private import accelerators  # pylint: disable=g-import-not-at-top
    from ray._private import utils  # pylint: disable=g-import-not-at-top
    cpus = float(ray_config.num_cpus or utils.get_num_cpus())
    manager = accelerators.get_accelerator_manager_for_resource('GPU')
    visible = manager.get_current_process_visible_accelerator_ids()
    gpus = manager.get_current_node_num_accelerators()
    if visible is not None:
      gpus = min(gpus, len(visible))
  except Exception:  # pylint: disable=broad-except  (private helpers: treat as unknown)
    return None
  return {'address': ray_setup.LOOPBACK, 'resources': {'CPU': cpus, 'GPU': float(gpus)}}


def actor_shortfall(cpus: float, count: int, setting: str) -> str | None:
  """Why `count` actors of 1 CPU each cannot all run at once on `cpus` CPUs, or None."""
  if count <= cpus:
    return None
  return (f'{setting}={count}: each of these actors reserves 1 CPU until the stage ends, but '
          f'the Ray cluster has {cpus:g} CPU(s) in all. Set {setting} to at most {int(cpus)} '
          '(or raise ray.num_cpus, or add nodes).')


def check_before_stages(ray_config: config_lib.RayConfig, stages: Sequence[str],
                        learner_stages: Sequence[str],
                        actors: Sequence[tuple[int, str]] = ()) -> None:
  """Before a run of `stages`, so that a run that cannot train fails before collecting.

  On a local Ray whose node is known in advance (:func:`local_node`), checks without starting
  Ray that a learner group can be placed (if any stage runs in learner groups) and that each
  of `actors` fits at once. Otherwise, if any stage runs in learner groups, starts (or joins)
  Ray and checks the learner group against its nodes (the actor counts are then checked by
  their stages, :func:`check_actor_cpus`).

  Args:
    ray_config: the `ray` section.
    stages: the stages of the run.
    learner_stages: those of the program that run in learner groups.
    actors: (count, setting) of the 1-CPU actor pools the run will start at once.

  Raises:
    ConfigError: `learner_shortfall`'s or `actor_shortfall`'s message.
  """
  learners_run = any(stage in learner_stages for stage in stages)
  node = local_node(ray_config)
  if node is not None:
    message = learner_shortfall(ray_config, [node], []) if learners_run else None
    for count, setting in actors:
      message = message or actor_shortfall(node['resources']['CPU'], count, setting)
    if message is not None:
      raise config_lib.ConfigError(message)
    return
  if learners_run:
    ray_setup.init_ray(ray_config)
    check_learner_resources(ray_config)


def check_backend(num_gpus: float, backend: str, gpu_ids: Sequence[str]) -> None:
  """Fails when a learner process reserved GPUs but JAX runs on another backend.

  Args:
    num_gpus: `ray.learner_num_gpus`, what the process reserved.
    backend: `jax.default_backend()` in that process.
    gpu_ids: the GPU ids Ray assigned it (`ray.get_gpu_ids()`).

  Raises:
    ConfigError: naming the setting, the backend found and the install command.
  """
  if num_gpus > 0 and backend != 'gpu':
    raise config_lib.ConfigError(
        f'ray.learner_num_gpus={num_gpus:g}: this learner process reserved GPU(s) '
        f'{list(gpu_ids)} but JAX runs on {backend!r}: its jaxlib has no CUDA support. '
        f'Install the CUDA extra on the learner nodes: {GPU_INSTALL} (or set '
        'ray.learner_num_gpus=0 to train on the CPU).')
