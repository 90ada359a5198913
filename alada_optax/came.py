"""CAME: Confidence-guided Adaptive Memory Efficient optimization.

Reference: Luo et al., "CAME: Confidence-guided Adaptive Memory Efficient
Optimization" (ACL 2023, arXiv 2307.02047, Algorithm 1), and its official
PyTorch code (yangluo7/CAME, ``came_pytorch/CAME.py``), whose update this
module follows; see :func:`came` for the readings made.
"""

import functools
from typing import Any, NamedTuple, Optional, Union
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from alada_optax import _alias
from alada_optax import _leafwise
from alada_optax import _layout
from alada_optax import _validation
from alada_optax import matricize

# The factored view of a leaf with two or more axes: rows along its
# second-to-last axis, columns along its last, every leading axis a batch axis
# (each index along them an independent matrix), as in the official code.
LAST_TWO_AXES = matricize.MatrixDimensionNumbers(row_axis=-2, col_axis=-1)


class ScaleByCAMEState(NamedTuple):
  """State of :func:`scale_by_came`.

  Every field but ``count`` is a pytree with the structure of the params (None
  leaves and :class:`optax.MaskedNode` kept). A leaf of shape
  ``batch + (m, n)`` (two or more axes) is *factored*; vectors and scalars
  are not. Fields a leaf does not use hold a ``(1,)`` zero placeholder.

  Attributes:
    count: number of updates applied, int32 scalar.
    mu: first moment of the clipped updates, shaped like the leaf, in
      ``mu_dtype``.
    v_row: factored leaves: EMA of the row means of ``G^2 + eps1``, shape
      ``batch + (m,)``.
    v_col: factored leaves: EMA of the column means of ``G^2 + eps1``, shape
      ``batch + (n,)``.
    v: unfactored leaves: EMA of ``G^2 + eps1``, shaped like the leaf.
    res_row: factored leaves: EMA of the row means of the instability
      ``(U - mu)^2 + eps2``, shape ``batch + (m,)``.
    res_col: factored leaves: the same for the columns, ``batch + (n,)``.

  The factors and ``v`` are float32, or wider if the params are.

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_came
    >>> params = {'w': jnp.zeros((4, 6)), 'b': jnp.zeros((5,))}
    >>> state = scale_by_came().init(params)
    >>> print(state.v_row['w'].shape, state.v_col['w'].shape, state.v['w'].shape)
    (4,) (6,) (1,)
    >>> print(state.v['b'].shape, state.res_row['b'].shape)  # not factored
    (5,) (1,)
  """

  count: jax.Array
  mu: optax.Updates
  v_row: optax.Updates
  v_col: optax.Updates
  v: optax.Updates
  res_row: optax.Updates
  res_col: optax.Updates


def _plan(shape, dimension_numbers=None) -> Optional[matricize.MatrixPlan]:
  """The factored view of a leaf, or None for vectors and scalars."""
  del dimension_numbers  # always the last two axes
  if len(shape) < 2:
    return None
  return matricize.plan_for(shape, LAST_TWO_AXES)


def _factored(shape_of):
  """A field's shape: ``shape_of(plan)`` for factored leaves, else none."""
  return lambda shape, plan: None if plan is None else shape_of(plan)


_ROW = _leafwise.Field(_layout.rows, _factored(lambda p: p.row_factor_shape))
_COL = _leafwise.Field(_layout.cols, _factored(lambda p: p.col_factor_shape))

# Vectors have no row and column statistics and matrices no dense v: a
# (1,) placeholder stands in (optax.adafactor's convention; saved states
# have it).
_FIELDS = _leafwise.declare(ScaleByCAMEState, {
    'mu': _leafwise.Field(_layout.like_param, _leafwise.param_shape,
                          _leafwise.MOMENT),
    'v_row': _ROW,
    'v_col': _COL,
    'v': _leafwise.Field(
        _layout.like_param,
        lambda shape, plan: shape if plan is None else None),
    'res_row': _ROW,
    'res_col': _COL,
}, placeholder=(1,), layout_plan=lambda shape, plan: _plan(shape))


def _factored_rsqrt(
    plan: matricize.MatrixPlan, row: jax.Array, col: jax.Array
) -> jax.Array:
  """``1 / sqrt(row col^T / mean(row))`` per matrix, broadcast to the leaf:
  the rank-one estimate whose row and column means are ``row`` and ``col``."""
  r = jax.lax.rsqrt(row / jnp.mean(row, axis=-1, keepdims=True))
  return plan.expand_rows(r) * plan.expand_cols(jax.lax.rsqrt(col))


@functools.partial(jax.jit, static_argnames='plan')
def _came_leaf(
    g: jax.Array,
    state: ScaleByCAMEState,
    plan: Optional[matricize.MatrixPlan],
    count: jax.Array,
    hyperparams: tuple[jax.Array, ...],
) -> tuple[jax.Array, ScaleByCAMEState]:
  """One step of CAME (Algorithm 1) for one leaf.

  Returns the direction (factor dtype) and the leaf's new state.
  """
  del count  # CAME has no bias correction
  dtype = _validation.factor_dtype(g.dtype)
  *rates, clipping_threshold = hyperparams
  b1, b2, b3, eps1, eps2 = (jnp.asarray(x, dtype) for x in rates)
  g = g.astype(dtype)
  v_row, v_col, v = state.v_row, state.v_col, state.v
  res_row, res_col = state.res_row, state.res_col

  # Second moment of the gradient, factored (Adafactor) or not.
  sq = g * g + eps1
  if plan is not None:
    v_row = b2 * v_row + (1 - b2) * (plan.sum_over_cols(sq) / plan.n)
    v_col = b2 * v_col + (1 - b2) * (plan.sum_over_rows(sq) / plan.m)
    u = _factored_rsqrt(plan, v_row, v_col) * g
  else:
    v = b2 * v + (1 - b2) * sq
    u = jax.lax.rsqrt(v) * g

  # Update clipping: divide by max(1, RMS(U) / d), the RMS over the whole leaf.
  if clipping_threshold is not None:
    d = jnp.asarray(clipping_threshold, dtype)
    rms = jnp.sqrt(jnp.mean(u * u))
    u = u / jnp.maximum(rms / d, 1)

  mu = b1 * state.mu.astype(dtype) + (1 - b1) * u

  # Confidence: factored EMA of the instability (U - mu)^2; step mu / sqrt(S).
  if plan is not None:
    res = (u - mu) ** 2 + eps2
    res_row = b3 * res_row + (1 - b3) * (plan.sum_over_cols(res) / plan.n)
    res_col = b3 * res_col + (1 - b3) * (plan.sum_over_rows(res) / plan.m)
    direction = _factored_rsqrt(plan, res_row, res_col) * mu
  else:
    direction = mu
  return direction, state._replace(mu=mu, v_row=v_row, v_col=v_col, v=v,
                                   res_row=res_row, res_col=res_col)


def scale_by_came(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: jax.typing.ArrayLike = 0.9999,
    eps1: jax.typing.ArrayLike = 1e-30,
    eps2: jax.typing.ArrayLike = 1e-16,
    clipping_threshold: Optional[jax.typing.ArrayLike] = 1.0,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
) -> optax.GradientTransformation:
  r"""Rescale updates according to CAME (Algorithm 1 of the paper).

  The update of :func:`came` before the weight decay and the learning rate:
  for a factored leaf, the first moment :math:`m_t` of the clipped
  Adafactor update divided by the root of the factored instability,

  .. math::

    u_t = m_t / \sqrt{R_t C_t^\top / \bar R_t},

  and :math:`m_t` itself for vectors and scalars. See :func:`came` for the
  whole algorithm and the readings of the paper it makes.

  Args:
    b1: Decay rate of the first moment of the clipped updates.
    b2: Decay rate of the (factored) second moment of the gradient.
    b3: Decay rate of the factored instability (confidence) matrix.
    eps1: Added to ``G^2`` before its second moment is taken.
    eps2: Added to the instability ``(U - mu)^2``.
    clipping_threshold: ``d``: updates are divided by ``max(1, RMS(U) / d)``;
      None for no clipping.
    mu_dtype: Storage dtype of the first moment; if ``None``, the params'.

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    The first two steps on a constant gradient (no bias correction: the
    instability factors start from 0, hence the large first steps):

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from alada_optax import scale_by_came
    >>> params = jnp.zeros((2, 3))
    >>> grads = jnp.array([[1., -2., 3.], [-4., 5., -6.]])
    >>> tx = scale_by_came()
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...   updates, state = tx.update(grads, state)
    ...   with np.printoptions(precision=3, suppress=True):
    ...     print(updates)
    [[  8.321 -11.256  12.519]
     [-12.995  10.986  -9.774]]
    [[ 11.752 -15.897  17.68 ]
     [-18.352  15.516 -13.804]]

  References:
    Luo et al., `CAME: Confidence-guided Adaptive Memory Efficient
    Optimization <https://arxiv.org/abs/2307.02047>`_, ACL 2023
    (Algorithm 1)
  """
  _validation.check_hyperparams(
      'scale_by_came', b1=(b1, _validation.DECAY), b2=(b2, _validation.DECAY),
      b3=(b3, _validation.DECAY), eps1=(eps1, _validation.NON_NEGATIVE),
      eps2=(eps2, _validation.NON_NEGATIVE),
      clipping_threshold=(clipping_threshold, _validation.POSITIVE))
  mu_dtype = _validation.check_mu_dtype('scale_by_came', mu_dtype)
  return _leafwise.transformation(
      'scale_by_came', _FIELDS, _came_leaf,
      (b1, b2, b3, eps1, eps2, clipping_threshold), _plan, mu_dtype=mu_dtype)


def came(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: jax.typing.ArrayLike = 0.9999,
    eps1: jax.typing.ArrayLike = 1e-30,
    eps2: jax.typing.ArrayLike = 1e-16,
    clipping_threshold: Optional[jax.typing.ArrayLike] = 1.0,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
) -> optax.GradientTransformationExtraArgs:
  r"""CAME: confidence-guided adaptive memory-efficient optimization.

  CAME is Adafactor (factored second moment, update clipping) with a first
  moment and a *confidence* correction: the first moment :math:`m` is divided
  by the square root of a factored EMA of the instability
  :math:`(U - m)^2`, so that steps shrink where the update disagrees with its
  own momentum. State per ``m x n`` matrix: :math:`mn + 2(m + n)` floats.

  For a leaf with two or more axes, viewed as a batch of ``m x n`` matrices
  over its last two axes, with :math:`\beta_1, \beta_2, \beta_3,
  \epsilon_1, \epsilon_2, d` the arguments, :math:`\bar x` the mean over the
  row index and all state starting at 0:

  .. math::

    \begin{align*}
      r_t &\leftarrow \beta_2 r_{t-1} + (1 - \beta_2)
        (G_t^2 + \epsilon_1) 1_n / n,
        \qquad c_t \leftarrow \beta_2 c_{t-1} + (1 - \beta_2)
        1_m^\top (G_t^2 + \epsilon_1) / m \\
      U_t &\leftarrow G_t / \sqrt{r_t c_t^\top / \bar r_t},
        \qquad \hat U_t \leftarrow U_t / \max(1, \mathrm{RMS}(U_t) / d) \\
      m_t &\leftarrow \beta_1 m_{t-1} + (1 - \beta_1) \hat U_t,
        \qquad I_t \leftarrow (\hat U_t - m_t)^2 + \epsilon_2 \\
      R_t &\leftarrow \beta_3 R_{t-1} + (1 - \beta_3) I_t 1_n / n,
        \qquad C_t \leftarrow \beta_3 C_{t-1}
        + (1 - \beta_3) 1_m^\top I_t / m \\
      u_t &\leftarrow -\eta_t \left( m_t / \sqrt{R_t C_t^\top / \bar R_t}
        + \lambda X_{t-1} \right)
    \end{align*}

  Readings of the paper and the official code made explicit:

  * **Which leaves are factored**: those with two or more axes, over their
    last two axes (leading axes are batch axes: each index is its own
    matrix; ``matricize.MatrixDimensionNumbers(-2, -1)``), whatever their
    sizes, as in the official code (Adafactor in optax factors the two
    largest axes of leaves whose both are >= 128 instead).
  * **Vectors and scalars** keep an unfactored second moment
    :math:`v_t = \beta_2 v_{t-1} + (1-\beta_2)(G_t^2 + \epsilon_1)` and
    **no confidence matrix**: their step is :math:`m_t` itself, as in the
    official code (the paper's Algorithm 1 only treats matrices).
  * **The clipping RMS** is over the whole leaf (all its matrices at once),
    and ``eps1`` is added to :math:`G^2` before the row and column means, as
    in the official code. There is no bias correction.
  * :math:`\bar r` **is the mean of the row factor** (the official
    ``exp_avg_sq_row.mean(dim=-1)``), which makes the estimate's row and
    column means equal to :math:`r` and :math:`c`.
  * **dtypes.** Arithmetic, the factors and the unfactored ``v`` are float32
    (or wider if the params are); ``mu_dtype`` sets the first moment's
    storage (the params' dtype by default, as in optax; the official code
    keeps float32); updates have the gradients' dtype promoted with the
    params' (as in :func:`optax.adam`; the gradients' without params).
  * ``update`` needs ``params`` only for weight decay (not with the default
    ``weight_decay=0``). ``b1``, ``b2``, ``b3`` must be in ``[0, 1)``,
    ``eps1``, ``eps2`` ``>= 0`` and ``clipping_threshold`` ``> 0``, checked
    when concrete.
  * **Weight decay** is decoupled, :math:`-\eta_t \lambda X_{t-1}`, as in the
    official code, through :func:`optax.add_decayed_weights`.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
    b1: Decay rate of the first moment of the clipped updates.
    b2: Decay rate of the second moment of the gradient.
    b3: Decay rate of the instability (confidence) factors.
    eps1: Added to ``G^2``.
    eps2: Added to the instability ``(U - m)^2``.
    clipping_threshold: ``d`` of the update clipping; None for none.
    weight_decay: Strength of the decoupled weight decay.
    mask: A tree with the params' structure (or a prefix), or a callable
      returning one, whose booleans say which leaves weight decay applies to.
    mu_dtype: Storage dtype of the first moment; if ``None``, the params'.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from alada_optax import came
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)  # a quadratic over a matrix
    >>> solver = came(learning_rate=0.01)
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
    Objective function: 9.48
    Objective function: 6.43
    Objective function: 3.50
    Objective function: 1.23
    Objective function: 0.07

  References:
    Luo et al., `CAME: Confidence-guided Adaptive Memory Efficient
    Optimization <https://arxiv.org/abs/2307.02047>`_, ACL 2023
    (Algorithm 1)

    Shazeer & Stern, `Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost <https://arxiv.org/abs/1804.04235>`_, 2018
  """
  return optax.chain(
      scale_by_came(
          b1=b1,
          b2=b2,
          b3=b3,
          eps1=eps1,
          eps2=eps2,
          clipping_threshold=clipping_threshold,
          mu_dtype=mu_dtype,
      ),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
