"""``python -m benchmarks.accelerators``: its report, its flags, its errors.

The report and the flags are tested without any plugin. The smoke run of
``--quick`` needs a TPU or GPU compiler (libtpu, jax_cuda12_plugin) in this
interpreter or in one named by $ALADA_TPU_PYTHON / $ALADA_GPU_PYTHON (see
docs/accelerators.md); without one (in CI) it is skipped.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from benchmarks import accelerators

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 2**20


def _row(target, program, optimizer, peak_mib, **extra):
  params = 100 * MiB
  memory = {'params': params, 'state': params, 'arguments': 0, 'outputs': 0,
            'aliased': 0, 'temporaries': 5 * MiB, 'peak': peak_mib * MiB}
  return {'target': target, 'model': 'gpt2', 'program': program,
          'optimizer': optimizer, 'quick': False,
          'model_name': 'GPT-2-small-shaped', 'leaves': 148,
          'parameters': params // 4, 'kernels': 150, 'conditionals': 0,
          'whiles': 0, 'collectives': 0, 'memory': memory,
          'bytes_accessed': None, 'bytes_per_param': None, 'compile_s': 1.0,
          **extra}


def _report():
  rows = [
      _row('h100', 'update', 'sgdm', 200),
      _row('h100', 'update', 'adam', 400),
      _row('h100', 'update', 'alada', 300, kernels=4255, conditionals=148,
           hbm_bytes_per_param=30.25),
      _row('v5e', 'update', 'adam', 400, bytes_per_param=36.8,
           hbm_bytes_per_param=28.0),
      _row('v5e', 'update', 'alada', 300, bytes_per_param=63.9,
           hbm_bytes_per_param=21.33),
      {'target': 'v5e', 'model': 'gpt2', 'program': 'train',
       'optimizer': 'came', 'quick': False, 'error': 'RuntimeError: boom'},
      {'target': 'v5e', 'model': 'gpt2_19', 'program': 'sharded',
       'optimizer': 'alada', 'quick': False, 'model_name': 'GPT-2-like',
       'leaves': 19, 'parameters': 1, 'collectives': 123,
       'counts': {'all-reduce': 123}, 'conditionals': 19,
       'largest': {'bytes': 100608, 'what': 'all-reduce f32[25152]',
                   'op_name': None},
       'bytes_mean': 1000.0, 'bytes_worst': 2000,
       'param_bytes_per_device': 1, 'compile_s': 1.0},
  ]
  return {'command': 'python -m benchmarks.accelerators', 'date': '2026-12-01',
          'machine': {'cpu': 'a CPU', 'cpu_cores': 2, 'python': '3.11'},
          'tree': {'root': REPO, 'commit': 'abc1234', 'dirty': False},
          'quick': False, 'seconds': 60.0,
          'versions': {'h100': {'jax': '0.10.2'}, 'v5e': {'jax': '0.10.2',
                                                           'libtpu': '0.0.42'}},
          'rows': rows}


def test_report_tables_and_json(tmp_path):
  written = accelerators.write(_report(), str(tmp_path))
  md = open(written[0], encoding='utf-8').read()
  assert 'compile facts' in md and 'not times' in md
  assert 'commit abc1234' in md
  # H100: no bytes column; the ratios to Adam's and SGD+momentum's peaks.
  h100 = md.split('## h100, the donated update alone')[1].split('##')[0]
  assert 'bytes accessed' not in h100
  assert ('| Alada | 4,255 | 148 | 0 | 0 | 5.0 (5.0%) | 300.0 | 0.750 | 1.500 '
          '| 30.2 |') in h100
  assert '| Adam | 150 | 0 | 0 | 0 | 5.0 (5.0%) | 400.0 | 1.000 | 2.000 |  |' \
      in h100  # a row from before the HBM column: blank
  v5e = md.split('## v5e, the donated update alone')[1].split('##')[0]
  assert ('| Alada | 150 | 0 | 0 | 0 | 5.0 (5.0%) | 300.0 | 0.750 |  | 21.3 '
          '| 63.9 |') in v5e
  assert 'failed: RuntimeError: boom' in md
  assert '| Alada | 123 | 123 |' in md and 'all-reduce f32[25152] (100,608)' in md
  # The headline table of the GPT-2-shaped figures.
  assert '| Alada | 4,255 | 148 | 5.0 | 30.2 |  | 21.3 | 63.9 | 5.0 | 300 |' \
      in md
  assert json.load(open(written[1], encoding='utf-8'))['rows'][2]['kernels'] \
      == 4255


def test_publish_is_for_a_full_run_only():
  for argv in (['--publish', '--quick'], ['--publish', '--target', 'v5e'],
               ['--publish', '--optimizers', 'adam'],
               ['--publish', '--out', 'x']):
    with pytest.raises(SystemExit):
      accelerators.parse_args(argv)
  assert accelerators.parse_args(['--publish']).out == accelerators.PUBLISHED
  assert accelerators.parse_args([]).out == accelerators.DEFAULT_OUT
  with pytest.raises(SystemExit):
    accelerators.parse_args(['--optimizers', 'adam,nope'])


def test_plan_covers_every_program():
  args = accelerators.parse_args(['--target', 'h100,v5e'])
  jobs = accelerators.plan(args)
  n = len(accelerators.OPTIMIZERS)
  assert len(jobs) == 2 * 2 * 2 * n + n  # + the sharded update on v5e
  assert {j['target'] for j in jobs if j['program'] == 'sharded'} == {'v5e'}


def _plugins() -> list[str]:
  have = [b for b, spec in accelerators.BACKENDS.items()
          if importlib.util.find_spec(spec['module'])]
  return have + [b for b in ('tpu', 'gpu')
                 if os.environ.get(f'ALADA_{b.upper()}_PYTHON')
                 and b not in have]


@pytest.mark.skipif(bool(_plugins()), reason='a plugin is importable')
def test_without_a_plugin_it_says_how_to_make_the_side_environments(
    monkeypatch, capsys):
  monkeypatch.delenv('ALADA_TPU_PYTHON', raising=False)
  monkeypatch.delenv('ALADA_GPU_PYTHON', raising=False)
  with pytest.raises(SystemExit) as e:
    accelerators.main(['--quick'])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert 'jax[tpu]==0.10.2' in err and 'jax-cuda12-plugin==0.10.2' in err
  assert 'docs/accelerators.md' in err


def test_quick_smoke(tmp_path):
  backends = _plugins()
  if not backends:
    pytest.skip('no TPU or GPU compiler: see docs/accelerators.md for the '
                'side environments and $ALADA_TPU_PYTHON / $ALADA_GPU_PYTHON')
  target = 'v5e' if 'tpu' in backends else 'h100'
  out = tmp_path / 'out'
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.accelerators', '--quick', '--target',
       target, '--models', 'gpt2', '--programs', 'update',
       '--optimizers', 'adam,alada', '--out', str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'not times' in proc.stdout
  report = json.load(open(out / 'accelerators.json', encoding='utf-8'))
  assert len(report['rows']) == 2
  for row in report['rows']:
    assert 'error' not in row, row
    assert row['kernels'] > 0 and row['memory']['peak'] > 0


def test_from_json_merges_runs(tmp_path):
  first = _report()
  later = _report()
  later['rows'] = [  # the failed CAME row measured; a failure replaces nothing
      _row('v5e', 'train', 'came', 250),
      {**_row('h100', 'update', 'adam', 1), 'error': 'RuntimeError: later'}]
  later['command'] = 'python -m benchmarks.accelerators --target v5e'
  paths = []
  for i, r in enumerate((first, later)):
    paths.append(str(tmp_path / f'{i}.json'))
    with open(paths[-1], 'w', encoding='utf-8') as f:
      json.dump(r, f)
  assert accelerators.main(['--from-json', *paths, '--out',
                            str(tmp_path / 'merged')]) == 0
  merged = json.load(open(tmp_path / 'merged' / 'accelerators.json',
                          encoding='utf-8'))
  rows = {(r['target'], r['program'], r['optimizer']): r
          for r in merged['rows']}
  assert len(rows) == len(first['rows'])
  assert 'error' not in rows['v5e', 'train', 'came']
  assert 'error' not in rows['h100', 'update', 'adam']
  md = open(tmp_path / 'merged' / 'accelerators.md', encoding='utf-8').read()
  assert '--target v5e' in md and 'boom' not in md
