"""Simulated CPU devices for the sharding checks, set before JAX starts.

The checks that need several devices run as their own processes
(``python -m tests.sharded_checks``, ``python -m tests.plain_sharding_checks``)
and call :func:`use_cpu_devices` before their first JAX import: XLA reads
the device count once, when its CPU backend starts.
"""

import os
import sys


def use_cpu_devices(count: int, module: str) -> None:
  """Asks XLA for ``count`` CPU devices; ``module`` names the caller."""
  if 'jax' in sys.modules:
    raise RuntimeError(f'{module} must run before JAX is imported')
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '')
      + f' --xla_force_host_platform_device_count={count}'
  ).strip()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
