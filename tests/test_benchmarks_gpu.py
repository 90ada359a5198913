"""``python -m benchmarks.gpu --quick`` on CPU: every part runs, every figure
is there and finite (the GPU figures themselves need a GPU; see
docs/benchmarks_gpu.md). One batch size to stay well under a minute on 2 cores.

The MiniLM part needs the example's weights and data (see
tests/test_example_text_classification.py); without them it must say
'skipped', except under CI, where they must be installed.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import gpu
from benchmarks import harness
from tests import ci

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ['Adam', 'Adafactor', 'Alada', 'Alada, bf16 M', 'Alada, 8-bit M']


def _finite_positive(x) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  out = tmp_path_factory.mktemp('gpu')
  env = dict(os.environ, OPENBLAS_NUM_THREADS='1', HF_HUB_OFFLINE='1')
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.gpu', '--quick', '--batches', '2',
       '--out', str(out)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
      check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(out / 'results.json') as f:
    report = json.load(f)
  return out, report, (out / 'results.md').read_text(), proc.stdout


def test_train_rows_are_complete_and_finite(quick_run):
  _, report, table, _ = quick_run
  rows = report['train']
  assert [r['optimizer'] for r in rows] == NAMES
  for r in rows:
    assert 'error' not in r, r
    assert r['batch'] == 2 and r['params_finite']
    assert _finite_positive(r['time']['median_s'])
    assert len(r['time']['seconds']) == report['args']['rounds']
    assert _finite_positive(r['compiled']['peak'])
    assert r['compiled']['peak'] >= r['compiled']['params'] + r['compiled']['state']
    # CPU: no allocator figures; a GPU reports a positive peak.
    peak = (r['device_memory'] or {}).get('peak_bytes_in_use')
    assert peak is None or _finite_positive(peak)
    assert f'| 2 | {r["optimizer"]} |' in table
  by_name = {r['optimizer']: r['compiled']['state'] for r in rows}
  assert by_name['Alada, bf16 M'] < by_name['Alada'] < by_name['Adam']
  # At --quick's width only the embedding reaches Int8's min_size.
  assert by_name['Alada, 8-bit M'] < by_name['Alada']


def test_update_rows_are_complete_and_finite(quick_run):
  _, report, table, _ = quick_run
  rows = report['update']['rows']
  assert [r['optimizer'] for r in rows] == NAMES
  for r in rows:
    assert _finite_positive(r['time']['median_s'])
    assert _finite_positive(r['bytes_accessed_per_param'])
    assert r['fusions']['entry'] > 0
    assert r['fusions']['module'] >= r['fusions']['entry']
    assert f'| {r["optimizer"]} | ' in table.split('## Optimizer update')[1]


def test_minilm_part(quick_run):
  out, report, table, _ = quick_run
  mm = report['minilm']
  assert 'error' not in mm, mm
  if 'skipped' in mm:
    assert 'skipped:' in table
    ci.skip_or_fail(f'example data or weights not installed: {mm}')
  assert sorted({t['optimizer'] for t in mm['trials']}) == ['adam', 'alada']
  for t in mm['trials']:
    assert not t['diverged'] and 0 <= t['final_metric'] <= 1
    assert _finite_positive(t['step_time_s'])
    assert f'| {t["optimizer"]} |' in table
  assert (out / 'minilm.json').exists()


def test_header_and_file_count(quick_run):
  out, report, table, stdout = quick_run
  assert report['errors'] == []
  for key in ('jax', 'jaxlib', 'optax', 'flax'):
    assert report['versions'][key] and report['versions'][key] in table
  assert 'cpu' in report['device'] and 'wall time' in table
  assert 'bfloat16 activations' in table
  assert table.strip() in stdout
  assert len(os.listdir(out)) <= 6


HLO = """\
HloModule jit_step

%fused_computation (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %n = f32[4]{0} negate(%p)
}

%branch (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  ROOT %fusion.9 = f32[4]{0} fusion(%a), kind=kLoop, calls=%fused_computation
}

ENTRY %main (x: f32[4], i: s32[]) -> (f32[4], f32[4]) {
  %x = f32[4]{0} parameter(0)
  %i = s32[] parameter(1)
  %fusion = f32[4]{0} fusion(%x), kind=kLoop, calls=%fused_computation
  %fusion.1 = f32[4]{0} fusion(%fusion), kind=kLoop, calls=%fused_computation
  %c = f32[4]{0} conditional(%i, %fusion.1), branch_computations={%branch}
  ROOT %t = (f32[4]{0}, f32[4]{0}) tuple(%fusion.1, %c)
}
"""


def test_count_fusions():
  assert harness.count_fusions(HLO) == {'entry': 2, 'entry_control': 1,
                                    'module': 3}
