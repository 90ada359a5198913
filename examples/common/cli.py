"""Command-line helpers shared by the examples' ``main.py`` files (absl flags)."""

from __future__ import annotations

import logging
from typing import Any


def quiet_backend_probe() -> None:
  """Hides JAX's INFO line about backends it could not start.

  JAX tries every platform it knows at start-up and logs, at INFO, e.g.
  "Unable to initialize backend 'tpu'" when libtpu is absent. ``absl.app``
  shows INFO records, so every example started with that line. Only that
  logger's INFO records are hidden: the platform JAX picks (a GPU when there
  is one) is unchanged, and a failing backend the user asked for with
  ``JAX_PLATFORMS`` still raises.
  """
  logging.getLogger('jax._src.xla_bridge').setLevel(logging.WARNING)


def _fields(config: Any, prefix: str = ''):
  """(dotted name, value) of every leaf field of a (nested) ConfigDict."""
  for key, value in config.items():
    if hasattr(value, 'items'):
      yield from _fields(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def _flag_value(value: Any) -> str:
  if isinstance(value, tuple):  # as the shell must pass it: quoted, no spaces
    return '"(' + ','.join(_flag_value(v) for v in value) + (
        ',)"' if len(value) == 1 else ')"')
  return repr(value)


def config_help(config: Any, path: str) -> str:
  """The ``--config`` flag's help: how to override a field, and every field."""
  lines = [
      f'Hyperparameter configuration: a Python file, default {path},',
      'where every field is documented. Override any field with',
      '--config.FIELD=VALUE (tuples in quotes). The fields and their defaults:']
  lines += [f'--config.{name}={_flag_value(value)}'
            for name, value in _fields(config)]
  return '\n'.join(lines)
