"""Smoke test of the benchmark suite's methods part (benchmarks/methods.py).

Runs its quick mode (tiny shapes) on the movie-review sentences of the
vaderSentiment 3.3.2 sdist, read offline from the examples' data cache:

  python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 \\
      -d ~/.cache/alada_optax/examples

Without it the test skips, except under CI (tests/ci.py), where it fails.
"""

import math

import pytest

from benchmarks import methods
from examples.common import movie_snippets
from tests import ci


@pytest.fixture
def sentences():
  try:
    movie_snippets.locate_sdist(download=False)
  except FileNotFoundError as e:
    ci.skip_or_fail(f'example data not installed:\n{e}')


def test_quick_methods_part(sentences, tmp_path):
  results = methods.run(quick=True, warmup=1, rounds=3, log=lambda s: None)
  rows = results['rows']
  assert list(rows) == list(methods.METHODS)
  for name, r in rows.items():
    m = r['memory']
    for x in (m.params, m.state, m.peak, r['time'].median):
      assert math.isfinite(x) and x >= 0, (name, x)
    assert m.peak > m.params and r['time'].median > 0
    # One held-out loss per learning rate of the method's grid.
    assert len(r['lrs']) == len(r['heldout']) == 3
    assert list(r['lrs']) == sorted(r['lrs'])
    for x in r['heldout']:
      assert x is None or (math.isfinite(x) and x > 0), (name, x)
  adam = rows['Adam']['memory'].state
  assert rows['SMMF']['memory'].state < adam
  assert rows['Adafactor']['memory'].state < adam
  assert rows['Alada']['memory'].state < 0.6 * adam
  # Adam at its recommended rate learns something in 30 steps.
  assert rows['Adam']['best'] < math.log(256)

  lines = methods.markdown(results)
  table = [l for l in lines if l.startswith('| ')]
  assert len(table) == 1 + len(rows)  # the header and a row per method
  for name, r in rows.items():
    (row,) = [l for l in table if l.startswith(f'| {name} |')]
    for lr in r['lrs']:
      assert f'({lr:g})' in row
  path = methods.plot(results, str(tmp_path))
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_diverged_runs_are_reported_not_raised():
  assert methods._finite_or_none(float('nan')) is None
  assert methods._finite_or_none(float('inf')) is None
  assert methods._finite_or_none(2.5) == 2.5
  assert methods._loss(None) == 'diverged'
  assert methods._loss(2.5) == '2.500'


def test_grids_are_centred_on_each_methods_rate():
  for name, m in methods.METHODS.items():
    assert len(m.grid) == 3, name
    assert m.grid[0] < m.lr < m.grid[2], name
    assert math.isclose(m.grid[2] / m.lr, m.lr / m.grid[0], rel_tol=0.2), name
