"""Pieces shared by the package's aliases (``alada``, ``smmf``, ...)."""

from typing import Any, Callable, Optional, Union

import optax

from alada_optax import _validation


def add_decayed_weights(
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
) -> optax.GradientTransformation:
  """:func:`optax.add_decayed_weights` that needs no params when it is a no-op.

  With a concrete ``weight_decay`` of 0 (the aliases' default), ``update``
  without ``params`` passes the updates through, as :func:`optax.adam` does;
  otherwise it is :func:`optax.add_decayed_weights` (which requires params).
  The state is the same either way.
  """
  inner = optax.add_decayed_weights(weight_decay, mask)
  value = _validation.concrete_value(weight_decay)
  if value is None or value.any():
    return inner

  def update_fn(updates, state, params=None):
    if params is None:
      return updates, state
    return inner.update(updates, state, params)

  return optax.GradientTransformation(inner.init, update_fn)
