"""Tests of alada_optax.adapprox.

The float64 NumPy transcription below (``AdapproxLeaf``) follows the readings
documented in ``adapprox``: it reshapes each tensor to its matrix explicitly,
runs the subspace iteration with NumPy's QR and truncates with an SVD of the
small ``B = A^T Q`` (the package uses the eigen-decomposition of ``B^T B``).
Only the random sketches come from ``jax.random``, derived from the seed the
way the package documents (split the key each step; leaf ``i`` uses
``fold_in(step_key, i)``), so that both sides see the same matrices.
"""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alada_optax import matricize
from alada_optax.adapprox import ScaleByAdapproxState
from alada_optax.adapprox import adapprox
from alada_optax.adapprox import as_rsi
from alada_optax.adapprox import scale_by_adapprox
from tests.alada_reference import eq12
from benchmarks.state_bytes import as_params
from benchmarks.state_bytes import gpt2_small
from benchmarks.state_bytes import state_bytes
from tests import trajectories
from tests import transform_checks
from tests.optax_checks import OptaxCommonChecks

# Static (shape-setting) hyperparameters (also in tests.optax_checks).
STATIC = ('max_rank', 'oversample', 'power_iterations',
          'min_dim_size_to_factor')


# -- the float64 transcription -------------------------------------------------


class AdapproxLeaf:
  """Adapprox for one tensor in float64."""

  def __init__(self, shape, *, b1, b2, eps, clip, tol, min_rank, max_rank,
               oversample, iters, min_dim):
    self.shape = tuple(shape)
    self.b1, self.b2, self.eps, self.clip = b1, b2, eps, clip
    self.tol, self.min_rank, self.K = tol, min_rank, max_rank
    self.iters = iters
    if len(self.shape) >= 2:
      self.m, self.n = eq12(self.shape)
    else:
      self.m, self.n = 1, math.prod(self.shape)
    short = min(self.m, self.n)
    self.factored = (len(self.shape) >= 2 and max_rank < short
                     and short >= min_dim)
    self.width = min(max_rank + oversample, short)
    self.QUt = np.zeros((self.m, self.n))  # the stored Q U^T
    self.nu = np.zeros(self.shape)
    self.M = np.zeros(self.shape)
    self.rank = 0

  def refit(self, V, sketch):
    scale = np.max(np.abs(V)) or 1.0
    A = V / scale
    Q = np.linalg.qr(A @ sketch)[0]
    for _ in range(self.iters):
      Q = np.linalg.qr(A @ (A.T @ Q))[0]
    B = A.T @ Q
    _, s, zt = np.linalg.svd(B, full_matrices=False)
    energy = np.cumsum(s[: self.K] ** 2)
    ok = np.nonzero(energy >= (1 - self.tol**2) * np.sum(A * A))[0]
    k = ok[0] + 1 if len(ok) else self.K
    k = int(np.clip(k, self.min_rank, self.K))
    Z = zt.T[:, :k]
    self.rank = k
    self.QUt = (Q @ Z) @ (B @ Z).T * scale

  def step(self, g, sketch):
    if self.factored:
      G = g.reshape(self.m, self.n)
      V = self.b2 * np.maximum(self.QUt, 0) + (1 - self.b2) * G**2
      self.refit(V, sketch)
      u = G / (np.sqrt(V) + self.eps)
    else:
      self.nu = self.b2 * self.nu + (1 - self.b2) * g**2
      u = g / (np.sqrt(self.nu) + self.eps)
    rms = np.sqrt(np.mean(u**2))
    u = (u / max(1.0, rms / self.clip)).reshape(self.shape)
    if self.b1 is None:
      return u
    self.M = self.b1 * self.M + (1 - self.b1) * u
    return self.M


def sketches(seed, names_in_leaf_order, leaves, steps):
  """The package's sketches, drawn with jax.random (float64, under x64):
  each step splits the key and one normal draw is cut, in leaf order, into
  the factored leaves' ``n x w`` sketches."""
  shapes = [(k, (leaves[k].n, leaves[k].width)) for k in names_in_leaf_order
            if leaves[k].factored]
  total = sum(math.prod(s) for _, s in shapes)
  draw = jax.jit(lambda key: jax.random.split(key))
  normal = jax.jit(lambda key: jax.random.normal(key, (total,), jnp.float64))
  out = []
  with jax.enable_x64(True):
    key = jax.random.key(seed)
    for _ in range(steps):
      key, step_key = draw(key)
      flat, offset, step = np.asarray(normal(step_key)), 0, {}
      for name, shape in shapes:
        step[name] = flat[offset:offset + math.prod(shape)].reshape(shape)
        offset += math.prod(shape)
      out.append(step)
  return out


def adapprox_step(x0, steps, seed, **kw):
  """The step of every leaf of ``x0``: ``(reference_step, ranks, leaves)``.

  ``ranks`` gets, after each step, the rank of every factored leaf.
  """
  leaves = {k: AdapproxLeaf(np.shape(v), **kw) for k, v in x0.items()}
  omegas = sketches(seed, sorted(x0), leaves, steps)  # jax.tree.leaves order
  ranks = []

  def step(g, t):
    d = {k: leaves[k].step(g[k], omegas[t].get(k)) for k in g}
    ranks.append({k: leaves[k].rank for k in g if leaves[k].factored})
    return d

  return step, ranks, leaves


SHAPES = {
    'tall': (12, 8),
    'wide': (7, 10),
    'tensor3': (2, 6, 5),  # eq. (12): 12 x 5
    'small': (3, 4),      # min(m, n) < min_dim_size_to_factor: dense
    'vector': (7,),
    'scalar': (),
}


CONFIGS = {  # the variant runs on fewer leaves (compilation time)
    'momentum': dict(b1=0.9, tol=0.2, min_rank=1, shapes=SHAPES),
    'no-momentum-min-rank-2': dict(b1=None, tol=0.3, min_rank=2,
                                   shapes=('tall', 'wide', 'vector')),
}


@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
def test_matches_float64_transcription(config):
  c = CONFIGS[config]
  steps, seed, wd = 24, 7, 1e-2
  kw = dict(b1=c['b1'], b2=0.95, eps=1e-8, clip=1.0, tol=c['tol'],
            min_rank=c['min_rank'], max_rank=3, oversample=2, iters=2,
            min_dim=4)
  lr = lambda t: 0.05 - 0.001 * t
  x0, grad_fn = trajectories.quadratic_problem(
      {k: SHAPES[k] for k in c['shapes']}, curvature=True)
  step, want_ranks, _ = adapprox_step(x0, steps, seed, **kw)
  opt = adapprox(lr, b1=c['b1'], b2=0.95, eps=1e-8, clip_threshold=1.0,
                 weight_decay=wd, rank_tolerance=c['tol'],
                 min_rank=c['min_rank'], seed=seed, max_rank=3, oversample=2,
                 power_iterations=2, min_dim_size_to_factor=4)
  _, _, states = trajectories.compare_with_reference(
      opt, step, x0, grad_fn, steps, lr, weight_decay=wd, tol=1e-9,
      error=trajectories.max_rel_dev, all_states=True)
  assert len(want_ranks) == steps
  got_ranks = [{k: int(s[0].rank[k]) for k in want_ranks[0]} for s in states]
  assert got_ranks == want_ranks
  # The rule really adapts: more than one rank is used over the run.
  assert len({r for step in want_ranks for r in step.values()}) > 1


# -- the randomized refit ------------------------------------------------------


@functools.partial(jax.jit, static_argnames=('max_rank', 'min_rank', 'iters'))
def _as_rsi(v, sketch, tol, max_rank=4, min_rank=1, iters=2):
  return as_rsi(v, sketch, max_rank=max_rank, power_iterations=iters,
                rank_tolerance=jnp.float32(tol), min_rank=min_rank)


def _np(*arrays):  # products below in float64 NumPy: no TF32 on GPUs
  return [np.asarray(a, np.float64) for a in arrays]


def test_as_rsi_recovers_a_low_rank_matrix_with_the_right_rank():
  rng = np.random.default_rng(0)
  a, b = rng.random((20, 2)), rng.random((15, 2))
  v = jnp.asarray(a @ b.T, jnp.float32)  # rank 2, non-negative
  sketch = jnp.asarray(rng.normal(size=(15, 6)), jnp.float32)
  q, u, k = _np(*_as_rsi(v, sketch, tol=1e-3))
  assert int(k) == 2
  np.testing.assert_allclose(q @ u.T, v, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(q[:, :2].T @ q[:, :2], np.eye(2), atol=1e-5)
  np.testing.assert_array_equal(q[:, 2:], 0)
  np.testing.assert_array_equal(u[:, 2:], 0)
  # A looser tolerance takes rank 1: its error is within it.
  q1, u1, k1 = _np(*_as_rsi(v, sketch, tol=0.5))
  assert int(k1) == 1
  err = np.linalg.norm(q1 @ u1.T - v) / np.linalg.norm(v)
  assert err <= 0.5
  # The error of the chosen rank is the best rank-1 error (Eckart-Young).
  s = np.linalg.svd(np.asarray(v, np.float64), compute_uv=False)
  np.testing.assert_allclose(err, s[1] / np.linalg.norm(s), rtol=1e-3)


def test_as_rsi_rank_is_max_rank_when_tolerance_is_unreachable():
  rng = np.random.default_rng(1)
  v = jnp.asarray(rng.random((16, 16)), jnp.float32)  # full rank
  sketch = jnp.asarray(rng.normal(size=(16, 6)), jnp.float32)
  _, _, k = _as_rsi(v, sketch, tol=1e-6)
  assert int(k) == 4


def test_as_rsi_handles_zero_and_huge_matrices():
  rng = np.random.default_rng(2)
  sketch = jnp.asarray(rng.normal(size=(9, 6)), jnp.float32)
  q, u, k = _as_rsi(jnp.zeros((10, 9)), sketch, tol=0.1)
  assert np.all(np.isfinite(q)) and np.all(u == 0) and int(k) == 1
  v = jnp.asarray(rng.random((10, 9)), jnp.float32)
  q, u, k = _np(*_as_rsi(v, sketch, tol=0.1))
  qb, ub, kb = _np(*_as_rsi(v * 1e36, sketch, tol=0.1))  # ~ gradients of 1e18
  assert np.all(np.isfinite(qb)) and np.all(np.isfinite(ub)) and kb == k
  np.testing.assert_allclose(qb @ ub.T / 1e36, q @ u.T, rtol=1e-4, atol=1e-6)


def test_power_iterations_are_unrolled_no_loop_per_leaf():
  """A static number of power iterations, unrolled: no while loop per leaf
  (XLA:GPU reads a loop's predicate on the host each iteration). The loops
  left are the sketches' random draw, one for the tree (rolled on CPU)."""
  def whiles(leaves):
    params = {f'w{i}': jnp.zeros((8 + i, 6)) for i in range(leaves)}
    opt = adapprox(0.1, max_rank=2, min_dim_size_to_factor=4,
                   power_iterations=2)
    lowered = jax.jit(opt.update).lower(params, opt.init(params), params)
    return lowered.as_text().count('stablehlo.while')

  assert whiles(5) == whiles(1) <= 2


def test_same_seed_same_run_other_seed_other_sketches():
  rng = np.random.default_rng(3)
  params = jnp.zeros((10, 8))
  grads = [jnp.asarray(rng.normal(size=(10, 8)), jnp.float32) for _ in range(4)]
  make = lambda seed: scale_by_adapprox(
      seed=seed, max_rank=2, min_dim_size_to_factor=2, rank_tolerance=0.0,
      power_iterations=0)
  update = jax.jit(make(0).update)  # the seed only enters init

  def run(seed):
    state = make(seed).init(params)
    for g in grads:
      _, state = update(g, state)
    return state

  a, b, c = run(0), run(0), run(1)
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a.key, c.key)
  assert not np.array_equal(a.q, c.q)  # rank-2 of a full-rank V: sketch-bound


# -- the state: bytes and shapes -----------------------------------------------


def test_state_bytes_1024_square():
  """k_max (m + n) for the second moment, m n for the first moment."""
  params = jax.ShapeDtypeStruct((1024, 1024), jnp.float32)
  extra = 4 + 8 + 4  # count, key, rank
  with_m = state_bytes(adapprox(1e-3), params)
  assert with_m == 4 * (1024**2 + 32 * 2048) + extra
  assert with_m / 1024**2 == pytest.approx(4.25, abs=1e-4)  # bytes / param
  without_m = state_bytes(adapprox(1e-3, b1=None), params)
  assert without_m == 4 * 32 * 2048 + extra
  assert without_m / 1024**2 == pytest.approx(0.25, abs=1e-4)


def test_state_bytes_gpt2_small_within_the_papers_savings():
  """The paper: 34.5% to 49.9% below AdamW for GPT-2 117M with a first
  moment, more without."""
  params = as_params(gpt2_small())
  n_params = sum(x.size for x in jax.tree.leaves(params))
  adam = state_bytes(optax.adamw(1e-3), params)
  with_m = state_bytes(adapprox(1e-3), params)
  without_m = state_bytes(adapprox(1e-3, b1=None), params)
  assert 0.345 <= 1 - with_m / adam <= 0.499
  assert with_m / n_params == pytest.approx(4.2099, abs=5e-4)
  assert without_m / n_params == pytest.approx(0.2099, abs=5e-4)
  assert 1 - without_m / adam > 0.95


def test_state_shapes():
  params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
  state = jax.eval_shape(scale_by_adapprox(
      max_rank=3, min_dim_size_to_factor=4).init, params)
  assert isinstance(state, ScaleByAdapproxState)
  want = {  # q, u, rank, nu
      'tall': ((12, 3), (8, 3), (), (0,)),
      'wide': ((7, 3), (10, 3), (), (0,)),
      'tensor3': ((12, 3), (5, 3), (), (0,)),
      'small': ((0,), (0,), (0,), (3, 4)),
      'vector': ((0,), (0,), (0,), (7,)),
      'scalar': ((0,), (0,), (0,), ()),
  }
  for k, shapes in want.items():
    got = tuple(getattr(state, f)[k].shape for f in ('q', 'u', 'rank', 'nu'))
    assert got == shapes, k
    assert state.mu[k].shape == SHAPES[k]
  assert state.key.dtype == jnp.uint32


def test_batch_axes_are_factored_separately():
  params = jnp.zeros((3, 8, 6))
  dn = matricize.MatrixDimensionNumbers(row_axis=1, col_axis=2)
  opt = scale_by_adapprox(max_rank=2, min_dim_size_to_factor=4,
                          dimension_numbers=dn)
  state = opt.init(params)
  assert state.q.shape == (3, 8, 2) and state.rank.shape == (3,)
  g = jnp.asarray(np.random.default_rng(0).normal(size=(3, 8, 6)),
                  jnp.float32)
  d, state = jax.jit(opt.update)(g, state)
  assert d.shape == (3, 8, 6) and np.all(np.isfinite(d))
  # Clipping is per matrix: each of the three steps has RMS <= 1.
  rms = np.sqrt(np.mean(np.square(np.asarray(d) / 0.1), axis=(1, 2)))
  assert np.all(rms <= 1 + 1e-5)


# -- behaviour -----------------------------------------------------------------


def test_first_step_is_rms_clipped_sign():
  """V_1 = (1 - b2) g^2 and no bias correction: the first step is
  g / (sqrt(1 - b2) |g|), RMS-clipped to sign(g)."""
  g = jnp.asarray(np.random.default_rng(0).normal(size=(6, 5)), jnp.float32)
  opt = scale_by_adapprox(b1=None, max_rank=2, min_dim_size_to_factor=2)
  d, _ = opt.update(g, opt.init(g))
  np.testing.assert_allclose(d, np.sign(g), rtol=1e-5)


def test_converges_with_a_factored_second_moment():
  rng = np.random.default_rng(4)
  target = jnp.asarray(rng.normal(size=(16, 12)), jnp.float32)
  scales = jnp.asarray(np.exp(rng.normal(size=(16, 12))), jnp.float32)
  loss = lambda x: jnp.sum(scales * (x - target) ** 2)
  opt = adapprox(optax.cosine_decay_schedule(0.05, 1500), max_rank=2,
                 min_dim_size_to_factor=4)

  def body(carry, _):
    x, s = carry
    u, s = opt.update(jax.grad(loss)(x), s, x)
    return (optax.apply_updates(x, u), s), None

  (x, s), _ = jax.jit(lambda x: jax.lax.scan(
      body, (x, opt.init(x)), length=1500))(jnp.zeros((16, 12)))
  assert float(loss(x)) < 1e-3
  assert 1 <= int(s[0].rank) <= 2


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtypes(dtype):
  params = {'w': jnp.ones((6, 5), dtype), 'b': jnp.ones((5,), dtype)}
  grads = jax.tree.map(
      lambda x: (0.5 + jnp.arange(x.size) / 7).reshape(x.shape).astype(dtype),
      params)
  mu_dtype = jnp.bfloat16 if dtype == jnp.float32 else None
  opt = adapprox(1e-2, max_rank=2, min_dim_size_to_factor=2, mu_dtype=mu_dtype)
  state = opt.init(params)
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  assert all(np.all(np.isfinite(np.asarray(u, np.float32)))
             for u in jax.tree.leaves(updates))
  want_mu = dtype if mu_dtype is None else mu_dtype
  assert all(x.dtype == want_mu for x in jax.tree.leaves(new_state[0].mu))
  assert new_state[0].q['w'].dtype == jnp.float32
  chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)


def test_zero_and_huge_gradients_stay_finite():
  opt = adapprox(1e-2, max_rank=2, min_dim_size_to_factor=2)
  params = {'w': jnp.zeros((6, 5)), 'b': jnp.zeros(5)}
  state = opt.init(params)
  update = jax.jit(opt.update)
  rng = np.random.default_rng(0)
  g = {'w': jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
       'b': jnp.asarray(rng.normal(size=5), jnp.float32)}
  for scale in [0.0, 1e18, 0.0, 1e-30, 1.0]:
    u, state = update(jax.tree.map(lambda x: x * scale, g), state, params)
    for leaf in jax.tree.leaves((u, state)):
      assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


def test_errors_name_the_leaf():
  params = {'layer': {'w': jnp.ones((2, 2)), 'step': jnp.ones((), jnp.int32)}}
  with pytest.raises(TypeError, match=r"\['layer'\]\['step'\].*int32"):
    adapprox(0.1).init(params)
  opt = scale_by_adapprox(max_rank=1, min_dim_size_to_factor=2)
  state = opt.init({'a': jnp.ones((4, 3)), 'b': jnp.ones(3)})
  with pytest.raises(TypeError, match=r"\['b'\].*int32"):
    opt.update({'a': jnp.ones((4, 3)), 'b': jnp.ones(3, jnp.int32)}, state)
  with pytest.raises(ValueError, match=r"no leaf \['b'\]"):
    opt.update({'a': jnp.ones((4, 3))}, state)
  with pytest.raises(ValueError, match=r"\['a'\] has shape \(4, 5\)"):
    opt.update({'a': jnp.ones((4, 5)), 'b': jnp.ones(3)}, state)
  with pytest.raises(TypeError, match='ScaleByAdamState'):
    opt.update(jnp.ones(3), optax.scale_by_adam().init(jnp.ones(3)))
  with pytest.raises(ValueError, match='max_rank'):
    adapprox(0.1, max_rank=0)
  with pytest.raises(ValueError, match='min_rank'):
    adapprox(0.1, min_rank=5, max_rank=4)


def test_inject_hyperparams_same_trajectory():
  """With the rank rule free to pick 1 or 2 (TestAdapproxTransform's checks
  run at max_rank 1), a traced rank_tolerance picks the same ranks."""
  params = jnp.linspace(-1, 2, 30).reshape(6, 5)
  loss = lambda p: jnp.sum((p - 0.5) ** 4)
  kw = dict(learning_rate=0.05, b1=0.8, b2=0.99, weight_decay=1e-2,
            rank_tolerance=0.2, seed=3)
  static = dict(max_rank=2, min_dim_size_to_factor=2)

  def trajectory(opt):
    @jax.jit
    def step(p, s):
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, u), s

    state, p, out = opt.init(params), params, []
    for _ in range(6):
      p, state = step(p, state)
      out.append(p)
    return out

  plain = trajectory(adapprox(**kw, **static))
  injected = trajectory(optax.inject_hyperparams(
      adapprox, static_args=STATIC)(**kw, **static))
  chex.assert_trees_all_close(injected, plain, rtol=1e-5, atol=1e-6)


# -- optax's common checks -----------------------------------------------------


def adapprox_factored(
    learning_rate: optax.ScalarOrSchedule, b1=0.9, weight_decay=0.0
) -> optax.GradientTransformationExtraArgs:
  """Adapprox factoring 2 x 2 matrices at rank 1, for optax's battery.

  Its static arguments are fixed here: optax's inject_hyperparams check
  traces every numeric argument it is given but those it knows as static.
  """
  return adapprox(learning_rate, b1=b1, weight_decay=weight_decay,
                  max_rank=1, min_dim_size_to_factor=2)


class TestAdapproxOptaxChecks(OptaxCommonChecks):
  OPTIMIZERS = [
      pytest.param(adapprox, {'learning_rate': 1e-3}, id='adapprox'),
      # The 2 x 2 targets factored at rank 1, no first moment.
      pytest.param(adapprox_factored, {'learning_rate': 1e-3, 'b1': None,
                                       'weight_decay': 1e-4},
                   id='adapprox-factored'),
  ]


def test_grad_through_updates_treats_the_factorisation_as_constant():
  """jax.grad through unrolled updates: finite, near finite differences.

  Constant params make every V rank one, where QR and eigh derivatives
  divide by zero gaps (7.5e14 against 2.84 before the boundary). The
  factors are constants to autodiff (documented), so the gradient misses
  only their small contribution.
  """
  x0 = {'w': jnp.ones((4, 6)), 'b': jnp.linspace(-1, 1, 6)}
  weights = jax.tree.map(lambda x: 1 + jnp.arange(x.size).reshape(x.shape) / 10,
                         x0)
  loss = lambda p: sum(jnp.sum(w * (x - 0.5) ** 2) for x, w in zip(
      jax.tree.leaves(p), jax.tree.leaves(weights)))
  opt = adapprox(0.1, max_rank=2, min_dim_size_to_factor=2)

  @jax.jit
  def unrolled(p):
    s = opt.init(p)
    for _ in range(3):
      u, s = opt.update(jax.grad(loss)(p), s, p)
      p = optax.apply_updates(p, u)
    return loss(p)

  direction = jax.tree.map(
      lambda x: jnp.asarray(np.random.default_rng(1).normal(size=x.shape),
                            jnp.float32), x0)
  along = lambda h: unrolled(jax.tree.map(lambda a, d: a + h * d, x0,
                                          direction))
  fd = (along(1e-3) - along(-1e-3)) / 2e-3
  ad = sum(jnp.sum(g * d) for g, d in zip(
      jax.tree.leaves(jax.grad(unrolled)(x0)), jax.tree.leaves(direction)))
  assert np.isfinite(ad)
  np.testing.assert_allclose(ad, fd, rtol=0.1)
  # The boundary itself: the new factors do not depend on the gradient.
  state = opt.init(x0)
  dq = jax.grad(lambda g: jnp.sum(opt.update(g, state, x0)[1][0].q['w']))(x0)
  assert not np.any(dq['w'])


class TestAdapproxTransform(transform_checks.TransformChecks):
  ALIAS = adapprox
  SCALE_BY = scale_by_adapprox
  NAME = 'scale_by_adapprox'
  # Rank 1 from 2 x 2 up: every matrix of the checks is factored.
  STATIC_KWARGS = dict(max_rank=1, min_dim_size_to_factor=2)
  INJECT_KWARGS = dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-6,
                       clip_threshold=0.5, weight_decay=1e-2,
                       rank_tolerance=0.2, seed=3)
