"""optax's own contrib battery, unmodified, run on this package's optimizers.

``optax/contrib/_common_test.py`` checks every contributed optimizer for:
extra args and no recompilation, convergence on its four targets with a
no-op ``optax.tree.map_params``, ``inject_hyperparams``, dtype preservation,
``MultiSteps``, state dtype stability under ``lax.cond``, and schedule
equivalence for a ``learning_rate`` annotated ``optax.ScalarOrSchedule``.
Its tests are ``absl`` parameterized methods over optax's own optimizer list.
Here each one is run as it is written (the same code object, the same
parameter grid read off optax's generated cases) with its optimizer lookup,
``_get_opt_factory``, pointed at ours. A test that optax's code skips fails
here: a skip means the optimizer escapes one of optax's checks.

Each optimizer's test module subclasses :class:`OptaxCommonChecks`::

    class TestAladaOptaxChecks(OptaxCommonChecks):
      OPTIMIZERS = [pytest.param(alada, {'learning_rate': 1e-3}, id='alada')]
"""

import types
import unittest

from absl.testing import parameterized
from optax.contrib import _common_test as optax_common
import pytest

# The parameters optax's grid gives per optimizer; ours replace them.
_OPTIMIZER_KEYS = ('opt_name', 'opt_kwargs', 'wrapper_name', 'wrapper_kwargs')


def _battery() -> list:
  """``(test function, extra parameters)`` for every case of optax's grid.

  The extra parameters are those of a generated case besides the
  optimizer's (``target``, ``dtype``, ``wrap``), deduplicated per test.
  """
  cases = []
  for method in vars(optax_common.ContribTest).values():
    original = getattr(method, '__wrapped__', None)
    if original is None or not method.__closure__:
      continue
    params = [c.cell_contents for c in method.__closure__
              if isinstance(c.cell_contents, dict)]
    if len(params) != 1:
      continue
    extra = {k: v for k, v in params[0].items() if k not in _OPTIMIZER_KEYS}
    if (original, extra) not in cases:
      cases.append((original, extra))
  return cases


_CASES = _battery()


def _case_id(case) -> str:
  original, extra = case
  parts = [original.__name__]
  for k, v in sorted(extra.items()):
    parts.append(f'{k}={getattr(v, "__name__", v)}')
  return '-'.join(parts)


def run_optax_test(original, extra, factory, kwargs):
  """Runs one of optax's test functions on ``factory(**kwargs)``.

  Raises:
    pytest.fail.Exception: if optax's code skips the test.
  """
  name = factory.__name__
  globals_ = dict(original.__globals__)
  globals_['_get_opt_factory'] = {name: factory}.__getitem__
  test = types.FunctionType(original.__code__, globals_, original.__name__,
                            original.__defaults__, original.__closure__)
  try:
    test(parameterized.TestCase(), opt_name=name, opt_kwargs=dict(kwargs),
         wrapper_name=None, wrapper_kwargs=None, **extra)
  except unittest.SkipTest as skip:
    pytest.fail(f'optax skips {original.__name__} for {name}: {skip}')


class OptaxCommonChecks:
  """optax's contrib battery; subclasses set ``OPTIMIZERS``.

  ``OPTIMIZERS`` is a list of ``pytest.param(factory, kwargs)``: the alias
  (looked up by optax's code under its ``__name__``) and its kwargs,
  learning rate included.
  """

  OPTIMIZERS: list = []

  @pytest.mark.parametrize('case', _CASES, ids=[_case_id(c) for c in _CASES])
  def test_optax_contrib_battery(self, factory, kwargs, case):
    run_optax_test(*case, factory, kwargs)

  def test_battery_is_optax_whole_grid(self):
    """Every test of optax's ContribTest is in the battery, with its grid."""
    names = {original.__name__ for original, _ in _CASES}
    assert names == {
        'test_optimizers_accept_extra_args', 'test_optimizers',
        'test_optimizers_can_be_wrapped_in_inject_hyperparams',
        'test_preserve_dtype', 'test_gradient_accumulation',
        'test_state_shape_dtype_shard_stability',
        'test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such',
    }
    assert sum(o.__name__ == 'test_optimizers' for o, _ in _CASES) == 4
    assert sum(o.__name__ == 'test_state_shape_dtype_shard_stability'
               for o, _ in _CASES) == 4
