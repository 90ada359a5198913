"""Tests of alada_optax.smmf: a float64 NumPy transcription, optax habits."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alada_optax.smmf import ScaleBySMMFState, scale_by_smmf, smmf, square_shape
from benchmarks.harness import tree_bytes
from benchmarks.state_bytes import as_params
from benchmarks.state_bytes import gpt2_small
from tests import transform_checks
from tests.optax_checks import OptaxCommonChecks
from tests import trajectories

# -- the float64 NumPy transcription of the official SMMF step ---------------


class SMMFLeaf:
  """One parameter's SMMF state and step, transcribed from the official code
  (eai-lab/SMMF, ``SMMF._factorized_adam`` and ``SMMF._adam``) in float64.

  Kept independent of the module under test: the effective shape is the
  official float-sqrt loop, the sign is a bool matrix (not packed bits), and
  the unfactored path keeps dense moments.
  """

  def __init__(self, shape, vector_reshape=True, beta=0.9, eps=1e-8,
               decay_rate=-0.5, growth_rate=0.999):
    self.shape = tuple(shape)
    self.beta, self.eps = beta, eps
    self.decay_rate, self.growth_rate = decay_rate, growth_rate
    self.step_count = 1.0
    squeezed = [k for k in self.shape if k != 1]
    self.factorized = not (len(squeezed) == 1 and not vector_reshape)
    numel = int(np.prod(self.shape))
    if self.factorized:
      self.eff = self._effective_shape(numel)
      self.m = (np.zeros(self.eff[0]), np.zeros(self.eff[1]))
      self.sign = np.zeros(self.eff, dtype=bool)
      self.v = (np.zeros(self.eff[0]), np.zeros(self.eff[1]))
    else:
      self.m = np.zeros(self.shape)
      self.v = np.zeros(self.shape)

  @staticmethod
  def _effective_shape(numel):
    sqrt_num = int(numel**0.5) ** 2
    if numel == sqrt_num:
      return (int(numel**0.5),) * 2
    for i in reversed(range(1, int(numel**0.5) + 1)):
      if numel % i == 0:
        return (numel // i, i)
    return (numel, 1)

  @staticmethod
  def _nnmf(matrix):
    row, col = matrix.sum(axis=1), matrix.sum(axis=0)
    if matrix.shape[0] < matrix.shape[1]:
      scale = row.sum()
      if scale != 0:
        row = row / scale
    else:
      scale = col.sum()
      if scale != 0:
        col = col / scale
    return row, col

  def rates(self):
    beta_m = self.beta * self.growth_rate ** (self.step_count - 1.0)
    beta_v = 1.0 - self.step_count**self.decay_rate
    return beta_m, beta_v

  def step(self, grad):
    """Returns the official ``update`` (the step is ``-lr * update``)."""
    beta_m, beta_v = self.rates()
    if self.factorized:
      grad = grad.reshape(self.eff)
      m = np.outer(*self.m)
      m = np.where(self.sign, m, -m)
      v = np.outer(*self.v)
      m = m * beta_m + grad * (1.0 - beta_m)
      v = v * beta_v + grad**2 * (1.0 - beta_v)
      self.sign = m > 0
      self.m = self._nnmf(np.abs(m))
      self.v = self._nnmf(v)
    else:
      m = self.m * beta_m + grad * (1.0 - beta_m)
      v = self.v * beta_v + grad**2 * (1.0 - beta_v)
      self.m, self.v = m, v
    update = m / (np.sqrt(v) + self.eps)
    self.step_count += 1.0
    return update.reshape(self.shape)


def smmf_step(x0, **kwargs):
  """The official step of every leaf of ``x0``: ``(reference_step, leaves)``.

  The official training loop (decoupled 'adamw' decay ``p *= 1 - lr wd``,
  then ``p -= lr update``) is :func:`tests.trajectories.run_reference`'s
  ``p -= lr (update + wd p)``.
  """
  leaves = {k: SMMFLeaf(np.shape(v), **kwargs) for k, v in x0.items()}
  return (lambda g, t: {k: leaves[k].step(g[k]) for k in g}), leaves


# -- helpers ------------------------------------------------------------------

SHAPES = {
    'matrix': (4, 6),  # 24 -> 6 x 4
    'tensor3': (2, 3, 5),  # 30 -> 6 x 5
    'conv': (3, 3, 2, 4),  # 72 -> 9 x 8
    'square': (3, 3),  # 9 -> 3 x 3
    'prime': (7,),  # 7 -> 7 x 1
    'vector': (16,),  # 16 -> 4 x 4
    'row_vector': (1, 6),  # 6 -> 3 x 2; a "vector" for vector_reshape=False
    'scalar': (),  # 1 x 1
}


def _unpacked_sign(packed, shape2):
  bits = np.unpackbits(np.asarray(packed), count=math.prod(shape2))
  return bits.reshape(shape2).astype(bool)


# -- exactness against the float64 transcription -----------------------------

@pytest.mark.parametrize(
    'make_opt, kwargs',
    [
        pytest.param(lambda lr, wd, **kw: smmf(lr, weight_decay=wd, **kw), {},
                     id='alias'),
        pytest.param(
            lambda lr, wd, **kw: optax.chain(
                scale_by_smmf(**kw), optax.add_decayed_weights(wd),
                optax.scale_by_learning_rate(lr)),
            dict(beta=0.8, eps=1e-6, decay_rate=-0.8, growth_rate=0.99),
            id='chain-transformer-rates'),
        pytest.param(lambda lr, wd, **kw: smmf(lr, weight_decay=wd, **kw),
                     dict(vector_reshape=False), id='no-vector-reshape'),
    ],
)
def test_matches_float64_transcription(make_opt, kwargs):
  steps, wd = 40, 1e-2
  lr = lambda t: 0.05 - (0.05 / 60) * t
  x0, grad_fn = trajectories.quadratic_problem(SHAPES)
  step, leaves = smmf_step(x0, **kwargs)
  _, _, state = trajectories.compare_with_reference(
      make_opt(lr, wd, **kwargs), step, x0, grad_fn, steps, lr,
      weight_decay=wd, tol=1e-10)
  s = state[0]
  for k, leaf in leaves.items():
    if not leaf.factorized:  # exact (numel x 1) storage of the dense moments
      m = np.asarray(s.m_row[k]) * np.asarray(s.m_col[k])
      m = np.where(_unpacked_sign(s.m_sign[k], (m.size, 1))[:, 0], m, -m)
      np.testing.assert_allclose(m, leaf.m.reshape(-1), rtol=1e-10)
      np.testing.assert_allclose(
          np.asarray(s.v_row[k]) * np.asarray(s.v_col[k]),
          leaf.v.reshape(-1), rtol=1e-10)
      continue
    np.testing.assert_allclose(s.m_row[k], leaf.m[0], rtol=1e-10)
    np.testing.assert_allclose(s.m_col[k], leaf.m[1], rtol=1e-10)
    np.testing.assert_allclose(s.v_row[k], leaf.v[0], rtol=1e-10)
    np.testing.assert_allclose(s.v_col[k], leaf.v[1], rtol=1e-10)
    np.testing.assert_array_equal(_unpacked_sign(s.m_sign[k], leaf.eff),
                                  leaf.sign)


def test_vector_reshape_false_is_unfactored_adam():
  """The transcription's dense path really differs from the factored one."""
  x0, grad_fn = trajectories.quadratic_problem({'v': (16,)})
  factored = trajectories.run_reference(smmf_step(x0)[0], x0, grad_fn, 5, 0.05)
  dense = trajectories.run_reference(smmf_step(x0, vector_reshape=False)[0],
                                     x0, grad_fn, 5, 0.05)
  assert trajectories.max_rel_err(factored[-1], dense[-1]) > 1e-6


@pytest.mark.parametrize('numel', [0, 1, 2, 3, 4, 6, 7, 12, 24, 30, 72, 97,
                                   768, 2304, 3072, 50257, 50257 * 768,
                                   1024 * 1024, 2**31 - 1, 4096 * 11008])
def test_square_shape(numel):
  rows, cols = square_shape(numel)
  assert rows * cols == numel
  assert (rows, cols) == SMMFLeaf._effective_shape(numel)
  if numel:
    assert cols <= math.isqrt(numel) <= rows
    # No divisor of numel lies strictly between cols and sqrt(numel).
    assert not any(numel % i == 0
                   for i in range(cols + 1, math.isqrt(numel) + 1))


# -- state bytes --------------------------------------------------------------

def _smmf_bytes(shape):
  """Two rank-one factor pairs in float32 plus one sign bit per entry."""
  rows, cols = square_shape(math.prod(shape))
  return 2 * 4 * (rows + cols) + -(-math.prod(shape) // 8)


def test_state_bytes_1024x1024():
  params = jax.ShapeDtypeStruct((1024, 1024), jnp.float32)
  state = jax.eval_shape(smmf(1e-3).init, params)
  smmf_state = state[0]
  assert smmf_state.m_sign.dtype == jnp.uint8
  assert smmf_state.m_sign.shape == (1024 * 1024 // 8,)
  n_bytes = tree_bytes(smmf_state)
  assert n_bytes == _smmf_bytes((1024, 1024)) + 4  # + count
  # 1 bit per entry for the signs + 4 vectors of 1024 float32.
  assert n_bytes == 1024 * 1024 // 8 + 4 * 1024 * 4 + 4
  assert n_bytes / (1024 * 1024) < 0.141  # bytes/param; Adam: 8
  # The chained transformations (decay, lr) add only their counters.
  assert tree_bytes(state) - n_bytes <= 8


def test_state_bytes_gpt2_small():
  params = jax.tree.leaves(as_params(gpt2_small()))
  shapes = [p.shape for p in params]
  state = jax.eval_shape(scale_by_smmf().init, params)
  n_params = sum(math.prod(s) for s in shapes)
  n_bytes = tree_bytes(state)
  assert n_bytes == sum(_smmf_bytes(s) for s in shapes) + 4
  # ~124M params: the signs are 1 bit each, the factors 4 float32 vectors of
  # ~sqrt(N) per leaf: 1.075 bits/param in all, 1.7% of Adam's 64.
  assert n_params / 8 < n_bytes < n_params / 8 * 1.08
  adam_bytes = tree_bytes(jax.eval_shape(optax.adam(1e-3).init, params))
  assert n_bytes < adam_bytes / 55


def test_sign_bits_are_the_signs_of_m():
  """The bits are M > 0 row-major over the matrix view, 8 to a byte."""
  g = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7)), jnp.float32)
  _, state = jax.jit(scale_by_smmf().update)(g, scale_by_smmf().init(g))
  # First step: M = (1 - beta) G exactly, so the signs are those of G.
  np.testing.assert_array_equal(
      _unpacked_sign(state.m_sign, square_shape(35)),
      np.asarray(g).reshape(square_shape(35)) > 0)
  assert state.m_sign.shape == (5,)  # ceil(35 / 8)


# -- edge cases ---------------------------------------------------------------

def test_zero_and_extreme_gradients_stay_finite():
  shapes = {'m': (8, 8), 't': (3, 5, 7), 'v': (6,), 's': ()}
  rng = np.random.default_rng(0)
  g0 = {k: jnp.asarray(rng.normal(size=s), jnp.float32)
        for k, s in shapes.items()}
  params = jax.tree.map(jnp.zeros_like, g0)
  opt = smmf(1e-2)
  state = opt.init(params)
  update = jax.jit(opt.update)
  for t, scale in enumerate([0.0, 1e-30, 1e15, 0.0, -1.0]):
    grads = jax.tree.map(lambda g: g * scale, g0)
    updates, state = update(grads, state, params)
    if t == 0:  # M = V = 0: a step of 0 / (0 + eps) = 0
      for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, 0)
    params = optax.apply_updates(params, updates)
    for leaf in jax.tree.leaves((updates, state, params)):
      assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


# -- optax habits -------------------------------------------------------------

def test_dtypes():
  dtypes = {'f32': jnp.float32, 'bf16': jnp.bfloat16, 'f16': jnp.float16}
  params = {k: {'w': jnp.ones((4, 3), d), 'b': jnp.ones((3,), d)}
            for k, d in dtypes.items()}
  grads = jax.tree.map(lambda x: x * 0.5, params)
  opt = smmf(1e-2)
  state = opt.init(params)
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  s = new_state[0]
  for x in jax.tree.leaves((s.m_row, s.m_col, s.v_row, s.v_col)):
    assert x.dtype == jnp.float32
  for x in jax.tree.leaves(s.m_sign):
    assert x.dtype == jnp.uint8
  chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
  for x in jax.tree.leaves(updates):  # first step: (1 - beta) G / |G|
    np.testing.assert_allclose(np.asarray(x, np.float32), -1e-3, rtol=1e-2)


def test_float64_factors_stay_float64():
  with jax.enable_x64(True):
    state = scale_by_smmf().init({'w': jnp.ones((2, 3), jnp.float64)})
    assert state.m_row['w'].dtype == jnp.float64
    assert state.v_col['w'].dtype == jnp.float64


def test_state_fields():
  assert ScaleBySMMFState._fields == (
      'count', 'm_row', 'm_col', 'm_sign', 'v_row', 'v_col', 'shape')


class TestSMMFOptaxChecks(OptaxCommonChecks):
  OPTIMIZERS = [
      pytest.param(smmf, {'learning_rate': 1e-3}, id='smmf'),
  ]


class TestSMMFTransform(transform_checks.TransformChecks):
  ALIAS = smmf
  SCALE_BY = scale_by_smmf
  NAME = 'scale_by_smmf'
  INJECT_KWARGS = dict(learning_rate=0.05, beta=0.8, decay_rate=-0.8,
                       growth_rate=0.99, weight_decay=1e-2)
