"""Starting or joining Ray."""

from __future__ import annotations

import logging
import os

import ray

from rmr_dist import config as config_lib

LOOPBACK = '127.0.0.1'


def init_ray(ray_config: config_lib.RayConfig) -> None:
  """Starts a local Ray on 127.0.0.1 (address '') or joins the cluster at `address`.

  Idempotent: does nothing if Ray is already initialised in this process.
  """
  if ray.is_initialized():
    return
  if ray_config.address:
    ray.init(address=ray_config.address, logging_level=logging.WARNING)
    return
  os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'
  # address='local' always starts a new local instance: a bare ray.init() would join any Ray
  # already running on this machine (`ray start`, another job) and run our actors there.
  # No idle workers prestarted with the driver: the learner groups' actors carry a runtime_env,
  # which a prestarted worker cannot serve, and the other actors get a worker on demand; the
  # num_cpus workers Ray would prestart mostly compete with the program's start for the CPUs.
  ray.init(address='local', num_cpus=ray_config.num_cpus or None, include_dashboard=False,
           _node_ip_address=LOOPBACK, logging_level=logging.WARNING,
           log_to_driver=True, _system_config={'prestart_worker_first_driver': False})


def node_addresses() -> list[str]:
  """The addresses of all alive Ray nodes."""
  return [n['NodeManagerAddress'] for n in ray.nodes() if n.get('Alive')]
