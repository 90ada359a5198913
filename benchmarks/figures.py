"""The tables and figures the README and the docs quote, each from one source.

A generated block in a markdown file is delimited by two lines::

    <!-- figures: NAME -->
    ...exactly what generator NAME renders from its committed results files...
    <!-- /figures -->

and its text is what :data:`GENERATORS` ``[NAME]`` renders: usually a table
and a line saying the command that produced the results and the machine (from
the results file's own record). Nothing is measured here: every generator
reads committed results files, so the check is fast and deterministic.

    python -m benchmarks.figures           # check every tracked .md file
    python -m benchmarks.figures --write   # maintainers: rewrite the blocks
    python -m benchmarks.figures docs/x.md # only these pages (check or --write)
    python -m benchmarks.figures --list    # the generators and their sources

The check prints a diff of each block that disagrees with its generator and
exits 1 if any does; ``tests/test_figures.py`` runs it. To change a figure,
rerun the command named in the block's caption (it rewrites the results
file), then ``--write``.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from benchmarks import accelerators as accelerators_lib
from benchmarks import collectives as collectives_lib
from benchmarks import state_bytes as state_bytes_lib
from examples.common import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 2**20

OPEN = re.compile(r'^<!-- figures: (\S+) -->$')
CLOSE = '<!-- /figures -->'


class FiguresError(ValueError):
  """A malformed block: unknown generator, unclosed or stray marker."""


class Source:
  """What a generator reads: results files under ``root``, and links to them
  relative to the markdown file the block is in."""

  def __init__(self, root: str, page: str):
    self.root, self.page = root, page

  def json(self, path: str) -> Any:
    with open(os.path.join(self.root, path), encoding='utf-8') as f:
      return json.load(f)

  def link(self, path: str) -> str:
    rel = os.path.relpath(path, os.path.dirname(self.page) or '.')
    return f'[{path}]({rel})'


class Generator(NamedTuple):
  sources: tuple[str, ...]
  render: Callable[[Source], str]


# -- the results files and how they are described ---------------------------

STATE_BYTES = 'benchmarks/results/state_bytes.json'
SUITE = 'benchmarks/results/results.json'
SUITE_COMMAND = 'python -m benchmarks.run --publish'
TEXT_CLASSIFICATION = 'docs/images/text_classification/results.json'
CAUSAL_LM = 'docs/images/causal_lm/results.json'
SHARDED = 'docs/images/sharded/results.json'
COLLECTIVES = 'benchmarks/results/collectives.json'
ACCELERATORS = 'benchmarks/results/accelerators_{}.json'
TPU_MEMORY = 'docs/research/results/tpu_memory/results.json'
CPU_SCHEDULE = 'docs/research/results/cpu_schedule/results.json'


def _versions(info: dict[str, Any], names=('jax', 'jaxlib', 'flax',
                                           'optax')) -> str:
  return ', '.join(f'{n} {info[n]}' for n in names if n in info)


def _cpu(info: dict[str, Any]) -> str:
  return f'{info["cpu_cores"]} {info["cpu"]} cores'


def _state_bytes_caption(src: Source) -> str:
  data = src.json(STATE_BYTES)
  return (f'From `python -m benchmarks.state_bytes` (fp32 params, the states '
          f'built by each optimizer\'s `init` under `jax.eval_shape`; '
          f'{_versions(data["machine"])}; deterministic), recorded by its '
          f'`--publish` in {src.link(STATE_BYTES)}.')


def state_bytes(src: Source) -> str:
  """The optimizer-state bytes of GPT-2 small, BERT-base, ResNet-50 and a
  LLaMA-7B layer under Adam, Adafactor and Alada."""
  return (state_bytes_lib.table(src.json(STATE_BYTES)) + '\n\n'
          + _state_bytes_caption(src))


def state_bytes_methods(src: Source) -> str:
  """Bytes of optimizer state per fp32 parameter of every method of the
  package (the second table of ``benchmarks.state_bytes``)."""
  return (state_bytes_lib.methods_table(src.json(STATE_BYTES)) + '\n\n'
          + _state_bytes_caption(src))


def _suite_caption(src: Source, data: dict[str, Any], what: str) -> str:
  info = data['machine']
  return (f'{what} From the full suite, `{SUITE_COMMAND}`, on {_cpu(info)} '
          f'(JAX\'s {info["device"].split(":")[0]} backend), {_versions(info)},'
          f' {info["date"]}; it took {data["seconds"] / 60:.1f} min. Every '
          f'figure: {src.link(SUITE.replace(".json", ".md"))}.')


def _peak(m: dict[str, Any]) -> str:
  return f'{m["peak"] / MiB:,.1f} MiB ({m["peak"] / m["params"]:.3f}x)'


def suite(src: Source) -> str:
  """The suite's headline: compiled peak of the donated train step (MLP,
  GPT-2-small-shaped) and the GPT-2 step and update times, against Adam's."""
  data = src.json(SUITE)
  res = data['results']
  mlp, gpt, upd = res['mlp'], res['gpt2'], res['update']
  bold = lambda s, n: f'**{s}**' if n == 'Alada' else s
  ms = lambda r, n: r[n]['time']['median_s'] * 1e3

  def step(r, n):
    ratio = bold(f'{ms(r, n) / ms(r, "Adam"):.2f}', n)
    return f'{ms(r, n):,.0f} ({ratio})'

  lines = [
      '| optimizer | MLP: peak (x params) | / Adam '
      '| GPT-2: peak (x params) | / Adam '
      '| GPT-2 step, ms (/ Adam) | update alone on GPT-2 params, ms (/ Adam) |',
      '|---|---:|---:|---:|---:|---:|---:|']
  for n in mlp:
    ratio = lambda r: r[n]['memory']['peak'] / r['Adam']['memory']['peak']
    cells = [_peak(mlp[n]['memory']), bold(f'{ratio(mlp):.3f}', n),
             _peak(gpt[n]['memory']), bold(f'{ratio(gpt):.3f}', n),
             step(gpt, n), step(upd, n)]
    lines.append(f'| {bold(n, n)} | ' + ' | '.join(cells) + ' |')
  names = ' and '.join(res[k] for k in ('mlp_name', 'gpt2_name'))
  return '\n'.join(lines) + '\n\n' + _suite_caption(
      src, data, f'The train steps of the {names}.')


def suite_methods(src: Source) -> str:
  """Every method side by side: state, MLP peak and step time, and the
  held-out loss of the small LM at its 3-point learning-rate grid."""
  data = src.json(SUITE)
  rows = data['results']['methods']['rows']
  best = min(r['best'] for r in rows.values() if r['best'] is not None)
  adam = rows['Adam']['memory']['peak']
  lines = ['| method | state (x params) | MLP peak / Adam | MLP step ms '
           '| LM held-out loss @ lr/3, lr, 3lr | best (lr) |',
           '|---|---:|---:|---:|---|---:|']
  for n, r in rows.items():
    m = r['memory']
    loss = ', '.join('diverged' if x is None else f'{x:.3f}'
                     for x in r['heldout'])
    top = ('diverged' if r['best'] is None else
           (f'**{r["best"]:.3f}**' if r['best'] == best else f'{r["best"]:.3f}')
           + f' ({r["best_lr"]:g})')
    lines.append(f'| {n} | {m["state"] / m["params"]:.3f}x '
                 f'| {m["peak"] / adam:.3f} | {r["time"]["median_s"] * 1e3:.0f}'
                 f' | {loss} | {top} |')
  methods = data['results']['methods']
  return '\n'.join(lines) + '\n\n' + _suite_caption(
      src, data, f'MLP: {methods["mlp_name"]}; LM: {methods["lm_name"]}, '
      f'{methods["steps"]} steps.')


def suite_time(src: Source) -> str:
  """The wall time of the last published full suite."""
  data = src.json(SUITE)
  info = data['machine']
  return (f'The full suite took {data["seconds"] / 60:.1f} min '
          f'(`{SUITE_COMMAND}` on {_cpu(info)}, {info["date"]}; recorded in '
          f'{src.link(SUITE)}).')


def _example(src: Source, path: str) -> tuple[list, Any, dict[str, Any], str]:
  """An example's trials, task and record, and the caption of its table."""
  results, task, extra = harness.read_report(os.path.join(src.root, path))
  info = extra['machine']
  caption = (f'From `{extra["command"]}` on {_cpu(info)} '
             f'({extra["device"]}), {_versions(info)}: '
             f'{extra["wall_time_s"] / 60:.1f} min wall. `*` marks each '
             'optimizer\'s best learning rate; the step times and trial walls '
             'depend on the machine and its load, the other columns are '
             f'deterministic on a machine. Every figure: {src.link(path)}.')
  return results, task, extra, caption


def _example_table(src: Source, path: str, length: str,
                   held_out: Callable[[dict[str, Any]], str]) -> str:
  results, task, extra, caption = _example(src, path)
  config = extra['config']
  return (harness.format_table(results, task) + '\n\n'
          + f'{config["num_steps"]} steps of batch {config["batch_size"]} x '
          f'{config[length]} tokens; {held_out(extra)}. ' + caption)


def text_classification(src: Source) -> str:
  """The MiniLM fine-tuning example's table, as the example prints it."""
  return _example_table(
      src, TEXT_CLASSIFICATION, 'max_length',
      lambda extra: f'{extra["test_sentences"]:,} held-out sentences')


def causal_lm(src: Source) -> str:
  """The causal LM example's table, as the example prints it."""
  return _example_table(
      src, CAUSAL_LM, 'seq_len',
      lambda extra: (f'held-out perplexity ({extra["heldout_tokens"]:,} '
                     'tokens) before fine-tuning: '
                     f'{extra["start_perplexity"]:.2f}'))


def sharded_bytes(src: Source) -> str:
  """What the sharded example's compiled programs move between devices."""
  data = src.json(SHARDED)
  info = data['machine']
  lines = ['| compiled program | collectives | largest | bytes per device '
           'per step |', '|---|---|---|---:|']
  for what, key in (('Alada\'s update alone', 'update'),
                    ('the whole train step (the model\'s own communication '
                     'included)', 'train_step')):
    s = data[key]
    big = s['largest']
    shapes = ' + '.join(f'{d}{list(shape)}'.replace(' ', '')
                        for d, shape in big['shapes']) if big else '-'
    kinds = ', '.join(f'{n} {k}' for k, n in s['by_kind'].items())
    lines.append(f'| {what} | {s["collectives"]} ({kinds}) '
                 f'| {big["op"] + " of " + shapes if big else "-"} '
                 f'| {s["bytes_per_step"]:,} |')
  config = data['config']
  dev = data['max_rel_dev_one_device']
  lines += ['', f'Params: {data["param_bytes"]:,} bytes on a '
            f'{" x ".join(map(str, data["mesh"].values()))} mesh of '
            f'{data["devices"]} devices'
            + (f'; {data["devices"]} devices vs 1 after {config["num_steps"]} '
               f'steps: {dev:.3g} relative' if dev is not None else '')
            + f'. From `{data["command"]}` on {_cpu(info)}, '
            f'{_versions(info)}; bytes are per device, a loop body counted as '
            'many times as it runs, the costliest branch of each conditional. '
            f'Every figure: {src.link(SHARDED)}.']
  return '\n'.join(lines)


def collectives(src: Source) -> str:
  """What each optimizer's sharded update moves between devices, both kinds
  of mesh axes (``benchmarks.collectives``' summary tables)."""
  data = src.json(COLLECTIVES)
  info = data['machine']
  lines = []
  for mode in data['modes']:
    lines += [f'{mode.capitalize()} mesh axes (`AxisType.'
              f'{"Auto" if mode == "auto" else "Explicit"}`):', '']
    lines += collectives_lib.summary_table(data, mode) + ['']
    steps = collectives_lib.steps_line(data, mode)
    lines += [steps, ''] if steps else []
  lines.append(f'From `{data["command"]}` on {_cpu(info)}, '
               f'{_versions(info)}: compile facts, deterministic. Every '
               f'figure: {src.link(COLLECTIVES)}.')
  return '\n'.join(lines)


def _accelerators(src: Source, which: str) -> str:
  path = ACCELERATORS.format(which)
  data = src.json(path)
  rows = data['rows']
  sharded = [r for r in rows if r['program'] == 'sharded']
  lines = accelerators_lib.headline(rows)
  if sharded:
    lines += ['', f'The sharded update, {sharded[0]["target"]}: '
              f'{sharded[0]["model_name"]}.', '']
    lines += accelerators_lib.sharded_table(sharded)
  names = ('jax', 'jaxlib', 'libtpu', 'jax-cuda12-plugin', 'optax')
  targets = '; '.join(f'{t}: {_versions(v, names)}'
                      for t, v in data['versions'].items())
  lines += ['', f'Compile facts, not times: `python -m benchmarks.accelerators`'
            f' (merged with `--from-json` from {len(data["sources"])} runs) on '
            f'{_cpu(data["machine"])}, {data["date"]} ({targets}). Every '
            f'figure: {src.link(path.replace(".json", ".md"))}.']
  return '\n'.join(lines)


def accelerators(src: Source) -> str:
  """What XLA's H100 and TPU v5e compilers make of every optimizer, after the
  rewrite of issue 22 (GPT-2-shaped update and train step, sharded update)."""
  return _accelerators(src, 'after')


def accelerators_before(src: Source) -> str:
  """The same, for the code before the rewrite of issue 22."""
  return _accelerators(src, 'before')


def accelerators_more(src: Source) -> str:
  """The results after issue 22's rewrite beyond the H100's GPT-2-shaped
  columns: every TPU program in full (its conditionals and while loops too),
  and the LLaMA-style stacked model."""
  rows = [r for r in src.json(ACCELERATORS.format('after'))['rows']
          if r['program'] != 'sharded'
          and (r['model'] != 'gpt2' or r['target'] != 'h100')]
  lines = []
  for target, model, program in sorted(
      {(r['target'], r['model'], r['program']) for r in rows}):
    group = [r for r in rows if (r['target'], r['model'], r['program'])
             == (target, model, program)]
    lines += [f'{target}, {accelerators_lib.PROGRAM_TITLES[program]}: '
              f'{group[0]["model_name"]}; {group[0]["leaves"]} leaves.', '']
    lines += accelerators_lib.program_table(
        group, accelerators_lib.TARGETS[target][0] == 'tpu') + ['']
  return '\n'.join(lines).rstrip()


def tpu_memory(src: Source) -> str:
  """The v5e programs' memory read three ways (memory analysis, the
  compiler's own peak, the dumped buffer assignment's HBM)."""
  data = src.json(TPU_MEMORY)
  commands = '; '.join(f'`{c}`' for c in data['commands'])
  versions = ', '.join(f'{k} {v}' for k, v in data['versions'].items())
  lines = accelerators_lib.tpu_memory_table(data['rows'])
  lines.append(f'Compile facts, not times: {commands} ({versions}).')
  return '\n'.join(lines)


def cpu_schedule_table(data: dict[str, Any]) -> str:
  """The rows of ``benchmarks.research.cpu_schedule``: each model's train
  step under XLA:CPU's two schedules, and the share of the state 8-bit M
  saves against fp32 M that reaches the peak."""
  lines = []
  schedules = list(dict.fromkeys(r['schedule'] for r in data['rows']))
  for model in dict.fromkeys(r['model'] for r in data['rows']):
    rows = {(r['optimizer'], r['schedule']): r for r in data['rows']
            if r['model'] == model}
    first = next(r for r in data['rows'] if r['model'] == model)
    lines += [f'**{first["model_name"]}** (params: '
              f'{first["params"] / MiB:,.1f} MiB fp32), the donated train step:',
              '', '| optimizer | state MiB | '
              + ' | '.join(f'{s}: temporaries MiB | {s}: peak MiB'
                           for s in schedules) + ' |',
              '|---|---:|' + '---:|---:|' * len(schedules)]
    for name in dict.fromkeys(o for o, _ in rows):
      cells = [f'{rows[name, s]["temporaries"] / MiB:,.1f} | '
               f'{rows[name, s]["peak"] / MiB:,.1f}' if (name, s) in rows
               else ' | ' for s in schedules]
      state = next(r for (o, _), r in rows.items() if o == name)['state']
      lines.append(f'| {name} | {state / MiB:,.1f} | ' + ' | '.join(cells)
                   + ' |')
    shares = []
    for s in schedules:
      fp32, int8 = rows.get(('Alada', s)), rows.get(('Alada, 8-bit M', s))
      if fp32 and int8:
        share = ((fp32['peak'] - int8['peak'])
                 / (fp32['state'] - int8['state']))
        shares.append(f'{s} {share:.3f}')
    if shares:
      lines += ['', 'Peak saved / state saved, Alada 8-bit M against Alada: '
                + ', '.join(shares) + '.']
    lines.append('')
  info = data['machine']
  lines.append(f'Compile facts, not times: `{data["command"]}` on '
               f'{_cpu(info)} ({_versions(info)}).')
  return '\n'.join(lines)


def cpu_schedule(src: Source) -> str:
  """Train-step memory under XLA:CPU's breadth-first and depth-first
  schedules (``benchmarks.research.cpu_schedule``)."""
  return cpu_schedule_table(src.json(CPU_SCHEDULE))


def headlines(src: Source) -> str:
  """Four one-line results (state, quality, speed on CPU, GPU and TPU
  compiles), each with its command."""
  state = src.json(STATE_BYTES)['models']['GPT-2 small']['state']
  mib = lambda b: f'{b / MiB:,.1f} MiB'
  results, task, _, _ = _example(src, TEXT_CLASSIFICATION)
  best = harness.best_per_optimizer(results, task.higher_is_better)
  gpt = src.json(SUITE)['results']['gpt2']
  alada = lambda than, what, key: gpt['Alada'][what][key] / gpt[than][what][key]
  return '\n'.join([
      f'- **State**: for GPT-2 small, Alada keeps {mib(state["Alada"])} of '
      f'optimizer state against Adam\'s {mib(state["Adam"])} '
      f'({state["Alada"] / state["Adam"]:.2f}x; '
      f'{mib(state["Alada, bf16 momentum"])} with a bf16 momentum): '
      '`python -m benchmarks.state_bytes`.',
      f'- **Quality**: fine-tuning MiniLM on sentence polarity, the best '
      f'held-out {task.metric_name} of each optimizer\'s grid is '
      + ', '.join(f'{n} {r.final_metric:.3f} (lr {r.learning_rate:g})'
                  for n, r in best.items())
      + ': `python -m examples.text_classification.main`.',
      f'- **Speed**: the GPT-2-small-shaped train step on CPU takes '
      f'{alada("Adam", "time", "median_s"):.2f}x Adam\'s time and peaks at '
      f'{alada("Adam", "memory", "peak"):.3f}x Adam\'s memory '
      f'({alada("SGD+momentum", "memory", "peak"):.3f}x '
      'SGD-with-momentum\'s): `python -m benchmarks.run`.',
      _accelerators_headline(src),
  ])


def _accelerators_headline(src: Source) -> str:
  rows = {(r['target'], r['optimizer']): r
          for r in src.json(ACCELERATORS.format('after'))['rows']
          if r['model'] == 'gpt2' and r['program'] == 'update'
          and 'error' not in r}
  hbm = lambda t, o: rows[(t, o)]['hbm_bytes_per_param']
  return (
      '- **GPU and TPU**: compiled for a TPU v5e, Alada\'s GPT-2-shaped '
      f'update reads and writes {hbm("v5e", "alada"):.1f} bytes per parameter '
      f'in HBM against Adam\'s {hbm("v5e", "adam"):.1f} (bf16 M '
      f'{hbm("v5e", "alada_bf16"):.1f}), with no control flow; for an H100 '
      f'{hbm("h100", "alada"):.1f} against {hbm("h100", "adam"):.1f}, in '
      f'{rows[("h100", "alada")]["kernels"]:,} kernels against Adam\'s '
      f'{rows[("h100", "adam")]["kernels"]:,}: `python -m '
      'benchmarks.accelerators` (compile facts, not times).')


GENERATORS: dict[str, Generator] = {
    'state_bytes': Generator((STATE_BYTES,), state_bytes),
    'state_bytes_methods': Generator((STATE_BYTES,), state_bytes_methods),
    'suite': Generator((SUITE,), suite),
    'suite_methods': Generator((SUITE,), suite_methods),
    'suite_time': Generator((SUITE,), suite_time),
    'text_classification': Generator((TEXT_CLASSIFICATION,),
                                     text_classification),
    'causal_lm': Generator((CAUSAL_LM,), causal_lm),
    'sharded_bytes': Generator((SHARDED,), sharded_bytes),
    'collectives': Generator((COLLECTIVES,), collectives),
    'accelerators': Generator((ACCELERATORS.format('after'),), accelerators),
    'accelerators_before': Generator((ACCELERATORS.format('before'),),
                                     accelerators_before),
    'accelerators_more': Generator((ACCELERATORS.format('after'),),
                                   accelerators_more),
    'tpu_memory': Generator((TPU_MEMORY,), tpu_memory),
    'cpu_schedule': Generator((CPU_SCHEDULE,), cpu_schedule),
    'headlines': Generator((STATE_BYTES, TEXT_CLASSIFICATION, SUITE,
                            ACCELERATORS.format('after')), headlines),
}
"""Block name -> (the results files it reads, the function that renders it)."""


# -- the blocks in the markdown files ----------------------------------------

class Block(NamedTuple):
  name: str
  start: int  # index of the opening marker's line
  end: int    # index of the closing marker's line


def blocks(lines: list[str], page: str,
           generators=GENERATORS) -> list[Block]:
  """The generated blocks of a page's lines; markers in code fences are text.

  Raises:
    FiguresError: an unknown name, a marker left open, or a stray closing one
      (naming the page and the line).
  """
  found, open_, fence = [], None, False
  for i, line in enumerate(lines):
    text = line.strip()
    if text.startswith('```'):
      fence = not fence
    if fence:
      continue
    m = OPEN.match(text)
    if m:
      if open_:
        raise FiguresError(f'{page}:{i + 1}: a figures block opens inside '
                           f'{open_.name!r}, opened at line {open_.start + 1}')
      if m.group(1) not in generators:
        raise FiguresError(f'{page}:{i + 1}: unknown figures generator '
                           f'{m.group(1)!r}; known: {", ".join(generators)}')
      open_ = Block(m.group(1), i, -1)
    elif text == CLOSE:
      if not open_:
        raise FiguresError(f'{page}:{i + 1}: {CLOSE} closes no block')
      found.append(open_._replace(end=i))
      open_ = None
    elif text.startswith('<!-- figures'):
      raise FiguresError(f'{page}:{i + 1}: malformed marker {text!r}; write '
                         '<!-- figures: NAME --> and <!-- /figures -->')
  if open_:
    raise FiguresError(f'{page}:{open_.start + 1}: figures block '
                       f'{open_.name!r} is never closed ({CLOSE})')
  return found


def pages(root: str = ROOT) -> list[str]:
  """The tracked markdown files (every README.md and docs/**/*.md outside a
  git checkout), relative to ``root``."""
  try:
    out = subprocess.run(['git', 'ls-files', '*.md'], cwd=root, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    if out.strip() and os.path.exists(os.path.join(root, '.git')):
      return sorted(p for p in out.splitlines()
                    if os.path.exists(os.path.join(root, p)))
  except (OSError, subprocess.SubprocessError):
    pass
  found = glob.glob('**/*.md', root_dir=root, recursive=True)
  return sorted(p for p in found if not p.startswith(('.', 'out/')))


def render(name: str, root: str, page: str) -> list[str]:
  return GENERATORS[name].render(Source(root, page)).split('\n')


def check(root: str = ROOT, write: bool = False, out=sys.stdout,
          only: Sequence[str] = ()) -> int:
  """Checks (or with ``write`` rewrites) every block of every page (of the
  pages in ``only``, if given).

  Returns the number of blocks that disagreed with their generator.
  """
  stale = 0
  for page in only or pages(root):
    path = os.path.join(root, page)
    with open(path, encoding='utf-8') as f:
      lines = f.read().split('\n')
    new, last = [], 0
    for block in blocks(lines, page):
      have = lines[block.start + 1:block.end]
      missing = [p for p in GENERATORS[block.name].sources
                 if not os.path.isfile(os.path.join(root, p))]
      if missing:
        stale += 1
        print(f'{page}:{block.start + 1}: block {block.name!r} reads '
              f'{", ".join(missing)}, which is missing', file=out)
        want = have
      else:
        want = render(block.name, root, page)
      new += lines[last:block.start + 1] + want
      last = block.end
      if have != want:
        stale += 1
        out.writelines(difflib.unified_diff(
            [l + '\n' for l in have], [l + '\n' for l in want],
            f'{page}:{block.start + 2} (block {block.name!r}, as quoted)',
            f'{page} (block {block.name!r}, from '
            f'{", ".join(GENERATORS[block.name].sources)})'))
    new += lines[last:]
    if write and new != lines:
      with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(new))
      print(f'rewrote {page}', file=out)
  return stale


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.figures', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--write', action='store_true',
                      help='rewrite every block whose text differs from its '
                           'generator\'s (maintainers, after refreshing a '
                           'results file)')
  parser.add_argument('--list', action='store_true',
                      help='list the generators, what each renders and the '
                           'results files it reads; check nothing')
  parser.add_argument('pages', nargs='*', metavar='PAGE',
                      help='markdown files to check or rewrite, relative to '
                           '--root (default: every tracked one)')
  parser.add_argument('--root', default=ROOT,
                      help='the checkout whose pages and results files to '
                           'read (default: this one)')
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if args.list:
    for name, g in GENERATORS.items():
      doc = ' '.join(g.render.__doc__.split())
      print(f'{name}: {doc}\n    from {", ".join(g.sources)}')
    return 0
  try:
    stale = check(args.root, args.write, only=args.pages)
  except FiguresError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if stale and not args.write:
    print(f'{stale} figures block(s) differ from their results files; '
          'python -m benchmarks.figures --write rewrites them',
          file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
