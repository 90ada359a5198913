"""Skip locally, fail in CI: tests that need data, weights or packages.

CI must install everything the tests use, so a missing requirement is a
failure there and a skip elsewhere. CI is recognised by the ``CI``
environment variable set to ``1``, ``true`` or ``yes`` (any case), as CI
services set it.
"""

from __future__ import annotations

import os

import pytest

_TRUE = ('1', 'true', 'yes')


def in_ci() -> bool:
  """Whether the ``CI`` environment variable says this is a CI run."""
  return os.environ.get('CI', '').strip().lower() in _TRUE


def skip_or_fail(reason: str, *, allow_module_level: bool = False):
  """``pytest.fail(reason)`` in CI, else ``pytest.skip(reason)``.

  ``allow_module_level`` is passed to ``pytest.skip``, for a call while the
  module is imported (skips the whole module; in CI the fail is an error
  collecting it).
  """
  if in_ci():
    pytest.fail(f'CI must install what this test needs: {reason}')
  pytest.skip(reason, allow_module_level=allow_module_level)
