"""The README's Quickstart runs as printed, and every page's links resolve."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)')


def _tracked_markdown() -> list[str]:
  out = subprocess.run(['git', 'ls-files', '*.md'], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout.split()
  return [path for path in out if os.path.exists(os.path.join(REPO, path))]


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped."""
  text = re.sub(r'[`*]', '', heading.strip().lower())
  text = re.sub(r'[^\w\- ]', '', text)
  return text.replace(' ', '-')


def _anchors(path: str) -> set[str]:
  with open(path, encoding='utf-8') as f:
    text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
  return {_slug(line.lstrip('#')) for line in text.splitlines()
          if re.match(r'#{1,6} ', line)}


def _links(path: str) -> list[str]:
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
  return [a or b for a, b in _LINK.findall(text)]


def test_quickstart_runs_as_printed(tmp_path):
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  section = readme[readme.index('\n## Quickstart\n'):]
  code = section[section.index('```python\n') + 10:]
  code = code[:code.index('```')]
  proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  losses = [float(line.split()[-1]) for line in proc.stdout.splitlines()
            if line.startswith('step')]
  assert len(losses) == 5, proc.stdout
  assert losses[-1] < 0.1 * losses[0], losses


@pytest.mark.parametrize('page', _tracked_markdown())
def test_relative_links_resolve(page):
  missing = []
  for target in _links(page):
    if re.match(r'[a-z]+:', target):  # http(s), mailto: not checked offline
      continue
    file, _, anchor = target.partition('#')
    path = os.path.normpath(os.path.join(REPO, os.path.dirname(page), file))
    if file and not os.path.exists(path):
      missing.append(target)
    elif anchor and path.endswith('.md') and anchor not in _anchors(path):
      missing.append(target)
  assert not missing, f'{page}: links to nothing: {missing}'
