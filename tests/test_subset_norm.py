"""Tests of alada_optax.subset_norm: Subset-Norm and Subspace-Momentum.

The float64 NumPy transcription below (``SNSMLeaf``) is written from the
paper's update rules and the readings documented in ``adamw_snsm``: it
reshapes each tensor to its matrix explicitly and runs full SVDs in NumPy.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alada_optax import hlo
from alada_optax import matricize
from alada_optax.subset_norm import ScaleByAdamSNSMState
from alada_optax.subset_norm import adamw_sn
from alada_optax.subset_norm import adamw_snsm
from alada_optax.subset_norm import scale_by_adam_snsm
from alada_optax.subset_norm import scale_by_subset_norm
from alada_optax.subset_norm import scale_by_subspace_momentum
from tests.alada_reference import eq12
from benchmarks.state_bytes import as_params
from benchmarks.state_bytes import gpt2_small
from benchmarks.state_bytes import state_bytes
from tests import trajectories
from tests import transform_checks
from tests.optax_checks import OptaxCommonChecks

# -- the float64 transcription -------------------------------------------------


def _divisor(n, k):
  k = max(int(k), 1)
  return max(d for d in range(1, min(k, n) + 1) if n % d == 0) if n > 1 else 1


class SNSMLeaf:
  """AdamW-SN(-SM) for one tensor, float64, its matrix reshaped explicitly."""

  def __init__(self, shape, *, rank, gap, b1, b2, eps, sm=True,
               subset_size=None):
    self.shape = tuple(shape)
    self.b1, self.b2, self.eps, self.gap, self.r = b1, b2, eps, gap, rank
    d = math.prod(self.shape)
    if len(self.shape) >= 2:
      self.m, self.n = eq12(self.shape)
    else:
      self.m, self.n = 1, d
    # Subsets.
    if subset_size is None:
      if len(self.shape) < 2:
        self.sn = 'coord'
      else:
        self.sn = 'rows' if self.m >= self.n else 'cols'
    else:
      target = subset_size if subset_size > 0 else int(
          math.sqrt(d) / -subset_size)
      self.sn, self.s = 'flat', _divisor(d, target)
    self.nu = None
    # Momentum.
    self.sm = sm and len(self.shape) >= 2 and rank < min(self.m, self.n)
    self.M = None if self.sm else np.zeros(self.shape)
    self.P = None

  def _sn(self, g, N, t):
    """Returns N divided per subset by sqrt(nu_hat) + eps."""
    adagrad = self.b2 >= 1
    c = 1.0 if adagrad else 1 - self.b2
    bc2 = 1.0 if adagrad else 1 - self.b2 ** (t + 1)
    if self.sn == 'coord':
      s = g**2
    elif self.sn == 'flat':
      s = (g.reshape(-1, self.s) ** 2).sum(1)
    else:
      G = g.reshape(self.m, self.n)
      s = (G**2).sum(1) if self.sn == 'rows' else (G**2).sum(0)
    self.nu = c * s if self.nu is None else self.b2 * self.nu + c * s
    den = np.sqrt(self.nu / bc2) + self.eps
    if self.sn == 'coord':
      return N / den
    if self.sn == 'flat':
      return (N.reshape(-1, self.s) / den[:, None]).reshape(self.shape)
    Nm = N.reshape(self.m, self.n)
    Nm = Nm / den[:, None] if self.sn == 'rows' else Nm / den[None, :]
    return Nm.reshape(self.shape)

  def _numerator(self, g, t):
    b1 = self.b1
    if not self.sm:
      self.M = b1 * self.M + (1 - b1) * g
      return self.M / (1 - b1 ** (t + 1))
    G = g.reshape(self.m, self.n)
    right = self.m >= self.n
    k = t % self.gap
    if k == 0:
      U, _, Vt = np.linalg.svd(G)
      self.P = Vt[: self.r].T if right else U[:, : self.r]
      self.M = np.zeros((self.m, self.r) if right else (self.r, self.n))
    P = self.P
    proj = P @ P.T
    low = G @ P if right else P.T @ G
    self.M = b1 * self.M + (1 - b1) * low
    inside = (self.M @ P.T if right else P @ self.M) / (1 - b1 ** (k + 1))
    outside = G - (G @ proj if right else proj @ G)
    return (inside + outside).reshape(self.shape)

  def step(self, g, t):
    return self._sn(g, self._numerator(g, t), t)


def snsm_step(x0, **kw):
  """The step of every leaf of ``x0``: ``(reference_step, leaves)``."""
  leaves = {k: SNSMLeaf(np.shape(v), **kw) for k, v in x0.items()}
  return (lambda g, t: {k: leaves[k].step(g[k], t) for k in g}), leaves


# -- problems and runners ------------------------------------------------------

SHAPES = {
    'left': (6, 8),       # m < n: left projector, one accumulator per column
    'right': (9, 5),      # m > n: right projector, one per row
    'square': (5, 5),     # ties project on the right
    'tensor3': (2, 3, 4),  # eq. (12): 6 x 4
    'tie': (2, 5, 2),     # eq. (12): 2 x 10
    'small': (3, 2),      # min(m, n) <= rank: full momentum
    'vector': (7,),
    'scalar': (),
}


# -- exactness against the float64 transcription -------------------------------

CONFIGS = {  # the variants run on fewer leaves (compilation time)
    'snsm': dict(b1=0.9, b2=0.999, sm=True, subset_size=None, shapes=SHAPES),
    'snsm-adagrad': dict(b1=0.8, b2=1.0, sm=True, subset_size=None,
                         shapes=('left', 'right', 'vector')),
    'sn-full-momentum': dict(b1=0.9, b2=0.99, sm=False, subset_size=None,
                             shapes=('left', 'tensor3', 'scalar')),
    'snsm-flat-subsets': dict(b1=0.9, b2=0.999, sm=True, subset_size=-2,
                              shapes=('left', 'tensor3', 'vector')),
}


@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
def test_matches_float64_transcription(config):
  c = CONFIGS[config]
  steps, rank, gap, eps, wd = 24, 2, 5, 1e-6, 1e-2
  lr = lambda t: 0.05 - 0.001 * t
  x0, grad_fn = trajectories.quadratic_problem(
      {k: SHAPES[k] for k in c['shapes']}, curvature=True)
  step, _ = snsm_step(x0, rank=rank, gap=gap, b1=c['b1'], b2=c['b2'], eps=eps,
                      sm=c['sm'], subset_size=c['subset_size'])
  if c['sm']:
    opt = adamw_snsm(lr, b1=c['b1'], b2=c['b2'], eps=eps, weight_decay=wd,
                     update_proj_gap=gap, rank=rank,
                     subset_size=c['subset_size'])
  else:
    opt = adamw_sn(lr, b1=c['b1'], b2=c['b2'], eps=eps, weight_decay=wd,
                   subset_size=c['subset_size'])
  trajectories.compare_with_reference(
      opt, step, x0, grad_fn, steps, lr, weight_decay=wd, tol=1e-10,
      error=trajectories.max_rel_dev)


def test_batch_axes_are_separate_matrices():
  """(3, 4, 5) with row 1 / col 2 == three separate (4, 5) leaves."""
  x0, grad_fn = trajectories.quadratic_problem({'w': (3, 4, 5)}, seed=2,
                                                curvature=True)
  split = {f'w{i}': x0['w'][i] for i in range(3)}

  def split_grad(x, t):
    g = grad_fn({'w': np.stack([x[f'w{i}'] for i in range(3)])}, t)['w']
    return {f'w{i}': g[i] for i in range(3)}

  kw = dict(update_proj_gap=4, rank=2)
  dn = matricize.MatrixDimensionNumbers(row_axis=1, col_axis=2)
  with jax.enable_x64(True):
    got, state = trajectories.run_optax(
        adamw_snsm(0.03, dimension_numbers=dn, **kw), x0, grad_fn, 12)
    want, _ = trajectories.run_optax(
        adamw_snsm(0.03, **kw), split, split_grad, 12)
  assert state[0].proj['w'].shape == (3, 4, 2)  # 4 < 5: left
  for t in range(12):
    for i in range(3):
      np.testing.assert_allclose(got[t]['w'][i], want[t][f'w{i}'], rtol=1e-12)


# -- the state: bytes and shapes as the paper claims ---------------------------


def test_state_bytes_1024_square():
  """(1024, 1024), rank 128: r m momentum + r n projector + m accumulators."""
  params = jax.ShapeDtypeStruct((1024, 1024), jnp.float32)
  got = state_bytes(adamw_snsm(1e-3), params)
  floats = 128 * 1024 + 128 * 1024 + 1024
  assert got == 4 * floats + 4  # + the int32 count
  assert got / 1024**2 == pytest.approx(1.0039, abs=1e-4)  # bytes / param
  assert state_bytes(optax.adam(1e-3), params) / 1024**2 == pytest.approx(8)
  # AdamW-SN: full momentum + 1024 accumulators.
  assert state_bytes(adamw_sn(1e-3), params) == 4 * (1024**2 + 1024) + 4


def test_state_bytes_gpt2_small_over_80_percent_below_adam():
  """The paper: SN + SM cut Adam's optimizer-state memory by more than 80%."""
  params = as_params(gpt2_small())
  n_params = sum(x.size for x in jax.tree.leaves(params))
  adam = state_bytes(optax.adam(1e-3), params)
  snsm = state_bytes(adamw_snsm(1e-3), params)
  sn = state_bytes(adamw_sn(1e-3), params)
  assert 1 - snsm / adam > 0.80
  assert snsm / n_params == pytest.approx(0.8370, abs=5e-4)  # bytes
  assert sn / n_params == pytest.approx(4.0, abs=0.05)


def test_state_shapes():
  params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
  state = scale_by_adam_snsm(rank=2).init(params)
  assert isinstance(state, ScaleByAdamSNSMState)
  want = {  # mu, proj, nu
      'left': ((2, 8), (6, 2), (8,)),
      'right': ((9, 2), (5, 2), (9,)),
      'square': ((5, 2), (5, 2), (5,)),
      'tensor3': ((6, 2), (4, 2), (6,)),
      'tie': ((2, 5, 2), (0,), (10,)),  # 2 x 10: min(m, n) <= rank
      'small': ((3, 2), (0,), (3,)),
      'vector': ((7,), (0,), (7,)),
      'scalar': ((), (0,), ()),
  }
  for k, (mu, proj, nu) in want.items():
    assert (state.mu[k].shape, state.proj[k].shape, state.nu[k].shape) == (
        mu, proj, nu), k


# -- the pieces on their own ---------------------------------------------------


def test_subset_norm_first_step_normalises_rows():
  """b2 = 1 (AdaGrad-SN): the first step is each row divided by its norm."""
  g = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)
  opt = scale_by_subset_norm(b2=1.0, eps=0.0)
  d, state = opt.update(g, opt.init(g))
  np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, rtol=1e-6)
  assert state.nu.shape == (6,)
  # AdaGrad: the accumulator is the running sum of squared row norms.
  _, state = opt.update(g, state)
  np.testing.assert_allclose(state.nu, 2 * np.sum(np.square(g), 1), rtol=1e-6)


def test_subspace_momentum_alone_is_sgd_when_b1_is_zero():
  g = jnp.asarray(np.random.default_rng(1).normal(size=(5, 7)), jnp.float32)
  opt = scale_by_subspace_momentum(b1=0.0, rank=2, update_proj_gap=3)
  state = opt.init(g)
  for _ in range(4):
    d, state = opt.update(g, state)
    np.testing.assert_allclose(d, g, rtol=1e-5, atol=1e-6)


def test_projector_refresh_and_momentum_reset():
  """P changes only on steps 0, T, 2T; the momentum restarts there."""
  rng = np.random.default_rng(3)
  T, b1 = 3, 0.9
  opt = scale_by_subspace_momentum(b1=b1, update_proj_gap=T, rank=2)
  state = opt.init(jnp.zeros((6, 8)))
  update = jax.jit(opt.update)
  for t in range(7):
    g = jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)
    _, new = update(g, state)
    changed = not np.array_equal(new.proj, state.proj)
    assert changed == (t % T == 0), t
    if t % T == 0:  # M = (1 - b1) P^T G: nothing of the old momentum
      p = np.asarray(new.proj, np.float64)  # NumPy products: no TF32
      np.testing.assert_allclose(new.mu, (1 - b1) * p.T @ np.asarray(g),
                                 rtol=1e-5, atol=1e-6)
      u, _, _ = np.linalg.svd(np.asarray(g))
      np.testing.assert_allclose(np.abs(p.T @ u[:, :2]),
                                 np.eye(2), atol=1e-4)
    state = new


def test_eigendecomposition_only_inside_cond():
  """The singular vectors (an eigh of the Gram matrix) are computed in a
  lax.cond branch, never on the straight-line path."""
  opt = adamw_snsm(0.1, rank=1)
  params = jnp.zeros((4, 3))
  jaxpr = jax.make_jaxpr(opt.update)(params, opt.init(params), params)

  def top_level_prims(jaxpr):
    names = []
    for eqn in jaxpr.eqns:
      names.append(eqn.primitive.name)
      if eqn.primitive.name in ('pjit', 'jit', 'closed_call'):
        names += top_level_prims(eqn.params['jaxpr'].jaxpr)
    return names

  prims = top_level_prims(jaxpr.jaxpr)
  assert 'cond' in prims
  assert 'eigh' not in prims
  assert 'eigh' in str(jaxpr)


def _lowered_control_flow(opt, params, platform='cuda'):
  """(conditionals, while loops) that the update lowered for ``platform``
  asks for (no device of that kind is needed to lower)."""
  lowered = jax.jit(opt.update).trace(params, opt.init(params), params).lower(
      lowering_platforms=(platform,))
  structure = hlo.hlo_structure(
      lowered.compiler_ir('hlo').as_hlo_module().to_string())
  return structure.conditionals, structure.whiles


@pytest.mark.parametrize('make', [
    lambda: adamw_snsm(0.1, rank=1),
    lambda: scale_by_subspace_momentum(rank=1)])
def test_one_conditional_whatever_the_number_of_leaves(make):
  """The refresh decision is the step counter's: on GPU one lax.cond for the
  whole tree (each conditional is a blocking host sync on XLA:GPU), not one
  per leaf; on CPU one per leaf (a conditional over the tree would keep every
  gradient alive: test_memory); leaves without a projector add none."""
  for leaves in (1, 6):
    params = {f'w{i}': jnp.zeros((4 + i, 3)) for i in range(leaves)}
    params['b'] = jnp.zeros((3,))
    assert _lowered_control_flow(make(), params) == (1, 0), leaves
    assert _lowered_control_flow(make(), params, 'cpu') == (leaves, 0), leaves


def test_no_conditional_without_subspace_momentum():
  params = {'w': jnp.zeros((4, 3)), 'b': jnp.zeros((3,))}
  assert _lowered_control_flow(adamw_sn(0.1), params) == (0, 0)


def test_between_refreshes_the_projector_is_kept():
  """Hand-computed: the momentum lives on the first step's singular vector."""
  opt = scale_by_subspace_momentum(b1=0.5, update_proj_gap=100, rank=1)
  g0 = jnp.asarray([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # m >= n: right
  state = opt.init(g0)
  d0, state = opt.update(g0, state)
  np.testing.assert_allclose(d0, g0, rtol=1e-6)  # the first step is G
  p = np.asarray(state.proj)  # the top right singular vector e_1 (+-)
  np.testing.assert_allclose(np.abs(p[:, 0]), [1, 0], atol=1e-6)
  g1 = jnp.asarray([[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
  d, state = opt.update(g1, state)
  # Inside, along e_1: (b1 (1 - b1) G0 e_1 + (1 - b1) G1 e_1) / (1 - b1^2);
  # outside: G1 (I - e_1 e_1^T), plain SGD.
  inside = (0.25 * np.array([3.0, 0.0, 0.0]) + 0.5 * np.array([1.0, 2.0, 0.0])
            ) / 0.75
  want = np.asarray(g1).copy()
  want[:, 0] = inside
  np.testing.assert_allclose(d, want, rtol=1e-6, atol=1e-7)


# -- convergence, dtypes, masks, errors ----------------------------------------


def test_converges_with_subspace_momentum_on_a_matrix():
  rng = np.random.default_rng(4)
  target = jnp.asarray(rng.normal(size=(12, 10)), jnp.float32)
  loss = lambda x: jnp.sum((x - target) ** 2)
  opt = adamw_snsm(optax.cosine_decay_schedule(0.3, 2000), rank=3,
                   update_proj_gap=50)

  def body(carry, _):
    x, s = carry
    u, s = opt.update(jax.grad(loss)(x), s, x)
    return (optax.apply_updates(x, u), s), None

  x0 = jnp.zeros((12, 10))
  (x, _), _ = jax.jit(lambda x: jax.lax.scan(body, (x, opt.init(x)),
                                             length=2000))(x0)
  assert float(loss(x)) < 1e-3


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dtypes(dtype):
  params = {'w': jnp.ones((6, 4), dtype), 'b': jnp.ones((4,), dtype)}
  grads = jax.tree.map(lambda x: x * 0.5 + jnp.arange(x.size, dtype=dtype
                                                      ).reshape(x.shape),
                       params)
  mu_dtype = jnp.bfloat16 if dtype == jnp.float32 else None
  opt = adamw_snsm(1e-2, rank=1, mu_dtype=mu_dtype)
  state = opt.init(params)
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  assert all(np.all(np.isfinite(np.asarray(u, np.float32)))
             for u in jax.tree.leaves(updates))
  want_mu = dtype if mu_dtype is None else mu_dtype
  assert all(x.dtype == want_mu for x in jax.tree.leaves(new_state[0].mu))
  assert new_state[0].proj['w'].dtype == jnp.float32
  assert new_state[0].nu['w'].dtype == jnp.float32
  chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)


def test_zero_and_huge_gradients_stay_finite():
  opt = adamw_snsm(1e-2, rank=1, update_proj_gap=2)
  params = jnp.zeros((5, 4))
  state = opt.init(params)
  update = jax.jit(opt.update)
  g = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)), jnp.float32)
  for grad in [jnp.zeros((5, 4)), g * 1e15, jnp.zeros((5, 4)), g * 1e-30, g]:
    u, state = update(grad, state, params)
    for leaf in jax.tree.leaves((u, state)):
      assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


def test_mismatched_updates_are_named():
  """scale_by_adam_snsm on its own; a matrix's shape checked against its
  projector (TestAdamWSNSMTransform checks the alias with vectors)."""
  opt = scale_by_adam_snsm(rank=1)
  state = opt.init({'a': jnp.ones((4, 3)), 'b': jnp.ones(3)})
  with pytest.raises(ValueError, match=r"no leaf \['b'\]"):
    opt.update({'a': jnp.ones((4, 3))}, state)
  with pytest.raises(ValueError, match=r"\['c'\] that the optimizer state"):
    opt.update({'a': jnp.ones((4, 3)), 'b': jnp.ones(3), 'c': jnp.ones(1)},
               state)
  with pytest.raises(ValueError, match=r"\['a'\] has shape \(4, 5\)"):
    opt.update({'a': jnp.ones((4, 5)), 'b': jnp.ones(3)}, state)
  with pytest.raises(TypeError, match='ScaleByAdamState'):
    opt.update(jnp.ones(3), optax.scale_by_adam().init(jnp.ones(3)))


def test_bad_static_arguments():
  with pytest.raises(ValueError, match='rank'):
    adamw_snsm(0.1, rank=0)
  with pytest.raises(ValueError, match='update_proj_gap'):
    adamw_snsm(0.1, update_proj_gap=0)
  with pytest.raises(ValueError, match='subset_size'):
    scale_by_subset_norm(subset_size=0).init(jnp.ones(4))


# -- optax's common checks -----------------------------------------------------


class TestSubsetNormOptaxChecks(OptaxCommonChecks):
  OPTIMIZERS = [
      pytest.param(adamw_snsm, {'learning_rate': 1e-3, 'rank': 1},
                   id='adamw_snsm-rank1'),
      pytest.param(adamw_sn, {'learning_rate': 1e-3, 'weight_decay': 1e-4},
                   id='adamw_sn'),
  ]


class TestAdamWSNSMTransform(transform_checks.TransformChecks):
  ALIAS = adamw_snsm
  SCALE_BY = scale_by_adam_snsm
  NAME = 'scale_by_adam_snsm'
  # Rank 1: every matrix of the checks (2 x 2 and up) has a projector.
  STATIC_KWARGS = dict(rank=1)
  # A refresh every 3 steps: the trajectory crosses four of them.
  INJECT_KWARGS = dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-5,
                       weight_decay=1e-2, update_proj_gap=3)


class TestAdamWSNTransform(transform_checks.TransformChecks):
  ALIAS = adamw_sn
  # adamw_sn is scale_by_adam_snsm with subspace_momentum=False.
  SCALE_BY = functools.partial(scale_by_adam_snsm, subspace_momentum=False)
  NAME = 'scale_by_adam_snsm'
  INJECT_KWARGS = dict(learning_rate=0.05, b1=0.8, b2=0.99, eps=1e-5,
                       weight_decay=1e-2)
