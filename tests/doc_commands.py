"""The examples' command lines that the docs quote, parsed.

Each ``python -m examples.<name>.main ...`` line of a Markdown page (with its
``\\`` continuation lines) becomes a :class:`Command`: which config file it
runs, and which optimizers and learning-rate grids it asks for, so that a
test can check that the config offers them (``--config.FIELD`` of a field a
config lacks is an error of ``ml_collections``; an optimizer the config does
not offer is the harness's).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shlex

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_START = re.compile(r'python -m examples\.(\w+)\.main\b')


@dataclasses.dataclass(frozen=True)
class Command:
  """One quoted command line: where, and what it asks for."""

  where: str  # 'path:line'
  example: str  # e.g. 'causal_lm'
  config: str  # the --config file, relative to the repository root
  optimizers: tuple[str, ...] | None  # --config.optimizers, if given
  learning_rates: tuple[str, ...]  # the names of --config.learning_rates.NAME

  def config_module(self) -> str:
    """The config file as a module name, e.g. examples.causal_lm.configs.default."""
    return self.config[:-len('.py')].replace('/', '.')


def commands(path: str) -> list[Command]:
  """The example commands of the Markdown page ``path`` (repository-relative)."""
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    lines = f.read().splitlines()
  found, i = [], 0
  while i < len(lines):
    match = _START.search(lines[i])
    if not match:
      i += 1
      continue
    first, parts = i, [lines[i][match.start():]]
    while lines[i].rstrip().endswith('\\') and i + 1 < len(lines):
      i += 1
      parts.append(lines[i])
    i += 1
    text = ' '.join(p.rstrip().rstrip('\\') for p in parts)
    text = re.split(r';\s*done\b', text)[0]  # the end of a shell for loop
    text = text.split('`')[0]  # a command quoted inline ends at its backtick
    found.append(_parse(f'{path}:{first + 1}', match.group(1), text))
  return found


def _parse(where: str, example: str, text: str) -> Command:
  config = f'examples/{example}/configs/default.py'
  optimizers, learning_rates = None, []
  for token in shlex.split(text, comments=True):
    if token.startswith('--config='):
      config = token[len('--config='):]
    elif token.startswith('--config.optimizers='):
      optimizers = tuple(ast.literal_eval(token.split('=', 1)[1]))
    elif token.startswith('--config.learning_rates.'):
      learning_rates.append(token[len('--config.learning_rates.'):].split('=')[0])
  return Command(where, example, config, optimizers, tuple(learning_rates))
