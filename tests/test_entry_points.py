"""The reader-facing commands: where they write, what --quick judges, --help.

The quick benchmark run is a subprocess started in a temporary directory with
the default ``--out``: a command that wrote into the checkout (e.g. the
committed ``benchmarks/results/``) would show in ``git status``.
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import collectives
from benchmarks import run
from benchmarks import state_bytes
from examples.sharded.configs import default as sharded_config
from tests import checkout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_env = checkout.command_env
_git_status = checkout.git_status


def test_quick_benchmark_writes_under_out_and_leaves_the_checkout_clean(tmp_path):
  before = _git_status()
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.run', '--quick', '--only', 'mlp',
       '--rounds', '2', '--warmup', '1'],
      cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = tmp_path / 'out' / 'benchmarks'
  for name in ('results.md', 'results.json', 'memory.png', 'time.png'):
    assert (out / name).is_file(), name
  # The last line names every file written, results.json included.
  last = proc.stdout.strip().splitlines()[-1]
  assert 'wrote' in last and 'results.json' in last and 'memory.png' in last
  # Full-size bounds are not judged on the small shapes.
  report = (out / 'results.md').read_text()
  assert run.NOT_APPLICABLE in report
  assert 'MISSED' not in proc.stdout and 'MISSED' not in report
  after = _git_status()
  if before is not None:  # outside a git checkout there is nothing to compare
    assert after == before, f'the run changed the checkout:\n{after}'


def test_default_out_is_git_ignored_and_publish_is_explicit():
  assert run.parse_args([]).out == os.path.join('out', 'benchmarks')
  assert run.parse_args(['--publish']).out == os.path.join(
      REPO, 'benchmarks', 'results')
  for argv in (['--publish', '--quick'], ['--publish', '--only', 'mlp'],
               ['--publish', '--out', 'x'], ['--only', 'mlp,nope']):
    with pytest.raises(SystemExit):
      run.parse_args(argv)
  ignored = subprocess.run(['git', 'check-ignore', '-q', 'out/benchmarks/x'],
                           cwd=REPO, capture_output=True)
  if _git_status() is not None:
    assert ignored.returncode == 0, 'out/ is not git-ignored'


def test_quick_checks_are_not_judged():
  results = {'mlp': {n: {'memory': _Peak(p)} for n, p in (
      ('SGD+momentum', 10), ('Adam', 10), ('Alada', 20), ('Alada, bf16 M', 20))}}
  assert {v for *_, v in run.verdicts(results, quick=True)} == {
      run.NOT_APPLICABLE}
  assert 'MISSED' in {v for *_, v in run.verdicts(results, quick=False)}


class _Peak:

  def __init__(self, peak):
    self.peak = peak


@pytest.mark.parametrize('parser', [
    run.build_parser(), state_bytes.build_parser(), collectives.build_parser()],
    ids=['run', 'state_bytes', 'collectives'])
def test_every_flag_is_documented(parser, capsys):
  for action in parser._actions:  # pylint: disable=protected-access
    assert action.help, f'{parser.prog}: {action.option_strings} has no help'
  with pytest.raises(SystemExit) as exit_:
    parser.parse_args(['--help'])
  assert exit_.value.code == 0
  text = capsys.readouterr().out
  # The description is the whole docstring, not its first line.
  assert parser.description.strip().splitlines()[-1].strip() in text


def test_state_bytes_help_does_not_run(monkeypatch, capsys):
  def fail():
    raise AssertionError('--help ran the table')
  monkeypatch.setattr(state_bytes, 'table', fail)
  with pytest.raises(SystemExit) as exit_:
    state_bytes.main(['--help'])
  assert exit_.value.code == 0
  assert 'usage: python -m benchmarks.state_bytes' in capsys.readouterr().out


def test_collectives_writes_under_out_and_leaves_the_checkout_clean(tmp_path):
  """benchmarks.collectives, one optimizer: its own 8 devices, default --out."""
  before = _git_status()
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.collectives', '--quick', '--modes',
       'auto', '--only', 'adam', '--breakdown', ''],
      cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  out = tmp_path / 'out' / 'collectives'
  for name in ('collectives.md', 'collectives.json'):
    assert (out / name).is_file(), name
  last = proc.stdout.strip().splitlines()[-1]
  assert 'wrote' in last and 'collectives.json' in last
  assert '| optax.adam | 0 | 0 | 0 | 0 | 0 |' in proc.stdout
  after = _git_status()
  if before is not None:
    assert after == before, f'the run changed the checkout:\n{after}'
  with pytest.raises(SystemExit):
    collectives.parse_args(['--only', 'alada,nope'])
  with pytest.raises(SystemExit):
    collectives.parse_args(['--modes', 'manual'])
  assert collectives.parse_args([]).out == os.path.join('out', 'collectives')


def test_example_main_help_and_no_backend_noise(tmp_path):
  """The absl mains: --help shows how to override a field; no 'tpu' line."""
  proc = subprocess.run(
      [sys.executable, '-m', 'examples.text_classification.main', '--help'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  # absl.app exits with status 1 after --help, by its own design.
  assert proc.returncode in (0, 1) and not proc.stderr, proc.stderr[-3000:]
  assert '--config.FIELD=VALUE' in proc.stdout
  assert '--config.learning_rates.alada="(3e-05,0.0001)"' in proc.stdout
  # Start JAX's backends the way the examples do (under absl.app), with a
  # field overridden as --help says.
  script = tmp_path / 'probe.py'
  script.write_text(
      'from absl import app\n'
      'import jax\n'
      'from examples.causal_lm import main as m\n'
      'def f(argv):\n'
      '  print(jax.devices()[0].platform, m.FLAGS.config.learning_rates.alada)\n'
      'app.run(f)\n')
  proc = subprocess.run(
      [sys.executable, str(script), '--config.learning_rates.alada=(1e-3,2e-3)'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '(0.001, 0.002)' in proc.stdout
  assert 'Unable to initialize backend' not in proc.stderr + proc.stdout


def test_sharded_example_help_lists_every_field():
  """examples.sharded.main --help: every config field, each one commented."""
  proc = subprocess.run(
      [sys.executable, '-m', 'examples.sharded.main', '--help'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode in (0, 1) and not proc.stderr, proc.stderr[-3000:]
  config = sharded_config.get_config()
  for name in config:
    assert f'--config.{name}=' in proc.stdout, name
  assert '--config.mesh_shape="(2,4)"' in proc.stdout
  with open(sharded_config.__file__, encoding='utf-8') as f:
    source = f.read()
  for name in config:
    line = next(l for l in source.splitlines()
                if l.strip().startswith(f'config.{name} ='))
    assert '  # ' in line, f'config.{name} has no comment'


def test_readme_test_command_is_what_ci_runs():
  readme = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
  section = readme[readme.index('\n## Tests\n'):]
  block = section[section.index('```bash\n') + 8:]
  command = block[:block.index('```')].strip()
  with open(os.path.join(REPO, '.ci', 'run'), encoding='utf-8') as f:
    ci = [line.strip() for line in f if line.strip() and not line.startswith('#')]
  assert ci[-1] == command
