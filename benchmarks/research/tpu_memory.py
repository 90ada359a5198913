"""Three readings of a TPU program's memory, compiled deviceless.

XLA:TPU's ``compiled.memory_analysis()`` gives three figures that disagree
on the larger programs of ``benchmarks.accelerators``, and issue 22's TPU
bounds hang on which one is read:

* **args + temps**: the suite's peak (``harness.Memory``): arguments +
  outputs - donated + ``temp_size_in_bytes``;
* **compiler peak**: ``peak_memory_in_bytes``, the compiler's own peak;
* **HBM allocated**: the buffer assignment XLA dumps
  (``--xla_dump_to``): every allocation in the default memory space (HBM),
  arguments included, and of it the preallocated temporary block.

On the GPT-2-shaped train step they part by hundreds of MiB
(docs/research/tpu_memory.md); which one the runtime allocates needs a
device. Each program is compiled in a process of its own
(the dump flag is per process), with the interpreter that runs this command,
which must import libtpu (the TPU side environment of docs/accelerators.md):

    TPU_VENV/bin/python -m benchmarks.research.tpu_memory \\
        --programs train,update --optimizers sgdm,adam,alada,alada_bf16

It prints a table and writes ``results.json`` under ``--out`` (default
``out/tpu_memory``); ``--merge A.json B.json`` writes the rows of earlier
runs as one file, compiling nothing. Compile facts, not times.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

from benchmarks import accelerators

OPTIMIZERS = ('sgdm', 'adam', 'alada', 'alada_bf16', 'alada_int8')
PROGRAMS = accelerators.TPU_MEMORY_PROGRAMS

_ALLOCATION = re.compile(r'allocation \d+: size (\d+), (.*)')


def hbm_allocations(buffer_assignment: str) -> dict[str, int]:
  """The default memory space's allocations of a dumped buffer assignment:
  their total and the preallocated temporary block's size."""
  total = temp = 0
  for line in buffer_assignment.splitlines():
    match = _ALLOCATION.match(line)
    if not match or re.search(r'\bcolor [1-9]', match.group(2)):
      continue
    size = int(match.group(1))
    total += size
    if 'preallocated-temp' in match.group(2):
      temp += size
  return {'hbm_allocated': total, 'hbm_temp_block': temp}


def compile_one(program: str, optimizer: str, target: str) -> dict:
  """Compiles one program in this process (its XLA_FLAGS set by the caller)
  as ``benchmarks.accelerators`` does, and reads its memory analysis."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  job = {'model': 'gpt2', 'program': program, 'optimizer': optimizer,
         'quick': False}
  compiled, model, params, state, _ = accelerators.compile_program(
      job, accelerators.topology(target))
  memory = harness.Memory.of(compiled, params, state)
  analysis = compiled.memory_analysis()
  return {'program': program, 'optimizer': optimizer, 'target': target,
          'model': model.name, **memory.__dict__, 'peak': memory.peak,
          'compiler_peak': getattr(analysis, 'peak_memory_in_bytes', None)}


def run(program: str, optimizer: str, target: str) -> dict:
  """:func:`compile_one` in a child process with a dump of its buffer
  assignment, and the dump's HBM allocations."""
  with tempfile.TemporaryDirectory() as dump:
    env = dict(os.environ, XLA_FLAGS=(
        os.environ.get('XLA_FLAGS', '') + f' --xla_dump_to={dump}').strip())
    for name, value in accelerators.BACKENDS['tpu']['env'].items():
      env.setdefault(name, value)
    proc = subprocess.run(
        [sys.executable, '-m', 'benchmarks.research.tpu_memory', '--child',
         program, optimizer, target], env=env, capture_output=True,
        text=True, check=False)
    if proc.returncode:
      raise RuntimeError(f'compiling {target} {program} {optimizer} failed '
                         f'(exit {proc.returncode}):\n{proc.stderr[-3000:]}')
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    files = glob.glob(os.path.join(
        dump, '*jit_step*after_optimizations-buffer-assignment.txt'))
    if len(files) != 1:
      raise RuntimeError(f'expected one buffer assignment, found {files}')
    with open(files[0], encoding='utf-8') as f:
      row.update(hbm_allocations(f.read()))
  return row


def versions() -> dict[str, str]:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  found = {}
  for name in ('jax', 'jaxlib', 'libtpu', 'optax'):
    try:
      found[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return found


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.research.tpu_memory', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--programs', default='train,update',
                      help='comma-separated, of ' + ', '.join(PROGRAMS)
                      + ' (harness.train_step, batch 1 x 256, and '
                      'harness.update_step)')
  parser.add_argument('--optimizers', default=','.join(OPTIMIZERS),
                      help='comma-separated keys of benchmarks.accelerators')
  parser.add_argument('--target', default='v5e',
                      help='a TPU target of benchmarks.accelerators')
  parser.add_argument('--out', default='out/tpu_memory',
                      help='the folder for results.json')
  parser.add_argument('--merge', nargs='+', metavar='JSON',
                      help='write the rows of earlier runs\' results as one')
  parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if args.child:
    print(json.dumps(compile_one(*args.child)))
    return 0
  command = 'python -m benchmarks.research.tpu_memory ' + ' '.join(
      argv if argv is not None else sys.argv[1:])
  rows, commands, found = [], [command], {}
  if args.merge:
    commands = []
    for path in args.merge:
      with open(path, encoding='utf-8') as f:
        data = json.load(f)
      rows += data['rows']
      commands += data.get('commands') or [data['command']]
      found = found or data.get('versions', {})
  else:
    if importlib.util.find_spec('libtpu') is None:
      print('benchmarks.research.tpu_memory: this interpreter does not '
            'import libtpu (the TPU compiler): make a side environment, '
            'outside the project, with\n  '
            f'{accelerators.BACKENDS["tpu"]["recipe"]}\nand run this command '
            'with tpu-venv/bin/python; see docs/accelerators.md',
            file=sys.stderr)
      return 2
    for program in args.programs.split(','):
      for optimizer in args.optimizers.split(','):
        rows.append(run(program, optimizer, args.target))
        print(f'compiled {program} {optimizer}', file=sys.stderr, flush=True)
  lines = accelerators.tpu_memory_table(rows)
  print('\n'.join(lines))
  print('Compile facts, not times.')
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'results.json'), 'w',
            encoding='utf-8') as f:
    # This interpreter's versions, for a run or for runs that recorded none.
    json.dump({'commands': commands, 'versions': found or versions(),
               'rows': rows},
              f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
