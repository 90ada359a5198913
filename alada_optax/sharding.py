"""Where the optimizers' state lives when the params are sharded.

JAX's SPMD partitioner (``jax.jit`` with :class:`jax.sharding.NamedSharding`)
does the distributed work; this module only says how the optimizer state
should be laid out, given the params' layout, so that it can be passed as
``jax.jit``'s ``out_shardings`` (or ``in_shardings``, or to
``jax.device_put``, or to orbax as the restore target's shardings). It plays
the role of t5x's ``derive_logical_axes`` and of big_vision's sharding rules.
On meshes with explicit axes the optimizers place their state by the same
table themselves: there ``jax.jit(tx.init)(params)`` is enough.

The layout is one table (:mod:`alada_optax._layout`), a row per state type.
For Alada, a leaf viewed as a batch of ``m x n`` matrices
(:class:`~alada_optax.matricize.MatrixPlan`) with PartitionSpec ``spec``:

* ``mu`` gets ``spec`` (it has the leaf's shape).
* ``p`` (``batch_shape + (m,)``) keeps the spec entries of the batch axes,
  and its last (row) axis is sharded along the mesh axes of the param's row
  axes, *where the mesh allows*: a row index merged from several param axes
  (eq. (12) merges axes) can carry their mesh axes only when the merged
  layout of the shards is contiguous (see :func:`merged_axis_entry`);
  otherwise it keeps the longest valid prefix, possibly none (replicated).
  ``q`` likewise with the column axes.
* ``v0`` and ``t0`` (``batch_shape``) keep the batch axes' entries.
* Counters, hyperparameters and other scalars are replicated.

The other rows: CAME's row/column statistics like ``p``/``q`` (last two
axes), its ``mu`` and dense ``v`` like the param; SMMF's row factors and sign
bytes along the flattened leaf (runs of it: kept where every device holds
whole runs), its column factors (the shorter side) replicated;
Subset-Norm's accumulators along the rows, columns or flattened leaf they sum
over; Subspace-Momentum's momentum along the long side of the matrix view and
its projector along the short side (rank axis replicated); Adapprox's ``Q``
and ``U`` along the rows and columns (rank axis replicated), its ``mu`` and
dense ``nu`` like the param. Placeholders are replicated.

Whatever the layout, the result is only a placement: jit computes the same
numbers with any shardings (the tests check 8 devices against 1). With these
shardings the compiled update moves only vector-sized data between devices
(all-reduces of the row/column sums of ``M~^2``); ``mu`` and the gradient
never move.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Optional

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from alada_optax import _layout
from alada_optax import matricize
# The optimizer modules register their state types' rows of the layout table.
from alada_optax import adapprox as _adapprox  # pylint: disable=unused-import
from alada_optax import came as _came  # pylint: disable=unused-import
from alada_optax import smmf as _smmf  # pylint: disable=unused-import
from alada_optax import subset_norm as _subset_norm  # pylint: disable=unused-import
from alada_optax.alada import ScaleByAladaState

__all__ = (
    'merged_axis_entry',
    'scale_by_alada_state_specs',
    'sharded_init',
    'state_partition_specs',
    'state_shardings',
)

SpecEntry = _layout.SpecEntry
merged_axis_entry = _layout.merged_axis_entry
_spec_entries = _layout.spec_entries


def _is_empty(x: Any) -> bool:
  return x is None or isinstance(x, optax.MaskedNode)


def scale_by_alada_state_specs(
    state: ScaleByAladaState,
    params_specs: Any,
    *,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    axis_sizes: Optional[Mapping[str, int]] = None,
) -> ScaleByAladaState:
  """PartitionSpecs for one :class:`ScaleByAladaState`.

  This is the per-state rule (the layout table's Alada row);
  :func:`state_partition_specs` applies the table inside any chain of optax
  states. It also fits t5x's ``OptaxStatePartitionRules._RULES`` (see
  docs/scaling_out.md).

  Args:
    state: a ScaleByAladaState (concrete or abstract, e.g. from
      ``jax.eval_shape``); only shapes are read.
    params_specs: a pytree with the params' structure of PartitionSpecs (mesh
      axis names or logical axis names). Leaves that are
      :class:`optax.MaskedNode` or None in ``state.mu`` are skipped.
    dimension_numbers: the ``dimension_numbers`` given to the optimizer.
    axis_sizes: mesh axis sizes (``mesh.shape``); lets a merged row/column
      axis keep more than its first sharded component
      (see :func:`merged_axis_entry`).

  Returns:
    A ScaleByAladaState whose leaves are PartitionSpecs (``count`` is
    replicated, ``P()``), and MaskedNode / None where ``state.mu`` has them.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jax.sharding import PartitionSpec as P
    >>> from alada_optax import scale_by_alada
    >>> from alada_optax.sharding import scale_by_alada_state_specs
    >>> state = scale_by_alada().init({'w': jnp.zeros((8, 6))})
    >>> specs = scale_by_alada_state_specs(state, {'w': P('model', None)})
    >>> print(specs.mu['w'], specs.p['w'], specs.q['w'], specs.v0['w'])
    P('model', None) P('model',) P(None,) P()
  """
  return _layout.state_specs(state, params_specs,
                             dimension_numbers=dimension_numbers,
                             axis_sizes=axis_sizes)


def _matches_params(node: Any, params: Any) -> bool:
  """Whether ``node`` is a copy of the params tree (MaskedNode allowed)."""
  try:
    node_def = jax.tree.structure(node, is_leaf=_is_empty)
    params_def = jax.tree.structure(params, is_leaf=_is_empty)
  except Exception:  # pylint: disable=broad-except
    return False
  if node_def != params_def:
    return False
  return all(
      _is_empty(a) or _is_empty(b) or np.shape(a) == np.shape(b)
      for a, b in zip(
          jax.tree.leaves(node, is_leaf=_is_empty),
          jax.tree.leaves(params, is_leaf=_is_empty),
      )
  )


def _is_optimizer(x: Any) -> bool:
  """A GradientTransformation, or e.g. optax.MultiSteps (init + update)."""
  return (isinstance(x, optax.GradientTransformation)
          or (callable(getattr(x, 'init', None))
              and callable(getattr(x, 'update', None))))


def state_partition_specs(
    opt_state: Any,
    params: Any,
    params_specs: Any,
    *,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    axis_sizes: Optional[Mapping[str, int]] = None,
) -> Any:
  """PartitionSpecs for a whole optimizer state of this package's optimizers.

  Works on the state of ``alada``, ``smmf``, ``came``, ``adamw_snsm`` /
  ``adamw_sn``, ``adapprox`` (and their ``scale_by_*``) and of any optax
  combination around them (``optax.chain``, ``inject_hyperparams``,
  ``MultiSteps``, ``masked``, ``multi_transform``, ...): every state of a
  type in the layout table (:mod:`alada_optax._layout`; e.g.
  :class:`~alada_optax.ScaleByAladaState`) gets its row of the table; any
  other subtree that is a copy of the
  params (MultiSteps' accumulated gradients, another optimizer's moments; a
  MaskedNode may stand for a leaf) gets the params' specs; every other array
  (counters, hyperparameters, RNG keys) is replicated, ``P()``, with a
  warning naming the arrays that are not scalars (a state type the table does
  not know, e.g. ``optax.adafactor``'s factors).

  Args:
    opt_state: the optimizer's state, concrete or abstract
      (``jax.eval_shape(opt.init, params)``), or the optimizer itself (a
      GradientTransformation, or anything with ``init`` and ``update`` such
      as ``optax.MultiSteps``), whose state is then built abstractly.
    params: the params, or their shapes (``jax.ShapeDtypeStruct``).
    params_specs: a pytree with the params' structure of PartitionSpecs.
    dimension_numbers: the ``dimension_numbers`` given to the optimizer.
    axis_sizes: mesh axis sizes (``mesh.shape``), see
      :func:`merged_axis_entry`.

  Returns:
    A pytree with the state's structure whose array leaves are PartitionSpecs.

  Examples:
    ``alada``'s state is a chain's: its own, then weight decay's and the
    learning rate's (empty).

    >>> import jax.numpy as jnp
    >>> from jax.sharding import PartitionSpec as P
    >>> from alada_optax import alada
    >>> from alada_optax.sharding import state_partition_specs
    >>> params = {'w': jnp.zeros((8, 6))}
    >>> specs = state_partition_specs(alada(1e-3), params,
    ...                               {'w': P('model', None)})
    >>> print(specs[0].mu['w'], specs[0].p['w'], specs[0].q['w'])
    P('model', None) P('model',) P(None,)
  """
  if _is_optimizer(opt_state):
    opt_state = jax.eval_shape(opt_state.init, params)
  unknown = []

  def walk(node, path=()):
    if _layout.layout_of(node) is not None:
      return _layout.state_specs(
          node, params_specs, dimension_numbers=dimension_numbers,
          axis_sizes=axis_sizes, params_shapes=params,
      )
    if _is_empty(node):
      return node
    if jax.tree_util.all_leaves([node]):
      if np.ndim(node) > 0:
        unknown.append(jax.tree_util.keystr(path) + f' {np.shape(node)}')
      return PartitionSpec()
    if _matches_params(node, params):
      return jax.tree.map(
          lambda n, s: n if _is_empty(n) else (PartitionSpec() if s is None
                                               else s),
          node, params_specs,
          is_leaf=lambda x: _is_empty(x) or isinstance(x, PartitionSpec),
      )
    children, treedef = jax.tree_util.tree_flatten_with_path(
        node, is_leaf=lambda x: x is not node)
    return jax.tree.unflatten(
        treedef, [walk(c, path + k) for k, c in children])

  specs = walk(opt_state)
  if unknown:
    warnings.warn(
        'alada_optax.sharding: these optimizer-state arrays are neither in a'
        ' state type of the layout table nor copies of the params; they are'
        ' replicated: ' + ', '.join(unknown), stacklevel=2)
  return specs


def state_shardings(
    opt_state: Any,
    params: Any,
    params_shardings: Any = None,
    *,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
    mesh: Optional[jax.sharding.Mesh] = None,
) -> Any:
  """Shardings for a whole optimizer state (see :func:`state_partition_specs`).

  The :class:`~jax.sharding.NamedSharding` version of
  :func:`state_partition_specs`, ready for ``jax.jit(...,
  out_shardings=...)``, ``jax.device_put`` or an orbax restore target::

    params_sh = jax.tree.map(lambda x: x.sharding, params)
    opt_sh = state_shardings(opt, params, params_sh)
    state = jax.jit(opt.init, out_shardings=opt_sh)(params)

  Args:
    opt_state: the optimizer, or its (abstract) state.
    params: the params or their shapes. If ``params_shardings`` is None, each
      leaf's own ``.sharding`` (a jax.Array's, or a ShapeDtypeStruct's) is
      used.
    params_shardings: a pytree with the params' structure of NamedShardings
      (all on one mesh).
    dimension_numbers: the ``dimension_numbers`` given to the optimizer.
    mesh: the mesh; defaults to the params shardings' mesh.

  Returns:
    A pytree with the state's structure of NamedShardings (MaskedNode / None
    kept).

  Examples:
    On a mesh of one device (any mesh works the same):

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    >>> from alada_optax import alada
    >>> from alada_optax.sharding import state_shardings
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ('model',))
    >>> params = {'w': jax.device_put(jnp.zeros((8, 6)),
    ...                               NamedSharding(mesh, P('model', None)))}
    >>> opt = alada(1e-3)
    >>> shardings = state_shardings(opt, params)
    >>> opt_state = jax.jit(opt.init, out_shardings=shardings)(params)
    >>> print(opt_state[0].p['w'].sharding.spec)
    P('model',)
  """
  if params_shardings is None:
    params_shardings = jax.tree.map(
        lambda x: x.sharding, params, is_leaf=_is_empty
    )
  is_sharding = lambda x: isinstance(x, jax.sharding.Sharding) or x is None
  named = [
      s for s in jax.tree.leaves(params_shardings, is_leaf=is_sharding)
      if s is not None
  ]
  for s in named:
    if not isinstance(s, NamedSharding):
      raise TypeError(
          'alada_optax.sharding.state_shardings: params shardings must be'
          f' NamedShardings, got {type(s).__name__}.'
      )
  if mesh is None:
    if not named:
      raise ValueError('state_shardings: no NamedSharding given; pass mesh=.')
    mesh = named[0].mesh
  if any(s.mesh.shape != mesh.shape for s in named):
    raise ValueError('state_shardings: params shardings use different meshes.')
  specs = jax.tree.map(
      lambda s: None if s is None else s.spec,
      params_shardings,
      is_leaf=is_sharding,
  )
  state_specs = state_partition_specs(
      opt_state, params, specs, dimension_numbers=dimension_numbers,
      axis_sizes=dict(mesh.shape),
  )
  return jax.tree.map(
      lambda s: NamedSharding(mesh, s) if isinstance(s, PartitionSpec) else s,
      state_specs,
      is_leaf=lambda x: isinstance(x, PartitionSpec) or _is_empty(x),
  )


# -- creating the state in place ---------------------------------------------


def _is_boxed(x: Any) -> bool:
  """A param boxed with metadata: a flax.nnx Variable, read by its interface.

  flax is not imported: a tree can only hold Variables if its user did.
  """
  return (callable(getattr(x, 'get_value', None))
          and callable(getattr(x, 'get_metadata', None)))


def _unbox(tree: Any) -> Any:
  """``tree`` with each boxed param (:func:`_is_boxed`) replaced by its
  value, as ``nnx.as_pure`` does; other trees are returned as they are."""
  return jax.tree.map(lambda x: x.get_value() if _is_boxed(x) else x, tree,
                      is_leaf=_is_boxed)


def sharded_init(
    tx: optax.GradientTransformation,
    *,
    dimension_numbers: matricize.DimensionNumbersOrFn = None,
) -> optax.GradientTransformation:
  """``tx`` whose ``init`` creates the state directly in its sharded layout.

  When every param is a jax.Array with a NamedSharding, ``init`` runs under
  ``jax.jit(tx.init, out_shardings=state_shardings(tx, params))``: each
  device only ever holds its shards of the state. Otherwise it is ``tx.init``.

  It also makes Alada usable with ``flax.nnx.Optimizer`` on params that carry
  sharding annotations (``nnx.with_partitioning``): ``nnx.Optimizer`` copies
  each param's sharding metadata onto every optimizer-state leaf built from
  it, which fails for the vectors ``p``, ``q`` and ``v0`` (the same happens to
  ``optax.adafactor``'s factored state). Here ``init`` sees the params'
  arrays, not their Variables, and the state gets the layout of
  :func:`state_shardings` instead::

    with jax.set_mesh(mesh):
      model = Model(nnx.Rngs(0))  # params sharded by their annotations
      optimizer = nnx.Optimizer(model, sharded_init(alada(1e-3)),
                                wrt=nnx.Param)

  Args:
    tx: the optimizer (e.g. ``alada(...)``), any optax combination of it.
    dimension_numbers: the ``dimension_numbers`` given to the optimizer.

  Returns:
    ``tx`` with a new ``init``; ``update`` is unchanged.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    >>> from alada_optax import alada
    >>> from alada_optax.sharding import sharded_init
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ('model',))
    >>> params = {'w': jax.device_put(jnp.zeros((8, 6)),
    ...                               NamedSharding(mesh, P(None, 'model')))}
    >>> opt_state = sharded_init(alada(1e-3)).init(params)
    >>> print(opt_state[0].p['w'].sharding.spec,
    ...       opt_state[0].q['w'].sharding.spec)
    P(None,) P('model',)
  """

  def init_fn(params):
    params = _unbox(params)  # nnx.Optimizer gives its Variables
    leaves = [x for x in jax.tree.leaves(params, is_leaf=_is_empty)
              if not _is_empty(x)]
    if leaves and all(
        isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
        and isinstance(x.sharding, NamedSharding)
        for x in leaves
    ):
      shardings = state_shardings(
          tx, params, dimension_numbers=dimension_numbers
      )
      return jax.jit(tx.init, out_shardings=shardings)(params)
    return tx.init(params)

  return tx._replace(init=init_fn)
