"""Behaviour every transformation of this package shares, as a test class.

Subclass :class:`TransformChecks` (pytest collects ``Test*`` subclasses) and
set ``ALIAS`` (the alias, called as ``ALIAS(learning_rate, **kw)``),
``SCALE_BY`` (the ``scale_by_X`` factory), ``NAME`` (how its errors name it)
and ``INJECT_KWARGS`` (hyperparameters for the ``inject_hyperparams`` test),
and optionally ``STATIC_KWARGS``: shape-setting arguments (a rank, a
factoring threshold) given to every alias the checks build, and listed as
``static_args`` to ``inject_hyperparams``, so that the checks' small matrices
take the method's low-rank path rather than its dense fallback.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


def trajectory(opt, steps=12):
  """Params after each of ``steps`` jitted steps on a small quartic."""
  params = {'w': jnp.linspace(-1, 2, 12).reshape(3, 4), 'b': jnp.zeros(4)}
  loss = lambda p: jnp.sum((p['w'] - 0.5) ** 4) + jnp.sum((p['b'] + 1) ** 2)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  out = []
  for _ in range(steps):
    params, state = step(params, state)
    out.append(params)
  return out


class TransformChecks:
  """Trajectories, jit, weight-decay masks, pass-through and bad inputs."""

  ALIAS = None
  SCALE_BY = None
  NAME = ''
  INJECT_KWARGS: dict = {}
  STATIC_KWARGS: dict = {}

  def alias(self, *args, **kwargs):
    return type(self).ALIAS(*args, **self.STATIC_KWARGS, **kwargs)

  def test_inject_hyperparams_same_trajectory(self):
    plain = trajectory(self.alias(**self.INJECT_KWARGS))
    injected = trajectory(optax.inject_hyperparams(
        type(self).ALIAS, static_args=tuple(self.STATIC_KWARGS))(
            **self.STATIC_KWARGS, **self.INJECT_KWARGS))
    chex.assert_trees_all_close(injected, plain, rtol=1e-5)

  def test_no_jit_matches_jit(self):
    """Op by op and jitted, four steps (Alada: two p and two q refits)."""
    params = {'w': jnp.linspace(-1, 1, 12).reshape(3, 4), 'b': jnp.ones(4)}
    opt = self.alias(0.1, weight_decay=1e-3)
    s1 = s2 = opt.init(params)
    p1 = p2 = params
    for t in range(4):
      grads = jax.tree.map(lambda x: jnp.sin(x * (t + 1)), p1)
      u1, s1 = opt.update(grads, s1, p1)
      u2, s2 = jax.jit(opt.update)(grads, s2, p2)
      chex.assert_trees_all_close(u1, u2, rtol=1e-6, atol=1e-7)
      p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)

  def test_bf16_params_train(self):
    params = jnp.zeros((8, 8), jnp.bfloat16)
    target = jnp.linspace(-1, 1, 64, dtype=jnp.float32).reshape(8, 8)
    loss = lambda p: jnp.sum((p.astype(jnp.float32) - target) ** 2)
    opt = self.alias(3e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
      updates, state = opt.update(jax.grad(loss)(params), state, params)
      return optax.apply_updates(params, updates), state

    for _ in range(300):
      params, state = step(params, state)
    assert params.dtype == jnp.bfloat16
    assert float(loss(params)) < 0.05 * float(loss(jnp.zeros((8, 8))))

  def test_weight_decay_mask(self):
    params = {'w': jnp.ones((2, 3)), 'b': jnp.ones(3)}
    grads = jax.tree.map(jnp.zeros_like, params)  # only weight decay moves
    opt = self.alias(0.1, weight_decay=0.5, mask={'w': True, 'b': False})
    updates, _ = opt.update(grads, opt.init(params), params)
    np.testing.assert_allclose(updates['w'], -0.05 * np.ones((2, 3)),
                               rtol=1e-6)
    np.testing.assert_array_equal(updates['b'], np.zeros(3))

  def test_none_leaves_and_masked_pass_through(self):
    params = {'w': jnp.ones((2, 3)), 'frozen': None,
              'step': jnp.ones((), jnp.int32)}
    masked = optax.masked(self.alias(0.1),
                          {'w': True, 'frozen': False, 'step': False})
    grads = {'w': jnp.ones((2, 3)), 'frozen': None,
             'step': jnp.zeros((), jnp.int32)}
    state = masked.init(params)
    updates, _ = jax.jit(masked.update)(grads, state, params)
    assert updates['frozen'] is None
    assert updates['w'].shape == (2, 3)

    multi = optax.multi_transform(
        {'opt': self.alias(0.1), 'sgd': optax.sgd(0.1)},
        {'w': 'opt', 'b': 'sgd'})
    p2 = {'w': jnp.ones((2, 3)), 'b': jnp.ones(3)}
    u2, _ = multi.update(p2, multi.init(p2), p2)
    np.testing.assert_allclose(u2['b'], -0.1 * np.ones(3), rtol=1e-6)

  def test_integer_leaf_is_named(self):
    params = {'layer': {'w': jnp.ones((2, 2)),
                        'step': jnp.ones((), jnp.int32)}}
    with pytest.raises(TypeError,
                       match=self.NAME + r".*\['layer'\]\['step'\].*int32"):
      self.alias(0.1).init(params)
    with pytest.raises(TypeError, match=r"\['flag'\].*bool"):
      self.alias(0.1).init({'flag': jnp.array([True])})

  def test_mismatched_grads_are_named(self):
    opt = self.alias(0.1)
    state = opt.init({'a': jnp.ones((2, 2)), 'b': jnp.ones(3)})
    with pytest.raises(ValueError, match=r"no leaf \['b'\]"):
      opt.update({'a': jnp.ones((2, 2))}, state)
    with pytest.raises(ValueError,
                       match=r"\['c'\] that the optimizer state lacks"):
      opt.update({'a': jnp.ones((2, 2)), 'b': jnp.ones(3), 'c': jnp.ones(1)},
                 state)
    with pytest.raises(ValueError, match=r"\['b'\] has shape \(4,\)"):
      opt.update({'a': jnp.ones((2, 2)), 'b': jnp.ones(4)}, state)
    with pytest.raises(TypeError, match=r"\['b'\].*int32"):
      opt.update({'a': jnp.ones((2, 2)), 'b': jnp.ones(3, jnp.int32)}, state)

  def test_state_from_another_optimizer(self):
    params = jnp.ones((2, 2))
    with pytest.raises(TypeError, match='ScaleByAdamState'):
      type(self).SCALE_BY().update(params, optax.scale_by_adam().init(params))
