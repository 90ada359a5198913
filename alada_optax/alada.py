"""Alada: Adam's first moment with a rank-one, alternately refitted second moment.

Reference: Algorithm 2 and Section IV of "Alada: Alternating Adaptation of
Momentum Method for Memory-Efficient Matrix Optimization". In
:func:`scale_by_alada`, ``fold`` is lines 5-7, ``refit`` lines 8-18 and
``step`` lines 20-22; ``alada_optax._backends`` says how the parity's choice
of refit is compiled on each backend.
"""

from typing import Any, NamedTuple, Optional, Union
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alada_optax import _alias
from alada_optax import _backends
from alada_optax import _leafwise
from alada_optax import _layout
from alada_optax import _validation
from alada_optax import matricize


class ScaleByAladaState(NamedTuple):
  """State of :func:`scale_by_alada`.

  Every field but ``count`` is a pytree with the structure of the params (None
  leaves and :class:`optax.MaskedNode` kept). For a leaf viewed as a batch of
  ``m x n`` matrices (see :mod:`alada_optax.matricize`; no batch for the
  default eq. (12) view):

  Attributes:
    count: number of updates applied, int32 scalar.
    mu: first moment ``M``, shaped like the leaf, in ``mu_dtype``.
    p: row factor, shape ``batch_shape + (m,)``.
    q: column factor, shape ``batch_shape + (n,)``.
    v0: ``||G_0||^2 / (m n)`` of the leaf's first non-zero gradient, shape
      ``batch_shape``; 0 while the leaf has only seen zero gradients.
    t0: the ``count`` at which the leaf's first non-zero gradient arrived,
      int32, shape ``batch_shape``. The leaf's step in Algorithm 2 is
      ``t = count - t0`` (its bias corrections); the parity of ``count``,
      one for the whole tree, picks the factor to refit.
  """

  count: jax.Array
  mu: optax.Updates
  p: optax.Updates
  q: optax.Updates
  v0: optax.Updates
  t0: optax.Updates


_NAME = 'scale_by_alada'
# What the rank-one factors fit: M~^2 (Algorithm 2), or G^2 (Section III).
SECOND_MOMENTS = ('momentum', 'gradient')

# mu like the param, p and q along its row and column axes, v0 and t0 along
# its batch axes (see alada_optax.sharding).
_FIELDS = _leafwise.declare(ScaleByAladaState, {
    'mu': _leafwise.Field(_layout.like_param, _leafwise.param_shape,
                          _leafwise.MOMENT),
    'p': _leafwise.Field(_layout.rows,
                         lambda shape, plan: plan.row_factor_shape),
    'q': _leafwise.Field(_layout.cols,
                         lambda shape, plan: plan.col_factor_shape),
    'v0': _leafwise.Field(_layout.batch, lambda shape, plan: plan.batch_shape),
    't0': _leafwise.Field(_layout.batch, lambda shape, plan: plan.batch_shape,
                          jnp.int32),
}, strict=True)


def _unit(factor: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``factor / max|factor|``, the scale, and the unit vector's squared norm.

  The least squares ``V f / (||f||^2 + eps)`` is computed with ``f / max|f|``
  so that neither ``V f`` nor ``||f||^2`` overflows when a factor carries a
  large scale (the same value in exact arithmetic).
  """
  scale = jnp.max(jnp.abs(factor), axis=-1)
  scale = jnp.where(scale > 0, scale, 1)
  u = factor / scale[..., None]
  return u, scale, jnp.sum(u * u, axis=-1)


class _Leaf(NamedTuple):
  """One leaf's arrays and per-matrix scalars for a step of Algorithm 2."""

  mu: jax.Array  # M_{t+1}, as stored
  target: jax.Array  # what V squares: M_{t+1} (line 7), or G_t
  p: jax.Array
  q: jax.Array
  v0: jax.Array
  t0: jax.Array
  started: jax.Array  # the matrix has seen a non-zero gradient before now
  bc1: jax.Array  # 1 - b1^(t+1)
  b2_pow: jax.Array  # b2^(t+1)
  v_scale: jax.Array  # V = (target / v_scale)^2: bc1 (line 7), or 1


def scale_by_alada(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    step_bound: Optional[jax.typing.ArrayLike] = 1.0,
    *,
    second_moment: str = 'momentum',
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to Alada (Algorithm 2 of the paper).

  See :func:`alada` for the math and the readings of the paper it makes.

  Args:
    b1: Decay rate of the first moment ``M``.
    b2: Decay rate of the rank-one second moment ``p q^T``. The paper
      recommends ``b1 = b2 = 0.9`` to match Adam with ``(0.9, 0.999)``.
    eps: Added to ``||q||^2`` and ``||p||^2`` in the refits and to ``U~``
      under the square root.
    mu_dtype: Storage dtype of the first moment; if ``None``, the params'.
      The arithmetic, ``p``, ``q`` and ``v0`` use float32 (or the params'
      dtype if wider). The refit and the step read ``M`` as stored (rounded
      to ``mu_dtype``): no full-size float32 copy of ``M`` is made.
    step_bound: The largest per-entry step ``|M~ / sqrt(U~ + eps)|``; steps
      beyond it are clipped to it (the default's safeguard, see
      :func:`alada`). ``None`` gives the paper's Algorithm 2 exactly.
    second_moment: What the rank-one factors fit: ``'momentum'``, the squared
      bias-corrected momentum ``M~^2`` (Algorithm 2, the default), or
      ``'gradient'``, the squared gradient ``G^2`` (the paper's Section III
      and Algorithm 1; see :func:`alada`).
    dimension_numbers: How each leaf is viewed as a matrix:
      ``None`` (eq. (12) of the paper for every leaf), a
      :class:`MatrixDimensionNumbers` for every leaf, a pytree (prefix of the
      params) of them with ``None`` for eq. (12), or a callable returning such
      a pytree from the params.

  Returns:
    A :class:`optax.GradientTransformation`.
  """
  _validation.check_hyperparams(
      _NAME, b1=(b1, _validation.DECAY), b2=(b2, _validation.DECAY),
      eps=(eps, _validation.NON_NEGATIVE))
  if step_bound is not None:
    _validation.check_hyperparams(
        _NAME, step_bound=(step_bound, _validation.POSITIVE))
  mu_dtype = _validation.check_mu_dtype(_NAME, mu_dtype)
  if second_moment not in SECOND_MOMENTS:
    raise ValueError(
        f'{_NAME}: second_moment must be one of {SECOND_MOMENTS}, got '
        f'{second_moment!r}.')

  def fold(g, state, count) -> _Leaf:
    """Lines 5-7 for one leaf: G folds into M; the leaf's clock; V's target."""
    dtype = _validation.factor_dtype(g.dtype)
    b1_ = jnp.asarray(b1, dtype)
    # Line 5: M_{t+1} = b1 M_t + (1 - b1) G_t, stored in mu's dtype; what
    # follows reads M_{t+1} as stored.
    mu = (b1_ * state.mu.astype(dtype) + (1 - b1_) * g.astype(dtype)).astype(
        state.mu.dtype)
    # Each matrix's Algorithm 2 starts at its first non-zero gradient (v0 is
    # 0 until then), and counts its own t from there.
    started = state.v0 > 0
    t0 = jnp.where(started, state.t0, count)
    tp1 = (count - t0 + 1).astype(dtype)
    bc1 = 1 - b1_**tp1  # Line 6: M~_{t+1} = M_{t+1} / bc1.
    if second_moment == 'gradient':  # Section III: V = G_t^2.
      target, v_scale = g, jnp.ones_like(bc1)
    else:  # Line 7: V = M~_{t+1}^2 = (M_{t+1} / bc1)^2.
      target, v_scale = mu, bc1
    return _Leaf(mu, target, state.p, state.q, state.v0, t0, started,
                 bc1, jnp.asarray(b2, dtype)**tp1, v_scale)

  def refit(leaf: _Leaf, plan: matricize.MatrixPlan, rows: bool):
    """Lines 8-18 for one leaf: refits p (``rows``, even steps) or q.

    One full-size reduction of ``V`` against the other factor. A matrix
    starting now (lines 8-12) reads its row (or column) means of
    ``V = G_0^2`` off the same reduction: ``v0`` is their mean, ``p0`` and
    ``q0`` are ``sqrt(v0)``, and the refit from ``sqrt(v0) 1`` follows.
    Returns the new ``(p, q, v0)``.
    """
    dtype = leaf.p.dtype
    b2_, eps_ = jnp.asarray(b2, dtype), jnp.asarray(eps, dtype)
    big = 1 / jnp.finfo(dtype).smallest_normal
    if rows:  # Line 14: p <- b2 p + (1 - b2) V q / (||q||^2 + eps).
      factor, other, size = leaf.p, leaf.q, plan.n
      reduce, expand = plan.sum_over_cols, plan.expand_cols
    else:  # Line 17: q <- b2 q + (1 - b2) V^T p / (||p||^2 + eps).
      factor, other, size = leaf.q, leaf.p, plan.m
      reduce, expand = plan.sum_over_rows, plan.expand_rows
    # V = (target / v_scale)^2 and every scalar of the least squares go into
    # the reduction's weights; dividing the other factor by its scale there
    # keeps V f / ||f||^2 at the factors' magnitude where V itself overflows
    # (|M| > 1.8e19 in float32). Capped at `big`: never inf * 0.
    u, scale, norm2 = _unit(other)
    k = (1 - b2_) / jnp.square(leaf.v_scale) / (norm2 + eps_ / scale / scale)
    started = leaf.started[..., None]
    # A matrix starting now reduces with the weight 1 / (v_scale^2 size):
    # its row (column) means of V = G_0^2, finite wherever G_0^2 is.
    w = jnp.where(started, jnp.minimum(u / scale[..., None] * k[..., None], big),
                  1 / (jnp.square(leaf.v_scale) * size)[..., None])
    x = leaf.target.astype(dtype)
    # The reduction's result leaves its kernel as it is (see _backends).
    r = _backends.reduction_result(
        matricize.match_sharding(reduce(x * expand(w) * x), factor))

    # Lines 8-12 where a matrix starts now: v0 = ||G_0||^2 / mn (0 if the
    # gradient is 0 or its squares underflow: then nothing starts), and its
    # refit from q0 = sqrt(v0) 1: (1 - b2) sqrt(v0) size r / (size v0 + eps).
    v0 = jnp.where(leaf.started, leaf.v0,
                   jnp.minimum(jnp.mean(r, axis=-1), big))
    nonzero, safe = v0 > 0, jnp.where(v0 > 0, v0, 1)
    root = jnp.where(nonzero, jnp.sqrt(safe), 0)[..., None]
    first = b2_ * root + (1 - b2_) * (r / jnp.sqrt(safe)[..., None]) / (
        1 + eps_ / (size * safe))[..., None]
    new = jnp.where(started, r + b2_ * factor, jnp.where(nonzero[..., None],
                                                         first, 0))
    # Factors past the float range saturate near its end: U~ stays a number
    # (inf - inf would be NaN) and the step goes to 0 where p q^T overflows,
    # as Adam's does where its second moment overflows.
    new = jnp.minimum(new, big)
    kept = jnp.where(started, other, matricize.match_sharding(root, other))
    return (new, kept, v0) if rows else (kept, new, v0)

  def step(leaf: _Leaf, plan: matricize.MatrixPlan, p, q, v0):
    """Lines 20-22 for one leaf: the preconditioned, bounded step."""
    dtype = leaf.p.dtype
    expand = plan.expand_batch
    u = plan.expand_rows(p) * plan.expand_cols(q)  # Line 20: U = p q^T.
    # Line 21: U~ = (U - b2^{t+1} v0) / (1 - b2^{t+1}), clamped at 0 (it is
    # >= 0 in exact arithmetic).
    u_hat = (u - expand(leaf.b2_pow * v0)) / expand(1 - leaf.b2_pow)
    # Line 22, with the bias-corrected M~ (Section IV-B).
    m_hat = leaf.mu.astype(dtype) / expand(leaf.bc1)
    direction = m_hat / jnp.sqrt(jnp.maximum(u_hat, 0) + jnp.asarray(eps, dtype))
    if step_bound is not None:  # The safeguard: |W| <= step_bound.
      bound = jnp.asarray(step_bound, dtype)
      direction = jnp.clip(direction, -bound, bound)
    return direction

  def update_leaves(gs, states, plans, count):
    leaves = [fold(g, s, count) for g, s in zip(gs, states)]
    # Lines 13-18: even steps refit p, odd steps q; one parity, the step
    # count's, for the whole tree: one conditional at most (see _backends).
    refitted = _backends.refit_by_parity(
        lambda i, leaf, rows: refit(leaf, plans[i], rows), leaves,
        count % 2 == 0,
        reads_gradients=second_moment == 'gradient')
    out = []
    for leaf, plan, state, (p, q, v0) in zip(leaves, plans, states, refitted):
      out.append((step(leaf, plan, p, q, v0), state._replace(
          mu=leaf.mu, p=p, q=q, v0=v0, t0=leaf.t0)))
    return out

  return _leafwise.transformation(
      _NAME, _FIELDS, None, None, dimension_numbers=dimension_numbers,
      mu_dtype=mu_dtype, tree_kernel=update_leaves)


def alada(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    step_bound: Optional[jax.typing.ArrayLike] = 1.0,
    *,
    second_moment: str = 'momentum',
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Alada: alternating adaptation of momentum, a memory-efficient Adam.

  Alada keeps Adam's first moment :math:`M` but replaces the second moment by
  a rank-one product :math:`p q^\top` with :math:`p \in \mathbb{R}^m`,
  :math:`q \in \mathbb{R}^n`, refitted by alternating least squares against
  the squared bias-corrected momentum: optimizer state per ``m x n`` matrix is
  :math:`mn + m + n` floats instead of Adam's :math:`2mn`.

  Let :math:`\eta_t` be the learning rate and :math:`\beta_1, \beta_2,
  \varepsilon` the arguments ``b1``, ``b2``, ``eps``. For a leaf viewed as an
  ``m x n`` matrix (eq. (12) below), with :math:`t = 0, 1, \dots` counted from
  the leaf's first non-zero gradient :math:`G_0`, :math:`M_0 = 0`,
  :math:`v_0 = \|G_0\|^2 / mn`, :math:`p_0 = \sqrt{v_0} 1_m`,
  :math:`q_0 = \sqrt{v_0} 1_n`:

  .. math::

    \begin{align*}
      M_{t+1} &\leftarrow \beta_1 M_t + (1 - \beta_1) G_t,
        \qquad \tilde M_{t+1} \leftarrow M_{t+1} / (1 - \beta_1^{t+1}),
        \qquad V_{t+1} \leftarrow \tilde M_{t+1}^2 \\
      p_{t+1} &\leftarrow \beta_2 p_t + (1 - \beta_2)
        \frac{V_{t+1} q_t}{\|q_t\|^2 + \varepsilon},
        \quad q_{t+1} \leftarrow q_t \qquad (t \text{ even}) \\
      q_{t+1} &\leftarrow \beta_2 q_t + (1 - \beta_2)
        \frac{V_{t+1}^\top p_t}{\|p_t\|^2 + \varepsilon},
        \quad p_{t+1} \leftarrow p_t \qquad (t \text{ odd}) \\
      \tilde U_{t+1} &\leftarrow \frac{p_{t+1} q_{t+1}^\top
        - \beta_2^{t+1} v_0}{1 - \beta_2^{t+1}} \\
      W_{t+1} &\leftarrow \operatorname{clip}\left( \frac{\tilde M_{t+1}}
        {\sqrt{\max(\tilde U_{t+1}, 0) + \varepsilon}}, -c, c \right),
        \qquad u_t \leftarrow -\eta_t \left( W_{t+1} + \lambda X_t \right)
    \end{align*}

  with :math:`c` the argument ``step_bound`` (1 by default; no clipping with
  ``step_bound=None``, the paper's Algorithm 2).

  **The default bounds each entry's step (``step_bound=1``); the paper's
  Algorithm 2 is** ``step_bound=None``. The rank-one fit can underestimate
  :math:`V = \tilde M^2` badly on some entries, and then Algorithm 2 steps
  them by up to :math:`\tilde M / \sqrt{\varepsilon}`, i.e.
  :math:`10^8 \tilde M`. It happens where a factor is stale: on odd steps
  only :math:`q` is refitted, so a row that was silent for a while (a rare
  token's embedding row, a class absent from recent batches) has its
  :math:`p_i` decayed towards 0, and when it gets a gradient again its
  entries step by millions of times the learning rate. It also happens
  wherever :math:`\tilde M^2` is far from rank one (on optax's 2 x 2
  ``matrix_parabola`` at lr 3e-3 the paper's steps reach 4e4 times the
  learning rate). An exact fit (:math:`\tilde U = \tilde M^2`) steps every
  entry by exactly :math:`\pm 1`; the bound keeps every entry at or below
  that, i.e. it uses :math:`\max(\tilde U, \tilde M^2)` in place of
  :math:`\tilde U`: the fitted second moment may overestimate :math:`V`
  (smaller steps, as in Algorithm 2) but never underestimate it. Where
  :math:`|W| \le 1` the step is Algorithm 2's bit for bit, and the state
  (``mu``, ``p``, ``q``) is never changed by the bound.

  This changes the algorithm as well as guarding it: in a dense layer the fit
  sits near the local level of :math:`\tilde M^2`, and the entries above it
  have :math:`|W| > 1`. Measured over whole runs at each task's best
  learning rate, the bound sets the step of 10.6% of the entries per step on
  the causal LM example, 19% on the benchmark LM and 28% on the MiniLM
  fine-tune. It is kept because it holds Alada up above its best learning
  rate (the paper's algorithm reached a perplexity of 2.5e7 where the bound
  gave 472), at a cost below it (smaller steps train more slowly); looser
  bounds (2, :math:`1/\sqrt{1 - \beta_2}`) rescued less. At about 10 times
  its best learning rate Alada collapses, as Adam mostly does at 10 times
  its own on the examples measured (over six and nine seeds; on the causal
  LM 0.13 nats deeper than Adam's, on the mean), and as Adam dividing by an
  exact rank-one fit of its own second moment does; below its best the
  bound's smaller steps train more slowly. The README and
  ``docs/safeguard.md`` have the figures.

  **Learning rates.** Alada's preconditioner fits :math:`\tilde M^2`, the
  square of the *mean* gradient, where Adam's :math:`v` estimates the mean of
  :math:`g^2`; with noisy gradients Alada's typical per-entry step is
  larger than Adam's at the same learning rate (1.7x to 2.4x measured).
  Start from **half of Adam's best learning rate** (Alada's best was 0.55x
  Adam's on the three tasks measured; a third with ``step_bound=None``), and
  do not go above Adam's.

  **Fitting the gradient instead:** ``second_moment='gradient'`` fits
  :math:`p q^\top` to :math:`G_t^2` (line 7 becomes :math:`V_{t+1} = G_t^2`:
  the paper's Section III and Algorithm 1, with Section IV's first moment and
  bias corrections kept). Section IV fits :math:`\tilde M^2` so that PyTorch
  can free the gradient early; a JAX step has the gradient at hand and frees
  it after the update, so here it costs no state and no extra pass (the
  refit reads G in place of M). Its steps are Adam-sized (mean
  :math:`|W|` 0.15-0.21 at the best learning rates measured, the bound
  acting on under 1% of entries), and its best learning rates were Adam's,
  where it was within noise of Adam's best on two of the three tasks
  measured (on the causal LM 0.7% behind on three seeds' mean, as the
  default is). Not the default: it changes
  Algorithm 2, and a layer's refit can keep its gradient alive during the
  next layer's backward (on a 4-layer MLP the compiled train step peaks
  1.10x SGD with momentum instead of 0.92x; on GPT-2-small the peaks are
  equal). ``docs/safeguard.md`` has the measurements.

  Readings of the paper made explicit:

  * The step uses the bias-corrected :math:`\tilde M_{t+1}`, as Section IV-B's
    prose and Section IV-C's alignment with Adam say (Algorithm 2's line 22
    prints :math:`M_{t+1}`).
  * A tensor of order :math:`\tau` is viewed as an ``m x n`` matrix by eq. (12):
    the dimension list is split where the two products are closest (the first
    split on ties); vectors are ``1 x n``, scalars ``1 x 1``. The view is never
    materialised: ``p`` and ``q`` are broadcast into the tensor's layout and
    the tensor is reduced over its row or column axes (no copy, and no
    resharding of sharded tensors). ``dimension_numbers`` overrides the view,
    e.g. to factor stacked layers separately.
  * :math:`\tilde U` is :math:`\ge 0` in exact arithmetic (each step grows
    :math:`p q^\top` by at least the factor :math:`\beta_2` it decays
    :math:`\beta_2^{t+1} v_0` by); it is clamped at 0 so that rounding cannot
    produce a NaN.
  * Arithmetic, ``p``, ``q`` and ``v0`` are float32 (or wider if the params
    are); updates have the gradients' dtype promoted with the params' (as in
    :func:`optax.adam`; the gradients' alone when ``update`` gets no params);
    ``mu_dtype`` sets ``M``'s storage, and the refit and the step read
    :math:`M_{t+1}` as stored.
  * **One parity for the tree.** Algorithm 2 refits :math:`p` on even steps
    and :math:`q` on odd ones. Here the parity is the step count's, one for
    all leaves (so that the update has no control flow per leaf): a leaf
    whose first non-zero gradient arrives on an odd step (see below) starts
    by refitting :math:`q`, from :math:`p_0 = \sqrt{v_0} 1_m`. A leaf that
    starts at the first step follows Algorithm 2 exactly.
  * **Range.** The refits divide the weights by the factor's scale inside
    their reductions, so that :math:`M^2` is never formed on its own: the
    state stays finite for gradients up to about ``1e19`` in float32 (where
    :math:`G^2` is still a float32, as for :func:`optax.adam`'s state).
    Beyond, ``p``, ``q`` and ``v0`` saturate at ``2^126`` and the update is
    finite (0 where :math:`p q^\top` overflows, as Adam's is 0 where its
    second moment overflows).
  * ``update`` needs ``params`` only for weight decay: with ``weight_decay``
    0 (the default) it may be called without them. Zero-size leaves get
    zero-size updates.

  Beyond the paper: Algorithm 2 taken literally breaks when a leaf's first
  gradient is exactly zero (LoRA's ``A`` while ``B = 0``, a zero-initialised
  head, a layer unfrozen later): :math:`v_0 = 0` makes ``p = q = 0`` forever
  and later steps are :math:`M / \sqrt{\varepsilon}`, millions of times
  Adam's. Here a zero gradient carries no information about the leaf's scale,
  so each leaf's Algorithm 2 starts at its first non-zero gradient: until then
  its update is 0 and its state stays at 0, and from then on it runs
  Algorithm 2 with its own step count :math:`t` (``count - t0`` in the state)
  for its bias corrections, and the tree's parity. When the first gradient is non-zero this is
  Algorithm 2 exactly. With batch axes each matrix of the batch has its own
  start. A gradient whose squares underflow cannot start the leaf either
  (in float32, entries below about :math:`10^{-19} \sqrt{k}`, ``k`` the
  length of the rows or columns the start averages: their squares over
  ``k`` are below the smallest normal float): its factors stay 0, but ``M``
  accumulates it and the update is
  :math:`M / ((1 - \beta_1) \sqrt{\varepsilon})`, at most ten times the
  gradient's size times ``1e8`` (Adam's second moment underflows near there
  too, and its update is :math:`\hat m / \varepsilon`). The first gradient
  large enough starts the leaf.

  Args:
    learning_rate: A global scaling factor, either fixed or a schedule, see
      :func:`optax.scale_by_learning_rate`.
    b1: Decay rate of the first moment, in ``[0, 1)``.
    b2: Decay rate of the second moment factors, in ``[0, 1)`` (1 would
      divide ``U~`` by 0). The paper recommends ``b1 = b2 = 0.9``.
    eps: Regulariser of the refits and of the preconditioner, ``>= 0`` (the
      paper's :math:`\epsilon = 10^{-16}`).
    weight_decay: Strength of the decoupled weight decay :math:`\lambda`
      (multiplied by the learning rate, as in :func:`optax.adamw`).
    mask: A tree with the structure of (or a prefix of) the params, or a
      callable returning one, with ``True`` for the leaves weight decay
      applies to.
    mu_dtype: Optional storage dtype of the first moment, a floating-point
      dtype (e.g. ``jnp.bfloat16``); if ``None``, the params' dtype.
    step_bound: The largest per-entry step before the learning rate, ``> 0``
      (1 by default); ``None`` gives the paper's Algorithm 2 exactly.
    second_moment: What ``p q^T`` fits: ``'momentum'`` (:math:`\tilde M^2`,
      Algorithm 2, the default) or ``'gradient'`` (:math:`G^2`, the paper's
      Section III; Adam's learning rates, see above).
    dimension_numbers: How leaves are viewed as matrices; see
      :func:`scale_by_alada`.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jax, optax
    >>> from alada_optax import alada
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)
    >>> solver = alada(learning_rate=0.1)
    >>> params = jnp.zeros((4, 3))
    >>> opt_state = solver.init(params)
    >>> for _ in range(200):
    ...   grads = jax.grad(f)(params)
    ...   updates, opt_state = solver.update(grads, opt_state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> print(f(params) < 0.05)  # from 12.0 at the start
    True

  References:
    Alada: Alternating Adaptation of Momentum Method for Memory-Efficient
    Matrix Optimization (Algorithm 2, Section IV).
  """
  return optax.chain(
      scale_by_alada(
          b1=b1,
          b2=b2,
          eps=eps,
          mu_dtype=mu_dtype,
          step_bound=step_bound,
          second_moment=second_moment,
          dimension_numbers=dimension_numbers,
      ),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
