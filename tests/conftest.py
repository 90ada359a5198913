"""Shared pytest configuration."""

import os

# On CPU, jnp.linalg.qr / eigh (Adapprox, Subspace-Momentum) run on scipy's
# OpenBLAS, whose threads spin against XLA's own for the same cores: on 2 cores
# a small QR takes ~1000x longer than on one thread. Set before jax loads it.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')


def pytest_generate_tests(metafunc):
  """Parametrizes OptaxCommonChecks subclasses over their OPTIMIZERS."""
  if {'factory', 'kwargs'} <= set(metafunc.fixturenames) and metafunc.cls:
    metafunc.parametrize('factory, kwargs', metafunc.cls.OPTIMIZERS)
