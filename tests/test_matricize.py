"""Tests of alada_optax.matricize: eq. (12) and the broadcast/reduce plans."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from alada_optax import matricize
from alada_optax.matricize import MatrixDimensionNumbers, plan_for


@pytest.mark.parametrize('shape, m, n', [
    ((), 1, 1),
    ((7,), 1, 7),
    ((4, 6), 4, 6),
    ((6, 4), 6, 4),
    ((5, 1), 5, 1),
    ((2, 3, 4), 6, 4),  # |2-12|=10, |6-4|=2
    ((2, 5, 2), 2, 10),  # tie |2-10| = |10-2|: first split
    ((3, 3, 64, 128), 576, 128),  # conv kernel: |9-8192|,|576-128|,|36864-... |
    ((2, 3, 2, 5), 6, 10),
    ((768, 2304), 768, 2304),
])
def test_eq12(shape, m, n):
  plan = plan_for(shape)
  assert (plan.m, plan.n) == (m, n)
  assert plan.batch_shape == ()
  # Rows are a prefix of the axes and columns the rest: a copy-free reshape.
  assert plan.row_axes + plan.col_axes == tuple(range(len(shape)))


def _numpy_matrices(x, plan):
  """Reference: transpose to (batch, rows, cols) and reshape, with numpy."""
  order = plan.batch_axes + plan.row_axes + plan.col_axes
  b = math.prod(plan.batch_shape)
  return np.transpose(x, order).reshape(b, plan.m, plan.n)


@pytest.mark.parametrize('shape, dim_nums', [
    ((2, 3, 4), None),
    ((5,), None),
    ((), None),
    ((3, 4, 5), MatrixDimensionNumbers(1, 2)),  # stacked layers
    ((4, 3, 5), MatrixDimensionNumbers(row_axis=0, col_axis=2)),  # heads
    ((2, 3, 4, 5), MatrixDimensionNumbers(row_axis=(3, 1), col_axis=0)),
    ((6, 4), MatrixDimensionNumbers(row_axis=(), col_axis=-1)),
])
def test_plan_matches_explicit_matrices(shape, dim_nums):
  rng = np.random.default_rng(0)
  plan = plan_for(shape, dim_nums)
  x = rng.normal(size=shape)
  p = rng.normal(size=plan.row_factor_shape)
  q = rng.normal(size=plan.col_factor_shape)
  s = rng.normal(size=plan.batch_shape)
  mats = _numpy_matrices(x, plan)
  b = mats.shape[0]
  p2, q2, s2 = p.reshape(b, -1), q.reshape(b, -1), s.reshape(b)

  np.testing.assert_allclose(
      plan.sum_over_cols(jnp.asarray(x)).reshape(b, -1), mats.sum(2),
      rtol=1e-5)
  np.testing.assert_allclose(
      plan.sum_over_rows(jnp.asarray(x)).reshape(b, -1), mats.sum(1),
      rtol=1e-5)
  np.testing.assert_allclose(
      plan.sum_per_matrix(jnp.asarray(x)).reshape(b), mats.sum((1, 2)),
      rtol=1e-5, atol=1e-6)
  outer = (jnp.broadcast_to(plan.expand_rows(jnp.asarray(p)), shape)
           * plan.expand_cols(jnp.asarray(q)) * plan.expand_batch(
               jnp.asarray(s)))
  np.testing.assert_allclose(
      _numpy_matrices(np.asarray(outer), plan),
      p2[:, :, None] * q2[:, None, :] * s2[:, None, None], rtol=1e-5)


@pytest.mark.parametrize('shape, dim_nums', [
    ((3, 8), None),  # the last axis a column axis
    ((2, 3, 8), MatrixDimensionNumbers(1, 2)),  # stacked layers
    ((4, 3, 8), MatrixDimensionNumbers(row_axis=(2, 0), col_axis=1)),  # rows
])
def test_split_last_is_the_same_matrices(shape, dim_nums):
  """The last axis viewed as (size // k, k): the same sums and broadcasts."""
  rng = np.random.default_rng(1)
  plan = plan_for(shape, dim_nums)
  split = plan.split_last(4)
  x = jnp.asarray(rng.normal(size=shape))
  y = x.reshape(shape[:-1] + (2, 4))
  p = jnp.asarray(rng.normal(size=plan.row_factor_shape))
  q = jnp.asarray(rng.normal(size=plan.col_factor_shape))
  assert (split.m, split.n, split.batch_shape) == (plan.m, plan.n,
                                                   plan.batch_shape)
  for reduce in ('sum_over_cols', 'sum_over_rows', 'sum_per_matrix'):
    np.testing.assert_allclose(getattr(split, reduce)(y),
                               getattr(plan, reduce)(x), rtol=1e-6)
  for expand, f in (('expand_rows', p), ('expand_cols', q)):
    np.testing.assert_array_equal(
        jnp.broadcast_to(getattr(split, expand)(f), y.shape).reshape(shape),
        jnp.broadcast_to(getattr(plan, expand)(f), shape))
  with pytest.raises(ValueError, match='split'):
    plan.split_last(3)
  with pytest.raises(ValueError, match='split'):  # a batch axis
    plan_for((4, 6, 8), MatrixDimensionNumbers(0, 1)).split_last(4)


def test_bad_dimension_numbers():
  with pytest.raises(ValueError, match='twice'):
    plan_for((3, 4), MatrixDimensionNumbers(0, 0))
  with pytest.raises(ValueError, match='out of range'):
    plan_for((3, 4), MatrixDimensionNumbers(0, 2))


def test_tree_plans_prefix_and_callable():
  params = {'stack': jnp.zeros((3, 4, 5)), 'b': jnp.zeros(5), 'none': None}
  plans = matricize.tree_plans(
      params, {'stack': MatrixDimensionNumbers(1, 2), 'b': None, 'none': None})
  assert plans['stack'].batch_shape == (3,)
  assert (plans['b'].m, plans['b'].n) == (1, 5)
  assert plans['none'] is None
  plans = matricize.tree_plans(
      params, lambda p: {k: None for k in p})
  assert plans['stack'].batch_shape == ()
