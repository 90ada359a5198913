"""Bad and edge inputs, for all five optimizers: clear errors or sound results."""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alada_optax import adamw_sn, adamw_snsm, adapprox, alada, came, smmf

# Small static settings, so that (4, 6) leaves are factored where they can be.
ALIASES = {
    'alada': (alada, {}),
    'smmf': (smmf, {}),
    'came': (came, {}),
    'adamw_snsm': (adamw_snsm, {'rank': 1}),
    'adapprox': (adapprox, {'max_rank': 1, 'min_dim_size_to_factor': 2}),
}
STATIC = {'adamw_snsm': ('rank',),
          'adapprox': ('max_rank', 'min_dim_size_to_factor')}


def make(name, learning_rate=0.1, **kwargs):
  alias, static = ALIASES[name]
  return alias(learning_rate, **static, **kwargs)


# -- hyperparameters ---------------------------------------------------------

BAD = [
    ('alada', 'b1', 1.0), ('alada', 'b1', -0.1), ('alada', 'b2', 1.0),
    ('alada', 'b2', -0.1), ('alada', 'eps', -1e-8),
    ('alada', 'b2', np.float32(np.nan)), ('alada', 'step_bound', 0.0),
    ('alada', 'step_bound', -1.0),
    ('smmf', 'beta', 1.0), ('smmf', 'eps', -1.0), ('smmf', 'decay_rate', 0.5),
    ('smmf', 'growth_rate', 1.5),
    ('came', 'b1', 1.0), ('came', 'b2', 1.0), ('came', 'b3', -0.5),
    ('came', 'eps1', -1e-30), ('came', 'eps2', -1.0),
    ('came', 'clipping_threshold', 0.0),
    ('adamw_snsm', 'b1', 1.0), ('adamw_snsm', 'b2', 1.5),
    ('adamw_snsm', 'eps', -1e-6),
    ('adapprox', 'b1', 1.0), ('adapprox', 'b2', 1.0), ('adapprox', 'eps', -1.0),
    ('adapprox', 'clip_threshold', 0.0),
]


@pytest.mark.parametrize('name, arg, value', BAD,
                         ids=[f'{n}-{a}={v}' for n, a, v in BAD])
def test_bad_hyperparameter_is_named(name, arg, value):
  with pytest.raises(ValueError, match=rf'{arg} must be .*got'):
    make(name, **{arg: value})
  # A concrete array is checked too.
  with pytest.raises(ValueError, match=rf'{arg} must be'):
    make(name, **{arg: jnp.asarray(value)})


@pytest.mark.parametrize('name', ['alada', 'came', 'adamw_snsm', 'adapprox'])
def test_integer_mu_dtype_is_refused(name):
  with pytest.raises(TypeError, match='mu_dtype must be a floating'):
    make(name, mu_dtype=jnp.int32)
  make(name, mu_dtype=jnp.bfloat16)  # floats are fine


def test_adamw_snsm_b2_of_one_is_adagrad():
  make('adamw_snsm', b2=1.0)  # its math allows b2 = 1 (AdaGrad sums)


INJECTED = {
    'alada': dict(b1=0.8, b2=0.85, eps=1e-12, step_bound=0.5),
    'smmf': dict(beta=0.8, eps=1e-6, decay_rate=-0.7, growth_rate=0.99),
    'came': dict(b1=0.8, b2=0.99, b3=0.999, clipping_threshold=0.5),
    'adamw_snsm': dict(b1=0.8, b2=0.99, eps=1e-6),
    'adapprox': dict(b1=0.8, b2=0.99, eps=1e-6, clip_threshold=0.5),
}


@pytest.mark.parametrize('name', ALIASES)
def test_checks_let_traced_hyperparameters_through(name):
  """inject_hyperparams traces them under jit: the checks skip tracers."""
  alias, static = ALIASES[name]
  kwargs = dict(static, **INJECTED[name])
  params = {'w': jnp.linspace(-1, 1, 24).reshape(4, 6), 'b': jnp.ones(6)}
  grads = jax.tree.map(jnp.sin, params)
  opt = alias(0.1, **kwargs)
  injected = optax.inject_hyperparams(alias, static_args=STATIC.get(name, ()))(
      0.1, **kwargs)
  want, _ = opt.update(grads, opt.init(params), params)
  state = jax.jit(injected.init)(params)
  got, state = jax.jit(injected.update)(grads, state, params)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-7)
  # Bad values are still caught where they are concrete: at an eager init.
  bad = dict(kwargs, **{next(iter(INJECTED[name])): 1.5})
  with pytest.raises(ValueError, match='must be'):
    optax.inject_hyperparams(alias, static_args=STATIC.get(name, ()))(
        0.1, **bad).init(params)


@pytest.mark.parametrize('name', ['adamw_snsm', 'adapprox'])
def test_inject_hyperparams_needs_no_static_args_by_default(name):
  alias = ALIASES[name][0]
  params = {'w': jnp.ones((4, 6)), 'b': jnp.ones(6)}
  opt = optax.inject_hyperparams(alias)(0.1)
  updates, _ = jax.jit(opt.update)(params, jax.jit(opt.init)(params), params)
  chex.assert_trees_all_equal_shapes(updates, params)
  # A static argument that is set must be named in static_args.
  arg = STATIC[name][0]
  with pytest.raises(ValueError, match=rf"static_args=\('{arg}'"):
    optax.inject_hyperparams(alias)(0.1, **{arg: 2}).init(params)


# -- edge leaves and calls ----------------------------------------------------

@pytest.mark.parametrize('name', ALIASES)
def test_zero_size_leaves(name):
  params = {'a': jnp.zeros((0, 5)), 'b': jnp.zeros((3, 0)),
            'w': jnp.linspace(-1, 1, 24).reshape(4, 6)}
  opt = make(name)
  state = opt.init(params)
  updates, state = jax.jit(opt.update)(params, state, params)
  chex.assert_trees_all_equal_shapes(updates, params)
  alone, _ = opt.update({'w': params['w']}, opt.init({'w': params['w']}),
                        {'w': params['w']})
  np.testing.assert_allclose(updates['w'], alone['w'], rtol=1e-5)


@pytest.mark.parametrize('name', ALIASES)
def test_update_dtypes_follow_optax(name):
  """Gradients promoted with params, as optax.adam's updates are."""
  opt = make(name)
  for param_dtype, grad_dtype in [(jnp.float32, jnp.bfloat16),
                                  (jnp.bfloat16, jnp.bfloat16),
                                  (jnp.bfloat16, jnp.float32)]:
    params = jnp.ones((4, 6), param_dtype)
    grads = jnp.full((4, 6), 0.5, grad_dtype)
    adam = optax.adam(0.1)
    want = adam.update(grads, adam.init(params), params)[0].dtype
    got = opt.update(grads, opt.init(params), params)[0].dtype
    assert got == want, (param_dtype, grad_dtype)


@pytest.mark.parametrize('name', ALIASES)
def test_update_without_params_when_no_weight_decay(name):
  params = {'w': jnp.linspace(-1, 1, 24).reshape(4, 6), 'b': jnp.ones(6)}
  opt = make(name)
  state = opt.init(params)
  without, _ = opt.update(params, state)  # as optax.adam allows
  with_params, _ = opt.update(params, state, params)
  chex.assert_trees_all_close(without, with_params, rtol=1e-6)
  decayed = make(name, weight_decay=1e-2)
  with pytest.raises(ValueError, match='requires the current value'):
    decayed.update(params, decayed.init(params))


@pytest.mark.parametrize('shape', [(6, 4), (24,), (2, 12), (3, 8)])
def test_smmf_names_a_gradient_of_another_shape(shape):
  opt = smmf(0.1)
  state = opt.init({'layer': jnp.zeros((4, 6))})
  with pytest.raises(ValueError,
                     match=rf"\['layer'\] has shape \({shape[0]},"):
    opt.update({'layer': jnp.zeros(shape)}, state)


@pytest.mark.parametrize('alias', [alada, smmf, came, adamw_snsm, adamw_sn,
                                   adapprox])
def test_learning_rate_annotation_is_optax_object(alias):
  """optax's battery checks the object; a postponed string escapes it."""
  annotation = inspect.signature(alias).parameters['learning_rate'].annotation
  assert annotation is optax.ScalarOrSchedule
