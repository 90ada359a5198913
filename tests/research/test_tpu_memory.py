"""benchmarks.research.tpu_memory: the buffer assignment's HBM, its table, and
what it says without libtpu (the compiles themselves need the TPU side
environment, which CI does not have)."""

import importlib.util
import json
import os

import pytest

from benchmarks import accelerators
from benchmarks.research import tpu_memory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The lines XLA writes for a buffer assignment (``--xla_dump_to``), as XLA:TPU
# wrote them for a GPT-2-shaped train step: parameters, a thread-local, the
# default memory space's preallocated temporaries, and the other spaces'
# (VMEM is color 1), which are not HBM.
BUFFER_ASSIGNMENT = """\
BufferAssignment:
allocation 0: size 512, thread-local:
 value: <1 constant.1 @0> (size=512,offset=0): f32[]
allocation 1: size 154411008, parameter 147, shape |f32[50257,768]| at ShapeIndex {}, maybe-live-out:
allocation 2: size 77205504, parameter 296, shape |bf16[50257,768]| at ShapeIndex {}, maybe-live-out:
allocation 3: size 512, color 6, thread-local:
allocation 4086: size 432472576, preallocated-temp:
 value: <51141 fusion.6 @0> (size=154411008,offset=227393536): f32[50257,768]
allocation 4087: size 117440512, color 1, preallocated-temp:
allocation 4088: size 8, color 12, preallocated-temp:
"""


def test_hbm_allocations_are_the_default_memory_space():
  got = tpu_memory.hbm_allocations(BUFFER_ASSIGNMENT)
  assert got == {'hbm_allocated': 512 + 154411008 + 77205504 + 432472576,
                 'hbm_temp_block': 432472576}


def _row(optimizer, program, peak, compiler_peak, hbm):
  mib = 2**20
  return {'optimizer': optimizer, 'program': program, 'target': 'v5e',
          'model': 'GPT-2', 'temporaries': 10 * mib, 'peak': peak * mib,
          'compiler_peak': compiler_peak * mib, 'hbm_allocated': hbm * mib,
          'hbm_temp_block': 5 * mib}


def test_table_reads_each_figure_against_sgd_with_momentum():
  rows = [_row('sgdm', 'train', 1000, 800, 1250),
          _row('alada_bf16', 'train', 1020, 620, 1125)]
  lines = accelerators.tpu_memory_table(rows)
  assert lines[0] == 'v5e, train, GPT-2:'
  assert lines[-2] == ('| alada_bf16 | 10.0 | 1,020.0 | 1.020 | 620.0 '
                       '| 0.775 | 1,125.0 | 0.900 | 5.0 |')


def test_merge_writes_the_rows_and_commands_of_both(tmp_path):
  paths = []
  for i, program in enumerate(('train', 'update')):
    path = tmp_path / f'{program}.json'
    path.write_text(json.dumps({
        'commands': [f'python -m benchmarks.research.tpu_memory '
                     f'--programs {program}'],
        'rows': [_row('sgdm', program, 1000 + i, 800, 1250)]}))
    paths.append(str(path))
  out = tmp_path / 'merged'
  assert tpu_memory.main(['--merge', *paths, '--out', str(out)]) == 0
  data = json.loads((out / 'results.json').read_text())
  assert [r['program'] for r in data['rows']] == ['train', 'update']
  assert data['commands'] == [
      'python -m benchmarks.research.tpu_memory --programs train',
      'python -m benchmarks.research.tpu_memory --programs update']


@pytest.mark.skipif(importlib.util.find_spec('libtpu') is not None,
                    reason='libtpu is installed here')
def test_without_libtpu_it_says_how_to_get_it(capsys, tmp_path):
  assert tpu_memory.main(['--out', str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert 'libtpu' in err and 'tpu-venv/bin/python' in err
  assert not list(tmp_path.iterdir())


@pytest.mark.skipif(importlib.util.find_spec('libtpu') is not None,
                    reason='libtpu is installed here')
def test_a_failed_compile_names_the_program_and_shows_its_error(monkeypatch):
  monkeypatch.chdir(REPO)
  with pytest.raises(RuntimeError, match='compiling v5e update adam failed'
                     r' \(exit 1\):\n(.|\n)*Error'):
    tpu_memory.run('update', 'adam', 'v5e')
