"""Alada: Adam's first moment with a rank-one, alternately refitted second moment.

Reference: Algorithm 2 and Section IV of "Alada: Alternating Adaptation of
Momentum Method for Memory-Efficient Matrix Optimization".
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Union
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

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
      ``t = count - t0``; its parity picks the factor to refit.
  """

  count: jax.Array
  mu: optax.Updates
  p: optax.Updates
  q: optax.Updates
  v0: optax.Updates
  t0: optax.Updates


def _factor_dtype(dtype) -> jnp.dtype:
  """p, q, v0 and the arithmetic: float32, or wider if the params are."""
  return jnp.promote_types(dtype, jnp.float32)


def _leaf_name(path) -> str:
  return jax.tree_util.keystr(path) or '<root>'


def _check_float_leaves(tree: Any, what: str) -> None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f'scale_by_alada: {what} leaf {_leaf_name(path)} has dtype {dtype}.'
          ' Alada only optimizes real floating-point leaves; keep integer,'
          ' boolean and complex leaves out of it, e.g. with optax.masked or'
          ' optax.multi_transform.'
      )


def _check_matches_state(updates: Any, mu: Any) -> None:
  """Raises an error naming the first leaf where updates and state differ."""
  is_leaf = lambda x: x is None or isinstance(x, optax.MaskedNode)
  got = dict(jax.tree_util.tree_leaves_with_path(updates, is_leaf=is_leaf))
  want = dict(jax.tree_util.tree_leaves_with_path(mu, is_leaf=is_leaf))
  for path in want:
    if path not in got:
      raise ValueError(
          f'scale_by_alada: the updates have no leaf {_leaf_name(path)}, which'
          ' the optimizer state has. Were the updates built from other params'
          ' than those given to init?'
      )
  for path, g in got.items():
    if path not in want:
      raise ValueError(
          f'scale_by_alada: the updates have a leaf {_leaf_name(path)} that'
          ' the optimizer state lacks. Were the updates built from other'
          ' params than those given to init?'
      )
    m = want[path]
    if (g is None) != (m is None) or (
        isinstance(g, optax.MaskedNode) != isinstance(m, optax.MaskedNode)
    ):
      raise ValueError(
          f'scale_by_alada: leaf {_leaf_name(path)} is {type(g).__name__} in'
          f' the updates but {type(m).__name__} in the optimizer state.'
      )
    if g is not None and not isinstance(g, optax.MaskedNode) and (
        jnp.shape(g) != jnp.shape(m)
    ):
      raise ValueError(
          f'scale_by_alada: leaf {_leaf_name(path)} has shape {jnp.shape(g)}'
          f' in the updates but {jnp.shape(m)} in the optimizer state.'
      )
  if jax.tree.structure(updates, is_leaf=is_leaf) != jax.tree.structure(
      mu, is_leaf=is_leaf
  ):
    raise ValueError(
        'scale_by_alada: the updates and the optimizer state have the same'
        ' leaves but different tree structures: '
        f'{jax.tree.structure(updates)} vs {jax.tree.structure(mu)}.'
    )


@functools.partial(jax.jit, static_argnames='plan')
def _alada_leaf(
    g: jax.Array,
    mu: jax.Array,
    p: jax.Array,
    q: jax.Array,
    v0: jax.Array,
    t0: jax.Array,
    count: jax.Array,
    plan: matricize.MatrixPlan,
    b1: jax.Array,
    b2: jax.Array,
    eps: jax.Array,
) -> tuple[jax.Array, ...]:
  """One step of Algorithm 2 for one leaf (a batch of matrices).

  Returns the descent direction M~ / sqrt(max(U~, 0) + eps) in the leaf's dtype
  and the new (mu, p, q, v0, t0).
  """
  dtype = _factor_dtype(g.dtype)
  b1, b2, eps = (jnp.asarray(x, dtype) for x in (b1, b2, eps))
  g = g.astype(dtype)
  expand = plan.expand_batch

  # The leaf's own clock. A leaf that has only seen zero gradients (v0 == 0)
  # has not started: its Algorithm 2 starts at its first non-zero gradient.
  started = v0 > 0
  t0 = jnp.where(started, t0, count)
  t = count - t0  # Algorithm 2's t: 0 at the leaf's first non-zero gradient.
  # Lines 8-12: v0 = ||G_0||^2 / mn, p0 = sqrt(v0) 1_m, q0 = sqrt(v0) 1_n.
  v0 = jax.lax.cond(
      jnp.all(started),
      lambda: v0,
      lambda: jnp.where(started, v0, plan.sum_per_matrix(g * g) / (plan.m * plan.n)),
  )
  p = jnp.where(started[..., None], p, jnp.sqrt(v0)[..., None])
  q = jnp.where(started[..., None], q, jnp.sqrt(v0)[..., None])

  # Lines 5-7: M_{t+1} = b1 M_t + (1 - b1) G_t; M~ = M / (1 - b1^{t+1}).
  mu = b1 * mu.astype(dtype) + (1 - b1) * g
  tp1 = (t + 1).astype(dtype)
  bc1 = 1 - b1**tp1
  m_hat = mu / expand(bc1)

  # Lines 13-19: refit p on even steps, q on odd steps, against V = M~^2.
  even = t % 2 == 0

  def least_squares(factor, weighted_sum):
    # V f / (||f||^2 + eps), computed with f / max|f| so that neither V f nor
    # ||f||^2 overflows when one factor carries a large scale (same value in
    # exact arithmetic).
    scale = jnp.max(jnp.abs(factor), axis=-1, keepdims=True)
    scale = jnp.where(scale > 0, scale, 1)
    unit = factor / scale
    norm2 = jnp.sum(unit * unit, axis=-1, keepdims=True)
    return weighted_sum(unit) / (scale * norm2 + eps / scale)

  def refit_p():
    vq = least_squares(
        q, lambda u: plan.sum_over_cols(m_hat * m_hat * plan.expand_cols(u)))
    return jnp.where(even[..., None], b2 * p + (1 - b2) * vq, p)

  def refit_q():
    vp = least_squares(
        p, lambda u: plan.sum_over_rows(m_hat * m_hat * plan.expand_rows(u)))
    return jnp.where(even[..., None], q, b2 * q + (1 - b2) * vp)

  p_new = jax.lax.cond(jnp.any(even), refit_p, lambda: p)
  q_new = jax.lax.cond(jnp.all(even), lambda: q, refit_q)

  # Lines 20-22: U~ = (p q^T - b2^{t+1} v0) / (1 - b2^{t+1}), clamped at 0
  # (it is >= 0 in exact arithmetic), and the step M~ / sqrt(U~ + eps).
  b2_pow = b2**tp1
  u = plan.expand_rows(p_new) * plan.expand_cols(q_new)
  u_hat = (u - expand(b2_pow * v0)) / expand(1 - b2_pow)
  direction = m_hat / jnp.sqrt(jnp.maximum(u_hat, 0) + eps)
  return direction, mu, p_new, q_new, v0, t0


def scale_by_alada(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    *,
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
      dtype if wider).
    dimension_numbers: How each leaf is viewed as a matrix:
      ``None`` (eq. (12) of the paper for every leaf), a
      :class:`MatrixDimensionNumbers` for every leaf, a pytree (prefix of the
      params) of them with ``None`` for eq. (12), or a callable returning such
      a pytree from the params.

  Returns:
    A :class:`optax.GradientTransformation`.
  """
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init_fn(params):
    _check_float_leaves(params, 'parameter')
    plans = matricize.tree_plans(params, dimension_numbers)

    def factor(plan, x, shape_of):
      return jnp.zeros(shape_of(plan), _factor_dtype(x.dtype))

    return ScaleByAladaState(
        count=jnp.zeros([], jnp.int32),
        mu=optax.tree.zeros_like(params, dtype=mu_dtype),
        p=jax.tree.map(
            lambda x, pl: factor(pl, x, lambda pl: pl.row_factor_shape),
            params,
            plans,
        ),
        q=jax.tree.map(
            lambda x, pl: factor(pl, x, lambda pl: pl.col_factor_shape),
            params,
            plans,
        ),
        v0=jax.tree.map(
            lambda x, pl: factor(pl, x, lambda pl: pl.batch_shape),
            params,
            plans,
        ),
        t0=jax.tree.map(
            lambda x, pl: jnp.zeros(pl.batch_shape, jnp.int32), params, plans
        ),
    )

  def update_fn(updates, state, params=None):
    del params
    if not isinstance(state, ScaleByAladaState):
      raise TypeError(
          'scale_by_alada: expected a ScaleByAladaState, got'
          f' {type(state).__name__}. Was this state made by another optimizer?'
      )
    _check_matches_state(updates, state.mu)
    _check_float_leaves(updates, 'update')
    plans = matricize.tree_plans(updates, dimension_numbers)

    def leaf(g, mu, p, q, v0, t0, plan):
      return _alada_leaf(g, mu, p, q, v0, t0, state.count, plan, b1, b2, eps)

    out = jax.tree.map(
        leaf, updates, state.mu, state.p, state.q, state.v0, state.t0, plans
    )
    treedef = jax.tree.structure(updates)
    direction, mu, p, q, v0, t0 = (
        jax.tree.unflatten(treedef, [o[i] for o in treedef.flatten_up_to(out)])
        for i in range(6)
    )
    direction = jax.tree.map(lambda d, g: d.astype(g.dtype), direction, updates)
    mu = optax.tree.cast_like(mu, state.mu)
    return direction, ScaleByAladaState(
        count=optax.safe_increment(state.count), mu=mu, p=p, q=q, v0=v0, t0=t0
    )

  return optax.GradientTransformation(init_fn, update_fn)


def alada(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-16,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    *,
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
      u_t &\leftarrow -\eta_t \left( \frac{\tilde M_{t+1}}
        {\sqrt{\max(\tilde U_{t+1}, 0) + \varepsilon}}
        + \lambda X_t \right)
    \end{align*}

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
    are); updates have the params' dtype; ``mu_dtype`` sets ``M``'s storage.

  Beyond the paper: Algorithm 2 taken literally breaks when a leaf's first
  gradient is exactly zero (LoRA's ``A`` while ``B = 0``, a zero-initialised
  head, a layer unfrozen later): :math:`v_0 = 0` makes ``p = q = 0`` forever
  and later steps are :math:`M / \sqrt{\varepsilon}`, millions of times
  Adam's. Here a zero gradient carries no information about the leaf's scale,
  so each leaf's Algorithm 2 starts at its first non-zero gradient: until then
  its update is 0 and its state stays at 0, and from then on it runs
  Algorithm 2 with its own step count :math:`t` (``count - t0`` in the state),
  bias corrections included. When the first gradient is non-zero this is
  Algorithm 2 exactly. (A gradient whose mean square underflows to 0 counts
  as zero.) With batch axes each matrix of the batch has its own start.

  Args:
    learning_rate: A global scaling factor, either fixed or a schedule, see
      :func:`optax.scale_by_learning_rate`.
    b1: Decay rate of the first moment.
    b2: Decay rate of the second moment factors. The paper recommends
      ``b1 = b2 = 0.9``.
    eps: Regulariser of the refits and of the preconditioner (the paper's
      :math:`\epsilon = 10^{-16}`).
    weight_decay: Strength of the decoupled weight decay :math:`\lambda`
      (multiplied by the learning rate, as in :func:`optax.adamw`).
    mask: A tree with the structure of (or a prefix of) the params, or a
      callable returning one, with ``True`` for the leaves weight decay
      applies to.
    mu_dtype: Optional storage dtype of the first moment (e.g.
      ``jnp.bfloat16``); if ``None``, the params' dtype.
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
    >>> print(f'{f(params):.2f}')
    0.01

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
          dimension_numbers=dimension_numbers,
      ),
      optax.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
