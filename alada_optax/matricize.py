"""How a parameter tensor is viewed as a matrix (or a batch of matrices).

Factored optimizers (Alada, and the related methods of this package) keep a
rank-one second moment ``p q^T`` per matrix. A tensor of any order is viewed as
an ``m x n`` matrix by choosing which of its axes form the rows and which the
columns; the remaining axes, if any, are *batch* axes: each index along them is
an independent matrix with its own factors (e.g. the layer axis of stacked,
scanned layers).

The view is never materialised. A :class:`MatrixPlan` is a static description
(Python ints, computed once from the shape) that broadcasts row and column
factors into the tensor's own layout and reduces the tensor over its row or
column axes. Nothing of the tensor's size is reshaped, transposed or copied, so
the plan works unchanged on tensors sharded along any axis; only vectors
(``m``- or ``n``-sized) are ever reshaped.

By default the plan follows eq. (12) of the Alada paper: split the list of
dimensions ``k_1, ..., k_tau`` at the index ``j*`` where the two products are
closest (the first such split on ties), rows being axes ``0..j*-1`` and columns
axes ``j*..tau-1``. A vector is a ``1 x n`` matrix and a scalar ``1 x 1``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax


class MatrixDimensionNumbers(NamedTuple):
  """Which axes of a tensor form the rows and the columns of its matrix view.

  In the style of :class:`optax.contrib.MuonDimensionNumbers`: every axis not
  named in ``row_axis`` or ``col_axis`` is a *batch* axis, and each index along
  the batch axes is factored as a separate matrix. For example, the weights of
  ``L`` stacked layers of shape ``(L, d_in, d_out)`` behave exactly like ``L``
  separate ``(d_in, d_out)`` leaves with ``MatrixDimensionNumbers(1, 2)``, and
  attention weights of shape ``(d_model, heads, d_head)`` can be factored per
  head with ``MatrixDimensionNumbers(row_axis=0, col_axis=2)``.

  Axes may be negative. Either tuple may be empty (a vector is ``row_axis=()``,
  ``col_axis=0``).

  Attributes:
    row_axis: the axis, or axes, whose sizes multiply to the rows ``m``.
    col_axis: the axis, or axes, whose sizes multiply to the columns ``n``.

  Examples:
    Four stacked ``16 x 8`` layers, each with its own factors:

    >>> import jax.numpy as jnp
    >>> from alada_optax import MatrixDimensionNumbers, scale_by_alada
    >>> params = {'layers': jnp.zeros((4, 16, 8))}
    >>> tx = scale_by_alada(dimension_numbers=MatrixDimensionNumbers(1, 2))
    >>> state = tx.init(params)
    >>> print(state.p['layers'].shape, state.q['layers'].shape)
    (4, 16) (4, 8)
  """

  row_axis: Union[Sequence[int], int] = 0
  col_axis: Union[Sequence[int], int] = 1


# What users may pass: one spec for every leaf, a pytree of specs (None for
# "use eq. (12)"), or a callable that returns such a pytree from the params.
DimensionNumbersOrFn = Union[
    MatrixDimensionNumbers, Any, Callable[[Any], Any], None
]


def _as_axes(axes: Union[Sequence[int], int], ndim: int) -> tuple[int, ...]:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  for ax in axes:
    if not -ndim <= ax < ndim:
      raise ValueError(f'axis {ax} is out of range for a tensor of rank {ndim}')
  return tuple(ax % ndim for ax in axes)


def eq12_split(shape: Sequence[int]) -> int:
  """Returns ``j*`` of eq. (12): rows are axes ``[0, j*)``, columns the rest.

  For tensors of order >= 2 the split is taken among ``j = 1 .. tau-1`` (the
  dimension list is split into two non-empty parts), the first one on ties.
  Vectors give ``j* = 0`` (a ``1 x n`` matrix) and scalars ``j* = 0``.
  """
  if len(shape) < 2:
    return 0
  sizes = [int(k) for k in shape]
  best_j, best_gap = 1, None
  for j in range(1, len(sizes)):
    gap = abs(math.prod(sizes[:j]) - math.prod(sizes[j:]))
    if best_gap is None or gap < best_gap:
      best_j, best_gap = j, gap
  return best_j


def _reshape_vector(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """``x.reshape(shape)`` for the factor-sized arrays of a plan.

  On a mesh with explicit axes (sharding in types), merging or splitting a
  sharded dimension has no implied output sharding and JAX refuses it; these
  arrays are vectors (m or n floats per matrix), so they are replicated
  first, which moves only vectors between devices. On meshes with automatic
  axes (and on one device) this is a plain reshape.
  """
  if x.shape != shape and _explicit_spec(x) is not None:
    x = jax.sharding.reshard(x, jax.sharding.NamedSharding(
        jax.typeof(x).sharding.mesh, jax.sharding.PartitionSpec()))
  return x.reshape(shape)


def _explicit_spec(x: jax.Array):
  """The PartitionSpec in ``x``'s type (explicit mesh axes), or None."""
  spec = getattr(jax.typeof(x).sharding, 'spec', None)
  return spec if spec is not None and any(s is not None for s in spec) else None


def match_sharding(x: jax.Array, like: jax.Array) -> jax.Array:
  """``x`` broadcast to ``like``'s shape, with ``like``'s explicit sharding.

  For factor-sized values (vectors) combined with a stored factor on a mesh
  with explicit axes, where ``where``/``select`` need equal shardings. A
  no-op on meshes with automatic axes and on one device.
  """
  sharding = jax.typeof(like).sharding
  types = getattr(getattr(sharding, 'mesh', None), 'axis_types', ())
  if not any(t == jax.sharding.AxisType.Explicit for t in types):
    return x
  return jax.sharding.reshard(jnp.broadcast_to(x, like.shape), sharding)


@dataclasses.dataclass(frozen=True)
class MatrixPlan:
  """A static plan that views a tensor as a batch of ``m x n`` matrices.

  Attributes:
    shape: the tensor's shape.
    batch_axes: axes indexing independent matrices, in increasing order.
    row_axes: axes flattened (in this order) into the row index.
    col_axes: axes flattened (in this order) into the column index.
  """

  shape: tuple[int, ...]
  batch_axes: tuple[int, ...]
  row_axes: tuple[int, ...]
  col_axes: tuple[int, ...]

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return tuple(self.shape[a] for a in self.batch_axes)

  def stacked(self, k: int) -> 'MatrixPlan':
    """The plan of ``k`` such tensors stacked on a new leading batch axis."""
    shift = lambda axes: tuple(a + 1 for a in axes)
    return MatrixPlan((k,) + self.shape, (0,) + shift(self.batch_axes),
                      shift(self.row_axes), shift(self.col_axes))

  def split_last(self, k: int) -> 'MatrixPlan':
    """The plan of the tensor with its last axis viewed as ``(size // k, k)``
    (a row or column axis, ``k`` dividing it): the same matrices, factors
    and reductions."""
    a = len(self.shape) - 1
    if a in self.batch_axes or self.shape[a] % k:
      raise ValueError(f'cannot split the last axis of {self} by {k}.')
    split = lambda axes: tuple(b for x in axes
                               for b in ((a, a + 1) if x == a else (x,)))
    return MatrixPlan(self.shape[:-1] + (self.shape[a] // k, k),
                      split(self.batch_axes), split(self.row_axes),
                      split(self.col_axes))

  @property
  def m(self) -> int:
    return math.prod(self.shape[a] for a in self.row_axes)

  @property
  def n(self) -> int:
    return math.prod(self.shape[a] for a in self.col_axes)

  @property
  def row_factor_shape(self) -> tuple[int, ...]:
    """Shape of the row factor ``p``: ``batch_shape + (m,)``."""
    return self.batch_shape + (self.m,)

  @property
  def col_factor_shape(self) -> tuple[int, ...]:
    """Shape of the column factor ``q``: ``batch_shape + (n,)``."""
    return self.batch_shape + (self.n,)

  # -- the tensor as a batch of matrices (for methods that need matmuls) ----

  def to_matrix(self, x: jax.Array) -> jax.Array:
    """The tensor as ``batch_shape + (m, n)`` (no copy for eq. (12) views)."""
    perm = self.batch_axes + self.row_axes + self.col_axes
    return jnp.transpose(x, perm).reshape(self.batch_shape + (self.m, self.n))

  def from_matrix(self, y: jax.Array) -> jax.Array:
    """Inverse of :meth:`to_matrix`."""
    perm = self.batch_axes + self.row_axes + self.col_axes
    y = y.reshape(tuple(self.shape[a] for a in perm))
    return jnp.transpose(y, np.argsort(perm))

  # -- moving small arrays into and out of the tensor's layout ---------------

  def _to_layout(self, x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Broadcastable view of ``x`` (dims ``batch_axes + axes``, in that order,
    with ``axes`` flattened in ``x``'s last dimension) in the tensor layout."""
    x = _reshape_vector(x, self.batch_shape + tuple(self.shape[a] for a in axes))
    order = self.batch_axes + axes
    # Put the dims in the tensor's axis order, then add the missing ones.
    x = jnp.transpose(x, np.argsort(order))
    return x.reshape(
        tuple(self.shape[a] if a in order else 1 for a in range(len(self.shape)))
    )

  def _from_layout(self, x: jax.Array, kept: tuple[int, ...]) -> jax.Array:
    """Inverse of :meth:`_to_layout` for the result of reducing all axes but
    ``batch_axes + kept``: returns an array of shape ``batch_shape + (size,)``."""
    remaining = tuple(sorted(self.batch_axes + kept))
    order = self.batch_axes + kept
    x = jnp.transpose(x, [remaining.index(a) for a in order])
    return _reshape_vector(
        x, self.batch_shape + (math.prod(self.shape[a] for a in kept),))

  def expand_rows(self, p: jax.Array) -> jax.Array:
    """Row factor ``batch_shape + (m,)`` -> broadcastable against the tensor."""
    return self._to_layout(p, self.row_axes)

  def expand_cols(self, q: jax.Array) -> jax.Array:
    """Column factor ``batch_shape + (n,)`` -> broadcastable against the tensor."""
    return self._to_layout(q, self.col_axes)

  def expand_batch(self, s: jax.Array) -> jax.Array:
    """Per-matrix scalars ``batch_shape`` -> broadcastable against the tensor."""
    return self._to_layout(s[..., None], ())

  def sum_over_cols(self, x: jax.Array) -> jax.Array:
    """Row sums of each matrix: a tensor -> ``batch_shape + (m,)``."""
    return self._from_layout(jnp.sum(x, axis=self.col_axes), self.row_axes)

  def sum_over_rows(self, x: jax.Array) -> jax.Array:
    """Column sums of each matrix: a tensor -> ``batch_shape + (n,)``."""
    return self._from_layout(jnp.sum(x, axis=self.row_axes), self.col_axes)

  def sum_per_matrix(self, x: jax.Array) -> jax.Array:
    """Sum of each matrix: a tensor -> ``batch_shape``."""
    return self._from_layout(
        jnp.sum(x, axis=self.row_axes + self.col_axes), ()
    )[..., 0]


def plan_for(
    shape: Sequence[int],
    dimension_numbers: MatrixDimensionNumbers | None = None,
) -> MatrixPlan:
  """The matrix view of a tensor: eq. (12) by default, else as specified."""
  shape = tuple(int(k) for k in shape)
  ndim = len(shape)
  if dimension_numbers is None:
    j = eq12_split(shape)
    rows, cols = tuple(range(j)), tuple(range(j, ndim))
  else:
    rows = _as_axes(dimension_numbers.row_axis, ndim)
    cols = _as_axes(dimension_numbers.col_axis, ndim)
    named = rows + cols
    if len(set(named)) != len(named):
      raise ValueError(
          f'{dimension_numbers} names an axis twice for a tensor of shape '
          f'{shape}'
      )
  batch = tuple(a for a in range(ndim) if a not in rows + cols)
  return MatrixPlan(shape, batch, rows, cols)


def _is_dim_nums(x: Any) -> bool:
  return isinstance(x, MatrixDimensionNumbers)


def resolve_dimension_numbers(
    dimension_numbers: DimensionNumbersOrFn, params: Any
) -> Any:
  """Returns a pytree (a prefix of ``params``) of dimension numbers or None.

  ``None`` means eq. (12) for every leaf; a single
  :class:`MatrixDimensionNumbers` applies to every leaf; a callable is called
  on ``params``.
  """
  if callable(dimension_numbers) and not _is_dim_nums(dimension_numbers):
    dimension_numbers = dimension_numbers(params)
  return dimension_numbers


def tree_plans(
    params: Any,
    dimension_numbers: DimensionNumbersOrFn,
    plan_fn: Callable[[tuple[int, ...], Any], Any] = plan_for,
) -> Any:
  """A pytree of plans, one per array leaf of ``params``.

  ``None`` leaves and :class:`optax.MaskedNode` in ``params`` stay as they are;
  ``dimension_numbers`` may be a prefix of ``params`` with None for eq. (12).

  Args:
    params: the params (or anything with their structure and shapes).
    dimension_numbers: see :func:`resolve_dimension_numbers`.
    plan_fn: ``(leaf shape, MatrixDimensionNumbers or None) -> plan``; by
      default :func:`plan_for` (a :class:`MatrixPlan`). Optimizers with
      plans of their own (Subset-Norm's subsets, Adapprox's factorisation)
      pass theirs.

  Returns:
    A pytree with the structure of ``params`` of ``plan_fn``'s results.
  """
  dim_nums = resolve_dimension_numbers(dimension_numbers, params)
  if dim_nums is None or _is_dim_nums(dim_nums):
    return jax.tree.map(lambda x: plan_fn(jnp.shape(x), dim_nums), params)

  def per_subtree(spec, subtree):
    return jax.tree.map(lambda x: plan_fn(jnp.shape(x), spec), subtree)

  return jax.tree.map(
      per_subtree,
      dim_nums,
      params,
      is_leaf=lambda x: x is None
      or _is_dim_nums(x)
      or isinstance(x, optax.MaskedNode),
  )


def matmul(a: jax.Array, b: jax.Array, out_sharding=None) -> jax.Array:
  """``a @ b`` in full float32 precision (no TF32 on GPUs), batched.

  For the methods that work on the matrix view itself
  (:meth:`MatrixPlan.to_matrix`). ``out_sharding``: the product's sharding
  on a mesh with explicit axes (None elsewhere), needed where the contracted
  axis is sharded.
  """
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST,
                    out_sharding=out_sharding)


@functools.lru_cache(maxsize=None)
def square_shape(numel: int) -> tuple[int, int]:
  """SMMF's square-matricization of a tensor with ``numel`` entries.

  Returns ``(numel // i, i)`` with ``i`` the largest divisor of ``numel`` with
  ``i <= sqrt(numel)``: ``(k, k)`` for ``k * k`` entries, ``(numel, 1)`` for a
  prime. The tensor is flattened row-major and reshaped to this shape whatever
  its own shape, so unlike :func:`plan_for` (which only groups
  whole axes) it is not expressible as a :class:`MatrixDimensionNumbers`.
  """
  numel = int(numel)
  if numel == 0:
    return 0, 0
  # math.isqrt gives the same i as the official int(numel ** 0.5): a float
  # sqrt rounded up to k only when numel < k^2, and then k divides no numel.
  for i in range(math.isqrt(numel), 0, -1):
    if numel % i == 0:
      return numel // i, i
  return numel, 1  # unreachable
