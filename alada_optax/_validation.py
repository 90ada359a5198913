"""Input checks shared by the package's transformations: clear errors naming
the offending leaf, never a silent wrong answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax


def leaf_name(path) -> str:
  """``['layer']['w']`` for a key path; ``<root>`` for a bare array."""
  return jax.tree_util.keystr(path) or '<root>'


def factor_dtype(dtype) -> jnp.dtype:
  """Factors, small state and arithmetic: float32, or wider if the params are."""
  return jnp.promote_types(dtype, jnp.float32)


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
                        expected: Callable[[Any], tuple], *fields) -> None:
  """Raises an error naming the first leaf whose state has the wrong shapes.

  ``expected(plan)`` gives the shapes of ``fields`` a leaf's plan implies.
  """
  treedef = jax.tree.structure(updates)
  columns = [treedef.flatten_up_to(f) for f in fields]
  for (path, g), plan, arrays in zip(
      jax.tree_util.tree_leaves_with_path(updates),
      treedef.flatten_up_to(plans), zip(*columns)):
    want = tuple(tuple(s) for s in expected(plan))
    have = tuple(tuple(jnp.shape(a)) for a in arrays)
    if want != have:
      raise ValueError(
          f'{transform}: leaf {leaf_name(path)} has shape {jnp.shape(g)} in the'
          f' updates, which implies optimizer state shapes {want}, but the'
          f' state has {have}. Were the updates built from other params than'
          ' those given to init?')
