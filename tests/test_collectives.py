"""benchmarks.collectives: its HLO accounting, and what it measures, small.

The measurement needs 8 simulated devices, set before JAX starts: it runs as
``python -m benchmarks.collectives --quick`` in a subprocess (about 15 s on 2
CPU cores), on Alada, SMMF, Adapprox and Adam, both kinds of mesh axes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from alada_optax import hlo as hlo_lib
from benchmarks import collectives

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A conditional with two branches, a loop with a known trip count, and a
# collective in the entry computation.
_HLO = '\n'.join([
    'HloModule m',
    '%keep (p: f32[8]) -> f32[8] {',
    '  %ar = f32[8]{0} all-reduce(f32[8]{0} %p), replica_groups={}, '
    'metadata={op_name="jit(step)/jit(_leaf)/cond/branch_0_fun/reduce_sum"}',
    '}',
    '%refresh (p: f32[8]) -> f32[8] {',
    '  ROOT %ag = f32[64,2]{1,0} all-gather(%p), dimensions={0}',
    '}',
    '%body (t: (s32[], f32[4])) -> (s32[], f32[4]) {',
    '  %ar2 = f32[4]{0} all-reduce(%x), to_apply=%add',
    '}',
    '%cond (t: (s32[], f32[4])) -> pred[] {',
    '  ROOT %lt = pred[] compare(%i, %n), direction=LT',
    '}',
    'ENTRY %main (a: f32[8], c: s32[]) -> f32[8] {',
    '  %t = (f32[4]{0}, bf16[2]{0}) all-reduce(%a, %b), to_apply=%add',
    '  %c2 = f32[8] conditional(%c, %a, %a), '
    'branch_computations={%keep, %refresh}',
    '  %w = (s32[], f32[4]) while(%init), condition=%cond, body=%body, '
    'backend_config={"known_trip_count":{"n":"3"}}',
    '}',
])


def test_bytes_per_step_branches_and_loops():
  entry, keep, refresh, body = 20, 32, 512, 16
  assert collectives.bytes_per_step(_HLO, 0)['bytes'] == entry + keep + 3 * body
  assert collectives.bytes_per_step(_HLO, 1)['bytes'] == (
      entry + refresh + 3 * body)
  assert collectives.bytes_per_step(_HLO, min)['bytes'] == (
      entry + keep + 3 * body)
  assert collectives.bytes_per_step(_HLO)['unknown_trip_counts'] == 0
  # Without trip counts a loop body counts once.
  without_trips = collectives.bytes_per_step(_HLO, max, loops=False)['bytes']
  assert without_trips == hlo_lib.hlo_collective_bytes_per_step(
      _HLO, loops=False) == entry + refresh + body
  assert hlo_lib.hlo_collective_bytes_per_step(_HLO) == (
      entry + refresh + 3 * body)
  unknown = _HLO.replace('backend_config={"known_trip_count":{"n":"3"}}', '')
  assert collectives.bytes_per_step(unknown) == {
      'bytes': entry + refresh + body, 'unknown_trip_counts': 1}


def test_op_names_follow_the_collectives():
  colls = collectives.collectives_with_op_names(_HLO)
  assert [(c['op'], c['bytes'], c['op_name']) for c in colls] == [
      ('all-reduce', 32, '_leaf/cond/branch_0_fun/reduce_sum'),
      ('all-gather', 512, None),
      ('all-reduce', 16, None),
      ('all-reduce', 20, None),
  ]
  assert collectives.describe(colls[-1]) == 'all-reduce f32[4] + bf16[2]'


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
  out = tmp_path_factory.mktemp('collectives')
  env = dict(os.environ)
  env.pop('JAX_PLATFORMS', None)
  env.pop('XLA_FLAGS', None)
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.collectives', '--quick',
       '--only', 'alada,smmf,adapprox,adam', '--breakdown', 'smmf', '--out',
       str(out)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(out / 'collectives.json', encoding='utf-8') as f:
    result = json.load(f)
  result['stdout'] = proc.stdout
  return result


def test_quick_run_on_eight_devices(quick):
  assert quick['machine']['devices'] == collectives.DEVICES
  assert set(quick['modes']) == {'auto', 'explicit'}
  assert '| alada |' in quick['stdout'] and '| smmf |' in quick['stdout']


@pytest.mark.parametrize('mode', ['auto', 'explicit'])
def test_alada_moves_only_vectors(quick, mode):
  """Every collective of Alada's update is an all-reduce of vectors (row or
  column sums; scalars), no longer than the longest side of a matrix, and a
  step moves under 2% of the params' bytes, even the first step."""
  row = quick['modes'][mode]['alada']
  longest_side = max(max(shape) for shape, _ in quick['leaves'].values())
  assert row['collectives'], 'expected the row/column all-reduces'
  assert {c['op'] for c in row['collectives']} == {'all-reduce'}
  assert row['largest_array_ndim'] == 1
  assert row['largest']['elements'] <= longest_side
  assert row['bytes_worst'] < row['param_bytes'] / 50
  # Even and odd steps refit different factors: both move something.
  assert all(v > 0 for v in row['bytes_steps'].values())
  assert row['bytes_worst'] == row['bytes_loops_once']  # no loops in Alada


@pytest.mark.parametrize('mode', ['auto', 'explicit'])
def test_adapprox_moves_only_thin_products(quick, mode):
  """Adapprox's randomized QR needs its m x w and n x w products whole: every
  collective is at most (longest side) x (the sketch's width), never a
  matrix. (On explicit axes, asking the product for a replicated result made
  XLA all-gather the whole m x n matrix instead: 4.8x the params' bytes per
  step at full size; see adapprox._tall_skinny.)"""
  row = quick['modes'][mode]['adapprox']
  longest_side = max(max(shape) for shape, _ in quick['leaves'].values())
  smallest_matrix = min(math.prod(shape) for shape, _ in quick['leaves'].values()
                        if len(shape) == 2)
  dims = row['largest']['shapes'][0][1]
  assert len(dims) == 2 and max(dims) <= longest_side, row['largest']
  assert min(dims) < min(min(shape) for shape, _ in quick['leaves'].values()
                         if len(shape) == 2) // 4, row['largest']
  assert row['largest']['elements'] < smallest_matrix, row['largest']
  assert row['bytes_worst'] < row['param_bytes'], row['bytes_worst']


@pytest.mark.parametrize('mode', ['auto', 'explicit'])
def test_adam_moves_nothing(quick, mode):
  row = quick['modes'][mode]['adam']
  assert row['collectives'] == [] and row['bytes_worst'] == 0


def test_smmf_square_view_gathers_the_gradient(quick):
  """On explicit axes SMMF's reshape into its square view all-gathers each
  matrix leaf's gradient over the mesh axes its rows do not keep: each device
  receives the whole leaf divided by the size of the mesh axis of its first
  dimension (the square view's rows are runs of the flattened leaf)."""
  mesh = quick['mesh']
  for leaf, info in quick['modes']['explicit']['smmf']['leaves'].items():
    shape, spec = quick['leaves'][leaf]
    first_axis = spec.split("'")[1]  # "P('data', 'model')" -> 'data'
    largest = max(info['collectives'], key=lambda c: c['bytes'])
    assert largest['op'] == 'all-gather', (leaf, largest)
    assert largest['op_name'] == '_smmf_leaf/reshape', (leaf, largest)
    assert largest['shapes'][0][0] == 'f32'
    assert largest['bytes'] == 4 * math.prod(shape) // mesh[first_axis], leaf
  whole = quick['modes']['explicit']['smmf']
  assert whole['bytes_mean'] > whole['param_bytes'] / 4
