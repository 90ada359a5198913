"""A scaffold for transformations that keep their state leaf by leaf.

Every optimizer of this package keeps, for each leaf of the params, a few
arrays (a first moment shaped like the leaf, row and column factors of its
matrix view, a scalar per matrix, ...) and steps each leaf on its own. Its
module declares the state's per-leaf fields once, each with its *role* (a
rule of the layout table, :mod:`alada_optax._layout`: where the field lives
given its param's sharding), its shape and its dtype::

  _FIELDS = _leafwise.declare(ScaleByFooState, {
      'mu': _leafwise.Field(_layout.like_param, _leafwise.param_shape,
                            _leafwise.MOMENT),
      'r': _leafwise.Field(_layout.rows, lambda _, plan: plan.row_factor_shape),
  })

and writes the step of one leaf, the *kernel*::

  kernel(g, state, plan, count, hyperparams) -> (direction, state)

where ``state`` is the state type holding one leaf's arrays (its whole-tree
fields, ``count`` among them, are None; the kernel returns it with its
fields replaced), ``plan`` the leaf's static plan and ``count`` the state's
step count. A field's shape is None for a leaf that does not use it (a
vector's row factor): the leaf holds a placeholder there, of one declared
shape, replicated. :func:`transformation` makes the
:class:`optax.GradientTransformation`: ``init`` (zeros of the declared
shapes and dtypes), ``update``'s checks of its inputs, the kernel mapped
over the leaves (None and :class:`optax.MaskedNode` kept, zero-size leaves
given zero-size updates), the updates' and first moments' dtypes, the step
count, and the state's layout on meshes with explicit axes. :func:`declare`
registers the layout, which :mod:`alada_optax.sharding` reads too. Inputs
that no leaf's state holds (Adapprox's random sketches) come through one
hook, :class:`StepInputs`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from alada_optax import _layout
from alada_optax import _quantize
from alada_optax import _validation
from alada_optax import matricize

# The shape of a field's entry for a leaf that does not use the field (a
# matrix's dense second moment where it is factored, a vector's factors).
PLACEHOLDER = (0,)

# Dtypes of a field, besides a concrete one (int32 counters, uint8 bits):
FACTOR = 'factor'  # float32, or the param's dtype if wider.
MOMENT = 'moment'  # mu_dtype, else the param's; kept in it across steps.
# The per-block scales of the MOMENT field where it is stored in 8 bits
# (mu_dtype an `Int8`; int8 codes in the MOMENT field), float32, shaped
# `_quantize.scales_shape`; None for the leaves kept in floats (no array:
# orbax saves no zero-size one).
SCALES = 'scales'


def param_shape(shape, plan):
  """The shape of a field shaped like its param (for :class:`Field`)."""
  del plan
  return shape


class Field(NamedTuple):
  """One per-leaf field of a state type.

  Attributes:
    role: where the field lives given its param's sharding: a rule of the
      layout table (``_layout.like_param``, ``_layout.rows``,
      ``_layout.cols``, ``_layout.batch``, ...).
    shape: ``(param shape, plan) -> shape``, or None where the leaf does not
      use the field (it then holds a placeholder, replicated).
    dtype: :data:`FACTOR`, :data:`MOMENT`, :data:`SCALES` (with ``shape``
      unused) or a dtype.
  """

  role: _layout.Rule
  shape: Callable[[tuple, Any], Optional[tuple]]
  dtype: Any = FACTOR


@dataclasses.dataclass(frozen=True)
class Declaration:
  """A state type's per-leaf fields (made by :func:`declare`)."""

  state: type
  fields: Mapping[str, Field]
  placeholder: tuple

  def shapes(self, shape, plan, fmt=None) -> dict:
    """Each field's shape for a leaf of ``shape`` (placeholders included),
    its MOMENT field stored in ``fmt`` (an ``Int8``) or not (None; its
    SCALES field is then None, no array)."""
    out = {}
    for name, field in self.fields.items():
      if field.dtype is SCALES:
        out[name] = (None if fmt is None else
                     _quantize.scales_shape(tuple(shape), fmt.block_size))
        continue
      want = field.shape(tuple(shape), plan)
      out[name] = self.placeholder if want is None else tuple(want)
    return out


def declare(
    state: type,
    fields: Mapping[str, Field],
    *,
    placeholder: Sequence[int] = PLACEHOLDER,
    layout_plan: Optional[Callable[[tuple, Any], Any]] = None,
    strict: bool = False,
) -> Declaration:
  """Declares ``state``'s per-leaf fields and registers its layout.

  Args:
    state: the state NamedTuple; it has a ``count`` field, and its fields
      not in ``fields`` (``count``, Adapprox's ``key``) are whole-tree ones.
    fields: the per-leaf fields, by name.
    placeholder: the shape of a placeholder.
    layout_plan: ``(param shape, plan of dimension_numbers) -> plan`` for
      the layout rules, if the optimizer views leaves as matrices its own
      way (see :class:`_layout.StateLayout`).
    strict: the layout raises (instead of replicating) where a field does
      not fit its role (a wrong ``dimension_numbers``).

  Returns:
    The declaration, for :func:`transformation`.
  """
  if 'count' not in state._fields or not set(fields) <= set(state._fields):
    raise ValueError(f'{state.__name__} has no count, or not the fields'
                     f' {sorted(fields)}.')
  placeholder = tuple(placeholder)
  layout = dict(fields={name: f.role for name, f in fields.items()},
                placeholder=placeholder, strict=strict)
  if layout_plan is not None:
    layout['plan'] = layout_plan
  _layout.register(state, _layout.StateLayout(**layout))
  return Declaration(state, dict(fields), placeholder)


class StepInputs(NamedTuple):
  """A hook for kernels that need inputs no leaf's state holds.

  Adapprox draws the random sketches of all leaves at once, from a key in
  its state: ``draw`` gives the kernels their sketch (as their last
  argument) and the state its next key.

  Attributes:
    init: ``params -> {field: value}``: the state's whole-tree fields
      besides ``count``.
    draw: ``(state, updates, plans) -> (inputs, {field: value})``, with
      ``updates`` and ``plans`` the flat lists of the leaves (in
      ``jax.tree.leaves`` order): one input per leaf, and the new values of
      the whole-tree fields.
  """

  init: Callable[[Any], Mapping[str, Any]]
  draw: Callable[[Any, list, list], tuple[Sequence[Any], Mapping[str, Any]]]


Kernel = Callable[..., tuple[jax.Array, Any]]
TreeKernel = Callable[..., Sequence[tuple[jax.Array, Any]]]


_COMPILED: collections.OrderedDict = collections.OrderedDict()
_COMPILED_MAX = 32


def concrete_key(*values: Any) -> Optional[tuple]:
  """A hashable key of a tree kernel's closure, or None if a value is traced.

  Scalars (Python or concrete arrays) become floats; strings, None, booleans
  and functions stay as they are. Under ``jax.jit`` (say, hyperparameters
  injected with :func:`optax.inject_hyperparams` inside a jitted step) a
  value is a tracer and there is no key.
  """
  key = []
  for v in values:
    if v is None or isinstance(v, (str, bool, _quantize.Int8)) or callable(v):
      key.append(v)
      continue
    try:
      key.append(float(v))
    except (TypeError, jax.errors.ConcretizationTypeError):
      return None
  return tuple(key)


# Items of at most this many entries per array are stacked by kind (see
# stacked).
STACK_MAX_SIZE = 2**16


def _stack_kind(item: Any, plan: Any) -> Optional[tuple]:
  arrays = jax.tree.leaves(item)
  if (max(jnp.size(x) for x in arrays) > STACK_MAX_SIZE
      or any(jnp.result_type(x) == jnp.int8 for x in arrays)
      or any(_layout._explicit_sharding(x) is not None for x in arrays)):  # pylint: disable=protected-access
    return None
  return (plan, jax.tree.structure(item),
          tuple((jnp.shape(x), jnp.result_type(x)) for x in arrays))


def stacked(fn: Callable[[Any, Any], Any], items: Sequence[Any],
            plans: Sequence[Any]) -> list:
  """``[fn(item, plan) for item, plan in zip(items, plans)]``, with the
  small items of one kind computed in one call.

  Items (pytrees of one leaf's arrays) whose arrays have at most
  :data:`STACK_MAX_SIZE` entries and agree in structure, shapes, dtypes and
  plan (a model's biases and norms' scales of one width) are stacked on a
  new leading batch axis and ``fn`` gets them with the plan of the stack
  (:meth:`~alada_optax.matricize.MatrixPlan.stacked`): ``fn`` must treat
  each matrix of the batch on its own. Its results are split again. Left
  alone: items with 8-bit codes (their seeds are per leaf) or arrays on a
  mesh with explicit axes (their shardings would have to agree).
  """
  groups = collections.defaultdict(list)
  for i, (item, plan) in enumerate(zip(items, plans)):
    groups[_stack_kind(item, plan) or ('alone', i)].append(i)
  out = [None] * len(items)
  for group in groups.values():
    if len(group) == 1:
      out[group[0]] = fn(items[group[0]], plans[group[0]])
      continue
    result = fn(jax.tree.map(lambda *xs: jnp.stack(xs),
                             *(items[i] for i in group)),
                plans[group[0]].stacked(len(group)))
    for j, i in enumerate(group):
      out[i] = jax.tree.map(lambda x, j=j: x[j], result)
  return out


def _compiled(tree_kernel: TreeKernel, key: Optional[tuple]) -> TreeKernel:
  """``tree_kernel`` jitted, its plans static.

  Called outside jit, an update would otherwise compile its control flow
  anew on each call. Transformations built with the same ``key`` share the
  compiled kernel: :func:`optax.inject_hyperparams` builds a transformation
  on each update.
  """
  if key is None:
    return jax.jit(tree_kernel, static_argnums=2)
  if key not in _COMPILED:
    _COMPILED[key] = jax.jit(tree_kernel, static_argnums=2)
    if len(_COMPILED) > _COMPILED_MAX:
      _COMPILED.popitem(last=False)
  _COMPILED.move_to_end(key)
  return _COMPILED[key]


def transformation(
    name: str,
    declaration: Declaration,
    kernel: Kernel,
    hyperparams: Any,
    plan_fn: Callable[[tuple, Any], Any] = matricize.plan_for,
    *,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    mu_dtype: Optional[jnp.dtype | _quantize.Int8] = None,
    quantize_mask: Any = None,
    step_inputs: Optional[StepInputs] = None,
    tree_kernel: Optional[TreeKernel] = None,
    tree_kernel_key: Optional[tuple] = None,
) -> optax.GradientTransformation:
  """A transformation that steps each leaf with ``kernel``.

  Args:
    name: the transformation's name, for error messages.
    declaration: its state's fields (:func:`declare`).
    kernel: ``(g, state, plan, count, hyperparams) -> (direction, state)``
      for one leaf (see the module's docstring); the direction in any
      floating dtype (it is cast to the updates' dtype).
    hyperparams: passed to the kernel as they are (a tuple, say).
    plan_fn: ``(leaf shape, MatrixDimensionNumbers or None) -> plan``, the
      leaf's static plan (hashable: kernels are jitted with it static).
    dimension_numbers: the matrix views, as
      :func:`~alada_optax.matricize.tree_plans` reads them.
    mu_dtype: the dtype of the :data:`MOMENT` fields (None: the params'),
      or an :class:`~alada_optax.Int8`: int8 codes in the MOMENT field and
      their scales in the :data:`SCALES` field for the leaves it applies to
      (see :func:`moment_formats`), the params' dtype for the others. A
      kernel tells them apart by its MOMENT field's dtype (int8).
    quantize_mask: with an ``Int8`` ``mu_dtype``, the leaves it may apply
      to (see :func:`moment_formats`).
    step_inputs: see :class:`StepInputs`.
    tree_kernel: in place of ``kernel``, a step of all the leaves at once,
      ``(gs, states, plans, count, *inputs) -> [(direction, state), ...]``
      over the lists of the non-empty leaves: for a transformation whose
      control flow is one for the whole tree (Alada's parity), not one per
      leaf. ``kernel`` and ``hyperparams`` are then unused (None).
    tree_kernel_key: what ``tree_kernel`` computes, as :func:`concrete_key`
      gives it (None: not known): transformations with equal keys share one
      compiled tree kernel.

  Returns:
    A :class:`optax.GradientTransformation`.
  """
  state_type = declaration.state
  names = tuple(declaration.fields)
  fmt = mu_dtype if isinstance(mu_dtype, _quantize.Int8) else None
  if fmt is not None:
    mu_dtype = None
  moments = [f for f, field in declaration.fields.items()
             if field.dtype is MOMENT]
  if tree_kernel is not None:
    tree_kernel = _compiled(tree_kernel, tree_kernel_key)

  def plans_for(tree):
    return matricize.tree_plans(tree, dimension_numbers, plan_fn)

  def dtype_of(field, x, leaf_fmt):
    if field.dtype is FACTOR or field.dtype is SCALES:
      return _validation.factor_dtype(jnp.result_type(x))
    if field.dtype is MOMENT:
      return jnp.int8 if leaf_fmt is not None else mu_dtype
    return field.dtype

  def zeros(name, x, plan, leaf_fmt):
    field = declaration.fields[name]
    shape = declaration.shapes(jnp.shape(x), plan, leaf_fmt)[name]
    if shape is None:  # the scales of a moment kept in floats
      return None
    dtype = dtype_of(field, x, leaf_fmt)
    if shape == jnp.shape(x) and field.dtype is not SCALES:
      # laid out, and typed, like the param
      return jnp.zeros_like(x, dtype=dtype)
    return jnp.zeros(shape, dtype or jnp.result_type(x))

  def init_fn(params):
    _validation.check_float_leaves(params, 'parameter', name)
    plans = plans_for(params)
    treedef = jax.tree.structure(params)
    flat = list(zip(treedef.flatten_up_to(params),
                    treedef.flatten_up_to(plans),
                    moment_formats(params, fmt, quantize_mask, name,
                                   warn=True)))
    fields = {f: jax.tree.unflatten(treedef, [zeros(f, *leaf) for leaf in flat])
              for f in names}
    others = step_inputs.init(params) if step_inputs else {}
    state = state_type(count=jnp.zeros([], jnp.int32), **fields, **others)
    # Explicit mesh axes: the state's layout comes with it (a no-op else).
    return _layout.place(state, params, dimension_numbers)

  def update_fn(updates, state, params=None):
    _validation.check_state_type(state, state_type, name)
    _validation.check_matches_state(
        updates, getattr(state, names[0]), name, _validation.no_shape_check)
    _validation.check_float_leaves(updates, 'update', name)
    plans = plans_for(updates)
    # The leaves whose moment is stored in 8 bits; the state must agree.
    formats = None
    if moments:
      formats = moment_formats(updates, fmt, quantize_mask, name)
      _check_moment_storage(name, updates, getattr(state, moments[0]), formats)
    _validation.check_state_shapes(
        name, updates, plans, declaration.shapes,
        {f: getattr(state, f) for f in names}, formats)

    treedef = jax.tree.structure(updates)
    flat_updates = treedef.flatten_up_to(updates)
    flat_plans = treedef.flatten_up_to(plans)
    columns = [treedef.flatten_up_to(getattr(state, f)) for f in names]
    if step_inputs:
      inputs, others = step_inputs.draw(state, flat_updates, flat_plans)
      inputs = [(x,) for x in inputs]
    else:
      inputs, others = [()] * len(flat_updates), {}
    blank = dict.fromkeys(state_type._fields)
    leaves = [state_type(**{**blank, **dict(zip(names, arrays))})
              for arrays in zip(*columns)]
    # Zero-size leaves: nothing to step, a zero-size update, the state as is.
    directions = [None if jnp.size(g) else
                  jnp.zeros(jnp.shape(g), jnp.result_type(g))
                  for g in flat_updates]
    live = [i for i, d in enumerate(directions) if d is None]
    pick = lambda xs: [xs[i] for i in live]
    if tree_kernel is not None:
      stepped = tree_kernel(pick(flat_updates), pick(leaves),
                            tuple(pick(flat_plans)), state.count,
                            *zip(*pick(inputs)))
    else:
      stepped = [kernel(g, leaf, plan, state.count, hyperparams, *extra)
                 for g, leaf, plan, extra in zip(
                     pick(flat_updates), pick(leaves), pick(flat_plans),
                     pick(inputs))]
    for i, (direction, leaf) in zip(live, stepped):
      directions[i], leaves[i] = direction, leaf

    direction = _validation.cast_updates(
        jax.tree.unflatten(treedef, directions), updates, params)
    fields = {}
    for f in names:
      fields[f] = jax.tree.unflatten(treedef, [getattr(s, f) for s in leaves])
      if declaration.fields[f].dtype is MOMENT:
        fields[f] = optax.tree.cast_like(fields[f], getattr(state, f))
    state = state._replace(count=optax.safe_increment(state.count), **fields,
                           **others)
    return direction, _layout.place(state, updates, dimension_numbers)

  return optax.GradientTransformation(init_fn, update_fn)


def moment_formats(params: Any, fmt: Optional[_quantize.Int8],
                   mask: Any, name: str, warn: bool = False) -> list:
  """Per leaf of ``params`` (a list in ``jax.tree.leaves`` order), ``fmt``
  where its first moment is stored in 8 bits, else None.

  ``fmt`` applies to the leaves that ``mask`` selects (None: all; a pytree
  of bools, a prefix of the params, or a callable returning one from the
  params, as :func:`optax.masked` takes) and that have at least
  ``fmt.min_size`` entries and one axis or more. With ``warn`` (at init),
  :func:`alada_optax._quantize.warn_if_wide_on_tpu` for each.
  """
  is_empty = lambda x: x is None or isinstance(x, optax.MaskedNode)
  treedef = jax.tree.structure(params)
  if fmt is None:
    return [None] * treedef.num_leaves
  if callable(mask):
    mask = mask(params)
  if mask is None:
    chosen = jax.tree.map(lambda x: x if is_empty(x) else True, params,
                          is_leaf=is_empty)
  else:
    def broadcast(m, subtree):
      if not isinstance(m, (bool, np.bool_)):
        raise TypeError(
            f'{name}: quantize_mask must hold Python bools, got {m!r}.')
      return jax.tree.map(lambda x: x if is_empty(x) else bool(m), subtree,
                          is_leaf=is_empty)
    try:
      chosen = jax.tree.map(broadcast, mask, params,
                            is_leaf=lambda x: isinstance(x, (bool, np.bool_)))
    except ValueError as e:
      raise ValueError(
          f'{name}: quantize_mask must be a prefix of the params\''
          f' structure: {e}') from None
  paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(
      params, is_leaf=is_empty) if not is_empty(_)]
  out = []
  for path, x, c in zip(paths, treedef.flatten_up_to(params),
                        treedef.flatten_up_to(chosen)):
    quantized = c and jnp.ndim(x) >= 1 and jnp.size(x) >= fmt.min_size
    if quantized:
      _check_blocks_within_shards(name, path, x, fmt.block_size)
      if warn:
        _quantize.warn_if_wide_on_tpu(name, _validation.leaf_name(path),
                                      jnp.shape(x), fmt)
    out.append(fmt if quantized else None)
  return out


def _check_moment_storage(name, updates, moments, formats):
  """A ValueError naming the first leaf whose first moment is stored in 8
  bits where this transformation keeps it in floats, or the other way."""
  treedef = jax.tree.structure(updates)
  paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(updates)]
  for path, mu, fmt in zip(paths, treedef.flatten_up_to(moments), formats):
    in_8_bits = jnp.result_type(mu) == jnp.int8
    if in_8_bits != (fmt is not None):
      have = 'in 8 bits' if in_8_bits else f'as {jnp.result_type(mu)}'
      want = (f'in 8 bits ({fmt})' if fmt is not None else
              'in floats (mu_dtype, Int8.min_size or quantize_mask)')
      raise ValueError(
          f'{name}: leaf {_validation.leaf_name(path)} has its first moment'
          f' stored {have} in the state, but this optimizer stores it {want}.'
          ' Was the state made with another mu_dtype?')


def _check_blocks_within_shards(name, path, x, block_size):
  """On a mesh with explicit axes, a ValueError naming the leaf where a
  block of its last axis would cross a shard boundary."""
  sharding = _layout._explicit_sharding(x)  # pylint: disable=protected-access
  if sharding is None:
    return
  entries = _layout.spec_entries(sharding.spec, jnp.ndim(x))
  axes = _layout._entry_axes(entries[-1])  # pylint: disable=protected-access
  shards = math.prod(int(sharding.mesh.shape[a]) for a in axes)
  n = jnp.shape(x)[-1]
  if shards > 1 and (n // shards) % block_size:
    raise ValueError(
        f'{name}: leaf {_validation.leaf_name(path)} has its last axis of {n}'
        f' split into {shards} shards of {n // shards} entries, which blocks'
        f' of {block_size} (Int8.block_size) would cross. Use a block_size'
        f' that divides {n // shards}, or keep the leaf in floats with'
        ' quantize_mask.')
