"""Sphinx configuration of alada_optax's documentation.

Build (warnings are errors; ``tests/test_docs.py`` runs the same command):

  python -m sphinx -W --keep-going -b html docs out/docs

``out/`` is git-ignored; never build into ``docs/`` itself.
"""

import os
import re
import sys

# The package from this checkout, installed or not.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                '..')))

import alada_optax  # pylint: disable=wrong-import-position
from sphinx import addnodes  # pylint: disable=wrong-import-position
from sphinx.transforms import SphinxTransform  # pylint: disable=wrong-import-position

project = 'alada_optax'
author = 'alada_optax authors'
copyright = 'alada_optax authors'  # pylint: disable=redefined-builtin
release = version = alada_optax.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'myst_parser',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = [
    '_build',
    # Results tables and figures written by the examples and benchmarks next
    # to the images they go with: files, not pages.
    'images/**',
    '**/images/**',
]

# Docstrings: Google style, as optax's.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# The hyperparameters are annotated with jax.typing.ArrayLike and optax's
# aliases, which expand to unions of a dozen types: the signature shows the
# names and defaults, the Args sections say what each one takes.
autodoc_typehints = 'none'
autodoc_member_order = 'bysource'
autodoc_default_options = {'exclude-members': '__new__, __init__'}

# Markdown pages (guides, background, lab notes). They link to repository files
# outside docs/ (../benchmarks/results/*.md, ../../README.md) as GitHub shows
# them; see _LinksOutsideDocs below for how the site resolves those.
myst_enable_extensions = ['dollarmath']
# GitHub-style anchors (page.md#a-section-title) for headings down to ###.
myst_heading_anchors = 3

html_theme = 'alabaster'
html_title = f'alada_optax {release}'
html_static_path = []


# The background pages are also read on GitHub, and most of them start at a
# level-2 heading (`## Title`), which myst reports ("Document headings start at
# H2") and which leaves the page without a title of its own level. Rather than
# silencing that check for every page, a page whose first heading is `##` is
# read with every heading promoted by one level (outside code fences); the
# files are not changed, and pages with a level-1 title are read as they are.
_FENCE = re.compile(r'^\s*(`{3,}|~{3,})')
_HEADING = re.compile(r'^(#{1,6})(\s)')


def _outside_code(lines):
  """Yields (index, line) of the lines outside fenced code blocks."""
  fence = None
  for i, line in enumerate(lines):
    m = _FENCE.match(line)
    if m:
      if fence is None:
        fence = m.group(1)[0]
      elif m.group(1)[0] == fence:
        fence = None
    elif fence is None:
      yield i, line


def _promote_headings(text: str) -> str:
  lines = text.split('\n')
  headings = [(i, _HEADING.match(line)) for i, line in _outside_code(lines)]
  headings = [(i, m) for i, m in headings if m]
  if not headings or len(headings[0][1].group(1)) != 2:
    return text
  for i, m in headings:
    if len(m.group(1)) > 1:
      lines[i] = lines[i][1:]
  return '\n'.join(lines)


def _source_read(app, docname, source):
  if str(app.env.doc2path(docname)).endswith('.md'):
    source[0] = _promote_headings(source[0])


class _LinksOutsideDocs(SphinxTransform):
  """Links of the markdown pages that leave the documentation's pages.

  * A link to an existing file outside docs/ (a results table, the README, an
    example's source) becomes a download link: the file is copied into the
    build and the link works wherever the site is served. myst-parser does
    this itself for files that are not markdown, but reads a ``.md`` file as
    a page, finds none and warns (``myst.xref_missing``).
  * A link to a folder of docs/ (``[docs/](..)``) goes to that folder's
    ``index`` or ``README`` page.

  Anything else is left to myst, which warns about a link to a file that does
  not exist: a broken link stays an error of the ``-W`` build.
  """

  default_priority = 500

  def apply(self, **kwargs):
    srcdir = os.path.abspath(str(self.env.srcdir))
    docdir = os.path.dirname(str(self.env.doc2path(self.env.docname)))
    for node in list(self.document.findall(addnodes.pending_xref)):
      if node.get('reftype') != 'myst':
        continue
      target = node['reftarget']
      if node.get('refdomain') == 'doc' and os.path.isabs(target):
        files = [target + suffix for suffix in self.config.source_suffix
                 if os.path.isfile(target + suffix)]
        if files and not _inside(files[0], srcdir):
          download = addnodes.download_reference(
              refdomain=None, refdoc=node['refdoc'], reftype='myst',
              refexplicit=node.get('refexplicit', False),
              reftarget=os.path.relpath(files[0], docdir))
          download.source, download.line = node.source, node.line
          download.extend(node.children)
          node.replace_self(download)
      elif not node.get('refdomain'):
        folder = os.path.normpath(os.path.join(docdir, target.rstrip('/')))
        if os.path.isdir(folder) and _inside(folder, srcdir):
          for name in ('index', 'README'):
            docname = self.env.path2doc(os.path.join(folder, name + '.md'))
            if docname in self.env.found_docs:
              node['refdomain'], node['reftarget'] = 'doc', docname
              node['reftargetid'] = None
              break


def _inside(path: str, folder: str) -> bool:
  return os.path.commonpath([os.path.abspath(path), folder]) == folder


def setup(app):
  app.connect('source-read', _source_read)
  app.add_transform(_LinksOutsideDocs)
