"""The figures the README and the docs quote agree with their results files.

``python -m benchmarks.figures`` is the check; these tests run it over the
checkout, and over a copy of it with an edited results file or an edited
quoted figure, which must fail it.
"""

import io
import json
import os
import shutil

import pytest

from benchmarks import figures
from benchmarks import state_bytes

REPO = figures.ROOT


def _check(root):
  out = io.StringIO()
  return figures.check(root, out=out), out.getvalue()


def test_every_quoted_block_agrees_with_its_results_file():
  stale, diff = _check(REPO)
  assert stale == 0, (
      f'{stale} block(s) differ from their results files (rerun the command '
      'in the caption, then python -m benchmarks.figures --write):\n' + diff)


def test_every_marker_names_a_generator_and_every_block_is_closed():
  named = set()
  for page in figures.pages(REPO):
    with open(os.path.join(REPO, page), encoding='utf-8') as f:
      named |= {b.name for b in figures.blocks(f.read().split('\n'), page)}
  assert named, 'no page quotes a generated block'


def test_every_generator_renders_from_committed_files():
  for name, generator in figures.GENERATORS.items():
    for source in generator.sources:
      assert os.path.isfile(os.path.join(REPO, source)), (name, source)
    text = '\n'.join(figures.render(name, REPO, 'docs/page.md'))
    assert text.strip() and '\n\n\n' not in text, name


@pytest.mark.parametrize('lines, where, what', [
    (['x', '<!-- figures: no_such_table -->', '<!-- /figures -->'], 'p.md:2',
     "unknown figures generator 'no_such_table'"),
    (['<!-- figures: suite -->', '| a |'], 'p.md:1', 'never closed'),
    (['<!-- /figures -->'], 'p.md:1', 'closes no block'),
    (['<!-- figures: suite -->', '<!-- figures: suite_time -->'], 'p.md:2',
     'opens inside'),
    (['<!-- figures:suite -->'], 'p.md:1', 'malformed marker'),
])
def test_malformed_markers_name_the_page_and_line(lines, where, what):
  with pytest.raises(figures.FiguresError) as error:
    figures.blocks(lines, 'p.md')
  assert where in str(error.value) and what in str(error.value)


def test_markers_in_code_fences_are_text():
  lines = ['```', '<!-- figures: no_such_table -->', '```']
  assert figures.blocks(lines, 'p.md') == []


@pytest.fixture
def checkout(tmp_path):
  """A copy of the pages with blocks (their blocks written) and of every
  results file they read."""
  for page in figures.pages(REPO):
    with open(os.path.join(REPO, page), encoding='utf-8') as f:
      if figures.blocks(f.read().split('\n'), page):
        os.makedirs(tmp_path / os.path.dirname(page), exist_ok=True)
        shutil.copy(os.path.join(REPO, page), tmp_path / page)
  for generator in figures.GENERATORS.values():
    for source in generator.sources:
      os.makedirs(tmp_path / os.path.dirname(source), exist_ok=True)
      shutil.copy(os.path.join(REPO, source), tmp_path / source)
  figures.check(tmp_path, write=True, out=io.StringIO())
  assert _check(tmp_path)[0] == 0
  return tmp_path


def test_a_changed_result_fails_the_check_and_write_mends_it(checkout):
  path = checkout / figures.STATE_BYTES
  data = json.loads(path.read_text())
  data['models']['GPT-2 small']['state']['Alada'] += 2**30
  path.write_text(json.dumps(data))
  stale, diff = _check(checkout)
  assert stale >= 1  # the state_bytes table (and the headlines, if quoted)
  assert '-| GPT-2 small | 474.7 MiB | 949.4 MiB (2.000x) | 1.2 MiB' in diff
  assert '1,499.9 MiB (3.160x)' in diff
  assert figures.check(checkout, write=True, out=io.StringIO()) == stale
  assert _check(checkout)[0] == 0


def test_an_edited_quoted_figure_fails_the_check(checkout):
  """The sharded example's train-step bytes, quoted by hand as they were
  before the counting changed (177,523), fail the check."""
  page = checkout / 'docs' / 'quoted.md'
  page.write_text('Intro.\n\n<!-- figures: sharded_bytes -->\n'
                  '<!-- /figures -->\n\nMore.\n')
  assert figures.check(checkout, write=True, out=io.StringIO(),
                       only=['docs/quoted.md']) == 1
  text = page.read_text()
  sharded = json.loads((checkout / figures.SHARDED).read_text())
  figure = f'{sharded["train_step"]["bytes_per_step"]:,}'
  assert figure in text and text.startswith('Intro.\n\n<!-- figures: ')
  assert text.endswith('<!-- /figures -->\n\nMore.\n')
  page.write_text(text.replace(figure, '177,523'))
  stale, diff = _check(checkout)
  assert stale == 1 and '-| the whole train step' in diff
  assert '177,523' in diff and "block 'sharded_bytes'" in diff
  assert figures.main(['--root', str(checkout), 'docs/quoted.md']) == 1


def test_the_committed_state_bytes_are_what_the_code_computes():
  """benchmarks/results/state_bytes.json is deterministic: if the code's
  state changes, rerun python -m benchmarks.state_bytes --publish."""
  with open(os.path.join(REPO, figures.STATE_BYTES), encoding='utf-8') as f:
    committed = json.load(f)
  computed = state_bytes.measure()
  assert {k: committed[k] for k in computed} == computed


def test_list_names_every_generator_and_its_sources(capsys):
  assert figures.main(['--list']) == 0
  out = capsys.readouterr().out
  for name, generator in figures.GENERATORS.items():
    assert f'{name}: ' in out and ', '.join(generator.sources) in out


def test_help_documents_every_flag_and_exits_0(capsys):
  parser = figures.build_parser()
  for action in parser._actions:  # pylint: disable=protected-access
    assert action.help, action.option_strings
  with pytest.raises(SystemExit) as exit_:
    figures.main(['--help'])
  assert exit_.value.code == 0
  assert 'python -m benchmarks.figures --write' in capsys.readouterr().out
