"""Simulated CPU devices, asked for before JAX starts.

The programs that need several devices on one CPU
(``python -m benchmarks.collectives``, ``python -m tests.sharded_checks``,
``python -m tests.plain_sharding_checks``) call :func:`use_cpu_devices`
before their first JAX import: XLA reads the device count once, when its
CPU backend starts.
"""

import os
import sys


def use_cpu_devices(count: int, module: str) -> None:
  """Asks XLA for ``count`` CPU devices; ``module`` names the caller."""
  if 'jax' in sys.modules:
    raise RuntimeError(f'{module} must set up its devices before JAX is'
                       f' imported; run it as python -m {module}')
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '')
      + f' --xla_force_host_platform_device_count={count}').strip()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  # Adapprox's QR and Subspace-Momentum's eigh run on OpenBLAS on CPU; its
  # threads would spin against XLA's (see tests/conftest.py).
  os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
