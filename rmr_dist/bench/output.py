"""The benchmarks' output: one JSON object per line, each saying where it was measured.

Every line carries `backend` (JAX's default backend: cpu, gpu, tpu), `device_kind` (e.g.
'cpu', 'NVIDIA H100 80GB HBM3'), `device_count` (devices JAX sees in this process) and
`jax_version` / `jaxlib_version`, so a number is never read without its machine.
"""

from __future__ import annotations

import functools
import json
from typing import Any


@functools.lru_cache(maxsize=1)
def platform_fields() -> dict[str, Any]:
  """{backend, device_kind, device_count, jax_version, jaxlib_version} of this process.

  The first call starts JAX's backend (call it after any JAX / XLA settings are made).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  return {'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
          'device_count': len(devices), 'jax_version': jax.__version__,
          'jaxlib_version': jaxlib.__version__}


def emit(record: dict[str, Any]) -> None:
  """Prints `record` with the platform fields as one JSON line (flushed)."""
  print(json.dumps({**record, **platform_fields()}), flush=True)
