"""The lab apart from the product: who may import the research code.

``benchmarks/research/`` holds research sweeps, candidates and yardsticks
(the evidence of ``docs/research/``). The library imports nothing from
``benchmarks`` or ``examples``; the library's and the product's tests
(``tests/*.py``), the product suite (``benchmarks/*.py``) and the examples'
modules do not import ``benchmarks.research`` (its own tests live in
``tests/research/``; the examples import it lazily, only under a research
config, and their ``configs/research.py`` files do). The docs outside
``docs/research/`` quote no research config or variant.
"""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys

import pytest

from tests import doc_commands

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESEARCH = 'benchmarks.research'


def _files(pattern: str) -> list[str]:
  found = sorted(glob.glob(os.path.join(REPO, pattern), recursive=True))
  assert found, pattern
  return [os.path.relpath(p, REPO) for p in found]


def _imports(path: str, *, top_level_only: bool = False) -> list[tuple[int, str]]:
  """(line, dotted module) of every absolute import in ``path``: ``import a.b``
  gives 'a.b', ``from a import b`` gives 'a.b' (b may be a module), and
  ``importlib.import_module('a.b')`` with a literal gives 'a.b'.

  ``top_level_only``: only the imports run when the module is imported (not
  those inside a function or class body).
  """
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  nodes = tree.body if top_level_only else ast.walk(tree)
  if top_level_only:  # also what try/if blocks at module level import
    nodes = [n for top in tree.body if not isinstance(
        top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
             for n in ast.walk(top)]
  found = []
  for node in nodes:
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found += [(node.lineno, f'{node.module}.{a.name}') for a in node.names]
    elif (isinstance(node, ast.Call) and node.args
          and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)
          and (getattr(node.func, 'attr', None) == 'import_module'
               or getattr(node.func, 'id', None) in ('import_module',
                                                     '__import__'))):
      found.append((node.lineno, node.args[0].value))
  return found


def _under(module: str, package: str) -> bool:
  return module == package or module.startswith(package + '.')


def offending(paths, packages, *, top_level_only=False) -> list[str]:
  """'path:line: module' for every import of ``paths`` under ``packages``."""
  return [f'{path}:{line}: {module}'
          for path in paths
          for line, module in _imports(path, top_level_only=top_level_only)
          if any(_under(module, p) for p in packages)]


def test_the_library_imports_no_benchmarks_and_no_examples():
  assert offending(_files('alada_optax/**/*.py'),
                   ('benchmarks', 'examples')) == []


def test_the_library_and_product_tests_do_not_import_the_research_code():
  tests = [p for p in _files('tests/*.py')]  # not tests/research/
  assert offending(tests, (RESEARCH,)) == []


def test_the_product_suite_does_not_import_the_research_code():
  suite = _files('benchmarks/*.py')  # not benchmarks/research/
  assert offending(suite, (RESEARCH,)) == []


def test_the_examples_import_the_research_code_only_when_asked():
  modules = [p for p in _files('examples/**/*.py')
             if not p.endswith(os.path.join('configs', 'research.py'))]
  assert offending(modules, (RESEARCH,), top_level_only=True) == []


def test_importing_the_examples_registry_loads_no_research_code():
  """The product's optimizers build without benchmarks.research; a research
  variant without the research config is refused by name."""
  script = (
      'import sys\n'
      'from examples.common import harness\n'
      "harness.make_optimizer('alada_paper', 1e-3)\n"
      "harness.optimizers()\n"
      'try:\n'
      "  harness.make_optimizer('alada_gradient', 1e-3)\n"
      'except ValueError as e:\n'
      '  print(e)\n'
      "assert not [m for m in sys.modules if m.startswith('benchmarks')]\n")
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "'alada_gradient' is a research variant" in proc.stdout
  assert 'research config' in proc.stdout


# The user-facing pages: the README and docs/ outside docs/research/.
_USER_PAGES = ['README.md'] + [
    p for p in _files('docs/**/*.md')
    if not p.startswith(os.path.join('docs', 'research') + os.sep)]


@pytest.mark.parametrize('page', _USER_PAGES)
def test_user_pages_quote_the_products_optimizers_only(page):
  """Their example commands run product configs, product optimizers."""
  from examples.common import harness  # pylint: disable=g-import-not-at-top
  for command in doc_commands.commands(page):
    assert os.path.isfile(os.path.join(REPO, command.config)), command
    assert not command.config.endswith('research.py'), command
    names = set(command.optimizers or ()) | set(command.learning_rates)
    assert names <= set(harness.OPTIMIZERS), command
