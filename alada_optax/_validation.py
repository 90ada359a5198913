"""Input checks shared by the package's transformations: clear errors naming
the offending leaf, never a silent wrong answer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax


def leaf_name(path) -> str:
  """``['layer']['w']`` for a key path; ``<root>`` for a bare array."""
  return jax.tree_util.keystr(path) or '<root>'


def factor_dtype(dtype) -> jnp.dtype:
  """Factors, small state and arithmetic: float32, or wider if the params are."""
  return jnp.promote_types(dtype, jnp.float32)


class Range(NamedTuple):
  """An interval of allowed hyperparameter values, for :func:`check_hyperparams`."""

  low: float = -math.inf
  high: float = math.inf
  low_closed: bool = True
  high_closed: bool = True

  def contains(self, x: np.ndarray) -> bool:
    above = x >= self.low if self.low_closed else x > self.low
    below = x <= self.high if self.high_closed else x < self.high
    return bool(np.all(above & below))  # NaN is in no range

  def __str__(self) -> str:
    if self.high == math.inf:
      return ('>= ' if self.low_closed else '> ') + f'{self.low:g}'
    return ('[' if self.low_closed else '(') + f'{self.low:g}, {self.high:g}' + (
        ']' if self.high_closed else ')')


DECAY = Range(0., 1., high_closed=False)  # an EMA rate: 1 freezes the EMA
UNIT = Range(0., 1.)
NON_NEGATIVE = Range(0.)
POSITIVE = Range(0., low_closed=False)


def concrete_value(x: Any) -> Optional[np.ndarray]:
  """``x`` as a float NumPy array if it is a concrete number, else None.

  None, schedules (callables) and tracers (hyperparameters traced under
  :func:`optax.inject_hyperparams` or ``jax.jit``) give None: they cannot be
  checked when the transformation is built.
  """
  if x is None or callable(x) or isinstance(x, jax.core.Tracer):
    return None
  try:
    return np.asarray(x, dtype=np.float64)
  except (TypeError, ValueError, jax.errors.JAXTypeError):
    return None


def check_hyperparams(transform: str, **checks: tuple[Any, Range]) -> None:
  """Raises a ValueError naming the first hyperparameter outside its range.

  Args:
    transform: the transformation's name, for the message.
    **checks: ``name=(value, range)``. Only concrete values are checked (see
      :func:`concrete_value`): traced values and schedules pass, so that
      :func:`optax.inject_hyperparams` keeps working.
  """
  for name, (value, allowed) in checks.items():
    x = concrete_value(value)
    if x is not None and not allowed.contains(x):
      raise ValueError(
          f'{transform}: {name} must be {"in " if "," in str(allowed) else ""}'
          f'{allowed}, got {value!r}.')


def check_mu_dtype(transform: str, mu_dtype: Any) -> Optional[jnp.dtype]:
  """``mu_dtype`` as a dtype (None stays None); a TypeError unless floating."""
  if mu_dtype is None:
    return None
  dtype = jnp.dtype(mu_dtype)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
        f'{transform}: mu_dtype must be a floating-point dtype, got {dtype}'
        ' (the first moment would round to 0).')
  return dtype


def static_int(transform: str, name: str, value: Any, default: int,
               low: int) -> int:
  """A shape-setting integer hyperparameter: ``default`` for None, else an int.

  Such arguments cannot be traced: under :func:`optax.inject_hyperparams` they
  must be listed in ``static_args`` when given (their default, None, is static
  already).
  """
  if value is None:
    return default
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    if value < low:
      raise ValueError(f'{transform}: {name} must be >= {low}, got {value}.')
    return int(value)
  raise ValueError(
      f'{transform}: {name} must be a Python integer >= {low} or None (it is'
      f' static: it sets shapes or loop counts), got {value!r}. Under'
      f' optax.inject_hyperparams, pass static_args=({name!r}, ...).')


def cast_updates(direction: Any, updates: Any, params: Any = None) -> Any:
  """The updates' dtypes, as optax's: the gradients' promoted with the params'.

  ``direction`` (computed in :func:`factor_dtype`) is cast to
  ``promote_types(gradient, param)`` leaf by leaf, as :func:`optax.adam` with
  its default ``mu_dtype`` returns (float32 updates for float32 params and
  bfloat16 gradients); without params (or with params of another tree
  structure), to the gradients' dtype.
  """
  if params is None or (jax.tree.structure(params)
                        != jax.tree.structure(updates)):
    return jax.tree.map(lambda d, g: d.astype(g.dtype), direction, updates)
  return jax.tree.map(
      lambda d, g, p: d.astype(jnp.promote_types(g.dtype, jnp.result_type(p))),
      direction, updates, params)


def check_float_leaves(tree: Any, what: str, transform: str) -> None:
  """Raises a TypeError naming the first non-floating leaf of ``tree``."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f'{transform}: {what} leaf {leaf_name(path)} has dtype {dtype}.'
          ' This transformation only optimizes real floating-point leaves;'
          ' keep integer, boolean and complex leaves out of it, e.g. with'
          ' optax.masked or optax.multi_transform.'
      )


def _shape_mismatch(g, ref) -> Optional[str]:
  if jnp.shape(g) == jnp.shape(ref):
    return None
  return (f'has shape {jnp.shape(g)} in the updates but {jnp.shape(ref)} in'
          ' the optimizer state')


def no_shape_check(update_leaf, reference_leaf) -> None:
  """For ``check_matches_state`` when the state is not shaped like the params."""
  del update_leaf, reference_leaf


def check_matches_state(
    updates: Any,
    reference: Any,
    transform: str,
    leaf_mismatch: Callable[[Any, Any], Optional[str]] = _shape_mismatch,
) -> None:
  """Raises a ValueError naming the first leaf where updates and state differ.

  Args:
    updates: the incoming updates (gradients).
    reference: a tree of the state with the params' structure (e.g. ``mu``).
    transform: the transformation's name, for the message.
    leaf_mismatch: ``(update_leaf, reference_leaf) -> message or None``; by
      default the shapes must be equal.
  """
  is_leaf = lambda x: x is None or isinstance(x, optax.MaskedNode)
  got = dict(jax.tree_util.tree_leaves_with_path(updates, is_leaf=is_leaf))
  want = dict(jax.tree_util.tree_leaves_with_path(reference, is_leaf=is_leaf))
  for path in want:
    if path not in got:
      raise ValueError(
          f'{transform}: the updates have no leaf {leaf_name(path)}, which'
          ' the optimizer state has. Were the updates built from other params'
          ' than those given to init?'
      )
  for path, g in got.items():
    if path not in want:
      raise ValueError(
          f'{transform}: the updates have a leaf {leaf_name(path)} that'
          ' the optimizer state lacks. Were the updates built from other'
          ' params than those given to init?'
      )
    ref = want[path]
    if is_leaf(g) or is_leaf(ref):
      if type(g) is not type(ref):
        raise ValueError(
            f'{transform}: leaf {leaf_name(path)} is {type(g).__name__} in'
            f' the updates but {type(ref).__name__} in the optimizer state.'
        )
      continue
    message = leaf_mismatch(g, ref)
    if message:
      raise ValueError(f'{transform}: leaf {leaf_name(path)} {message}.')
  if jax.tree.structure(updates, is_leaf=is_leaf) != jax.tree.structure(
      reference, is_leaf=is_leaf
  ):
    raise ValueError(
        f'{transform}: the updates and the optimizer state have the same'
        ' leaves but different tree structures: '
        f'{jax.tree.structure(updates)} vs {jax.tree.structure(reference)}.'
    )


def check_state_type(state: Any, expected: type, transform: str) -> None:
  """Raises a TypeError if ``state`` was not made by this transformation."""
  if not isinstance(state, expected):
    raise TypeError(
        f'{transform}: expected a {expected.__name__}, got'
        f' {type(state).__name__}. Was this state made by another optimizer?'
    )


def check_state_shapes(transform: str, updates: Any, plans: Any,
                       expected: Callable[..., dict],
                       fields: dict, formats: Any = None) -> None:
  """Raises an error naming the first leaf whose state has the wrong shapes.

  Args:
    transform: the transformation's name, for the message.
    updates: the incoming updates.
    plans: a plan per leaf of ``updates``.
    expected: ``(leaf shape, plan, format) -> {field: shape}``, the shapes
      of the state's ``fields`` that the leaf implies.
    fields: the state's per-leaf fields, by name.
    formats: per leaf of ``updates`` (a list in ``jax.tree.leaves`` order),
      how its first moment is stored (passed to ``expected``); None: None
      for every leaf.
  """
  treedef = jax.tree.structure(updates)
  columns = {f: treedef.flatten_up_to(tree) for f, tree in fields.items()}
  flat_formats = [None] * treedef.num_leaves if formats is None else formats
  for i, ((path, g), plan, fmt) in enumerate(zip(
      jax.tree_util.tree_leaves_with_path(updates),
      treedef.flatten_up_to(plans), flat_formats)):
    want = expected(jnp.shape(g), plan, fmt)
    have = {f: None if column[i] is None else tuple(jnp.shape(column[i]))
            for f, column in columns.items()}
    if want != have:
      wrong = ', '.join(f'{f} {have[f]} (not {want[f]})' for f in want
                        if want[f] != have[f])
      raise ValueError(
          f'{transform}: leaf {leaf_name(path)} has shape {jnp.shape(g)} in the'
          f' updates, but the optimizer state has {wrong} for it. Were the'
          ' updates built from other params than those given to init?')
