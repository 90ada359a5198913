"""SMMF: Square-Matricized Momentum Factorization.

Reference: Park & Lee, "SMMF: Square-Matricized Momentum Factorization for
Memory-Efficient Optimization" (AAAI 2025, arXiv 2412.08894), and its official
PyTorch code (eai-lab/SMMF, ``SMMF/SMMF.py``), whose update this module
follows; see :func:`smmf` for the readings made where the two are silent.
"""

import functools
import math
from typing import Any, NamedTuple, Optional, Union
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from alada_optax import _alias
from alada_optax import _leafwise
from alada_optax import _layout
from alada_optax import _validation
from alada_optax.matricize import square_shape


class ScaleBySMMFState(NamedTuple):
  """State of :func:`scale_by_smmf`.

  Every field but ``count`` is a pytree with the structure of the params (None
  leaves and :class:`optax.MaskedNode` kept). A leaf with ``N`` entries is
  viewed as a ``rows x cols`` matrix, ``(rows, cols) = square_shape(N)``:

  Attributes:
    count: number of updates applied, int32 scalar (the paper's ``t - 1``).
    m_row: row sums of ``|M|``, shape ``(rows,)``.
    m_col: column sums of ``|M|`` divided by their total, shape ``(cols,)``
      (``cols <= rows``: the shorter factor is the normalised one).
    m_sign: the signs of ``M`` (bit set where ``M > 0``), packed 8 to a byte:
      uint8, shape ``(ceil(N / 8),)``, row-major over the ``rows x cols`` view.
    v_row: row sums of ``V``, shape ``(rows,)``.
    v_col: column sums of ``V`` divided by their total, shape ``(cols,)``.
    shape: a zero-size uint8 array of shape ``leaf.shape + (0,)``: it records
      the leaf's shape (the factors only fix its size) at no cost, so that
      ``update`` names a gradient of another shape.

  The factors are float32, or wider if the params are.

  Examples:
    >>> import jax.numpy as jnp
    >>> from alada_optax import scale_by_smmf
    >>> params = {'w': jnp.zeros((4, 6)), 'b': jnp.zeros((5,))}
    >>> state = scale_by_smmf().init(params)
    >>> print(state.m_row['w'].shape, state.m_col['w'].shape)  # 24 = 6 x 4
    (6,) (4,)
    >>> print(state.m_sign['w'].shape)  # 24 sign bits in 3 bytes
    (3,)
    >>> print(state.m_row['b'].shape, state.m_col['b'].shape)  # 5 is prime
    (5,) (1,)
  """

  count: jax.Array
  m_row: optax.Updates
  m_col: optax.Updates
  m_sign: optax.Updates
  v_row: optax.Updates
  v_col: optax.Updates
  shape: optax.Updates


def _matrix_shape(shape, vector_reshape: bool) -> tuple[int, int]:
  """The rows x cols view of a leaf of this shape.

  With ``vector_reshape=False``, a leaf with one non-unit axis (the official
  code's ``grad.squeeze().dim() == 1``) is kept as a ``numel x 1`` matrix: for
  that shape the rank-one factorization and the sign bits are lossless, so the
  step is exactly the official unfactored (Adam-like) path.
  """
  numel = math.prod(shape)
  if not vector_reshape and sum(1 for k in shape if k != 1) == 1:
    return numel, 1
  return square_shape(numel)


def _num_bytes(shape) -> int:
  return -(-math.prod(shape) // 8)


# The plan of a leaf is its (rows, cols) view. The square view's rows and the
# sign bytes are runs of the flattened leaf: sharded like it where every
# device holds whole runs; the columns (the shorter side) are replicated.
_ROW = _leafwise.Field(_layout.flat_runs, lambda shape, view: view[:1])
_COL = _leafwise.Field(_layout.replicated, lambda shape, view: view[1:])
_FIELDS = _leafwise.declare(ScaleBySMMFState, {
    'm_row': _ROW,
    'm_col': _COL,
    'm_sign': _leafwise.Field(
        _layout.flat_runs, lambda shape, view: (_num_bytes(shape),), jnp.uint8),
    'v_row': _ROW,
    'v_col': _COL,
    'shape': _leafwise.Field(
        _layout.replicated, lambda shape, view: shape + (0,), jnp.uint8),
})


def _compress(*arrays: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
  """Rank-one non-negative factors of each ``a >= 0`` of ``arrays`` (of one
  shape): its row and column sums, the shorter one divided by its total
  (left as is when the total is 0), so that ``outer(row, col)`` has ``a``'s
  row and column sums.

  The totals are the sums of the row sums, all in one reduction behind an
  optimization barrier: XLA would otherwise fold each into a reduction of
  all of ``a``, a second pass over the matrix in two more kernels per
  factorization on XLA:GPU.
  """
  rows = [jnp.sum(a, axis=1) for a in arrays]
  cols = [jnp.sum(a, axis=0) for a in arrays]
  # One variadic reduction: one kernel for all the totals.
  totals = jax.lax.reduce(
      jax.lax.optimization_barrier(rows), [jnp.zeros((), r.dtype) for r in rows],
      lambda xs, ys: [x + y for x, y in zip(xs, ys)], (0,))
  totals = [jnp.where(total != 0, total, 1) for total in totals]
  if arrays[0].shape[0] < arrays[0].shape[1]:  # never for square_shape
    return [(row / total, col) for row, col, total in zip(rows, cols, totals)]
  return [(row, col / total) for row, col, total in zip(rows, cols, totals)]


def _square_shardings(g, m_row, m_sign):
  """PartitionSpecs of the square view, of the flat view and of the leaf on
  a mesh with explicit axes (all None elsewhere: plain reshapes).

  The square view's rows keep the stored row factor's layout (runs of the
  flattened leaf, see the layout table), its columns are not sharded; the
  flat sign bits keep the stored sign bytes' layout. Reshaping the leaf into
  that view gathers the gradient over the mesh axes the rows do not keep (the
  columns' shards, and all of them when the factor is replicated): this is
  the one full-size exchange of SMMF's step, the same amount back for the
  direction.
  """
  leaf = _layout._explicit_sharding(g)
  if leaf is None:
    return None, None, None
  row = _layout._explicit_sharding(m_row)
  sign = _layout._explicit_sharding(m_sign)
  row = row.spec[0] if row is not None and len(row.spec) else None
  sign = sign.spec[0] if sign is not None and len(sign.spec) else None
  named = lambda *spec: NamedSharding(leaf.mesh, P(*spec))
  return (named(row, None), named(sign if sign == row else None),
          named(*leaf.spec))


@functools.partial(jax.jit, static_argnames='matrix_shape')
def _smmf_leaf(
    g: jax.Array,
    state: ScaleBySMMFState,
    matrix_shape: tuple[int, int],
    count: jax.Array,
    hyperparams: tuple[jax.Array, ...],
) -> tuple[jax.Array, ScaleBySMMFState]:
  """One SMMF step for one leaf: decompress, update, compress, step.

  Returns the direction ``M / (sqrt(V) + eps)`` in the leaf's shape (factor
  dtype) and the leaf's new state.
  """
  dtype = _validation.factor_dtype(g.dtype)
  beta, eps, decay_rate, growth_rate = (
      jnp.asarray(x, dtype) for x in hyperparams)
  rows, cols = matrix_shape
  shape = g.shape
  square, flat, leaf = _square_shardings(g, state.m_row, state.m_sign)
  g = jnp.reshape(g.astype(dtype), (rows, cols), out_sharding=square)
  t = count.astype(dtype) + 1  # the paper's t = 1, 2, ...

  # Decompression: M_{t-1} = S o (r_m c_m^T), V_{t-1} = r_v c_v^T.
  positive = jnp.reshape(
      jnp.unpackbits(state.m_sign, count=rows * cols),
      (rows, cols), out_sharding=square)
  m_abs = state.m_row[:, None] * state.m_col[None, :]
  m = jnp.where(positive.astype(bool), m_abs, -m_abs)
  v = state.v_row[:, None] * state.v_col[None, :]

  # Time-varying rates: beta_m = beta growth^(t-1), beta_v = 1 - t^decay.
  beta_m = beta * growth_rate ** (t - 1)
  beta_v = 1 - t**decay_rate
  m = beta_m * m + (1 - beta_m) * g
  v = beta_v * v + (1 - beta_v) * (g * g)

  # Compression: signs to bits, |M| and V to rank-one factors.
  m_sign = jnp.packbits(jnp.reshape(m > 0, (-1,), out_sharding=flat))
  (m_row, m_col), (v_row, v_col) = _compress(jnp.abs(m), v)

  # The step uses the dense M_t and V_t, before compression.
  direction = m / (jnp.sqrt(v) + eps)
  direction = jnp.reshape(direction, shape, out_sharding=leaf)
  return direction, state._replace(m_row=m_row, m_col=m_col, m_sign=m_sign,
                                   v_row=v_row, v_col=v_col)


def scale_by_smmf(
    beta: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    decay_rate: jax.typing.ArrayLike = -0.5,
    growth_rate: jax.typing.ArrayLike = 0.999,
    vector_reshape: bool = True,
) -> optax.GradientTransformation:
  r"""Rescale updates according to SMMF.

  The update of :func:`smmf` before the weight decay and the learning rate:
  with :math:`M_t, V_t` the moments decompressed from the previous step's
  factors and updated with the gradient,

  .. math::

    u_t = \frac{M_t}{\sqrt{V_t} + \varepsilon},

  after which :math:`M_t` and :math:`V_t` are compressed again to rank-one
  non-negative factors (and :math:`M_t`'s signs). See :func:`smmf` for the
  whole algorithm and the readings of the paper it makes.

  Args:
    beta: Base decay rate of the first moment; step ``t`` uses
      ``beta * growth_rate ** (t - 1)``.
    eps: Added to ``sqrt(V)`` in the denominator.
    decay_rate: Exponent of the second moment's rate ``1 - t ** decay_rate``,
      in ``[-1, 0]``: the paper recommends -0.5 for CNNs and -0.8 for
      Transformers.
    growth_rate: Per-step factor of the first moment's rate.
    vector_reshape: If True (the paper's default), every leaf, vectors
      included, is square-matricized. If False, leaves with one non-unit axis
      keep an exact, unfactored first and second moment (stored as a
      ``numel x 1`` factorization, which is lossless).

  Returns:
    A :class:`optax.GradientTransformation`.

  Examples:
    Two steps on a constant gradient: the first is
    :math:`(1 - \beta) G / |G|`, the second adds the decompressed momentum.

    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from alada_optax import scale_by_smmf
    >>> params = jnp.zeros((2, 3))
    >>> grads = jnp.array([[1., -2., 3.], [-4., 5., -6.]])
    >>> tx = scale_by_smmf()
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...   updates, state = tx.update(grads, state)
    ...   with np.printoptions(precision=3, suppress=True):
    ...     print(updates)
    [[ 0.1 -0.1  0.1]
     [-0.1  0.1 -0.1]]
    [[ 0.192 -0.184  0.189]
     [-0.192  0.187 -0.194]]

  References:
    Park & Lee, `SMMF: Square-Matricized Momentum Factorization for
    Memory-Efficient Optimization <https://arxiv.org/abs/2412.08894>`_,
    AAAI 2025
  """
  _validation.check_hyperparams(
      'scale_by_smmf', beta=(beta, _validation.DECAY),
      eps=(eps, _validation.NON_NEGATIVE),
      decay_rate=(decay_rate, _validation.Range(-1., 0.)),
      growth_rate=(growth_rate, _validation.UNIT))

  return _leafwise.transformation(
      'scale_by_smmf', _FIELDS, _smmf_leaf,
      (beta, eps, decay_rate, growth_rate),
      lambda shape, spec: _matrix_shape(shape, vector_reshape))


def smmf(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    beta: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    decay_rate: jax.typing.ArrayLike = -0.5,
    growth_rate: jax.typing.ArrayLike = 0.999,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    vector_reshape: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""SMMF: square-matricized momentum factorization, a memory-efficient Adam.

  SMMF views every tensor, whatever its rank, as a near-square ``r x c``
  matrix (:func:`square_shape`) and stores both of Adam's moments as rank-one
  non-negative factors of that matrix, plus the first moment's signs as one
  bit per entry: about ``2 (r + c)`` floats and ``r c / 8`` bytes per tensor,
  against Adam's ``2 r c`` floats.

  With :math:`t = 1, 2, \dots` the step, :math:`G_t` the gradient viewed as an
  ``r x c`` matrix, :math:`\beta, \lambda, \gamma, \varepsilon` the arguments
  ``beta``, ``growth_rate``, ``decay_rate``, ``eps``:

  .. math::

    \begin{align*}
      \hat M_{t-1} &\leftarrow S_{t-1} \odot (r^m_{t-1} {c^m_{t-1}}^\top),
        \qquad \hat V_{t-1} \leftarrow r^v_{t-1} {c^v_{t-1}}^\top \\
      \beta_{1,t} &\leftarrow \beta \lambda^{t-1},
        \qquad \beta_{2,t} \leftarrow 1 - t^{\gamma} \\
      M_t &\leftarrow \beta_{1,t} \hat M_{t-1} + (1 - \beta_{1,t}) G_t,
        \qquad V_t \leftarrow \beta_{2,t} \hat V_{t-1}
        + (1 - \beta_{2,t}) G_t^2 \\
      S_t &\leftarrow \operatorname{sign}(M_t),
        \quad (r^m_t, c^m_t) \leftarrow \operatorname{NNMF}(|M_t|),
        \quad (r^v_t, c^v_t) \leftarrow \operatorname{NNMF}(V_t) \\
      u_t &\leftarrow -\eta_t \left( \frac{M_t}{\sqrt{V_t} + \varepsilon}
        + w X_{t-1} \right)
    \end{align*}

  where :math:`\operatorname{NNMF}(A)` is the row sums and the column sums of
  ``A``, the shorter of the two divided by its total (so that
  :math:`r c^\top` has ``A``'s row and column sums), and :math:`S` is +1 where
  the bit is set, -1 elsewhere.

  Readings of the paper and the official code made explicit:

  * **The step uses the dense** :math:`M_t, V_t` of this step, before
    compression (as the official code does; the compressed factors only
    carry the moments to the next step). There is no bias correction.
  * **Signs.** The bit is ``M_t > 0``; an entry with ``M_t == 0`` decompresses
    as :math:`-|\hat M|`, as in the official code. The bits are packed 8 to a
    byte (``jnp.packbits``, row-major over the matrix view): 1 bit per entry,
    where the official code keeps a bool (a byte) per entry.
  * **Square-matricization** is a row-major reshape of the flattened tensor to
    ``(N // i, i)``, ``i`` the largest divisor of ``N`` with ``i <= sqrt(N)``:
    vectors and scalars included by default (``vector_reshape=True``), primes
    give ``N x 1`` (exact for both moments). Like the official code, it is
    blind to the tensor's axes. The reshape is free for an unsharded array but
    cannot follow a parameter's sharding.
  * **The normalised factor** is the column factor: ``i <= N // i`` always,
    and the official code normalises the column factor for square matrices.
    A zero total is left undivided.
  * ``vector_reshape=False`` keeps, as the official code does, an exact Adam
    state (same rates, no bias correction) for leaves with one non-unit axis;
    it is stored as a lossless ``N x 1`` factorization (``N + 1`` floats and
    ``N`` bits per moment pair rather than ``2 N`` floats).
  * **Step count.** One count for all leaves, ``t = count + 1`` (the official
    code counts per parameter from its first gradient, the same thing when
    every leaf gets a gradient every step).
  * **dtypes.** Factors and arithmetic are float32 (or wider if the params
    are); updates have the gradients' dtype promoted with the params' (as in
    :func:`optax.adam`; the gradients' without params).
  * ``update`` needs ``params`` only for weight decay (not with the default
    ``weight_decay=0``). ``beta`` must be in ``[0, 1)``, ``eps >= 0``,
    ``decay_rate`` in ``[-1, 0]`` and ``growth_rate`` in ``[0, 1]``,
    checked when concrete.
  * **Weight decay** is decoupled, :math:`-\eta_t w X_{t-1}` with :math:`w`
    the argument ``weight_decay``, the
    official default (``weight_decay_mode='adamw'``), through
    :func:`optax.add_decayed_weights`. The official code's coupled
    ``'adam'`` mode is ``optax.chain(optax.add_decayed_weights(wd),
    scale_by_smmf(), optax.scale_by_learning_rate(lr))``.

  The official code's ``beta=None`` (no first moment) is not offered.

  Args:
    learning_rate: A global scaling factor, either fixed or evolving along
      iterations with a scheduler, see :func:`optax.scale_by_learning_rate`.
    beta: Base decay rate of the first moment.
    eps: Added to ``sqrt(V)`` in the denominator.
    decay_rate: Exponent ``gamma`` of the second moment's rate
      ``1 - t ** gamma``; -0.5 (CNNs) to -0.8 (Transformers) recommended.
    growth_rate: Factor ``lambda`` of the first moment's rate
      ``beta * lambda ** (t - 1)``.
    weight_decay: Strength of the decoupled weight decay.
    mask: A tree with the params' structure (or a prefix), or a callable
      returning one, whose booleans say which leaves weight decay applies to.
    vector_reshape: Square-matricize leaves with one non-unit axis too (the
      default); if False they keep an exact, unfactored state.

  Returns:
    The corresponding :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from alada_optax import smmf
    >>> def f(x): return jnp.sum((x - 1.0) ** 2)  # a quadratic over a matrix
    >>> solver = smmf(learning_rate=0.1)
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
    Objective function: 11.76
    Objective function: 11.31
    Objective function: 10.68
    Objective function: 9.90
    Objective function: 9.00

  References:
    Park & Lee, `SMMF: Square-Matricized Momentum Factorization for
    Memory-Efficient Optimization <https://arxiv.org/abs/2412.08894>`_,
    AAAI 2025
  """
  return optax.chain(
      scale_by_smmf(
          beta=beta,
          eps=eps,
          decay_rate=decay_rate,
          growth_rate=growth_rate,
          vector_reshape=vector_reshape,
      ),
      _alias.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )
