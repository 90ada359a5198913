"""Where each optimizer-state leaf lives, given its param's sharding: one table.

Every state type of the package has one :class:`StateLayout`, registered by
its fields' declaration (:func:`alada_optax._leafwise.declare`): for each
field, a *rule* that says which param axes each of the field's dimensions comes
from (a row factor's last dimension comes from the param's row axes, merged; a
first moment's dimensions from the param's own axes; a rank or a packed sign
byte from none, or from several axes coarsened). :func:`leaf_spec` turns that
into a PartitionSpec from the param's PartitionSpec. The same table serves
:mod:`alada_optax.sharding` (``state_shardings`` for ``jit``'s
``out_shardings``) and the optimizers themselves, which place their state
where the table says when the params carry explicit mesh axes (sharding in
types): there ``jax.jit(tx.init)(params)`` gives a laid-out state and
``update`` keeps it there (:func:`place`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from alada_optax import matricize

# A PartitionSpec entry: None (not sharded), one mesh axis name, or a tuple of
# them (major to minor).
SpecEntry = Union[None, str, tuple]
# For each dimension of a state leaf: the param axes it comes from (merged,
# row-major), or () for a dimension that does not come from the param.
Dims = tuple


def _entry_axes(entry: SpecEntry) -> tuple:
  if entry is None or entry is PartitionSpec.UNCONSTRAINED:
    return ()
  if isinstance(entry, (tuple, list)):
    return tuple(entry)
  return (entry,)


def _as_entry(names: Sequence[Any]) -> SpecEntry:
  names = tuple(names)
  if not names:
    return None
  return names[0] if len(names) == 1 else names


def spec_entries(spec: PartitionSpec, ndim: int) -> tuple:
  entries = tuple(spec)
  if len(entries) > ndim:
    raise ValueError(f'PartitionSpec {spec} has more entries than the rank'
                     f' {ndim} of its array')
  return entries + (None,) * (ndim - len(entries))


def merged_axis_entry(
    sizes: Sequence[int],
    entries: Sequence[SpecEntry],
    axis_sizes: Optional[Mapping[str, int]] = None,
) -> SpecEntry:
  """The spec entry of an axis merged (row-major) from axes with ``entries``.

  Merging axes of sizes ``s_1, ..., s_k`` into one of size ``prod(s_i)``
  keeps each device's shard contiguous, with shards in the order of the
  concatenated mesh axes, only as long as every axis before the last sharded
  one has one element per device. This returns the concatenated mesh axes of
  the longest prefix of the axes for which that holds (and that divide
  evenly); the later axes' shardings are dropped (the merged vector is
  gathered over those mesh axes, a vector-sized exchange).

  Args:
    sizes: sizes of the merged axes, major to minor.
    entries: their PartitionSpec entries.
    axis_sizes: the mesh's axis sizes (``mesh.shape``). Without it (e.g. for
      logical axis names) only the first sharded axis can be kept, and only if
      every axis before it has size 1.

  Returns:
    A PartitionSpec entry: None, a mesh axis name or a tuple of them.

  Examples:
    Rows merged from a ``(2, 6)`` block sharded ``('data', 'model')`` on a
    2 x 2 mesh: one index of the first axis per device, so the merged axis
    keeps both mesh axes. With ``(4, 6)`` each device holds two indices of
    the first axis, and only ``'data'`` can be kept.

    >>> from alada_optax.sharding import merged_axis_entry
    >>> mesh_shape = {'data': 2, 'model': 2}
    >>> merged_axis_entry((2, 6), ('data', 'model'), mesh_shape)
    ('data', 'model')
    >>> merged_axis_entry((4, 6), ('data', 'model'), mesh_shape)
    'data'
  """
  names: list[Any] = []
  one_per_device_so_far = True
  for size, entry in zip(sizes, entries):
    axes = _entry_axes(entry)
    if not axes:
      one_per_device_so_far = one_per_device_so_far and size == 1
      continue
    if not one_per_device_so_far:
      break
    if axis_sizes is None:
      names.extend(axes)
      one_per_device_so_far = size == 1
      continue
    shards = math.prod(int(axis_sizes[a]) for a in axes)
    if size % shards:
      break
    names.extend(axes)
    one_per_device_so_far = size // shards == 1
  return _as_entry(names)


def dims_spec(
    dims: Dims,
    shape: Sequence[int],
    param_shape: Sequence[int],
    param_entries: Sequence[SpecEntry],
    axis_sizes: Optional[Mapping[str, int]],
) -> PartitionSpec:
  """The PartitionSpec of a state leaf of ``shape`` whose dimension ``i``
  comes from the param axes ``dims[i]``.

  A dimension as long as its param axes merged gets
  :func:`merged_axis_entry`. A *coarsened* one (each of its entries stands
  for a contiguous run of ``prod / size`` entries of the merged axes: SMMF's
  square rows, Subset-Norm's flat subsets, packed sign bits) keeps that entry
  only when every device's run holds whole runs (known mesh sizes only).
  """
  out = []
  used: set = set()
  for axes, size in zip(dims, shape):
    if not axes:
      out.append(None)
      continue
    sizes = [int(param_shape[a]) for a in axes]
    entry = merged_axis_entry(sizes, [param_entries[a] for a in axes],
                              axis_sizes)
    total = math.prod(sizes)
    names = _entry_axes(entry)
    if names and total != size:
      if axis_sizes is None or not size or total % size:
        names = ()
      elif size % math.prod(int(axis_sizes[a]) for a in names):
        names = ()
    if used.intersection(names):
      names = ()
    used.update(names)
    out.append(_as_entry(names))
  return PartitionSpec(*out)


# -- rules: a field's dims from its shape, the param's shape and matrix view --

# A rule: (leaf shape, param shape, plan or None) -> Dims, or None where the
# leaf is not what the rule describes (a placeholder: replicated).
Rule = Callable[[tuple, tuple, Optional[matricize.MatrixPlan]], Optional[Dims]]


def like_param(shape, pshape, plan):
  """Shaped like the param (a first moment, a dense second moment)."""
  del plan
  return tuple((a,) for a in range(len(pshape))) if shape == pshape else None


def _factor(plan, axes, shape, trailing):
  if plan is None:
    return None
  batch = plan.batch_shape
  size = math.prod(plan.shape[a] for a in axes)
  if shape[:len(batch) + 1] != batch + (size,) or (
      len(shape) != len(batch) + 1 + trailing):
    return None
  return (tuple((a,) for a in plan.batch_axes) + (tuple(axes),)
          + ((),) * trailing)


def rows(shape, pshape, plan):
  """``batch + (m,)``: along the row axes of the matrix view."""
  del pshape
  return _factor(plan, plan.row_axes if plan else (), shape, 0)


def cols(shape, pshape, plan):
  """``batch + (n,)``: along the column axes."""
  del pshape
  return _factor(plan, plan.col_axes if plan else (), shape, 0)


def rows_by_rank(shape, pshape, plan):
  """``batch + (m, k)``: Adapprox's ``Q``."""
  del pshape
  return _factor(plan, plan.row_axes if plan else (), shape, 1)


def cols_by_rank(shape, pshape, plan):
  """``batch + (n, k)``: Adapprox's ``U``."""
  del pshape
  return _factor(plan, plan.col_axes if plan else (), shape, 1)


def batch(shape, pshape, plan):
  """``batch``: one number per matrix."""
  del pshape
  if plan is None or shape != plan.batch_shape:
    return None
  return tuple((a,) for a in plan.batch_axes)


def blocks(shape, pshape, plan):
  """``pshape[:-1] + (nblocks,)``: an 8-bit moment's scale per block of its
  param's last axis. The last axis keeps its param's sharding only where
  every device holds whole blocks (the blocks equal, their number a multiple
  of the shards): a block never crosses a shard boundary."""
  del plan
  if (not pshape or len(shape) != len(pshape)
      or tuple(shape[:-1]) != tuple(pshape[:-1]) or not shape[-1]):
    return None
  return tuple((a,) for a in range(len(pshape)))


def replicated(shape, pshape, plan):
  del shape, pshape, plan
  return None


def flat_runs(shape, pshape, plan):
  """A vector of one entry per contiguous run of the row-major flattened
  param (SMMF's square rows and sign bytes, flat subsets)."""
  del plan
  if len(shape) != 1 or not pshape:
    return None
  return (tuple(range(len(pshape))),)


def subsets(shape, pshape, plan):
  """Subset-Norm's accumulators: per coordinate, row, column or flat run."""
  if shape == pshape:
    return like_param(shape, pshape, plan)
  if plan is not None and len(pshape) >= 2:
    first, second = (rows, cols) if plan.m >= plan.n else (cols, rows)
    for rule in (first, second):
      dims = rule(shape, pshape, plan)
      if dims is not None:
        return dims
  return flat_runs(shape, pshape, plan)


def subspace_momentum(shape, pshape, plan):
  """``batch + (m, r)`` (``m >= n``) or ``batch + (r, n)``, or the param's."""
  if shape == pshape:
    return like_param(shape, pshape, plan)
  if plan is None or len(shape) != len(plan.batch_shape) + 2:
    return None
  b = tuple((a,) for a in plan.batch_axes)
  if plan.m >= plan.n:
    dims = b + (plan.row_axes, ())
    want = plan.batch_shape + (plan.m,)
    got = shape[:-1]
  else:
    dims = b + ((), plan.col_axes)
    want = plan.batch_shape + (plan.n,)
    got = shape[:-2] + shape[-1:]
  return dims if got == want else None


def subspace_projector(shape, pshape, plan):
  """``batch + (n, r)`` (``m >= n``) or ``batch + (m, r)``."""
  if plan is None:
    return None
  axes = plan.col_axes if plan.m >= plan.n else plan.row_axes
  return _factor(plan, axes, shape, 1)


@dataclasses.dataclass(frozen=True)
class StateLayout:
  """How one state type lays out its fields.

  Attributes:
    fields: for each field holding a params-shaped pytree, its rule. Fields
      not named (counters, keys) are replicated.
    plan: ``(param shape, the plan of dimension_numbers) -> plan`` used by the
      rules; the identity by default.
    strict: raise (instead of replicating) when a leaf does not fit its rule
      (a wrong ``dimension_numbers``).
    placeholder: the shape of the entry of a field for a leaf that does not
      use it (replicated, strict or not); None if the type has none.
  """

  fields: Mapping[str, Rule]
  plan: Callable[[tuple, Any], Any] = lambda shape, plan: plan
  strict: bool = False
  placeholder: Optional[tuple] = None


_REGISTRY: dict[type, StateLayout] = {}


def register(state_type: type, layout: StateLayout) -> None:
  """Declares ``state_type``'s layout (``_leafwise.declare`` does, once)."""
  _REGISTRY[state_type] = layout


def layout_of(state: Any) -> Optional[StateLayout]:
  return _REGISTRY.get(type(state))


def _is_empty(x: Any) -> bool:
  return x is None or isinstance(x, optax.MaskedNode)


def _plan_or_default(shape, spec):
  try:
    return matricize.plan_for(shape, spec)
  except ValueError:
    if len(shape) >= 2:
      raise
    return matricize.plan_for(shape)  # vectors: the methods ignore the spec


def state_specs(
    state: Any,
    params_specs: Any,
    *,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    axis_sizes: Optional[Mapping[str, int]] = None,
    params_shapes: Any = None,
) -> Any:
  """PartitionSpecs for one registered state (its type's rules applied).

  ``params_shapes`` (a pytree of the params or their shapes) defaults to the
  first params-shaped field's shapes for types whose first field is like the
  params; otherwise it is required.
  """
  layout = _REGISTRY[type(state)]
  names = list(layout.fields)
  reference = getattr(state, names[0])
  flat_ref, ref_def = jax.tree.flatten(reference, is_leaf=_is_empty)
  if params_shapes is None:
    pshapes = [None if _is_empty(r) else tuple(r.shape) for r in flat_ref]
  else:
    pshapes = [None if _is_empty(x) else tuple(jax.numpy.shape(x))
               for x in ref_def.flatten_up_to(params_shapes)]
  is_spec = lambda x: isinstance(x, PartitionSpec) or x is None
  flat_specs, spec_def = jax.tree.flatten(params_specs, is_leaf=is_spec)
  if spec_def.num_leaves != ref_def.num_leaves or (
      jax.tree.structure(jax.tree.unflatten(ref_def, [0] * len(flat_ref)))
      != jax.tree.structure(
          jax.tree.unflatten(spec_def, [0] * len(flat_specs)))):
    raise ValueError(
        'alada_optax.sharding: the params specs do not have the structure of'
        f' the optimizer state\'s params: {spec_def} vs {ref_def}.')
  shape_tree = jax.tree.unflatten(
      ref_def, [jax.ShapeDtypeStruct(s, 'float32') if s is not None else r
                for s, r in zip(pshapes, flat_ref)])
  flat_plans = ref_def.flatten_up_to(matricize.tree_plans(
      shape_tree, dimension_numbers, _plan_or_default))
  paths = [k for k, _ in jax.tree_util.tree_leaves_with_path(
      reference, is_leaf=_is_empty)]
  out = {}
  for name in names:
    rule = layout.fields[name]
    flat_field = ref_def.flatten_up_to(getattr(state, name))
    specs = []
    for path, leaf, pshape, spec, plan in zip(
        paths, flat_field, pshapes, flat_specs, flat_plans):
      if _is_empty(leaf) or pshape is None:
        specs.append(leaf)
        continue
      shape = tuple(leaf.shape)
      entries = spec_entries(PartitionSpec() if spec is None else spec,
                             len(pshape))
      dims = rule(shape, pshape, layout.plan(pshape, plan))
      if dims is None:
        if (layout.strict and rule is not replicated
            and shape != layout.placeholder):
          raise ValueError(
              f'alada_optax.sharding: for leaf {jax.tree_util.keystr(path)}'
              f' of shape {pshape} the state field {name} has shape {shape},'
              ' which the dimension numbers given here do not give. Pass the'
              ' same dimension_numbers as to the optimizer.')
        dims = ((),) * len(shape)
      specs.append(dims_spec(dims, shape, pshape, entries, axis_sizes))
    out[name] = jax.tree.unflatten(ref_def, specs)
  others = {f: jax.tree.map(lambda _: PartitionSpec(), getattr(state, f))
            for f in state._fields if f not in out}
  return type(state)(**out, **others)


# -- the optimizers place their own state on meshes with explicit axes --------


def _explicit_sharding(x: Any):
  """``x``'s NamedSharding in its type if its mesh has explicit axes."""
  try:
    sharding = jax.typeof(x).sharding
  except Exception:  # pylint: disable=broad-except
    return None
  mesh = getattr(sharding, 'mesh', None)
  types = getattr(mesh, 'axis_types', ())
  if not any(t == jax.sharding.AxisType.Explicit for t in types):
    return None
  return sharding


def place(state: Any, params: Any,
          dimension_numbers: matricize.DimensionNumbersOrFn = None) -> Any:
  """``state`` resharded to its table layout, on meshes with explicit axes.

  ``params`` (or the updates, laid out like them) carry the shardings in their
  types; without explicit mesh axes (automatic axes, one device) this returns
  ``state`` as it is: no op is added. Resharding a value to a layout it
  already has is free, and a replicated value to a sharded one a local slice.
  """
  flat = [x for x in jax.tree.leaves(params, is_leaf=_is_empty)
          if not _is_empty(x)]
  shardings = [_explicit_sharding(x) for x in flat]
  named = [s for s in shardings if s is not None]
  if not named:
    return state
  mesh = named[0].mesh
  axis_sizes = dict(mesh.shape)
  specs = jax.tree.map(
      lambda x: x if _is_empty(x) else (
          s.spec if (s := _explicit_sharding(x)) is not None
          else PartitionSpec()),
      params, is_leaf=_is_empty)
  spec_tree = state_specs(state, specs, dimension_numbers=dimension_numbers,
                          axis_sizes=axis_sizes, params_shapes=params)
  return jax.tree.map(
      lambda x, s: x if _is_empty(x) else jax.sharding.reshard(
          x, NamedSharding(mesh, s)),
      state, spec_tree,
      is_leaf=lambda x: _is_empty(x) or isinstance(x, PartitionSpec))


# -- the matrix methods' shardings on meshes with explicit axes ---------------


def explicit_spec(x: Any) -> Optional[NamedSharding]:
  """``x``'s sharding (a NamedSharding on its abstract mesh) on a mesh with
  explicit axes, or None (automatic axes, one device): pass it as
  ``out_sharding``."""
  sharding = _explicit_sharding(x)
  if sharding is None:
    return None
  return NamedSharding(sharding.mesh, PartitionSpec(
      *spec_entries(sharding.spec, jax.numpy.ndim(x))))


def gathered(x: Any, keep: int = 2) -> Optional[NamedSharding]:
  """``x``'s spec with its last ``keep`` dims not sharded (None where ``x``
  has no explicit axes): the ``out_sharding`` of a small product every device
  needs whole (a Gram matrix, a sketch)."""
  sharding = explicit_spec(x)
  if sharding is None:
    return None
  return NamedSharding(sharding.mesh, PartitionSpec(
      *tuple(sharding.spec)[:-keep], *(None,) * keep))


def _matrix_spec(plan: matricize.MatrixPlan, leaf_spec: PartitionSpec,
                 axis_sizes) -> PartitionSpec:
  entries = spec_entries(leaf_spec, len(plan.shape))
  dims = (tuple((a,) for a in plan.batch_axes)
          + (plan.row_axes, plan.col_axes))
  return dims_spec(dims, plan.batch_shape + (plan.m, plan.n), plan.shape,
                   entries, axis_sizes)


def to_matrix(plan: matricize.MatrixPlan, x: jax.Array) -> jax.Array:
  """:meth:`MatrixPlan.to_matrix`, on explicit mesh axes with the matrix's
  rows and columns sharded as the layout table shards row and column
  factors (where merging axes drops a sharding, that part is gathered)."""
  sharding = _explicit_sharding(x)
  if sharding is None:
    return plan.to_matrix(x)
  perm = plan.batch_axes + plan.row_axes + plan.col_axes
  out = _matrix_spec(plan, sharding.spec, dict(sharding.mesh.shape))
  return jax.numpy.reshape(jax.numpy.transpose(x, perm),
                           plan.batch_shape + (plan.m, plan.n),
                           out_sharding=NamedSharding(sharding.mesh, out))


def from_matrix(plan: matricize.MatrixPlan, y: jax.Array,
                like: jax.Array) -> jax.Array:
  """:meth:`MatrixPlan.from_matrix`, back in ``like``'s (the leaf's) layout
  on explicit mesh axes."""
  sharding = explicit_spec(like)
  if sharding is None:
    return plan.from_matrix(y)
  perm = plan.batch_axes + plan.row_axes + plan.col_axes
  entries = tuple(sharding.spec)
  y = jax.numpy.reshape(y, tuple(plan.shape[a] for a in perm),
                        out_sharding=NamedSharding(sharding.mesh, PartitionSpec(
                            *(entries[a] for a in perm))))
  return jax.numpy.transpose(y, np.argsort(perm))
