"""Shared pytest configuration."""


def pytest_generate_tests(metafunc):
  """Parametrizes OptaxCommonChecks subclasses over their OPTIMIZERS."""
  if {'factory', 'kwargs'} <= set(metafunc.fixturenames) and metafunc.cls:
    metafunc.parametrize('factory, kwargs', metafunc.cls.OPTIMIZERS)
