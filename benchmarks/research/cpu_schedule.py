"""XLA:CPU's two schedules of a train step, and what 8-bit M saves in each.

XLA:CPU orders a program's instructions with one of two schedulers
(``CpuCompiler``): by default the concurrency-optimized one, a breadth-first
order that ignores memory (``BFScheduler``), so that the thunk runtime can
run independent kernels side by side; with
``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false`` a
depth-first order chosen for memory (``DFSMemoryScheduler``). The flag is
read per process (passed per program, as ``jax.jit(...,
compiler_options=...)``, it changes nothing: the same buffers), so each
schedule is compiled here in a process of its own.

Why it matters to Alada with 8-bit M: its fold reads a leaf's gradient
twice, once for each block's absmax and once to encode, with the absmax
between them. In a breadth-first order the encode of layer k is as many
steps from the gradient's producer as the next layer's weight gradient is,
so the two gradients can be alive at once; with fp32 M the fold is one
pass, a step earlier. This command compiles the suite's donated train step
(``benchmarks.harness.train_step``) for each model, optimizer and schedule
and reads ``compiled.memory_analysis()`` (compile facts, not times)::

    python -m benchmarks.research.cpu_schedule               # ~15 min, 2 cores
    python -m benchmarks.research.cpu_schedule --models mlp  # ~1 min
    python -m benchmarks.research.cpu_schedule \\
        --out docs/research/results/cpu_schedule   # the results the docs quote

It prints a table and writes ``results.json`` under ``--out`` (default
``out/cpu_schedule``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SCHEDULES = {
    'breadth-first': '--xla_cpu_enable_concurrency_optimized_scheduler=true',
    'depth-first': '--xla_cpu_enable_concurrency_optimized_scheduler=false',
}
OPTIMIZERS = ('SGD+momentum', 'Adam', 'Alada', 'Alada, bf16 M',
              'Alada, 8-bit M')
MODELS = ('mlp', 'gpt2')


def compile_rows(model_key: str, names) -> list[dict]:
  """Compiles the suite's train step of each optimizer in this process."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  from benchmarks import models  # pylint: disable=g-import-not-at-top
  model = {'mlp': models.mlp, 'gpt2': models.gpt2}[model_key]()
  rows = []
  for name in names:
    memory = harness.compile_train_step(model, harness.OPTIMIZERS[name]()).memory
    rows.append({'model': model_key, 'model_name': model.name,
                 'optimizer': name, **memory.__dict__, 'peak': memory.peak})
  return rows


def run(schedule: str, model_key: str, names) -> list[dict]:
  """:func:`compile_rows` in a child process under ``schedule``'s flag."""
  flags = (os.environ.get('XLA_FLAGS', '') + ' ' + SCHEDULES[schedule]).strip()
  proc = subprocess.run(
      [sys.executable, '-m', 'benchmarks.research.cpu_schedule', '--child',
       model_key, json.dumps(list(names))],
      env=dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f'compiling {model_key} ({schedule}) failed (exit '
                       f'{proc.returncode}):\n{proc.stderr[-3000:]}')
  rows = json.loads(proc.stdout.strip().splitlines()[-1])
  return [dict(r, schedule=schedule) for r in rows]


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.research.cpu_schedule', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--models', default=','.join(MODELS),
                      help='comma-separated, of ' + ', '.join(MODELS)
                      + ' (the suite\'s full-size models)')
  parser.add_argument('--optimizers', default='; '.join(OPTIMIZERS),
                      help='names of benchmarks.harness.OPTIMIZERS, '
                      'separated by semicolons')
  parser.add_argument('--out', default='out/cpu_schedule',
                      help='the folder for results.json')
  parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if args.child:
    print(json.dumps(compile_rows(args.child[0], json.loads(args.child[1]))))
    return 0
  from benchmarks import figures  # pylint: disable=g-import-not-at-top
  from benchmarks import run as suite  # pylint: disable=g-import-not-at-top
  command = 'python -m benchmarks.research.cpu_schedule ' + ' '.join(
      argv if argv is not None else sys.argv[1:])
  names = [n.strip() for n in args.optimizers.split(';')]
  rows = []
  for model_key in args.models.split(','):
    for schedule in SCHEDULES:
      rows += run(schedule, model_key, names)
      print(f'compiled {model_key} ({schedule})', file=sys.stderr, flush=True)
  data = {'command': command.strip(), 'machine': suite.machine(),
          'rows': rows}
  print(figures.cpu_schedule_table(data))
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'results.json'), 'w',
            encoding='utf-8') as f:
    json.dump(data, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
