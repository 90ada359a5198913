"""The research commands: --help, and benchmarks.research.safeguard's smoke run.

Moved from tests/test_entry_points.py with the modules (benchmarks/research/).
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks.research import in_backward
from tests import checkout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_env = checkout.command_env
_git_status = checkout.git_status


def test_in_backward_every_flag_is_documented(capsys):
  parser = in_backward.build_parser()
  for action in parser._actions:  # pylint: disable=protected-access
    assert action.help, f'{parser.prog}: {action.option_strings} has no help'
  with pytest.raises(SystemExit) as exit_:
    parser.parse_args(['--help'])
  assert exit_.value.code == 0
  text = capsys.readouterr().out
  assert 'usage: python -m benchmarks.research.in_backward' in text
  # The description is the whole docstring, not its first line.
  assert parser.description.strip().splitlines()[-1].strip() in text


@pytest.mark.parametrize('module', ['safeguard', 'lr_robustness', 'in_backward',
                                    'quantized_moment', 'tpu_memory',
                                    'cpu_schedule'])
def test_research_commands_run_as_documented(module):
  """``python -m benchmarks.research.X --help``: exit 0, its own name."""
  proc = subprocess.run(
      [sys.executable, '-m', f'benchmarks.research.{module}', '--help'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'usage: python -m benchmarks.research.{module}' in proc.stdout


def test_quick_safeguard_benchmark(tmp_path):
  """benchmarks.research.safeguard --quick --yardsticks: its tables, under out/, checkout clean."""
  before = _git_status()
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.research.safeguard', '--quick',
       '--yardsticks'],
      cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = tmp_path / 'out' / 'safeguard'
  report = (out / 'safeguard.md').read_text()
  rows = {line.split('|')[1].strip(): line for line in report.splitlines()
          if line.startswith('| alada')}
  # The default bounds the rare row's steps; the paper's mode does not.
  rare = [line for line in report.splitlines()[:8] if line.startswith('| alada')]
  assert rare[0].split('|')[2].strip() == '1', rare
  assert float(rare[1].split('|')[2]) > 1, rare
  assert {'alada', 'alada (paper)'} <= set(rows)
  # The LM sweep's summary (benchmarks.research.lr_robustness) is in the report.
  assert '| optimizer | best (lr) | tied with it |' in report
  # --yardsticks: the rank-one floors swept, each worst measured against one.
  assert '| adam (rank-one fit) |' in report
  assert ' worse than adam / adam (rank-one fit' in report
  assert (out / 'safeguard.png').is_file() and (out / 'safeguard.json').is_file()
  # The update's timing pools two copies of each program and states their
  # spread (the noise floor of the ratios).
  update = json.loads((out / 'safeguard.json').read_text())['update']
  assert update['copies'] == 2 and update['aa_spread'] >= 0
  assert all(len(r['copies_median_s']) == 2 for r in update['rows'].values())
  assert 'Two copies of one program differed by up to' in report
  after = _git_status()
  if before is not None:
    assert after == before, f'the run changed the checkout:\n{after}'


def _lm_rows(bits):
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.research.quantized_moment', '--only',
       'lm', '--small', '--bits', str(bits)],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  rows = {}
  for line in proc.stdout.splitlines():
    if line.startswith('| ') and 'x |' in line:
      name, state, at_rate, grid, top = line.split('|')[1:6]
      top = top.split('(')[0]  # the median follows in parentheses
      losses = [float(x) for x in (at_rate + ',' + grid + ',' + top).split(',')]
      assert all(0 < x < 20 for x in losses), line
      rows[name.strip()] = (float(state.strip().rstrip('x')), losses)
  return rows


def test_quantized_moment_lm_smoke():
  """``--only lm --small`` and ``--bits 4``: a row per variant with finite
  losses; 8 bits below fp32 M's state, 4 bits (counted packed) below 8."""
  eight, four = _lm_rows(8), _lm_rows(4)
  assert list(eight) == ['fp32 M', '8-bit, cubic, 256']
  assert list(four) == ['4-bit, linear, 256', '4-bit, cubic, 256',
                        '4-bit, quartic, 256', '4-bit, linear, 64']
  state = lambda rows, name: rows[name][0]
  assert state(eight, '8-bit, cubic, 256') < 0.5 * state(eight, 'fp32 M')
  assert max(s for s, _ in four.values()) < state(eight, '8-bit, cubic, 256')
  # The 4-bit run quantizes to 15 levels: not the 8-bit codes' losses.
  assert four['4-bit, cubic, 256'][1] != eight['8-bit, cubic, 256'][1]
