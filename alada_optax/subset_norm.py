"""Subset-Norm step sizes and Subspace-Momentum as optax transformations.

Reference: T. H. Nguyen and H. L. Nguyen, "Lean and Mean Adaptive
Optimization via Subset-Norm and Subspace-Momentum with Convergence
Guarantees", ICML 2025 (arXiv 2411.07120), and the authors' code
(timmytonga/sn-sm: ``subset_norm.py``, ``subspace_momentum.py``,
``GenericOptim.py``, ``projectors/svd_projector.py``).

* **Subset-Norm (SN)** shares one AdaGrad/RMSprop accumulator between all the
  coordinates of a subset: the accumulator holds the squared *norm* of the
  gradient restricted to the subset, so a ``m x n`` matrix split into its
  rows keeps ``m`` numbers instead of ``m n``.
* **Subspace-Momentum (SM)** keeps momentum only in a rank-``r`` subspace
  spanned by the top singular vectors of the gradient, refreshed every
  ``update_proj_gap`` steps, and takes plain SGD steps in the orthogonal
  complement: ``r (m + n)`` numbers instead of ``m n``.

:func:`adamw_snsm` is the paper's AdamW-SN with SM; :func:`adamw_sn` is
AdamW-SN; :func:`scale_by_subset_norm` and :func:`scale_by_subspace_momentum`
are the two pieces on their own. The readings of the paper and its code are
listed in :func:`adamw_snsm`.
"""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alada_optax import _alias
from alada_optax import _backends
from alada_optax import _leafwise
from alada_optax import _layout
from alada_optax import _validation
from alada_optax import matricize
from alada_optax.matricize import matmul

# -- per-leaf static plans -----------------------------------------------------


def largest_divisor_at_most(n: int, k: int) -> int:
  """The largest divisor of ``n`` that is ``<= max(k, 1)`` (1 for n <= 1)."""
  k = max(int(k), 1)
  if n <= 1:
    return 1
  for d in range(min(k, n), 0, -1):
    if n % d == 0:
      return d
  return 1


@dataclasses.dataclass(frozen=True)
class SubsetPlan:
  """How the coordinates of one leaf are split into Subset-Norm subsets.

  Attributes:
    shape: the leaf's shape.
    kind: ``'rows'`` (one subset per row of the matrix view), ``'cols'`` (one
      per column), ``'coordinates'`` (every coordinate its own subset, i.e.
      Adam's second moment) or ``'flat'`` (contiguous runs of ``size``
      coordinates of the row-major flattened leaf).
    size: the number of coordinates in each subset.
    plan: the matrix view for ``'rows'`` and ``'cols'``.
  """

  shape: tuple[int, ...]
  kind: str
  size: int
  plan: Optional[matricize.MatrixPlan] = None

  @property
  def acc_shape(self) -> tuple[int, ...]:
    """Shape of the leaf's accumulator: one number per subset."""
    if self.kind == 'rows':
      return self.plan.row_factor_shape
    if self.kind == 'cols':
      return self.plan.col_factor_shape
    if self.kind == 'coordinates':
      return self.shape
    return (math.prod(self.shape) // self.size,)

  def subset_sums(self, x: jax.Array) -> jax.Array:
    """Sum of ``x`` (the leaf's shape) over each subset: -> ``acc_shape``."""
    if self.kind == 'rows':
      return self.plan.sum_over_cols(x)
    if self.kind == 'cols':
      return self.plan.sum_over_rows(x)
    if self.kind == 'coordinates':
      return x
    return jnp.sum(x.reshape(-1, self.size), axis=-1)

  def divide(self, x: jax.Array, per_subset: jax.Array) -> jax.Array:
    """``x`` (the leaf's shape) divided by its subset's ``per_subset``."""
    if self.kind == 'rows':
      return x / self.plan.expand_rows(per_subset)
    if self.kind == 'cols':
      return x / self.plan.expand_cols(per_subset)
    if self.kind == 'coordinates':
      return x / per_subset
    return (x.reshape(-1, self.size) / per_subset[:, None]).reshape(self.shape)


def subset_plan(
    shape, subset_size: Optional[int] = None,
    dimension_numbers: Optional[matricize.MatrixDimensionNumbers] = None,
) -> SubsetPlan:
  """The Subset-Norm subsets of a leaf.

  ``subset_size=None`` is the paper's heuristic (the code's
  ``subset_size='heuristics'``): a leaf of order >= 2 is viewed as a (batch
  of) ``m x n`` matrices (eq. (12) of Alada, or ``dimension_numbers``) and
  each subset is one row if ``m >= n``, else one column, so that the
  accumulator is along the longer side and each subset has
  ``min(m, n) ~ sqrt(mn)`` coordinates. Vectors and scalars keep one
  accumulator per coordinate (the code runs plain Adam on them).

  ``subset_size=k > 0`` flattens every leaf (row-major) into contiguous
  subsets of ``s`` coordinates, ``s`` the largest divisor of the leaf's size
  that is ``<= k``; ``subset_size=-c < 0`` uses ``k = floor(sqrt(d) / c)``
  for a leaf of ``d`` coordinates (the code's ``AdamWSN`` default is -2).
  """
  shape = tuple(int(k) for k in shape)
  numel = math.prod(shape)
  if subset_size is None:
    if len(shape) < 2:
      return SubsetPlan(shape, 'coordinates', 1)
    plan = matricize.plan_for(shape, dimension_numbers)
    if plan.m >= plan.n:
      return SubsetPlan(shape, 'rows', plan.n, plan)
    return SubsetPlan(shape, 'cols', plan.m, plan)
  subset_size = int(subset_size)
  if subset_size == 0:
    raise ValueError('subset_size must be None or a non-zero integer.')
  target = subset_size if subset_size > 0 else int(
      math.sqrt(numel) / -subset_size)
  return SubsetPlan(shape, 'flat', largest_divisor_at_most(numel, target))


@dataclasses.dataclass(frozen=True)
class SubspacePlan:
  """Where a leaf keeps its momentum.

  ``plan is None``: full momentum, shaped like the leaf (vectors, scalars, and
  matrices whose shorter side is ``<= rank``). Otherwise the leaf is a (batch
  of) ``m x n`` matrices with a rank-``rank`` projector on its shorter side:
  ``'right'`` (``m >= n``): ``P`` is ``n x r``, the projected gradient
  ``G P`` and the momentum are ``m x r``; ``'left'`` (``m < n``): ``P`` is
  ``m x r``, ``P^T G`` and the momentum are ``r x n``.
  """

  shape: tuple[int, ...]
  rank: int
  plan: Optional[matricize.MatrixPlan] = None

  @property
  def active(self) -> bool:
    return self.plan is not None

  @property
  def side(self) -> str:
    return 'right' if self.plan.m >= self.plan.n else 'left'

  @property
  def mu_shape(self) -> tuple[int, ...]:
    if not self.active:
      return self.shape
    b, m, n, r = self.plan.batch_shape, self.plan.m, self.plan.n, self.rank
    return b + ((m, r) if self.side == 'right' else (r, n))

  @property
  def proj_shape(self) -> Optional[tuple[int, ...]]:
    if not self.active:
      return None  # no projector: a placeholder
    b, m, n, r = self.plan.batch_shape, self.plan.m, self.plan.n, self.rank
    return b + ((n, r) if self.side == 'right' else (m, r))


def subspace_plan(
    shape, rank: int,
    dimension_numbers: Optional[matricize.MatrixDimensionNumbers] = None,
) -> SubspacePlan:
  """Subspace momentum for leaves of order >= 2 with ``rank < min(m, n)``."""
  shape = tuple(int(k) for k in shape)
  if len(shape) < 2:
    return SubspacePlan(shape, rank)
  plan = matricize.plan_for(shape, dimension_numbers)
  if rank >= min(plan.m, plan.n):
    return SubspacePlan(shape, rank)  # the subspace would be everything
  return SubspacePlan(shape, rank, plan)


# -- the math of one leaf ------------------------------------------------------


def _subset_norm_denominator(g, nu, count, b2, eps, sn: SubsetPlan):
  """Subset-Norm: ``nu <- b2 nu + c ||g_S||^2`` per subset ``S`` and the
  denominator ``sqrt(nu / (1 - b2^(t+1))) + eps``. With ``b2 == 1`` the
  accumulator is AdaGrad's sum (``c = 1``, no bias correction); otherwise
  ``c = 1 - b2``. Returns ``(denominator, nu)`` in ``acc_shape``."""
  adagrad = b2 >= 1
  nu = b2 * nu + jnp.where(adagrad, 1, 1 - b2) * sn.subset_sums(g * g)
  bc2 = jnp.where(adagrad, 1, 1 - b2 ** (count + 1).astype(g.dtype))
  return jnp.sqrt(nu / bc2) + eps, nu


def _top_singular_vectors(g, proj, sp: SubspacePlan):
  """The top ``r`` singular vectors of ``g``'s matrix view on its shorter
  side: the new projector, laid out as ``proj``.

  They are the top-r eigenvectors of the (short x short) Gram matrix: one
  eigh instead of an SVD of G, far cheaper for tall matrices (50257 x 768 on
  two CPU cores: 3 s against 50 s). G is scaled by its max-abs first (no
  overflow in the Gram matrix; the eigenvectors are unchanged). On a mesh
  with explicit axes the Gram matrix is all-reduced to every device.
  """
  g = g.astype(_validation.factor_dtype(g.dtype))  # as the step computes
  G = _layout.to_matrix(sp.plan, g)
  scale = jnp.max(jnp.abs(G), axis=(-2, -1), keepdims=True)
  a = G / jnp.where(scale > 0, scale, 1)
  a_t = jnp.swapaxes(a, -1, -2)
  gram = _layout.gathered(a)
  _, vectors = jnp.linalg.eigh(matmul(a_t, a, gram) if sp.side == 'right'
                               else matmul(a, a_t, gram))
  return matricize.match_sharding(vectors[..., :, ::-1][..., :, :sp.rank],
                                  proj)


@functools.partial(jax.jit, static_argnames='plans')
def _refreshed_projectors(gs, projs, refresh, plans):
  """Every leaf's projector after this step's refresh decision.

  The decision is the step counter's, the same for every leaf; how it is
  compiled per backend is :func:`alada_optax._backends.refresh_by_step`'s
  (one conditional for all leaves on GPU and TPU, one per leaf on CPU).
  Leaves without a projector pass through; with none, there is no
  conditional at all.
  """
  active = [i for i, sp in enumerate(plans) if sp.active]
  if not active:
    return list(projs)
  new = _backends.refresh_by_step(
      refresh,
      [lambda i=i: _top_singular_vectors(gs[i], projs[i], plans[i])
       for i in active],
      [projs[i] for i in active])
  projs = list(projs)
  for i, proj in zip(active, new):
    projs[i] = proj
  return projs


def _subspace_momentum_numerator(g, mu, proj, count, b1, gap,
                                 sp: SubspacePlan):
  """Subspace-Momentum: returns ``(numerator, mu)``.

  Active leaves: ``proj`` is ``P`` of this step (on refresh steps, ``count %
  gap == 0``, the top ``r`` singular vectors of the gradient on the shorter
  side: :func:`_refreshed_projectors`), and the momentum restarts at 0 on
  them. ``M <- b1 M + (1 - b1) P^T G``; the numerator is
  ``P M / (1 - b1^(k+1)) + (G - P P^T G)``, ``k = count % gap`` the steps
  since the refresh. Other leaves: ``M <- b1 M + (1 - b1) g`` and
  ``M / (1 - b1^(count+1))``.
  """
  dtype = g.dtype
  if not sp.active:
    mu = b1 * mu + (1 - b1) * g
    return mu / (1 - b1 ** (count + 1).astype(dtype)), mu

  plan, right = sp.plan, sp.side == 'right'
  # On a mesh with explicit axes: G sharded as the matrix view of g, P kept
  # where the layout table stores it, P^T G reduced into the momentum's
  # layout. Only low-rank values move; G never does.
  G = _layout.to_matrix(plan, g)
  since = count % gap
  proj_t = jnp.swapaxes(proj, -1, -2)
  mu_spec = _layout.explicit_spec(mu)
  low = (matmul(G, proj, mu_spec) if right
         else matmul(proj_t, G, mu_spec))
  back = (lambda x: matmul(x, proj_t)) if right else (lambda x: matmul(proj, x))
  mu = b1 * jnp.where(since == 0, 0, mu) + (1 - b1) * low
  bc1 = 1 - b1 ** (since + 1).astype(dtype)
  numerator = back(mu / bc1) + (G - back(low))
  return _layout.from_matrix(plan, numerator, g), mu


def _subspace_tree_kernel(leaf, hyperparams, subspace_of):
  """The step of all leaves (``_leafwise``'s ``tree_kernel``): one refresh
  decision for the tree, then ``leaf`` per leaf with its projector of this
  step. ``subspace_of(plan)`` is a leaf plan's :class:`SubspacePlan`;
  ``hyperparams[-1]`` is the gap between refreshes."""
  gap = hyperparams[-1]

  def tree_kernel(gs, states, plans, count):
    projs = _refreshed_projectors(
        gs, [s.proj for s in states], count % gap == 0,
        tuple(subspace_of(p) for p in plans))
    return [leaf(g, s._replace(proj=proj), plan, count, hyperparams)
            for g, s, plan, proj in zip(gs, states, plans, projs)]

  return tree_kernel


def _check_gap(update_proj_gap):
  if isinstance(update_proj_gap, (int, np.integer)) and update_proj_gap < 1:
    raise ValueError(
        f'update_proj_gap must be a positive integer, got {update_proj_gap}.')


_DEFAULT_RANK = 128


def _check_rank(name, rank):
  return _validation.static_int(name, 'rank', rank, _DEFAULT_RANK, 1)


# -- Subset-Norm on its own ----------------------------------------------------


class ScaleBySubsetNormState(NamedTuple):
  """State of :func:`scale_by_subset_norm`.

  Attributes:
    count: number of updates applied, int32 scalar.
    nu: one accumulator per subset (see :func:`scale_by_subset_norm`),
      float32 (or wider for wider params).

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_subset_norm
    >>> params = {'w': jnp.zeros((8, 6)), 'b': jnp.zeros((5,))}
    >>> state = scale_by_subset_norm().init(params)
    >>> print(state.nu['w'].shape, state.nu['b'].shape)  # rows; coordinates
    (8,) (5,)
  """

  count: jax.Array
  nu: optax.Updates


_SN_FIELDS = _leafwise.declare(ScaleBySubsetNormState, {
    'nu': _leafwise.Field(_layout.subsets, lambda shape, sn: sn.acc_shape),
})


@functools.partial(jax.jit, static_argnames='sn')
def _sn_leaf(g, state, sn, count, hyperparams):
  dtype = _validation.factor_dtype(g.dtype)
  b2, eps = (jnp.asarray(x, dtype) for x in hyperparams)
  g = g.astype(dtype)
  denom, nu = _subset_norm_denominator(g, state.nu, count, b2, eps, sn)
  return sn.divide(g, denom), state._replace(nu=nu)


def scale_by_subset_norm(
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-6,
    *,
    subset_size: Optional[int] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  r"""Subset-Norm step size: divide each update by its subset's norm.

  For every subset :math:`S` of a leaf's coordinates (see ``subset_size``)

  .. math::

    \nu_S \leftarrow \beta_2 \nu_S + (1 - \beta_2) \|u_S\|^2, \qquad
    u_j \leftarrow \frac{u_j}{\sqrt{\nu_{S(j)} / (1 - \beta_2^{t+1})}
    + \varepsilon},

  where :math:`u` are the incoming updates (the gradient in the paper). With
  ``b2 = 1`` the accumulator is AdaGrad's running sum
  :math:`\nu_S \leftarrow \nu_S + \|u_S\|^2` with no bias correction: this is
  the paper's AdaGrad-SN (with subsets of one coordinate, AdaGrad; with one
  subset, AdaGrad-Norm). ``optax.chain(scale_by_subset_norm(),
  optax.scale_by_learning_rate(lr))`` is RMSprop-SN.

  Args:
    b2: Decay of the accumulators; 1 for AdaGrad's sum.
    eps: Added to the (bias-corrected) root of the accumulator.
    subset_size: ``None`` for the paper's heuristic (the code's
      ``'heuristics'``): a leaf of order >= 2, viewed as a (batch of)
      ``m x n`` matrices, has one subset per row if ``m >= n``, else per
      column, so that each subset has ``min(m, n)`` coordinates; vectors and
      scalars have one subset per coordinate. ``k > 0`` splits the flattened
      leaf (row-major) into contiguous subsets of ``s`` coordinates, ``s``
      the largest divisor of its size that is ``<= k``; ``-c < 0`` uses
      ``k = floor(sqrt(d) / c)`` for a leaf of ``d`` coordinates (the code's
      ``AdamWSN`` default is -2). Static: it sets shapes.
    dimension_numbers: The matrix view of leaves of order >= 2 (as in
      :func:`alada_optax.scale_by_alada`).

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    A ``2 x 3`` gradient has one subset per column (the accumulators run
    along the longer side): each entry is divided by the bias-corrected
    norm of its column.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from alada_optax import scale_by_subset_norm
    >>> params = jnp.zeros((2, 3))
    >>> grads = jnp.array([[1., -2., 3.], [-4., 5., -6.]])
    >>> tx = scale_by_subset_norm()
    >>> updates, state = tx.update(grads, tx.init(params))
    >>> with np.printoptions(precision=3, suppress=True):
    ...   print(updates)
    [[ 0.243 -0.371  0.447]
     [-0.97   0.928 -0.894]]

  References:
    Nguyen & Nguyen, `Lean and Mean Adaptive Optimization via Subset-Norm and
    Subspace-Momentum with Convergence Guarantees
    <https://arxiv.org/abs/2411.07120>`_, ICML 2025
  """
  name = 'scale_by_subset_norm'
  _validation.check_hyperparams(
      name, b2=(b2, _validation.UNIT), eps=(eps, _validation.NON_NEGATIVE))

  return _leafwise.transformation(
      name, _SN_FIELDS, _sn_leaf, (b2, eps),
      lambda shape, spec: subset_plan(shape, subset_size, spec),
      dimension_numbers=dimension_numbers)


# -- Subspace-Momentum on its own ----------------------------------------------


class ScaleBySubspaceMomentumState(NamedTuple):
  """State of :func:`scale_by_subspace_momentum`.

  Attributes:
    count: number of updates applied, int32 scalar.
    mu: momentum: ``batch + (m, r)`` or ``batch + (r, n)`` in the subspace
      of leaves with a projector, the leaf's shape otherwise; ``mu_dtype``.
    proj: the projector ``P`` with orthonormal columns, ``batch + (n, r)``
      (right) or ``batch + (m, r)`` (left), float32; shape ``(0,)`` for
      leaves with full momentum.

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_subspace_momentum
    >>> params = {'w': jnp.zeros((8, 6)), 'b': jnp.zeros((5,))}
    >>> state = scale_by_subspace_momentum(rank=2).init(params)
    >>> print(state.mu['w'].shape, state.proj['w'].shape)  # projects on the right
    (8, 2) (6, 2)
    >>> print(state.mu['b'].shape, state.proj['b'].shape)  # full momentum
    (5,) (0,)
  """

  count: jax.Array
  mu: optax.Updates
  proj: optax.Updates


_SM_FIELDS = _leafwise.declare(ScaleBySubspaceMomentumState, {
    'mu': _leafwise.Field(_layout.subspace_momentum,
                          lambda shape, sp: sp.mu_shape, _leafwise.MOMENT),
    'proj': _leafwise.Field(_layout.subspace_projector,
                            lambda shape, sp: sp.proj_shape),
})


@functools.partial(jax.jit, static_argnames='sp')
def _sm_leaf(g, state, sp, count, hyperparams):
  dtype = _validation.factor_dtype(g.dtype)
  b1, gap = hyperparams
  b1 = jnp.asarray(b1, dtype)
  g = g.astype(dtype)
  direction, mu = _subspace_momentum_numerator(
      g, state.mu.astype(dtype), state.proj, count, b1, gap, sp)
  return direction, state._replace(mu=mu)


def scale_by_subspace_momentum(
    b1: jax.typing.ArrayLike = 0.9,
    update_proj_gap: jax.typing.ArrayLike = 200,
    *,
    rank: Optional[int] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  r"""Subspace-Momentum: momentum in a rank-``r`` subspace, SGD outside it.

  For a leaf viewed as an ``m x n`` matrix :math:`G` with ``r < min(m, n)``
  (``m < n`` shown; for ``m >= n`` the projector acts on the right,
  :math:`G P`), with :math:`k = t \bmod T` the steps since the last refresh:

  .. math::

    \begin{align*}
      P &\leftarrow \text{top-}r \text{ left singular vectors of } G_t,
        \quad M \leftarrow 0 && (k = 0) \\
      M &\leftarrow \beta_1 M + (1 - \beta_1) P^\top G_t \\
      u_t &\leftarrow \frac{P M}{1 - \beta_1^{k+1}}
        + (G_t - P P^\top G_t)
    \end{align*}

  Vectors, scalars and matrices with ``min(m, n) <= r`` keep a full momentum:
  :math:`u_t = M / (1 - \beta_1^{t+1})`. The singular vectors are computed
  only on refresh steps (one ``jax.lax.cond`` for all leaves). See
  :func:`adamw_snsm` for the readings of the paper.

  Args:
    b1: Momentum decay.
    update_proj_gap: ``T``: the projector is recomputed every ``T`` steps,
      on steps ``0, T, 2T, ...``.
    rank: ``r``, the subspace dimension (static; None for 128. It sets shapes, so it cannot be traced: with
      :func:`optax.inject_hyperparams`, list it in ``static_args`` when
      you set it).
    mu_dtype: Storage dtype of the momentum; if ``None``, the params'.
    dimension_numbers: The matrix view of leaves of order >= 2.

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    With a constant gradient the debiased momentum in the subspace plus the
    SGD part outside it give back the gradient:

    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_subspace_momentum
    >>> params = jnp.zeros((2, 3))
    >>> grads = jnp.array([[1., -2., 3.], [-4., 5., -6.]])
    >>> tx = scale_by_subspace_momentum(rank=1)
    >>> updates, state = tx.update(grads, tx.init(params))
    >>> print(jnp.allclose(updates, grads, atol=1e-5), state.proj.shape)
    True (2, 1)

  References:
    Nguyen & Nguyen, `Lean and Mean Adaptive Optimization via Subset-Norm and
    Subspace-Momentum with Convergence Guarantees
    <https://arxiv.org/abs/2411.07120>`_, ICML 2025
  """
  name = 'scale_by_subspace_momentum'
  rank = _check_rank(name, rank)
  _check_gap(update_proj_gap)
  _validation.check_hyperparams(name, b1=(b1, _validation.DECAY))
  mu_dtype = _validation.check_mu_dtype(name, mu_dtype)

  return _leafwise.transformation(
      name, _SM_FIELDS, None, None,
      lambda shape, spec: subspace_plan(shape, rank, spec),
      dimension_numbers=dimension_numbers, mu_dtype=mu_dtype,
      tree_kernel=_subspace_tree_kernel(
          _sm_leaf, (b1, update_proj_gap), lambda sp: sp),
      tree_kernel_key=_leafwise.concrete_key(_sm_leaf, b1, update_proj_gap))


# -- Adam-SN with Subspace-Momentum --------------------------------------------


class ScaleByAdamSNSMState(NamedTuple):
  """State of :func:`scale_by_adam_snsm`.

  Attributes:
    count: number of updates applied, int32 scalar.
    mu: momentum (see :class:`ScaleBySubspaceMomentumState`).
    proj: projectors (see :class:`ScaleBySubspaceMomentumState`); all of
      shape ``(0,)`` without subspace momentum.
    nu: Subset-Norm accumulators (see :class:`ScaleBySubsetNormState`).

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_adam_snsm
    >>> params = {'w': jnp.zeros((8, 6)), 'b': jnp.zeros((5,))}
    >>> state = scale_by_adam_snsm(rank=2).init(params)
    >>> print(state.mu['w'].shape, state.proj['w'].shape, state.nu['w'].shape)
    (8, 2) (6, 2) (8,)
  """

  count: jax.Array
  mu: optax.Updates
  proj: optax.Updates
  nu: optax.Updates


# Each leaf's plan is the pair (SubspacePlan, SubsetPlan).
_SNSM_FIELDS = _leafwise.declare(ScaleByAdamSNSMState, {
    'mu': _leafwise.Field(_layout.subspace_momentum,
                          lambda shape, plans: plans[0].mu_shape,
                          _leafwise.MOMENT),
    'proj': _leafwise.Field(_layout.subspace_projector,
                            lambda shape, plans: plans[0].proj_shape),
    'nu': _leafwise.Field(_layout.subsets,
                          lambda shape, plans: plans[1].acc_shape),
})


@functools.partial(jax.jit, static_argnames='plans')
def _snsm_leaf(g, state, plans, count, hyperparams):
  sp, sn = plans
  dtype = _validation.factor_dtype(g.dtype)
  *rates, gap = hyperparams
  b1, b2, eps = (jnp.asarray(x, dtype) for x in rates)
  g = g.astype(dtype)
  numerator, mu = _subspace_momentum_numerator(
      g, state.mu.astype(dtype), state.proj, count, b1, gap, sp)
  denom, nu = _subset_norm_denominator(g, state.nu, count, b2, eps, sn)
  return sn.divide(numerator, denom), state._replace(mu=mu, nu=nu)


def scale_by_adam_snsm(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-6,
    update_proj_gap: jax.typing.ArrayLike = 200,
    *,
    rank: Optional[int] = None,
    subspace_momentum: bool = True,
    subset_size: Optional[int] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  r"""Adam with a Subset-Norm second moment and (optionally) Subspace-Momentum.

  The numerator is :func:`scale_by_subspace_momentum`'s output (or Adam's
  bias-corrected momentum with ``subspace_momentum=False``), computed from the
  gradient; the denominator is :func:`scale_by_subset_norm`'s, also computed
  from the gradient (not from the numerator, which is why this is one
  transformation and not a chain of the two):

  .. math::

    u_j = \frac{N_j}{\sqrt{\nu_{S(j)} / (1 - \beta_2^{t+1})} + \varepsilon},
    \qquad N = \frac{P M}{1 - \beta_1^{k+1}} + (G_t - P P^\top G_t).

  See :func:`adamw_snsm` for the whole algorithm and the readings of the
  paper it makes.

  Args:
    b1: Momentum decay.
    b2: Decay of the Subset-Norm accumulators (1: AdaGrad's sum).
    eps: Added to the root of the bias-corrected accumulator.
    update_proj_gap: Steps between projector refreshes.
    rank: Subspace dimension (static; None for 128. It sets shapes, so it cannot be traced: with
      :func:`optax.inject_hyperparams`, list it in ``static_args`` when
      you set it).
    subspace_momentum: ``False`` keeps Adam's full momentum (AdamW-SN).
    subset_size: ``None`` for the paper's heuristic; see
      :func:`scale_by_subset_norm`.
    mu_dtype: Storage dtype of the momentum; if ``None``, the params'.
    dimension_numbers: The matrix view of leaves of order >= 2.

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    A constant gradient: the subspace momentum gives back the gradient, and
    each column is divided by its norm, as :func:`scale_by_subset_norm` does.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from alada_optax import scale_by_adam_snsm
    >>> params = jnp.zeros((2, 3))
    >>> grads = jnp.array([[1., -2., 3.], [-4., 5., -6.]])
    >>> tx = scale_by_adam_snsm(rank=1)
    >>> updates, state = tx.update(grads, tx.init(params))
    >>> with np.printoptions(precision=3, suppress=True):
    ...   print(updates)
    [[ 0.243 -0.371  0.447]
     [-0.97   0.928 -0.894]]

  References:
    Nguyen & Nguyen, `Lean and Mean Adaptive Optimization via Subset-Norm and
    Subspace-Momentum with Convergence Guarantees
    <https://arxiv.org/abs/2411.07120>`_, ICML 2025
  """
  name = 'scale_by_adam_snsm'
  rank = _check_rank(name, rank)
  _check_gap(update_proj_gap)
  _validation.check_hyperparams(
      name, b1=(b1, _validation.DECAY), b2=(b2, _validation.UNIT),
      eps=(eps, _validation.NON_NEGATIVE))
  mu_dtype = _validation.check_mu_dtype(name, mu_dtype)

  def plans(shape, spec):
    sp = (subspace_plan(shape, rank, spec) if subspace_momentum
          else SubspacePlan(tuple(int(k) for k in shape), 0))
    return sp, subset_plan(shape, subset_size, spec)

  return _leafwise.transformation(
      name, _SNSM_FIELDS, None, None, plans,
      dimension_numbers=dimension_numbers, mu_dtype=mu_dtype,
      tree_kernel=_subspace_tree_kernel(
          _snsm_leaf, (b1, b2, eps, update_proj_gap), lambda p: p[0]),
      tree_kernel_key=_leafwise.concrete_key(
          _snsm_leaf, b1, b2, eps, update_proj_gap))


def adamw_snsm(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-6,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    update_proj_gap: jax.typing.ArrayLike = 200,
    *,
    rank: Optional[int] = None,
    subset_size: Optional[int] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamW with Subset-Norm step sizes and Subspace-Momentum (AdamSNSM).

  Optimizer state per ``m x n`` matrix (``m >= n``, ``r < n``): ``r m``
  momentum, ``r n`` projector and ``m`` Subset-Norm accumulators, against
  Adam's ``2 m n``. Vectors and scalars keep Adam's two moments.

  For a leaf viewed as an ``m x n`` matrix :math:`G_t` with ``m < n`` (the
  other case projects on the right) and :math:`k = t \bmod T`:

  .. math::

    \begin{align*}
      P &\leftarrow \text{top-}r \text{ left singular vectors of } G_t,
        \quad M \leftarrow 0 \qquad (k = 0) \\
      M &\leftarrow \beta_1 M + (1 - \beta_1) P^\top G_t, \qquad
      N_t = \frac{P M}{1 - \beta_1^{k+1}} + (G_t - P P^\top G_t) \\
      \nu_i &\leftarrow \beta_2 \nu_i + (1 - \beta_2) \|(G_t)_{:, i}\|^2
        \qquad (\text{one accumulator per column}) \\
      u_t &\leftarrow -\eta_t \left(\frac{(N_t)_{:, i}}
        {\sqrt{\nu_i / (1 - \beta_2^{t+1})} + \varepsilon}
        + \lambda X_t\right)
    \end{align*}

  Readings of the paper and of its code (``GenericOptim`` with
  ``momentum_type='sm'``, ``second_moment_type='sn'``,
  ``subset_size='heuristics'``, ``proj_type='svd'``):

  * **Subsets.** A matrix keeps its accumulators along the longer side (one
    per row if ``m >= n``), each summing the squares of ``min(m, n)``
    coordinates; vectors and scalars are coordinate-wise, as the code runs
    plain Adam on non-``Linear`` parameters. Leaves of order > 2 use the
    matrix view of eq. (12) (the code handles 2-D weights only).
    ``subset_size`` selects the code's flat ``sqrt(d)``-sized subsets instead.
  * **Projector side.** ``P`` is on the shorter side, as in the code: the top
    ``r`` left singular vectors for ``m < n``, right ones for ``m >= n``
    (square matrices project on the right). Leaves of order < 2, and
    matrices with ``min(m, n) <= r``, keep a full momentum.
  * **Refresh.** ``P`` is recomputed on steps ``0, T, 2T, ...`` (0-based);
    the code refreshes on its 1-based steps ``1, T, 2T, ...``, one step
    earlier after the first.
  * **Momentum across refreshes: reset.** The code's default discards the
    momentum when the subspace changes (the other option keeps coordinates
    of the old basis in the new one). Its implementation rebinds the state
    after reading it, so on a refresh step it steps with the *old* momentum
    projected back through the *new* basis and then drops that step's
    gradient from the momentum; here the momentum restarts at 0 and takes
    the refresh step's gradient.
  * **Bias correction.** The subspace momentum is debiased by
    :math:`1 - \beta_1^{k+1}` with :math:`k` the steps since the last
    refresh, which makes :math:`P M / (1 - \beta_1^{k+1})` an average of
    projected gradients right after each reset; the orthogonal SGD part is
    not scaled. (The code multiplies the whole step, orthogonal part
    included, by :math:`1 / (1 - \beta_1^{t})` of the global step: up to 10x
    on the first steps with ``b1 = 0.9``.) The second moment is debiased as
    in :func:`optax.adam`, with ``eps`` outside the square root of the
    debiased accumulator (the code adds ``eps`` before debiasing).
  * **AdaGrad.** ``b2 = 1`` accumulates sums without bias correction (the
    code's AdaGrad-SN(SM)).
  * **Inputs.** ``b1`` must be in ``[0, 1)``, ``b2`` in ``[0, 1]``, ``eps >=
    0`` (checked when concrete); updates have the gradients' dtype promoted
    with the params' (as in :func:`optax.adam`); ``update`` needs ``params``
    only for weight decay (not with the default ``weight_decay=0``).
  * **Weight decay** is optax's decoupled ``-lr * wd * X_t`` on the params
    before the step (the code decays the params after the step, a second
    order difference).
  * **How the singular vectors are computed.** As the top-``r``
    eigenvectors of the Gram matrix on the shorter side (``G G^T`` or
    ``G^T G``, ``jnp.linalg.eigh``): the same subspace as the code's
    ``torch.linalg.svd``, at a fraction of the cost for tall matrices. It
    runs in float32 (float64 for float64 params), only on refresh steps
    (one ``jax.lax.cond`` around all leaves' eigendecompositions: the
    refresh steps are the step counter's, the same for every leaf). Matrix products use full float32 precision
    (``Precision.HIGHEST``: no TF32 on GPUs, whose rounding would otherwise
    leak from the in-subspace part of ``G`` into ``G - P P^T G``).

  Defaults follow the code's pre-training runs: ``rank=128``,
  ``update_proj_gap=200``, ``b1=0.9``, ``b2=0.999``, ``eps=1e-6``. Its
  learning rates are larger than Adam's: the accumulators are squared norms
  of ``min(m, n)`` coordinates, so at the same rate its steps are about
  ``1/sqrt(min(m, n))`` of Adam's.

  Args:
    learning_rate: A global scaling factor, fixed or a schedule.
    b1: Momentum decay.
    b2: Decay of the Subset-Norm accumulators; 1 for AdaGrad sums.
    eps: Added to the root of the debiased accumulators.
    weight_decay: Decoupled weight decay (times the learning rate).
    mask: Which leaves weight decay applies to (a tree, prefix or callable).
    update_proj_gap: ``T``, steps between projector refreshes.
    rank: ``r``, the momentum subspace dimension (static; None for 128. It sets shapes, so it cannot be traced: with
      :func:`optax.inject_hyperparams`, list it in ``static_args`` when
      you set it).
    subset_size: ``None`` for the paper's heuristic subsets; see
      :func:`scale_by_subset_norm`.
    mu_dtype: Storage dtype of the momentum; if ``None``, the params'.
    dimension_numbers: The matrix view of leaves of order >= 2 (as in
      :func:`alada_optax.alada`; batch axes get their own projectors).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from alada_optax import adamw_snsm
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)  # a quadratic over a matrix
    >>> solver = adamw_snsm(learning_rate=0.1, rank=1, update_proj_gap=10)
    >>> params = jnp.zeros((4, 3))
    >>> print('Objective function: {:.2f}'.format(f(params)))
    Objective function: 12.00
    >>> opt_state = solver.init(params)
    >>> update = jax.jit(solver.update)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2f}'.format(f(params)))
    Objective function: 10.65
    Objective function: 9.39
    Objective function: 8.21
    Objective function: 7.12
    Objective function: 6.11

  References:
    Nguyen & Nguyen, `Lean and Mean Adaptive Optimization via Subset-Norm and
    Subspace-Momentum with Convergence Guarantees
    <https://arxiv.org/abs/2411.07120>`_, ICML 2025
  """
  return optax.chain(
      scale_by_adam_snsm(
          b1=b1, b2=b2, eps=eps, update_proj_gap=update_proj_gap, rank=rank,
          subspace_momentum=True, subset_size=subset_size, mu_dtype=mu_dtype,
          dimension_numbers=dimension_numbers),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )


def adamw_sn(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-6,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    *,
    subset_size: Optional[int] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamW with Subset-Norm step sizes (AdamW-SN): Adam's full momentum.

  :func:`adamw_snsm` without the subspace momentum: Adam's momentum, and one
  second-moment accumulator per subset :math:`S` of coordinates (per row or
  column of the matrix view, along the longer side, by default). State per
  ``m x n`` matrix: ``m n + max(m, n)`` against Adam's ``2 m n``. With
  :math:`S(j)` the subset of coordinate :math:`j`:

  .. math::

    \begin{align*}
      m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
      \nu_S &\leftarrow \beta_2 \nu_S + (1 - \beta_2) \|(g_t)_S\|^2 \\
      u_{t,j} &\leftarrow -\eta_t \left( \frac{m_{t,j} / (1 - \beta_1^{t+1})}
        {\sqrt{\nu_{S(j)} / (1 - \beta_2^{t+1})} + \varepsilon}
        + \lambda X_{t,j} \right)
    \end{align*}

  The readings of the paper and its code are those of :func:`adamw_snsm`.

  Args:
    learning_rate: A global scaling factor, fixed or a schedule.
    b1: Momentum decay.
    b2: Decay of the Subset-Norm accumulators; 1 for AdaGrad sums.
    eps: Added to the root of the debiased accumulators.
    weight_decay: Decoupled weight decay (times the learning rate).
    mask: Which leaves weight decay applies to (a tree, prefix or callable).
    subset_size: ``None`` for the paper's heuristic subsets; see
      :func:`scale_by_subset_norm`.
    mu_dtype: Storage dtype of the momentum; if ``None``, the params'.
    dimension_numbers: The matrix view of leaves of order >= 2 (as in
      :func:`alada_optax.alada`).

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from alada_optax import adamw_sn
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)  # a quadratic over a matrix
    >>> solver = adamw_sn(learning_rate=0.1)
    >>> params = jnp.zeros((4, 3))
    >>> print('Objective function: {:.2f}'.format(f(params)))
    Objective function: 12.00
    >>> opt_state = solver.init(params)
    >>> update = jax.jit(solver.update)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2f}'.format(f(params)))
    Objective function: 10.65
    Objective function: 9.39
    Objective function: 8.21
    Objective function: 7.12
    Objective function: 6.11

  References:
    Nguyen & Nguyen, `Lean and Mean Adaptive Optimization via Subset-Norm and
    Subspace-Momentum with Convergence Guarantees
    <https://arxiv.org/abs/2411.07120>`_, ICML 2025
  """
  return optax.chain(
      scale_by_adam_snsm(
          b1=b1, b2=b2, eps=eps, rank=1, subspace_momentum=False,
          subset_size=subset_size, mu_dtype=mu_dtype,
          dimension_numbers=dimension_numbers),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
