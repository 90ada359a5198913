"""Alada: Adam's first moment with a rank-one, alternately refitted second moment.

Reference: Algorithm 2 and Section IV of X. He, Y. Cai, J. Jia, C. Huang,
W. Chen and Z. Zheng, "Alada: Alternating Adaptation of Momentum Method for
Memory-Efficient Matrix Optimization", 2025 (arXiv 2512.13034). In
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
from alada_optax import _quantize
from alada_optax import _validation
from alada_optax import matricize


class ScaleByAladaState(NamedTuple):
  """State of :func:`scale_by_alada`.

  Every field but ``count`` is a pytree with the structure of the params (None
  leaves and :class:`optax.MaskedNode` kept). For a leaf viewed as a batch of
  ``m x n`` matrices (see :class:`MatrixDimensionNumbers`; no batch for the
  default eq. (12) view):

  Attributes:
    count: number of updates applied, int32 scalar.
    mu: first moment ``M``, shaped like the leaf, in ``mu_dtype``; with an
      :class:`Int8` ``mu_dtype``, its int8 codes where the leaf is stored in
      8 bits.
    p: row factor, shape ``batch_shape + (m,)``.
    q: column factor, shape ``batch_shape + (n,)``.
    v0: ``||G_0||^2 / (m n)`` of the leaf's first non-zero gradient, shape
      ``batch_shape``; 0 while the leaf has only seen zero gradients.
    t0: the ``count`` at which the leaf's first non-zero gradient arrived,
      int32, shape ``batch_shape``. The leaf's step in Algorithm 2 is
      ``t = count - t0`` (its bias corrections); the parity of ``count``,
      one for the whole tree, picks the factor to refit.
    mu_scale: the scales of ``mu``'s codes, one per block of its last axis,
      float32, where ``mu`` is stored in 8 bits; None elsewhere.

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_alada
    >>> params = {'w': jnp.zeros((4, 3)), 'b': jnp.zeros((3,))}
    >>> state = scale_by_alada().init(params)
    >>> print(state.mu['w'].shape, state.p['w'].shape, state.q['w'].shape)
    (4, 3) (4,) (3,)
    >>> print(state.p['b'].shape, state.q['b'].shape)  # a vector is 1 x n
    (1,) (3,)
  """

  count: jax.Array
  mu: optax.Updates
  p: optax.Updates
  q: optax.Updates
  v0: optax.Updates
  t0: optax.Updates
  mu_scale: optax.Updates


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
    'mu_scale': _leafwise.Field(_layout.blocks, None, _leafwise.SCALES),
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

  mu: Any  # M_{t+1} as stored: in mu's dtype, or int8 codes and scales
  target: Optional[jax.Array]  # what V squares: G_t, or None for M_{t+1}
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
    mu_dtype: Union[jax.typing.DTypeLike, str, _quantize.Int8, None] = None,
    step_bound: Optional[jax.typing.ArrayLike] = 1.0,
    *,
    second_moment: str = 'momentum',
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    quantize_mask: Union[Any, Callable[[optax.Params], Any], None] = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to Alada (Algorithm 2 of the paper).

  The update of :func:`alada` before the weight decay and the learning rate:
  for a leaf viewed as an ``m x n`` matrix, with the first moment
  :math:`M`, its bias-corrected :math:`\tilde M` and the rank-one second
  moment :math:`p q^\top` refitted to :math:`\tilde M^2` on alternate steps,

  .. math::

    W_{t+1} = \operatorname{clip}\left( \frac{\tilde M_{t+1}}
      {\sqrt{\max(\tilde U_{t+1}, 0) + \varepsilon}}, -c, c \right),
    \qquad \tilde U_{t+1} = \frac{p_{t+1} q_{t+1}^\top - \beta_2^{t+1} v_0}
      {1 - \beta_2^{t+1}},

  with :math:`c` the argument ``step_bound`` (no clipping with ``None``). See
  :func:`alada` for the whole algorithm and the readings of the paper it
  makes. In the code, ``fold`` is Algorithm 2's lines 5-7, ``refit`` lines
  8-18 and ``step`` lines 20-22.

  Args:
    b1: Decay rate of the first moment ``M``.
    b2: Decay rate of the rank-one second moment ``p q^T``. The paper
      recommends ``b1 = b2 = 0.9`` to match Adam with ``(0.9, 0.999)``.
    eps: Added to ``||q||^2`` and ``||p||^2`` in the refits and to ``U~``
      under the square root.
    mu_dtype: Storage of the first moment: a floating dtype, ``'int8'``
      (:class:`Int8` with its defaults) or an :class:`Int8` (int8 codes and
      a float32 scale per block: about a quarter of the params' fp32 bytes);
      if ``None``, the params' dtype. The arithmetic, ``p``, ``q`` and
      ``v0`` use float32 (or the params' dtype if wider). The refit and the
      step read ``M`` as stored (rounded to ``mu_dtype``, or decoded from
      its codes inside their own passes): no full-size float32 copy of ``M``
      is made.
    step_bound: The largest per-entry step ``|M~ / sqrt(U~ + eps)|``; steps
      beyond it are clipped to it (see :func:`alada`). ``None`` gives the
      paper's Algorithm 2 exactly.
    second_moment: What the rank-one factors fit: ``'momentum'``, the squared
      bias-corrected momentum ``M~^2`` (Algorithm 2, the default), or
      ``'gradient'``, the squared gradient ``G^2`` (the paper's Section III
      and Algorithm 1; see :func:`alada`).
    dimension_numbers: How each leaf is viewed as a matrix:
      ``None`` (eq. (12) of the paper for every leaf), a
      :class:`MatrixDimensionNumbers` for every leaf, a pytree (prefix of the
      params) of them with ``None`` for eq. (12), or a callable returning such
      a pytree from the params.
    quantize_mask: With an 8-bit ``mu_dtype``, the leaves whose first moment
      it may store (those with at least ``Int8.min_size`` entries): a pytree
      of bools (a prefix of the params) or a callable returning one from
      the params, ``False`` to keep a leaf (an embedding, say) in the
      params' dtype; ``None``: every leaf.

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    The first step of Alada on a ``2 x 3`` gradient, with the default bound
    and with Algorithm 2's unbounded step:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from alada_optax import scale_by_alada
    >>> params = jnp.zeros((2, 3))
    >>> grads = jnp.array([[1., 2., 3.], [4., 5., 6.]])
    >>> for step_bound in (1.0, None):
    ...   tx = scale_by_alada(step_bound=step_bound)
    ...   updates, state = jax.jit(tx.update)(grads, tx.init(params))
    ...   with np.printoptions(precision=3):
    ...     print(updates)
    [[0.463 0.926 1.   ]
     [0.79  0.987 1.   ]]
    [[0.463 0.926 1.389]
     [0.79  0.987 1.184]]

  References:
    He et al., `Alada: Alternating Adaptation of Momentum Method for
    Memory-Efficient Matrix Optimization <https://arxiv.org/abs/2512.13034>`_,
    2025 (Algorithm 2)
  """
  _validation.check_hyperparams(
      _NAME, b1=(b1, _validation.DECAY), b2=(b2, _validation.DECAY),
      eps=(eps, _validation.NON_NEGATIVE))
  if step_bound is not None:
    _validation.check_hyperparams(
        _NAME, step_bound=(step_bound, _validation.POSITIVE))
  mu_dtype = _quantize.moment_dtype(_NAME, mu_dtype)
  fmt = mu_dtype if isinstance(mu_dtype, _quantize.Int8) else None
  if quantize_mask is not None and fmt is None:
    raise ValueError(f'{_NAME}: quantize_mask needs an 8-bit mu_dtype '
                     f"(mu_dtype='int8' or an alada_optax.Int8), got {mu_dtype}.")
  if second_moment not in SECOND_MOMENTS:
    raise ValueError(
        f'{_NAME}: second_moment must be one of {SECOND_MOMENTS}, got '
        f'{second_moment!r}.')

  def moment(leaf: _Leaf) -> jax.Array:
    """M_{t+1} as stored, in the arithmetic's dtype."""
    dtype = leaf.p.dtype
    if isinstance(leaf.mu, tuple):  # 8 bits: codes and scales
      return _quantize.decode(*leaf.mu, fmt, dtype)
    return leaf.mu.astype(dtype)

  def fold(g, state, count, seed) -> _Leaf:
    """Lines 5-7 for one leaf: G folds into M; the leaf's clock; V's target."""
    dtype = _validation.factor_dtype(g.dtype)
    b1_ = jnp.asarray(b1, dtype)
    # Line 5: M_{t+1} = b1 M_t + (1 - b1) G_t, stored in mu's dtype (or in 8
    # bits); what follows reads M_{t+1} as stored.
    if state.mu.dtype == jnp.int8:
      # In 8 bits, an entry whose gradient is 0 rounds towards 0, so that it
      # reaches 0 (see _quantize.fold).
      mu = _quantize.fold(state.mu, state.mu_scale, fmt, b1_, g, dtype,
                          counter=count, seed=seed)
    else:
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
      target, v_scale = None, bc1
    return _Leaf(mu, target, state.p, state.q, state.v0, t0, started,
                 bc1, jnp.asarray(b2, dtype)**tp1, v_scale)

  def refit(leaf: _Leaf, plan: matricize.MatrixPlan, rows: bool,
            v0: Optional[jax.Array] = None):
    """Lines 8-18 for one leaf: refits p (``rows``, even steps) or q.

    One full-size reduction of ``V`` against the other factor. A matrix
    starting now (lines 8-12) reads its row (or column) means of
    ``V = G_0^2`` off the same reduction: ``v0`` is their mean, ``p0`` and
    ``q0`` are ``sqrt(v0)``, and the refit from ``sqrt(v0) 1`` follows.
    Returns the new ``(p, q, v0)``; given ``v0`` (the other refit's, where
    both run), it takes that instead of its own mean.
    """
    dtype = leaf.p.dtype
    b2_, eps_ = jnp.asarray(b2, dtype), jnp.asarray(eps, dtype)
    big = 1 / jnp.finfo(dtype).smallest_normal
    if rows:  # Line 14: p <- b2 p + (1 - b2) V q / (||q||^2 + eps).
      factor, other, size = leaf.p, leaf.q, plan.n
    else:  # Line 17: q <- b2 q + (1 - b2) V^T p / (||p||^2 + eps).
      factor, other, size = leaf.q, leaf.p, plan.m
    # V = (target / v_scale)^2 and every scalar of the least squares go into
    # the reduction's weights; dividing the other factor by its scale there
    # keeps V f / ||f||^2 at the factors' magnitude where V itself overflows
    # (|M| > 1.8e19 in float32). Capped at `big`: never inf * 0.
    u, scale, norm2 = _backends.unit(_unit, other)
    k = (1 - b2_) / jnp.square(leaf.v_scale) / (norm2 + eps_ / scale / scale)
    started = leaf.started[..., None]
    # A matrix starting now reduces with the weight 1 / (v_scale^2 size):
    # its row (column) means of V = G_0^2, finite wherever G_0^2 is.
    w = jnp.where(started, jnp.minimum(u / scale[..., None] * k[..., None], big),
                  1 / (jnp.square(leaf.v_scale) * size)[..., None])

    def reduction(x, plan):
      reduce, expand = ((plan.sum_over_cols, plan.expand_cols) if rows else
                        (plan.sum_over_rows, plan.expand_rows))
      return reduce(x * expand(w) * x)

    if leaf.target is None and isinstance(leaf.mu, tuple):  # 8 bits
      r = _quantize.reduce_decoded(*leaf.mu, fmt, plan, dtype, reduction)
    else:
      r = reduction(moment(leaf) if leaf.target is None else
                    leaf.target.astype(dtype), plan)
    # The reduction's result leaves its kernel as it is (see _backends).
    r = _backends.reduction_result(matricize.match_sharding(r, factor))

    # Lines 8-12 where a matrix starts now: v0 = ||G_0||^2 / mn (0 if the
    # gradient is 0 or its squares underflow: then nothing starts), and its
    # refit from q0 = sqrt(v0) 1: (1 - b2) sqrt(v0) size r / (size v0 + eps).
    if v0 is None:
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
    m_hat = moment(leaf) / expand(leaf.bc1)
    direction = m_hat / jnp.sqrt(jnp.maximum(u_hat, 0) + jnp.asarray(eps, dtype))
    if step_bound is not None:  # The safeguard: |W| <= step_bound.
      bound = jnp.asarray(step_bound, dtype)
      direction = jnp.clip(direction, -bound, bound)
    return direction

  def update_leaves(gs, states, plans, count):
    clock, even = _backends.clock(count, shared=fmt is None)
    leaves = _backends.read_as_stored(
        [fold(g, s, clock, i) for i, (g, s) in enumerate(zip(gs, states))])
    # Lines 13-18: even steps refit p, odd steps q; one parity, the step
    # count's, for the whole tree: one conditional at most (see _backends).
    def refit_and_read(leaf, plan, rows, v0=None):
      # An 8-bit M comes back with the refit, as the refit read it: the step
      # reads the codes as stored. (Where a conditional picks the refit,
      # XLA:CPU would otherwise recompute them in the step from M_t and G,
      # keeping every gradient alive until the conditional: the 4 x 256^2
      # MLP's train step, 1.34 MB of temporaries instead of 0.56.)
      stored = leaf.mu if isinstance(leaf.mu, tuple) else None
      return refit(leaf, plan, rows, v0) + (stored,)

    refitted = _backends.refit_by_parity(
        refit_and_read, leaves, plans, even,
        reads_gradients=second_moment == 'gradient')
    out = []
    for leaf, plan, state, (p, q, v0, stored) in zip(leaves, plans, states,
                                                     refitted):
      if stored is not None:
        leaf = leaf._replace(mu=stored)
      mu, mu_scale = leaf.mu if stored is not None else (
          leaf.mu, state.mu_scale)
      out.append((step(leaf, plan, p, q, v0), state._replace(
          mu=mu, p=p, q=q, v0=v0, t0=leaf.t0, mu_scale=mu_scale)))
    return out

  return _leafwise.transformation(
      _NAME, _FIELDS, None, None, dimension_numbers=dimension_numbers,
      mu_dtype=mu_dtype, quantize_mask=quantize_mask,
      tree_kernel=update_leaves, tree_kernel_key=_leafwise.concrete_key(
          _NAME, b1, b2, eps, step_bound, second_moment, fmt))


def alada(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    mu_dtype: Union[jax.typing.DTypeLike, str, _quantize.Int8, None] = None,
    step_bound: Optional[jax.typing.ArrayLike] = 1.0,
    *,
    second_moment: str = 'momentum',
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    quantize_mask: Union[Any, Callable[[optax.Params], Any], None] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Alada: alternating adaptation of momentum, a memory-efficient Adam.

  Alada keeps Adam's first moment :math:`M` but replaces the second moment by
  a rank-one product :math:`p q^\top` with :math:`p \in \mathbb{R}^m`,
  :math:`q \in \mathbb{R}^n`, refitted by alternating least squares against
  the squared bias-corrected momentum: optimizer state per ``m x n`` matrix is
  :math:`mn + m + n` floats instead of Adam's :math:`2mn`.

  Let :math:`\eta_t` be the learning rate, :math:`\beta_1, \beta_2,
  \varepsilon, c, \lambda` the arguments ``b1``, ``b2``, ``eps``,
  ``step_bound`` and ``weight_decay``, and :math:`X_t` the params. For a leaf
  viewed as an ``m x n`` matrix (eq. (12) of the paper, or
  ``dimension_numbers``), with :math:`t = 0, 1, \dots` counted from the leaf's
  first non-zero gradient :math:`G_0`, :math:`M_0 = 0`,
  :math:`v_0 = \|G_0\|^2 / mn`, :math:`p_0 = \sqrt{v_0} 1_m` and
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

  **Where this differs from the paper's Algorithm 2, and how to get it
  exactly:**

  * **The step bound** :math:`c` (``step_bound=1`` by default) clips each
    entry's step. The rank-one fit can underestimate :math:`\tilde M^2` badly
    on some entries (a stale factor: a row silent for a while has its
    :math:`p_i` decayed towards 0, and only :math:`q` is refitted on odd
    steps; or :math:`\tilde M^2` far from rank one), and there Algorithm 2
    steps by up to :math:`\tilde M / \sqrt{\varepsilon}`. With :math:`c = 1`
    the clip is :math:`\max(\tilde U, \tilde M^2)` in place of
    :math:`\tilde U`: the fit may overestimate its target, never
    underestimate it. Where :math:`|W| \le c` the step is Algorithm 2's bit
    for bit, and the state is never changed by the bound. In dense layers
    the entries above the fit's local level have :math:`|W| > 1`, so the
    bound changes the algorithm as well as guarding it.
    ``step_bound=None`` is Algorithm 2 exactly.
  * **One parity for the tree.** :math:`p` is refitted on even values of the
    step count, :math:`q` on odd ones, one parity for all leaves (so that the
    update has no control flow per leaf). A leaf whose first non-zero
    gradient arrives on an odd step starts by refitting :math:`q` from
    :math:`p_0`; a leaf that starts at the first step follows Algorithm 2
    exactly.
  * **Leaves start at their first non-zero gradient.** Taken literally,
    Algorithm 2 breaks when a leaf's first gradient is zero (LoRA's ``A``
    while ``B = 0``, a zero-initialised head, a layer unfrozen later):
    :math:`v_0 = 0` freezes ``p = q = 0`` and later steps are
    :math:`M / \sqrt{\varepsilon}`. Here the leaf's update is 0 and its
    state stays 0 until its first non-zero gradient, from which it runs
    Algorithm 2 with its own :math:`t` (``count - t0``) for the bias
    corrections; each matrix of a batch starts on its own. A gradient whose
    squares underflow (in float32, entries below about
    :math:`10^{-19} \sqrt{k}`, ``k`` the length of the rows or columns the
    start averages) cannot start the leaf either: its factors stay 0 while
    :math:`M` accumulates it. When the first gradient is non-zero this is
    Algorithm 2.
  * **Fitting the gradient instead** (an option, off by default):
    ``second_moment='gradient'`` fits :math:`p q^\top` to :math:`G_t^2`
    (:math:`V_{t+1} = G_t^2`: the paper's Section III and Algorithm 1, with
    Section IV's first moment and bias corrections kept). It costs no state
    and no extra pass, since a JAX step has the gradient at hand; it changes
    Algorithm 2's line 7, and a layer's gradient then lives until its refit.

  Readings of the paper made explicit:

  * The step uses the bias-corrected :math:`\tilde M_{t+1}`, as Section
    IV-B's prose and Section IV-C's alignment with Adam say (line 22 of
    Algorithm 2 prints :math:`M_{t+1}`).
  * Eq. (12) views a tensor of order :math:`\tau` as an ``m x n`` matrix by
    splitting its dimension list where the two products are closest (the
    first split on ties); vectors are ``1 x n``, scalars ``1 x 1``. The view
    is never materialised: ``p`` and ``q`` are broadcast into the tensor's
    layout and the tensor is reduced over its row or column axes (no copy,
    no resharding of sharded tensors).
  * :math:`\tilde U \ge 0` in exact arithmetic; it is clamped at 0 so that
    rounding cannot produce a NaN.
  * The refits divide by the factor's scale inside their reductions, so that
    :math:`M^2` is never formed on its own: the state stays finite wherever
    :math:`G^2` is a finite float, as for :func:`optax.adam`. Beyond, ``p``,
    ``q`` and ``v0`` saturate near the end of the float range and the update
    is 0 where :math:`p q^\top` overflows.
  * Arithmetic, ``p``, ``q`` and ``v0`` are float32 (or wider if the params
    are); updates have the gradients' dtype promoted with the params' (as in
    :func:`optax.adam`); ``mu_dtype`` sets :math:`M`'s storage, and the refit
    and the step read :math:`M_{t+1}` as stored. ``update`` needs ``params``
    only for weight decay. Zero-size leaves get zero-size updates.
  * In 8 bits (``mu_dtype='int8'``, :class:`Int8`), :math:`M_{t+1}` is
    stored as codes and per-block scales and read back decoded, the start's
    :math:`v_0` included (the mean of :math:`\tilde M_1^2`, :math:`G_0^2` as
    stored). An entry whose gradient is 0 rounds towards 0, so that its
    moment decays to exactly 0 (nearest rounding would hold a residue of the
    block's smallest level forever).

  Alada's preconditioner fits the square of the *mean* gradient where Adam's
  averages the squared gradient, so with noisy gradients its steps are larger
  than Adam's at the same learning rate: coming from Adam, use half of Adam's
  best learning rate.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
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
    mu_dtype: Optional storage of the first moment: a floating-point dtype
      (e.g. ``jnp.bfloat16``), ``'int8'`` or an :class:`Int8` (8 bits per
      entry and a scale per block); if ``None``, the params' dtype.
    step_bound: The largest per-entry step before the learning rate, ``> 0``
      (1 by default); ``None`` gives the paper's Algorithm 2 exactly.
    second_moment: What ``p q^T`` fits: ``'momentum'`` (:math:`\tilde M^2`,
      Algorithm 2, the default) or ``'gradient'`` (:math:`G^2`, the paper's
      Section III).
    dimension_numbers: How leaves are viewed as matrices; see
      :func:`scale_by_alada`.
    quantize_mask: With an 8-bit ``mu_dtype``, the leaves it may apply to
      (a pytree or callable of bools; by path, e.g. ``lambda p:
      jax.tree_util.tree_map_with_path(lambda k, _: 'embed' not in
      jax.tree_util.keystr(k), p)``); see :func:`scale_by_alada`.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from alada_optax import alada
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)  # a quadratic over a matrix
    >>> solver = alada(learning_rate=0.1)
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
    Objective function: 9.72
    Objective function: 7.73
    Objective function: 6.01
    Objective function: 4.56
    Objective function: 3.34

  References:
    He et al., `Alada: Alternating Adaptation of Momentum Method for
    Memory-Efficient Matrix Optimization <https://arxiv.org/abs/2512.13034>`_,
    2025 (Algorithm 2, Section IV)

  .. seealso::
    :doc:`/guides/step_bound` (what the bound does and when it acts, with
    links to the measurements) and :doc:`/guides/dtypes`.
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
          quantize_mask=quantize_mask,
      ),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
