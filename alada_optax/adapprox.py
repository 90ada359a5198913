"""Adapprox: Adam's second moment as an adaptive-rank randomized factorisation.

Reference: P. Zhao, P. Li, Y. Gu, Y. Zheng, S. L. Koelker, Z. Wang, X. Yuan,
"Adapprox: Adaptive Approximation in Adam Optimization via Randomized
Low-Rank Matrices", 2024 (arXiv 2403.14958). There is no public code; the readings
made here are listed in :func:`adapprox`.

Per ``m x n`` matrix the second moment is kept as ``Q U^T`` with
``Q: m x k``, ``U: n x k``. Each step forms
``V = b2 max(Q U^T, 0) + (1 - b2) G^2``, steps by ``G / (sqrt(V) + eps)``
with RMS clipping (and optionally a first moment of the clipped step), and
refits ``Q U^T`` to ``V`` by a streamlined randomized subspace iteration whose
rank ``k`` is chosen each step from the approximation error.
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
from alada_optax import _leafwise
from alada_optax import _layout
from alada_optax import _validation
from alada_optax import matricize
from alada_optax.matricize import matmul


@dataclasses.dataclass(frozen=True)
class FactorPlan:
  """How one leaf keeps its moments.

  Attributes:
    shape: the leaf's shape.
    plan: its matrix view (vectors are ``1 x n``, scalars ``1 x 1``); the RMS
      clipping is per matrix of the view.
    factored: whether the second moment is ``Q U^T`` (else dense, exact).
    max_rank: columns of ``Q`` and ``U`` (``k_max``).
    width: columns of the random sketch, ``min(k_max + oversample, m, n)``.
    first_moment: whether the leaf keeps a first moment (``b1`` is not None).

  The ``*_shape`` properties give the state's shapes, None where the leaf
  holds a placeholder.
  """

  shape: tuple[int, ...]
  plan: matricize.MatrixPlan
  factored: bool
  max_rank: int
  width: int
  first_moment: bool = True

  @property
  def mu_shape(self):
    return self.shape if self.first_moment else None

  @property
  def q_shape(self):
    return (self.plan.batch_shape + (self.plan.m, self.max_rank)
            if self.factored else None)

  @property
  def u_shape(self):
    return (self.plan.batch_shape + (self.plan.n, self.max_rank)
            if self.factored else None)

  @property
  def rank_shape(self):
    return self.plan.batch_shape if self.factored else None

  @property
  def nu_shape(self):
    return None if self.factored else self.shape

  @property
  def sketch_shape(self):
    """The random sketch's shape; ``(0,)`` (none) if not factored."""
    if not self.factored:
      return (0,)
    return self.plan.batch_shape + (self.plan.n, self.width)


def factor_plan(shape, max_rank: int, oversample: int,
                min_dim_size_to_factor: int,
                dimension_numbers=None, first_moment: bool = True
                ) -> FactorPlan:
  """Leaves of order >= 2 whose matrices have ``k_max < min(m, n)`` and
  ``min(m, n) >= min_dim_size_to_factor`` are factored; others keep a dense
  second moment."""
  shape = tuple(int(k) for k in shape)
  if len(shape) < 2:
    return FactorPlan(shape, matricize.plan_for(shape), False, max_rank, 0,
                      first_moment)
  plan = matricize.plan_for(shape, dimension_numbers)
  short = min(plan.m, plan.n)
  factored = max_rank < short and short >= min_dim_size_to_factor
  width = min(max_rank + oversample, short) if factored else 0
  return FactorPlan(shape, plan, factored, max_rank, width, first_moment)


def _tall_skinny(x: jax.Array, y: jax.Array) -> jax.Array:
  """``x @ y`` for a sharded matrix ``x`` and a thin ``y``, whole everywhere.

  QR needs the ``m x w`` (or ``n x w``) product whole on every device. On a
  mesh with explicit axes, asking the product for that sharding directly
  makes XLA gather ``x`` itself, the full matrix, to every device. Here the
  product first keeps ``x``'s row sharding (each device contracts its own
  block; the partial sums are all-reduced over ``x``'s column axes), and only
  the thin result is then gathered: ``(m + n) w`` numbers move instead of
  ``m n`` (``python -m benchmarks.collectives`` measures it). Elsewhere
  (automatic axes, one device) a plain product.
  """
  spec = _layout.explicit_spec(x)
  if spec is None:
    return matmul(x, y)
  rows = jax.sharding.NamedSharding(
      spec.mesh, jax.sharding.PartitionSpec(*tuple(spec.spec)[:-1], None))
  return jax.sharding.reshard(matmul(x, y, rows), _layout.gathered(x))


def as_rsi(v: jax.Array, sketch: jax.Array, *, max_rank: int,
           power_iterations: int, rank_tolerance: jax.Array,
           min_rank: jax.Array):
  """Adaptive streamlined randomized subspace iteration (our AS-RSI).

  ``v``: ``batch + (m, n)``; ``sketch``: ``batch + (n, w)`` standard normal.
  Returns ``(Q, U, k)``: ``Q`` ``batch + (m, k_max)`` with orthonormal first
  ``k`` columns, ``U = V^T Q`` likewise, the columns past ``k`` zero, so that
  ``Q U^T`` is the best rank-``k`` approximation of ``V`` within the sampled
  subspace, and ``k`` (int32, ``batch``) the smallest rank in
  ``[min_rank, k_max]`` whose relative Frobenius error is
  ``<= rank_tolerance`` (``k_max`` if none is).

  1. ``A = V / max|V|`` (so that nothing below overflows), ``Y = A Omega``,
     ``Q = qr(Y)``;
  2. ``power_iterations`` times: ``Q = qr(A (A^T Q))`` (streamlined: no
     re-orthonormalisation of ``A^T Q`` in between);
  3. ``B = A^T Q``; eigen-decompose ``B^T B = Z diag(s^2) Z^T`` (descending);
     ``Q Z`` and ``B Z`` are the approximate singular vectors times values;
  4. ``||A - Q_k Q_k^T A||_F^2 = ||A||_F^2 - sum_{i<=k} s_i^2`` exactly for
     the orthonormal ``Q_k = (Q Z)_{:, :k}``: pick ``k`` from it.
  """
  dtype = v.dtype
  swap = lambda x: jnp.swapaxes(x, -1, -2)
  scale = jnp.max(jnp.abs(v), axis=(-2, -1), keepdims=True)
  scale = jnp.where(scale > 0, scale, 1)
  a = v / scale
  q, _ = jnp.linalg.qr(_tall_skinny(a, sketch))
  # Unrolled (the count is static and small): a loop would be a `while`
  # per leaf, whose predicate XLA:GPU reads on the host every iteration.
  for _ in range(power_iterations):
    q, _ = jnp.linalg.qr(_tall_skinny(a, _tall_skinny(swap(a), q)))
  b = _tall_skinny(swap(a), q)
  s2, z = jnp.linalg.eigh(matmul(swap(b), b))
  s2 = jnp.maximum(s2[..., ::-1][..., :max_rank], 0)
  z = z[..., ::-1][..., :max_rank]
  width = z.shape[-1]
  energy = jnp.cumsum(s2, axis=-1)
  total = jnp.sum(a * a, axis=(-2, -1))
  enough = energy >= (1 - rank_tolerance**2) * total[..., None]
  k = jnp.where(jnp.any(enough, axis=-1), jnp.argmax(enough, axis=-1) + 1,
                max_rank)
  k = jnp.clip(k, min_rank, max_rank).astype(jnp.int32)
  keep = (jnp.arange(width) < k[..., None]).astype(dtype)[..., None, :]
  q_k = matmul(q, z) * keep
  u_k = matmul(b, z) * keep * scale
  pad = [(0, 0)] * (q_k.ndim - 1) + [(0, max_rank - width)]
  return jnp.pad(q_k, pad), jnp.pad(u_k, pad), k


class ScaleByAdapproxState(NamedTuple):
  """State of :func:`scale_by_adapprox`.

  Every field but ``count`` and ``key`` has one array per leaf of the params;
  a leaf that does not use a field holds a ``(0,)`` placeholder there.

  Attributes:
    count: number of updates applied, int32 scalar.
    key: raw PRNG key data (``jax.random.key_data``) of the next step's
      sketches, uint32.
    mu: first moment of the clipped step, the leaf's shape in ``mu_dtype``
      (``(0,)`` with ``b1=None``).
    q: ``batch + (m, k_max)`` for factored leaves, float32.
    u: ``batch + (n, k_max)`` for factored leaves, float32; the second
      moment is ``Q U^T``.
    rank: the rank ``k`` in use, int32 ``batch_shape``, for factored leaves
      (columns ``k..k_max-1`` of ``q`` and ``u`` are zero).
    nu: dense second moment of the leaves that are not factored.

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_adapprox
    >>> params = {'w': jnp.zeros((8, 6)), 'b': jnp.zeros((5,))}
    >>> tx = scale_by_adapprox(max_rank=2, min_dim_size_to_factor=4)
    >>> state = tx.init(params)
    >>> print(state.q['w'].shape, state.u['w'].shape, state.nu['w'].shape)
    (8, 2) (6, 2) (0,)
    >>> print(state.nu['b'].shape, state.q['b'].shape)  # not factored
    (5,) (0,)
  """

  count: jax.Array
  key: jax.Array
  mu: optax.Updates
  q: optax.Updates
  u: optax.Updates
  rank: optax.Updates
  nu: optax.Updates


_FIELDS = _leafwise.declare(ScaleByAdapproxState, {
    'mu': _leafwise.Field(_layout.like_param, lambda shape, fp: fp.mu_shape,
                          _leafwise.MOMENT),
    'q': _leafwise.Field(_layout.rows_by_rank, lambda shape, fp: fp.q_shape),
    'u': _leafwise.Field(_layout.cols_by_rank, lambda shape, fp: fp.u_shape),
    'rank': _leafwise.Field(_layout.batch, lambda shape, fp: fp.rank_shape,
                            jnp.int32),
    'nu': _leafwise.Field(_layout.like_param, lambda shape, fp: fp.nu_shape),
})


@functools.partial(jax.jit, static_argnames=('fp', 'power_iterations'))
def _adapprox_leaf(g, state, fp: FactorPlan, count, hyperparams, sketch, *,
                   power_iterations: int):
  """One step for one leaf: returns the direction and the leaf's new state.

  ``sketch``: the leaf's random sketch of this step (see
  :func:`draw_sketches`).
  """
  del count  # no bias correction
  dtype = _validation.factor_dtype(g.dtype)
  b1, *rates, min_rank = hyperparams
  b2, eps, clip_threshold, rank_tolerance = (
      jnp.asarray(x, dtype) for x in rates)
  g = g.astype(dtype)
  q, u, rank, nu = state.q, state.u, state.rank, state.nu
  plan = fp.plan
  if fp.factored:
    grad = _layout.to_matrix(plan, g)
    # Q U^T approximates a non-negative matrix but can have negative
    # entries: clamp it at 0 where it is read, so V >= (1 - b2) G^2.
    v_prev = jnp.maximum(matmul(q, jnp.swapaxes(u, -1, -2)), 0)
    v = b2 * v_prev + (1 - b2) * grad * grad
    # The factorisation is a constant to autodiff: QR and eigh have no
    # useful derivatives at the rank-deficient matrices V often is (their
    # derivatives divide by gaps between equal singular values).
    q, u, rank = as_rsi(
        jax.lax.stop_gradient(v), sketch.astype(dtype), max_rank=fp.max_rank,
        power_iterations=power_iterations, rank_tolerance=rank_tolerance,
        min_rank=min_rank)
    step = grad / (jnp.sqrt(v) + eps)
    rms = jnp.sqrt(jnp.mean(step * step, axis=(-2, -1), keepdims=True))
    step = _layout.from_matrix(
        plan, step / jnp.maximum(1, rms / clip_threshold), g)
  else:
    nu = b2 * nu + (1 - b2) * g * g
    step = g / (jnp.sqrt(nu) + eps)
    ms = plan.sum_per_matrix(step * step) / (plan.m * plan.n)
    step = step / plan.expand_batch(jnp.maximum(1, jnp.sqrt(ms) /
                                                clip_threshold))
  state = state._replace(q=q, u=u, rank=rank, nu=nu)
  if fp.first_moment:
    b1 = jnp.asarray(b1, dtype)
    mu = b1 * state.mu.astype(dtype) + (1 - b1) * step
    return mu, state._replace(mu=mu)
  return step, state


def draw_sketches(key_data: jax.Array, shapes, dtype):
  """The sketches of one step: ``(next_key_data, [sketch of leaf i])``.

  ``next_key, step_key = split(key)``; one ``normal(step_key, (total,))`` in
  ``dtype`` is cut, in ``jax.tree.leaves`` order of the params, into the
  leaves' sketches (``shapes``; ``(0,)`` for leaves that are not factored).
  One draw per step keeps a single random-number kernel in the compiled
  update however many leaves there are.
  """
  next_key, step_key = jax.random.split(jax.random.wrap_key_data(key_data))
  sizes = [math.prod(shape) for shape in shapes]
  flat = (jax.random.normal(step_key, (sum(sizes),), dtype) if sum(sizes)
          else jnp.zeros((0,), dtype))
  offsets = np.cumsum([0] + sizes)
  return jax.random.key_data(next_key), [
      flat[offsets[i]:offsets[i + 1]].reshape(shape)
      for i, shape in enumerate(shapes)]


def scale_by_adapprox(
    b1: Optional[jax.typing.ArrayLike] = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    clip_threshold: jax.typing.ArrayLike = 1.0,
    rank_tolerance: jax.typing.ArrayLike = 0.01,
    min_rank: jax.typing.ArrayLike = 1,
    seed: jax.typing.ArrayLike = 0,
    *,
    max_rank: Optional[int] = None,
    oversample: Optional[int] = None,
    power_iterations: Optional[int] = None,
    min_dim_size_to_factor: Optional[int] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to Adapprox.

  The update of :func:`adapprox` before the weight decay and the learning
  rate: with :math:`V_t` the dense second moment formed from the stored
  factors and :math:`G_t^2`, the RMS-clipped step

  .. math::

    \hat m_t = \frac{G_t / (\sqrt{V_t} + \varepsilon)}
      {\max(1, \operatorname{RMS}(G_t / (\sqrt{V_t} + \varepsilon)) / d)},

  or its first moment with ``b1``, after which :math:`V_t` is refitted by a
  low-rank :math:`Q_t U_t^\top` of adaptive rank. See :func:`adapprox` for
  the whole algorithm and the readings made.

  Args:
    b1: Decay of the first moment of the clipped step; ``None`` keeps no
      first moment (and no state for it).
    b2: Decay of the second moment.
    eps: Added to ``sqrt(V)``.
    clip_threshold: ``d``: each matrix's step is scaled down to RMS ``<= d``.
    rank_tolerance: ``xi``: the rank is the smallest whose relative Frobenius
      error on ``V`` is ``<= xi``.
    min_rank: The smallest rank the rule may pick.
    seed: Seed of the random sketches (the state carries the key).
    max_rank: ``k_max``, the columns of ``Q`` and ``U`` (static; None for
      32).
    oversample: Extra sketch columns ``p`` (static; None for 5).
    power_iterations: Subspace iterations ``l`` (static; None for 2;
      unrolled in the compiled step).
    min_dim_size_to_factor: Matrices whose shorter side is below this keep a
      dense second moment (static; None for 128), as in
      :func:`optax.adafactor`. The four static arguments cannot be traced:
      with :func:`optax.inject_hyperparams`, list the ones you set in
      ``static_args``.
    mu_dtype: Storage dtype of the first moment; if ``None``, the params'.
    dimension_numbers: The matrix view of leaves of order >= 2.

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    An ``8 x 6`` gradient whose square has rank 3: the rank rule keeps 2
    columns of ``Q`` and ``U`` (the smallest rank within ``rank_tolerance``,
    0.01, in relative Frobenius error), and the step is clipped to RMS 1.

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_adapprox
    >>> params = jnp.zeros((8, 6))
    >>> grads = jnp.arange(1., 49.).reshape(8, 6)
    >>> tx = scale_by_adapprox(b1=None, max_rank=2, min_dim_size_to_factor=4)
    >>> updates, state = jax.jit(tx.update)(grads, tx.init(params))
    >>> print(state.rank, state.q.shape, state.u.shape)
    2 (8, 2) (6, 2)
    >>> print('{:.3f}'.format(jnp.sqrt(jnp.mean(updates ** 2))))
    1.000

  References:
    Zhao et al., `Adapprox: Adaptive Approximation in Adam Optimization via
    Randomized Low-Rank Matrices <https://arxiv.org/abs/2403.14958>`_, 2024
  """
  name = 'scale_by_adapprox'
  max_rank, oversample, power_iterations, min_dim_size_to_factor = (
      _validation.static_int(name, arg, value, default, low)
      for arg, value, default, low in [
          ('max_rank', max_rank, 32, 1), ('oversample', oversample, 5, 0),
          ('power_iterations', power_iterations, 2, 0),
          ('min_dim_size_to_factor', min_dim_size_to_factor, 128, 0)])
  if isinstance(min_rank, (int, np.integer)) and not 1 <= min_rank <= max_rank:
    raise ValueError(f'min_rank must be in [1, max_rank], got {min_rank}.')
  _validation.check_hyperparams(
      name, b1=(b1, _validation.DECAY), b2=(b2, _validation.DECAY),
      eps=(eps, _validation.NON_NEGATIVE),
      clip_threshold=(clip_threshold, _validation.POSITIVE),
      rank_tolerance=(rank_tolerance, _validation.NON_NEGATIVE))
  mu_dtype = _validation.check_mu_dtype(name, mu_dtype)

  def plan_fn(shape, spec):
    return factor_plan(shape, max_rank, oversample, min_dim_size_to_factor,
                       spec, first_moment=b1 is not None)

  def init_key(params):
    del params
    return {'key': jax.random.key_data(jax.random.key(seed))}

  def draw(state, updates, plans):
    # One draw for every leaf's sketch, in the dtype of the widest factored
    # leaf; the key moves on.
    dtype = jnp.result_type(jnp.float32, *(
        _validation.factor_dtype(g.dtype)
        for g, fp in zip(updates, plans) if fp.factored))
    key, sketches = draw_sketches(
        state.key, [fp.sketch_shape for fp in plans], dtype)
    return sketches, {'key': key}

  return _leafwise.transformation(
      name, _FIELDS,
      functools.partial(_adapprox_leaf, power_iterations=power_iterations),
      (b1, b2, eps, clip_threshold, rank_tolerance, min_rank), plan_fn,
      dimension_numbers=dimension_numbers, mu_dtype=mu_dtype,
      step_inputs=_leafwise.StepInputs(init_key, draw))


def adapprox(
    learning_rate: optax.ScalarOrSchedule,
    b1: Optional[jax.typing.ArrayLike] = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    clip_threshold: jax.typing.ArrayLike = 1.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    rank_tolerance: jax.typing.ArrayLike = 0.01,
    min_rank: jax.typing.ArrayLike = 1,
    seed: jax.typing.ArrayLike = 0,
    *,
    max_rank: Optional[int] = None,
    oversample: Optional[int] = None,
    power_iterations: Optional[int] = None,
    min_dim_size_to_factor: Optional[int] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adapprox: Adam with a randomized, adaptive-rank second moment.

  For a leaf viewed as an ``m x n`` matrix :math:`G_t` (eq. (12) of Alada, or
  ``dimension_numbers``), with :math:`Q_0 U_0^\top = 0`:

  .. math::

    \begin{align*}
      V_t &= \beta_2 \max(Q_{t-1} U_{t-1}^\top, 0) + (1 - \beta_2) G_t^2 \\
      Q_t, U_t, k_t &= \text{AS-RSI}(V_t;\ \Omega_t), \qquad
        \Omega_t \sim \mathcal N(0, 1)^{n \times w} \\
      \hat m_t &= G_t / (\sqrt{V_t} + \varepsilon), \qquad
      \hat m_t \leftarrow \hat m_t / \max(1, \operatorname{RMS}(\hat m_t) / d)
      \\
      m_t &= \beta_1 m_{t-1} + (1 - \beta_1) \hat m_t
        \quad (\hat m_t \text{ itself with } \beta_1 = \text{None}) \\
      X_{t+1} &= X_t - \eta_t (m_t + \lambda X_t)
    \end{align*}

  State per factored ``m x n`` matrix: ``k_max (m + n)`` for the second
  moment plus ``m n`` for the first moment (none with ``b1=None``), against
  Adam's ``2 m n``.

  Readings (the paper's exact algorithms could not be consulted; these are
  the choices made, each tested):

  * **Dense V in the step, non-negative.** The step divides by the root of
    the dense :math:`V_t` (formed from the previous factors and
    :math:`G_t^2`, a transient of the gradient's size); only its
    factorisation is stored. :math:`Q U^\top` approximates a non-negative
    matrix but can have negative entries (as the paper's reviewers point
    out, without an answer in the paper), so it is clamped at 0 where it is
    read: :math:`V_t = \beta_2 \max(Q U^\top, 0) + (1 - \beta_2) G_t^2
    \ge (1 - \beta_2) G_t^2`, which bounds every entry of the step by
    :math:`1 / \sqrt{1 - \beta_2}`. (Without the clamp, an entry whose
    approximation is <= 0 steps by :math:`G / \varepsilon`, and the RMS
    clipping then shrinks every other entry of the matrix to nothing: a
    rank-2 fit of a full-rank :math:`V` stalled in the tests.)
  * **No bias correction**; the RMS clipping (Adafactor's, threshold ``d``,
    per matrix of the view) tames the large first steps this gives. The
    first moment averages the clipped step. The optional cosine-similarity
    guidance of the paper is not implemented.
  * **S-RSI.** Gaussian sketch of ``w = min(k_max + p, m, n)`` columns,
    ``l`` subspace iterations with a QR only after each product by ``V``
    ("streamlined"), then the best rank-``k`` approximation within the
    sampled subspace via the eigen-decomposition of the small ``w x w``
    Gram matrix (see :func:`as_rsi`). ``V`` is scaled by its max-abs first.
  * **Adaptive rank within static shapes.** JAX needs static shapes, so ``Q``
    and ``U`` always have ``k_max`` columns (the paper also allocates
    ``k_max``). Each step the rank ``k_t`` is the smallest in
    ``[min_rank, k_max]`` whose relative Frobenius error
    ``||V_t - Q_k U_k^T||_F / ||V_t||_F`` (computed exactly from the sketch's
    singular values) is ``<= rank_tolerance``; columns past ``k_t`` are
    zeroed and ``k_t`` is kept in the state. The rank changes what is
    stored, not the memory or the compute, which are those of ``k_max``.
  * **Randomness.** A PRNG key (raw key data) lives in the state, seeded by
    ``seed``; each step splits it and draws all the leaves' sketches at
    once (:func:`draw_sketches`). Runs are deterministic given ``seed``.
  * **Autodiff.** ``jax.grad`` through ``update`` (e.g. through unrolled
    steps) treats the factorisation as a constant: ``Q``, ``U`` and ``k``
    are computed from ``stop_gradient(V)``. QR and eigh derivatives divide
    by gaps between singular values, which are 0 at the rank-deficient
    ``V`` that small or structured gradients give; the step itself,
    :math:`G / (\sqrt{V} + \varepsilon)`, stays differentiable in
    :math:`G`.
  * **Precision.** Matrix products run in full float32 precision
    (``Precision.HIGHEST``): TF32 on GPUs keeps a 10-bit mantissa, too
    coarse for the singular-value energies the rank rule compares.
  * **Which leaves are factored.** Matrices (order >= 2, viewed by eq. (12))
    with ``k_max < min(m, n)`` and ``min(m, n) >= min_dim_size_to_factor``;
    vectors, scalars and small matrices keep a dense, exact second moment.
    Factoring saves memory when ``k_max < m n / (m + n)``.
  * **Weight decay** is decoupled, :math:`-\eta_t \lambda X_t`; ``update``
    needs ``params`` only for it (not with the default ``weight_decay=0``).
  * **Inputs.** ``b1`` and ``b2`` must be in ``[0, 1)``, ``eps`` and
    ``rank_tolerance`` ``>= 0``, ``clip_threshold > 0`` (checked when
    concrete); updates have the gradients' dtype promoted with the params'
    (as in :func:`optax.adam`).

  Args:
    learning_rate: A global scaling factor, fixed or a schedule.
    b1: First-moment decay; ``None`` for no first moment.
    b2: Second-moment decay.
    eps: Added to :math:`\sqrt{V}`.
    clip_threshold: ``d`` of the RMS clipping.
    weight_decay: Decoupled weight decay :math:`\lambda`.
    mask: Which leaves weight decay applies to (a tree, prefix or callable).
    rank_tolerance: ``xi`` of the rank rule.
    min_rank: The smallest rank the rule picks.
    seed: Seed of the sketches.
    max_rank: ``k_max`` (static; None for 32).
    oversample: ``p`` (static; None for 5).
    power_iterations: ``l`` (static; None for 2).
    min_dim_size_to_factor: Smaller matrices stay dense (static; None for
      128). The four static arguments cannot be traced: with
      :func:`optax.inject_hyperparams`, list the ones you set in
      ``static_args`` (their defaults, None, are static already).
    mu_dtype: Storage dtype of the first moment; if ``None``, the params'.
    dimension_numbers: The matrix view of leaves of order >= 2.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from alada_optax import adapprox
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)  # a quadratic over a matrix
    >>> solver = adapprox(learning_rate=0.1, max_rank=2,
    ...                   min_dim_size_to_factor=4)
    >>> params = jnp.zeros((8, 6))
    >>> print('Objective function: {:.2f}'.format(f(params)))
    Objective function: 48.00
    >>> opt_state = solver.init(params)
    >>> update = jax.jit(solver.update)
    >>> for _ in range(5):
    ...   grad = jax.grad(f)(params)
    ...   updates, opt_state = update(grad, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    ...   print('Objective function: {:.2f}'.format(f(params)))
    Objective function: 47.04
    Objective function: 45.26
    Objective function: 42.77
    Objective function: 39.71
    Objective function: 36.21

  References:
    Zhao et al., `Adapprox: Adaptive Approximation in Adam Optimization via
    Randomized Low-Rank Matrices <https://arxiv.org/abs/2403.14958>`_, 2024
  """
  return optax.chain(
      scale_by_adapprox(
          b1=b1, b2=b2, eps=eps, clip_threshold=clip_threshold,
          rank_tolerance=rank_tolerance, min_rank=min_rank, seed=seed,
          max_rank=max_rank, oversample=oversample,
          power_iterations=power_iterations,
          min_dim_size_to_factor=min_dim_size_to_factor, mu_dtype=mu_dtype,
          dimension_numbers=dimension_numbers),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
