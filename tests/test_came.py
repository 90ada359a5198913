"""Tests of alada_optax.came: a float64 NumPy transcription, optax habits."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alada_optax.came import ScaleByCAMEState, came, scale_by_came
from benchmarks.harness import tree_bytes
from tests import transform_checks
from tests.optax_checks import OptaxCommonChecks
from tests import trajectories

# -- the float64 NumPy transcription of the official CAME step ----------------


class CameLeaf:
  """One parameter's CAME state and step, transcribed from the official code
  (yangluo7/CAME, ``CAME.step``) in float64, for the leaf's own axes (no
  matrix-view helpers: means over ``axis=-1`` and ``axis=-2``)."""

  def __init__(self, shape, b1=0.9, b2=0.999, b3=0.9999, eps1=1e-30,
               eps2=1e-16, clipping_threshold=1.0):
    self.shape = tuple(shape)
    self.b1, self.b2, self.b3 = b1, b2, b3
    self.eps1, self.eps2, self.d = eps1, eps2, clipping_threshold
    self.factored = len(self.shape) >= 2
    self.exp_avg = np.zeros(self.shape)
    if self.factored:
      self.sq_row = np.zeros(self.shape[:-1])
      self.sq_col = np.zeros(self.shape[:-2] + self.shape[-1:])
      self.res_row = np.zeros(self.shape[:-1])
      self.res_col = np.zeros(self.shape[:-2] + self.shape[-1:])
    else:
      self.sq = np.zeros(self.shape)
    self.clipped = []  # whether each step's update was clipped

  @staticmethod
  def _rms(x):
    return np.linalg.norm(x.reshape(-1)) / math.sqrt(x.size)

  @staticmethod
  def _approx_sq_grad(row, col):
    r = 1.0 / np.sqrt(row / row.mean(axis=-1, keepdims=True))
    return r[..., :, None] * (1.0 / np.sqrt(col))[..., None, :]

  def step(self, grad):
    """Returns the official ``update`` (the step is ``-lr * update``)."""
    update = grad**2 + self.eps1
    if self.factored:
      self.sq_row = self.b2 * self.sq_row + (1 - self.b2) * update.mean(-1)
      self.sq_col = self.b2 * self.sq_col + (1 - self.b2) * update.mean(-2)
      update = self._approx_sq_grad(self.sq_row, self.sq_col) * grad
    else:
      self.sq = self.b2 * self.sq + (1 - self.b2) * update
      update = grad / np.sqrt(self.sq)
    if self.d is not None:
      scale = max(self._rms(update) / self.d, 1.0)
      self.clipped.append(scale > 1.0)
      update = update / scale
    self.exp_avg = self.b1 * self.exp_avg + (1 - self.b1) * update
    res = (update - self.exp_avg) ** 2 + self.eps2
    if self.factored:
      self.res_row = self.b3 * self.res_row + (1 - self.b3) * res.mean(-1)
      self.res_col = self.b3 * self.res_col + (1 - self.b3) * res.mean(-2)
      return self._approx_sq_grad(self.res_row, self.res_col) * self.exp_avg
    return self.exp_avg.copy()


def came_step(x0, **kwargs):
  """The official step of every leaf of ``x0``: ``(reference_step, leaves)``.

  The official loop (``p -= wd lr p``, then ``p -= lr update``) is
  :func:`tests.trajectories.run_reference`'s ``p -= lr (update + wd p)``.
  """
  leaves = {k: CameLeaf(np.shape(v), **kwargs) for k, v in x0.items()}
  return (lambda g, t: {k: leaves[k].step(g[k]) for k in g}), leaves


# -- helpers ------------------------------------------------------------------

SHAPES = {
    'matrix': (4, 6),
    'stacked': (2, 3, 5),  # two 3 x 5 matrices
    'conv': (3, 1, 2, 4),  # HWIO: 3 x 1 batch of 2 x 4 matrices
    'row': (1, 5),  # factored, one row
    'col': (5, 1),  # factored, one column
    'vector': (7,),  # unfactored
    'scalar': (),  # unfactored
}


# -- exactness against the float64 transcription -----------------------------

@pytest.mark.parametrize(
    'make_opt, kwargs',
    [
        pytest.param(lambda lr, wd, **kw: came(lr, weight_decay=wd, **kw), {},
                     id='alias-defaults'),
        # Fast second moment and a larger d: clipped and unclipped steps mix.
        pytest.param(
            lambda lr, wd, **kw: optax.chain(
                scale_by_came(**kw), optax.add_decayed_weights(wd),
                optax.scale_by_learning_rate(lr)),
            dict(b1=0.8, b2=0.6, b3=0.9, eps1=1e-20, eps2=1e-10,
                 clipping_threshold=1.3),
            id='chain-clipping-mixed'),
        pytest.param(lambda lr, wd, **kw: came(lr, weight_decay=wd, **kw),
                     dict(clipping_threshold=None), id='no-clipping'),
    ],
)
def test_matches_float64_transcription(make_opt, kwargs):
  steps, wd = 30, 1e-2
  lr = lambda t: 0.05 - (0.05 / 60) * t
  x0, grad_fn = trajectories.quadratic_problem(SHAPES)
  step, leaves = came_step(x0, **kwargs)
  _, _, state = trajectories.compare_with_reference(
      make_opt(lr, wd, **kwargs), step, x0, grad_fn, steps, lr,
      weight_decay=wd, tol=1e-10)
  s = state[0]
  for k, leaf in leaves.items():
    np.testing.assert_allclose(s.mu[k], leaf.exp_avg, rtol=1e-10)
    if leaf.factored:
      np.testing.assert_allclose(s.v_row[k], leaf.sq_row, rtol=1e-10)
      np.testing.assert_allclose(s.v_col[k], leaf.sq_col, rtol=1e-10)
      np.testing.assert_allclose(s.res_row[k], leaf.res_row, rtol=1e-10)
      np.testing.assert_allclose(s.res_col[k], leaf.res_col, rtol=1e-10)
    else:
      np.testing.assert_allclose(s.v[k], leaf.sq, rtol=1e-10)
  if kwargs.get('clipping_threshold', 1.0) == 1.3:
    clipped = [c for leaf in leaves.values() for c in leaf.clipped]
    assert any(clipped) and not all(clipped)  # both branches exercised
  elif 'clipping_threshold' not in kwargs:
    # Without bias correction the first updates have RMS ~ 1/sqrt(1 - b2).
    assert all(leaf.clipped[0] for leaf in leaves.values())


# -- state bytes --------------------------------------------------------------

def _came_bytes(shape):
  """mu (float32) + 4 factor vectors per matrix, or mu + v for a vector."""
  if len(shape) < 2:
    return 4 * 2 * math.prod(shape) + 4 * 4  # + 4 (1,) placeholders
  batch = math.prod(shape[:-2])
  return (4 * math.prod(shape) + 4 * 2 * batch * (shape[-2] + shape[-1])
          + 4)  # + the (1,) placeholder for v


def test_state_bytes_1024x1024():
  params = jax.ShapeDtypeStruct((1024, 1024), jnp.float32)
  state = jax.eval_shape(came(1e-3).init, params)[0]
  n_bytes = tree_bytes(state)
  assert n_bytes == _came_bytes((1024, 1024)) + 4  # + count
  assert n_bytes == 4 * 1024 * 1024 + 4 * 4 * 1024 + 4 + 4
  assert 4.0 < n_bytes / (1024 * 1024) < 4.02  # bytes/param; Adam: 8
  bf16 = jax.eval_shape(came(1e-3, mu_dtype=jnp.bfloat16).init, params)[0]
  assert tree_bytes(bf16) == n_bytes - 2 * 1024 * 1024


def test_state_bytes_gpt2_small():
  d, vocab, ctx = 768, 50257, 1024
  block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,),
           (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
  shapes = [(vocab, d), (ctx, d), (d,), (d,)] + block * 12
  params = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  state = jax.eval_shape(scale_by_came().init, params)
  n_params = sum(math.prod(s) for s in shapes)
  n_bytes = tree_bytes(state)
  assert n_bytes == sum(_came_bytes(s) for s in shapes) + 4
  # mu (4 bytes/param) + the factors, + an exact v for the 0.1% in vectors.
  assert 4.0 < n_bytes / n_params < 4.02  # about half of Adam's 8


def test_state_layout():
  params = {'w': jnp.zeros((2, 3, 5)), 'b': jnp.zeros(5), 's': jnp.zeros(())}
  s = scale_by_came().init(params)
  assert ScaleByCAMEState._fields == (
      'count', 'mu', 'v_row', 'v_col', 'v', 'res_row', 'res_col')
  chex.assert_shape([s.mu['w'], s.v_row['w'], s.v_col['w'], s.v['w']],
                    [(2, 3, 5), (2, 3), (2, 5), (1,)])
  chex.assert_shape([s.res_row['w'], s.res_col['w']], [(2, 3), (2, 5)])
  chex.assert_shape([s.v['b'], s.v_row['b'], s.res_col['b'], s.v['s']],
                    [(5,), (1,), (1,), ()])


def test_unfactored_leaves_step_by_mu():
  """Vectors and scalars have no confidence matrix: the direction is mu."""
  params = {'b': jnp.zeros(5), 's': jnp.zeros(())}
  opt = scale_by_came()
  state = opt.init(params)
  update = jax.jit(opt.update)
  for t in range(3):
    grads = {'b': jnp.arange(5.0) - 2 + t, 's': jnp.asarray(0.5 - t)}
    direction, state = update(grads, state)
    chex.assert_trees_all_close(direction, state.mu, rtol=1e-7)


# -- edge cases ---------------------------------------------------------------

def test_zero_and_extreme_gradients_stay_finite():
  shapes = {'m': (8, 8), 't': (3, 5, 7), 'v': (6,), 's': ()}
  rng = np.random.default_rng(0)
  g0 = {k: jnp.asarray(rng.normal(size=s), jnp.float32)
        for k, s in shapes.items()}
  params = jax.tree.map(jnp.zeros_like, g0)
  opt = came(1e-2)
  state = opt.init(params)
  update = jax.jit(opt.update)
  for t, scale in enumerate([0.0, 1e-30, 1e15, 0.0, -1.0]):
    grads = jax.tree.map(lambda g: g * scale, g0)
    updates, state = update(grads, state, params)
    if t == 0:  # a first gradient of 0 gives a step of 0
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
  for mu_dtype in [None, jnp.bfloat16]:
    opt = came(1e-2, mu_dtype=mu_dtype)
    state = opt.init(params)
    updates, new_state = jax.jit(opt.update)(grads, state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    s = new_state[0]
    for k, d in dtypes.items():
      want_mu = d if mu_dtype is None else mu_dtype
      assert all(x.dtype == want_mu for x in jax.tree.leaves(s.mu[k]))
    for x in jax.tree.leaves((s.v_row, s.v_col, s.v, s.res_row, s.res_col)):
      assert x.dtype == jnp.float32
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)


def test_float64_factors_stay_float64():
  with jax.enable_x64(True):
    state = scale_by_came().init({'w': jnp.ones((2, 3), jnp.float64)})
    assert state.v_row['w'].dtype == jnp.float64
    assert state.res_col['w'].dtype == jnp.float64


class TestCameOptaxChecks(OptaxCommonChecks):
  OPTIMIZERS = [
      pytest.param(came, {'learning_rate': 1e-3}, id='came'),
  ]


class TestCAMETransform(transform_checks.TransformChecks):
  ALIAS = came
  SCALE_BY = scale_by_came
  NAME = 'scale_by_came'
  INJECT_KWARGS = dict(learning_rate=0.05, b1=0.8, b2=0.9, b3=0.99,
                       clipping_threshold=0.5, weight_decay=1e-2)
