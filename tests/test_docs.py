"""The documentation: the Sphinx build, and the public docstrings' template.

* The site builds with warnings as errors (``python -m sphinx -W --keep-going
  -b html docs <outdir>``), so a broken docstring or page fails CI.
* Every public symbol's doctest examples run and print what they show.
* Every optimizer and transformation follows optax's template: a summary, the
  math, Args, Returns, an Examples section and References with an arXiv link;
  and no public docstring quotes measurements (those live in ``docs/``).
"""

import doctest
import inspect
import os
import re
import subprocess
import sys

import pytest

import alada_optax
from tests import ci

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, 'docs')


def _public_symbols():
  """(name, object) of ``alada_optax.__all__`` and the helper modules' API."""
  out = []
  for name in alada_optax.__all__:
    obj = getattr(alada_optax, name)
    if not inspect.ismodule(obj):
      out.append((name, obj))
      continue
    names = getattr(obj, '__all__', None) or [
        k for k, v in vars(obj).items()
        if not k.startswith('_') and (inspect.isfunction(v) or
                                      inspect.isclass(v))
        and v.__module__ == obj.__name__]
    out += [(f'{name}.{k}', getattr(obj, k)) for k in names]
  return out


PUBLIC = _public_symbols()
# The optimizers and transformations: the functions of __all__.
OPTIMIZERS = [(name, obj) for name, obj in PUBLIC
              if '.' not in name and inspect.isfunction(obj)]


def test_public_symbols_cover_the_api():
  names = {name for name, _ in PUBLIC}
  assert {'alada', 'scale_by_alada', 'ScaleByAladaState', 'hlo.hlo_structure',
          'sharding.state_shardings'} <= names
  assert len(OPTIMIZERS) == 13, [name for name, _ in OPTIMIZERS]


def test_sphinx_build_has_no_warnings(tmp_path):
  """The documented build command, warnings as errors, into a tmp dir.

  sphinx and myst-parser come with the ``test`` extra
  (``pip install -e ".[test]"``): skipped without them, failed in CI.
  """
  for module in ('sphinx', 'myst_parser'):
    try:
      __import__(module)
    except ImportError:
      ci.skip_or_fail(f'{module} is missing: pip install -e ".[test]"')
  cmd = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q',
         '-b', 'html', '-d', str(tmp_path / 'doctrees'), DOCS,
         str(tmp_path / 'html')]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=600, check=False)
  output = proc.stdout + proc.stderr
  assert proc.returncode == 0 and 'WARNING' not in output, (
      f'{" ".join(cmd)} failed ({proc.returncode}):\n{output}')
  for page in ('index.html', 'api/alada.html', 'guides/step_bound.html',
               'guides/dtypes.html'):
    assert (tmp_path / 'html' / page).is_file(), page


@pytest.mark.parametrize('name, obj', PUBLIC, ids=[n for n, _ in PUBLIC])
def test_doctest_examples(name, obj):
  """The docstring's ``>>>`` examples run and print what they show."""
  tests = doctest.DocTestFinder(recurse=False).find(obj, name)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
  report = []
  for test in tests:
    runner.run(test, out=report.append)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, ''.join(report)


def _section(doc: str, title: str) -> str:
  """The body of a Google-style section (``title:`` to the next section)."""
  m = re.search(rf'^{title}:\n(.*?)(?=^\S|\Z)', doc, re.M | re.S)
  return m.group(1) if m else ''


@pytest.mark.parametrize('name, obj', OPTIMIZERS,
                         ids=[n for n, _ in OPTIMIZERS])
def test_optimizer_docstrings_follow_optax_template(name, obj):
  doc = inspect.getdoc(obj)
  summary = doc.split('\n', 1)[0]
  assert summary and summary.endswith('.'), (name, summary)
  assert '.. math::' in doc, f'{name}: no math block'
  for section in ('Args', 'Returns', 'Examples', 'References'):
    assert _section(doc, section).strip(), f'{name}: no {section} section'
  assert '>>> ' in _section(doc, 'Examples'), f'{name}: no doctest example'
  # The first reference is the method's paper, with its arXiv link.
  paper = _section(doc, 'References').strip().split('\n\n')[0]
  assert re.search(r'<https://arxiv\.org/abs/\d{4}\.\d{4,5}>`_', paper), (
      f'{name}: the first reference has no arXiv link:\n{paper}')


# Measurements (percentages, sizes, times, perplexities, ratios to another
# optimizer) belong in docs/, next to the command that printed them.
_MEASUREMENT = re.compile(
    r'\d%|\d ?(?:[KMG]iB|[KMG]B|ms|s)\b|perplexit|\d(?:\.\d+)?x (?:Adam|SGD)',
    re.I)


@pytest.mark.parametrize('name, obj', PUBLIC, ids=[n for n, _ in PUBLIC])
def test_docstrings_quote_no_measurements(name, obj):
  doc = inspect.getdoc(obj) or ''
  prose = [line for line in doc.splitlines()
           if not line.lstrip().startswith(('>>>', '...'))]
  found = [line for line in prose if _MEASUREMENT.search(line)]
  assert not found, f'{name} quotes measurements:\n' + '\n'.join(found)


# Guides whose ```python block followed by a ```text block is an example and
# the output it prints.
_RUN_GUIDES = ('guides/dtypes.md', 'guides/step_bound.md')
_EXAMPLE = re.compile(r'```python\n(.*?)```\s*```text\n(.*?)```', re.S)


@pytest.mark.parametrize('page', _RUN_GUIDES)
def test_guide_examples_print_what_they_show(page, capsys):
  with open(os.path.join(DOCS, page), encoding='utf-8') as f:
    text = f.read()
  for code, expected in _EXAMPLE.findall(text):
    exec(compile(code, page, 'exec'), {})  # pylint: disable=exec-used
    assert capsys.readouterr().out == expected, (page, code)
