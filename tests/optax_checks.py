"""optax's common checks for optimizers, for every optimizer of this package.

These are the checks of ``optax/contrib/_common_test.py`` (convergence on its
four targets, extra args, no recompile, tree map_params, inject_hyperparams,
dtype preservation, MultiSteps, state dtype stability, schedule equivalence),
written as a pytest class. The targets are optax's own, imported from that
module, so they cannot drift from what optax checks.

Each optimizer's test module subclasses :class:`OptaxCommonChecks`::

    class TestAladaOptaxChecks(OptaxCommonChecks):
      OPTIMIZERS = [pytest.param(alada, {'learning_rate': 1e-3}, id='alada')]
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import optax
import pytest
from optax.contrib import _common_test as optax_common

TARGETS = [
    optax_common._setup_parabola,
    optax_common._setup_rosenbrock,
    optax_common._setup_matrix_parabola,
    optax_common._setup_mixed_tensor_target,
]

# Hyperparameters that are static (shape-determining) and cannot be injected.
STATIC_HPARAMS = ('dimension_numbers', 'mu_dtype', 'mask', 'rank',
                  'subset_size', 'max_rank', 'oversample',
                  'power_iterations', 'min_dim_size_to_factor')

class OptaxCommonChecks:
  """optax's common optimizer checks; subclasses set ``OPTIMIZERS``.

  ``OPTIMIZERS`` is a list of ``pytest.param(factory, kwargs)``: the factory
  (an alias like :func:`alada_optax.alada`) and the kwargs, learning rate
  included, that its convergence check uses.
  """

  OPTIMIZERS: list = []

  @staticmethod
  def _step_fn(opt, obj_fn, **update_kwargs):
    def step(params, state):
      updates = jax.grad(obj_fn)(params)
      updates, state = opt.update(updates, state, params, **update_kwargs)
      return optax.apply_updates(params, updates), state
    return step

  def test_accepts_extra_args_and_does_not_recompile(self, factory, kwargs):
    opt = factory(**kwargs)
    params, _, obj_fn = optax_common._setup_rosenbrock(jnp.float32)
    step = jax.jit(self._step_fn(
        opt, obj_fn, unexpected_extra_args_your_optimizer_doesnt_expect=1))
    state = opt.init(params)
    for _ in range(2):
      params, state = step(params, state)
    with optax_common.test_utils.log_compilations() as logs:
      step(params, state)
    assert not logs, 'the optimizer recompiles on the second call to update'

  @pytest.mark.parametrize('target', TARGETS, ids=lambda t: t.__name__[7:])
  def test_converges_and_map_params(self, factory, kwargs, target):
    opt = factory(**kwargs)
    params, final_params, obj_fn = target(jnp.float32)
    state = opt.init(params)
    state = optax.tree.map_params(opt, lambda v: v, state)  # a no-op map
    step = self._step_fn(opt, obj_fn)

    @jax.jit
    def run(params, state):
      body = lambda carry, _: (step(*carry), None)
      return jax.lax.scan(body, (params, state), length=30_000)[0]

    params, _ = run(params, state)
    jax.tree.map(
        lambda a, b: optax_common.test_utils.assert_trees_all_close(
            a, b, rtol=3e-2, atol=3e-2),
        params, final_params)

  def test_inject_hyperparams(self, factory, kwargs):
    static = tuple(a for a in STATIC_HPARAMS
                   if a in inspect.signature(factory).parameters)
    opt = factory(**kwargs)
    opt_inject = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
    params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
    grads = [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]
    updates, state = jax.jit(opt.update)(grads, jax.jit(opt.init)(params),
                                         params)
    updates_i, state_i = jax.jit(opt_inject.update)(
        grads, jax.jit(opt_inject.init)(params), params)
    optax_common.test_utils.assert_trees_all_close(updates_i, updates,
                                                   rtol=1e-5)
    optax_common.test_utils.assert_trees_all_close(
        state_i.inner_state, state, rtol=1e-5, atol=1e-5)

  @pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
  def test_preserves_dtype_and_multisteps(self, factory, kwargs, dtype):
    dtype = jnp.dtype(dtype)
    fun = lambda x: jnp.sum(x**2)
    params = jnp.array([1.0, 2.0], dtype=dtype)
    grads = jax.grad(fun)(params)

    opt = factory(**kwargs)
    updates, _ = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params)
    assert updates.dtype == params.dtype

    multi = optax.MultiSteps(factory(**kwargs), every_k_schedule=4)
    updates, _ = jax.jit(multi.update)(grads, jax.jit(multi.init)(params),
                                       params)
    optax_common.test_utils.assert_trees_all_equal(updates,
                                                   jnp.zeros_like(grads))

  @pytest.mark.parametrize(
      'dtype', [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
  def test_state_shape_dtype_stability(self, factory, kwargs, dtype):
    with jax.enable_x64(dtype == jnp.float64):
      opt = factory(**kwargs)
      params, _, obj_fn = optax_common._setup_parabola(dtype)

      @jax.jit
      def step(params, state):
        updates = jax.grad(obj_fn)(params)
        # lax.cond requires both branches to agree on shapes and dtypes.
        cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
        updates, state = jax.lax.cond(
            cond, lambda: opt.update(updates, state, params),
            lambda: (params, state))
        return optax.apply_updates(params, updates), state

      state = opt.init(params)
      for _ in range(2):
        params, new_state = step(params, state)
        assert params.dtype == dtype
        cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
        state = jax.lax.cond(cond, lambda s=state: s, lambda s=new_state: s)

  def test_learning_rate_schedule_if_annotated(self, factory, kwargs):
    lr_arg = inspect.signature(factory).parameters['learning_rate']
    assert lr_arg.annotation in (optax.ScalarOrSchedule, 'optax.ScalarOrSchedule')
    params, _, obj_fn = optax_common._setup_parabola(jnp.float32)
    with_schedule = factory(**dict(kwargs,
                                   learning_rate=optax.constant_schedule(1e-3)))
    with_float = factory(**dict(kwargs, learning_rate=1e-3))
    step_s, step_f = self._step_fn(with_schedule, obj_fn), self._step_fn(with_float, obj_fn)
    ps, pf = params, params
    ss, sf = with_schedule.init(params), with_float.init(params)
    for _ in range(10):
      ps, ss = step_s(ps, ss)
      pf, sf = step_f(pf, sf)
    optax_common.test_utils.assert_trees_all_close(ps, pf)
