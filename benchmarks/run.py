"""The benchmark suite, in one command.

    python -m benchmarks.run                 # the full suite
    python -m benchmarks.run --quick         # small shapes: a smoke run
    python -m benchmarks.run --publish       # maintainers: refresh benchmarks/results/

Each run records its wall time and machine in its results.json (``seconds``,
``machine``) and on results.md's first line; the committed
``benchmarks/results/`` has the last published full run's.

For each optimizer (SGD+momentum as the floor, Adam, Adafactor with and
without momentum, Alada with fp32 and bf16 momentum) it measures

* the optimizer-state bytes (built by ``init`` under ``jax.eval_shape``);
* the compiled peak memory of the donated train step (params and state
  donated), from XLA's memory analysis of the compiled program;
* the step time of that train step (warm-up, interleaved rounds, median and
  interquartile range);

on a deep tanh MLP (8 layers of 2048 x 2048, batch 8) and a GPT-2-small-shaped
transformer (12 blocks, d=768, vocab 50257, tied embedding, batch 1 x 256),
plus the optimizer update alone on the GPT-2-shaped params, and a sweep of the
MLP's width. The ``methods`` part (:mod:`benchmarks.methods`) sets every
method of the package side by side (SGD+momentum, Adam, Adafactor, Alada,
SMMF, CAME, AdamW-SN-SM, Adapprox): memory and step time on the MLP, and the
held-out loss of a byte-level transformer LM trained on movie-review
sentences at a 3-point learning-rate grid per method. It writes
``results.md`` (tables), ``results.json`` (every figure) and ``memory.png``,
``time.png``, ``scaling.png``, ``methods.png`` under ``--out`` (default
``out/benchmarks``, git-ignored). The committed ``benchmarks/results/`` that
the README quotes is refreshed only by ``--publish`` (a full run of every
part). ``--quick`` runs the same code on small shapes and reports its figures
without judging them against the bounds, which hold for the full-size shapes
only ("n/a at this size").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from typing import Any

import jax
import optax

from benchmarks import harness
from benchmarks import methods as methods_lib
from benchmarks import models as models_lib

MiB = 2**20


def machine() -> dict[str, Any]:
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return {
      'device': f'{dev.platform}: {getattr(dev, "device_kind", dev)}',
      'devices': jax.device_count(),
      'cpu': cpu,
      'cpu_cores': os.cpu_count(),
      'python': platform.python_version(),
      'jax': jax.__version__,
      'jaxlib': getattr(jax.lib, '__version__', None) or _jaxlib_version(),
      'optax': optax.__version__,
      'date': datetime.date.today().isoformat(),
  }


def _jaxlib_version():
  import jaxlib  # pylint: disable=g-import-not-at-top
  return jaxlib.__version__


def bench_model(model, names, jobs, warmup, rounds, log) -> dict[str, Any]:
  """Memory and step time of the donated train step of every optimizer."""
  opts = {n: harness.OPTIMIZERS[n]() for n in names}
  programs = harness.compile_all(
      lambda n: harness.compile_train_step(model, opts[n]), names, jobs)
  for n, prog in programs.items():
    log(f'  {n}: peak {prog.memory.peak / MiB:,.1f} MiB, '
        f'compiled in {prog.compile_s:.0f} s')
  return harness.time_programs(programs, opts, harness.concrete_params(model),
                               harness.concrete_batch(model), warmup, rounds)


def bench_update(model, names, jobs, warmup, rounds, log) -> dict[str, Any]:
  """Step time of the optimizer update alone (donated) on the model's params."""
  opts = {n: harness.OPTIMIZERS[n]() for n in names}
  abstract = jax.eval_shape(model.init, jax.random.key(0))
  programs = harness.compile_all(
      lambda n: harness.compile_update_step(abstract, opts[n]), names, jobs)
  params = harness.concrete_params(model)
  # Each sample is an even and an odd step (Alada refits p, then q): the
  # figure is the mean step of a pair.
  results = harness.time_programs(programs, opts, params,
                                  harness.fake_grads(params), warmup, rounds,
                                  steps=2)
  size = sum(x.size for x in jax.tree.leaves(abstract))
  for n in names:
    accessed = harness.bytes_accessed(programs[n].compiled)
    results[n]['bytes_per_param'] = (None if accessed is None
                                     else accessed / size)
    results[n]['fusions'] = harness.count_fusions(
        programs[n].compiled.as_text())
    log(f'  {n}: {results[n]["time"].median * 1e3:,.1f} ms')
  return results


def update_cost_table(update) -> list[str]:
  """What XLA compiled for the update alone: bytes and kernels per step."""
  lines = ['XLA\'s view of the same update programs (`compiled.cost_analysis()`'
           '\'s bytes accessed, per parameter; fusions: kernels at the top '
           'level of the program, plus those inside its conditionals, of which '
           'one branch runs per step; see `benchmarks.harness.count_fusions`):',
           '', '| optimizer | ms (median) | / Adam | bytes accessed / param '
           '| fusions: top level | conditionals | fusions: all |',
           '|---|---:|---:|---:|---:|---:|---:|']
  adam = update['Adam']['time'].median
  for n, r in update.items():
    b = r.get('bytes_per_param')
    f = r.get('fusions') or {}
    lines.append(
        f'| {n} | {r["time"].median * 1e3:,.1f} | {r["time"].median / adam:.2f}'
        f' | {"n/a" if b is None else f"{b:.1f}"} | {f.get("entry", "")}'
        f' | {f.get("entry_control", "")} | {f.get("module", "")} |')
  return lines + ['']


# -- formatting ---------------------------------------------------------------

def _ms(t: harness.Timing) -> str:
  return f'{t.median * 1e3:,.1f} ({t.low * 1e3:,.1f}-{t.high * 1e3:,.1f})'


def memory_table(res, title) -> list[str]:
  adam = res['Adam']['memory'].peak
  sgd = res['SGD+momentum']['memory'].peak
  p = next(iter(res.values()))['memory'].params
  lines = [f'**{title}** (params: {p / MiB:,.1f} MiB fp32)', '',
           '| optimizer | state | compiled peak | peak / params | '
           'peak / Adam | peak / SGD+m |',
           '|---|---:|---:|---:|---:|---:|']
  for n, r in res.items():
    m = r['memory']
    lines.append(
        f'| {n} | {m.state / MiB:,.1f} MiB ({m.state / m.params:.3f}x) | '
        f'{m.peak / MiB:,.1f} MiB | {m.peak / m.params:.3f}x | '
        f'{m.peak / adam:.3f} | {m.peak / sgd:.3f} |')
  return lines + ['']


def time_table(sections) -> list[str]:
  """sections: [(column title, results)] -> one table of step times."""
  names = list(sections[0][1])
  head = '| optimizer | ' + ' | '.join(
      f'{t}: ms (IQR) | / Adam' for t, _ in sections) + ' |'
  lines = [head, '|---|' + '---:|---:|' * len(sections)]
  for n in names:
    cells = []
    for _, res in sections:
      t = res[n]['time']
      cells.append(f'{_ms(t)} | {t.median / res["Adam"]["time"].median:.2f}')
    lines.append(f'| {n} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def scaling_table(sweep) -> list[str]:
  widths = sorted(sweep)
  names = list(sweep[widths[0]])
  lines = ['| optimizer | ' + ' | '.join(
      f'd={w}: peak (x params), ms' for w in widths) + ' |',
           '|---|' + '---:|' * len(widths)]
  for n in names:
    cells = []
    for w in widths:
      r = sweep[w][n]
      m = r['memory']
      cells.append(f'{m.peak / MiB:,.0f} MiB ({m.peak / m.params:.2f}x), '
                   f'{r["time"].median * 1e3:,.1f}')
    lines.append(f'| {n} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def checks(results) -> list[tuple[str, float, float]]:
  """(what, measured, bound): the targets of the memory/time work.

  The bounds hold for the full-size shapes; on ``--quick``'s small shapes
  fixed overheads dominate and the ratios mean nothing (see ``markdown``).
  """
  out = []
  mlp, gpt = results.get('mlp'), results.get('gpt2')
  if mlp:
    peak = lambda n: mlp[n]['memory'].peak
    out += [
        ('MLP peak: Alada / SGD+momentum', peak('Alada') / peak('SGD+momentum'), 1.05),
        ('MLP peak: Alada / Adam', peak('Alada') / peak('Adam'), 0.72),
        ('MLP peak: Alada bf16 M / SGD+momentum',
         peak('Alada, bf16 M') / peak('SGD+momentum'), 0.80),
    ]
  if gpt:
    out += [
        ('GPT-2 peak: Alada / SGD+momentum (the floor of a full fp32 M)',
         gpt['Alada']['memory'].peak / gpt['SGD+momentum']['memory'].peak,
         1.01),
        ('GPT-2 step time: Alada / Adam (median)',
         gpt['Alada']['time'].median / gpt['Adam']['time'].median, 1.15),
    ]
  for label, model in (('MLP', mlp), ('GPT-2', gpt)):
    if model and 'Alada, 8-bit M' in model:
      # The issue-24 target: the peak falls by >= 90% of the state 8 bits save.
      fp32, int8 = model['Alada']['memory'], model['Alada, 8-bit M']['memory']
      out.append((f'{label} peak: 1 - peak saved / state saved, Alada 8-bit M '
                  'against Alada', 1 - (fp32.peak - int8.peak) /
                  (fp32.state - int8.state), 0.10))
  upd = results.get('update')
  if upd:
    adam = upd['Adam']['time'].median
    out.append(('GPT-2-shaped update alone: Alada / Adam (median)',
                upd['Alada']['time'].median / adam, 1.15))
    if 'Alada, bf16 M' in upd:
      out.append(('GPT-2-shaped update alone: Alada bf16 M / Adam (median)',
                  upd['Alada, bf16 M']['time'].median / adam, 1.1))
    if 'Alada, 8-bit M' in upd:
      out.append(('GPT-2-shaped update alone: Alada 8-bit M / Alada (median)',
                  upd['Alada, 8-bit M']['time'].median
                  / upd['Alada']['time'].median, 1.15))
  return out


NOT_APPLICABLE = 'n/a at this size'


def verdicts(results, quick: bool) -> list[tuple[str, float, float, str]]:
  """checks() with a verdict: 'ok', 'MISSED', or n/a on --quick's shapes."""
  return [(w, v, b, NOT_APPLICABLE if quick else ('ok' if v <= b else 'MISSED'))
          for w, v, b in checks(results)]


def command(args) -> str:
  cmd = 'python -m benchmarks.run' + (' --quick' if args.quick else '')
  if args.only != ALL_PARTS:
    cmd += f' --only {args.only}'
  return cmd


def markdown(results, info, args, seconds) -> str:
  cmd = command(args)
  lines = [
      '# alada_optax benchmarks', '',
      f'`{cmd}` on {info["device"]} ({info["cpu"]}, {info["cpu_cores"]} cores), '
      f'jax {info["jax"]}, jaxlib {info["jaxlib"]}, optax {info["optax"]}, '
      f'{info["date"]}; the suite took {seconds / 60:.1f} min.', '',
      'Peak = arguments + outputs - donated + temporaries of the compiled, '
      'donated train step (XLA memory analysis: deterministic). Times: '
      f'{args.warmup} warm-up steps (1 for GPT-2), then {args.rounds or 7} '
      f'interleaved rounds ({args.rounds or 5} for GPT-2); '
      'median (interquartile range) in ms.', '']
  if 'mlp' in results:
    lines += ['## Compiled peak memory of the train step', '']
    lines += memory_table(results['mlp'], results['mlp_name'])
  if 'gpt2' in results:
    lines += memory_table(results['gpt2'], results['gpt2_name'])
  sections = []
  if 'mlp' in results:
    sections.append(('MLP step', results['mlp']))
  if 'gpt2' in results:
    sections.append(('GPT-2 step', results['gpt2']))
  if 'update' in results:
    sections.append(('GPT-2-shaped update alone', results['update']))
  if sections:
    lines += ['## Step time', ''] + time_table(sections)
  if 'update' in results:
    lines += update_cost_table(results['update'])
  if results.get('sweep'):
    lines += ['## Scaling with the MLP width', '',
              f'{results["sweep_name"]}; time is the median train-step time.', '']
    lines += scaling_table(results['sweep'])
  if 'methods' in results:
    lines += methods_lib.markdown(results['methods'])
  found = verdicts(results, args.quick)
  if found:
    lines += ['## Checks', '', '| what | measured | bound | |', '|---|---:|---:|---|']
    lines += [f'| {w} | {v:.3f} | {b} | {verdict} |' for w, v, b, verdict in found]
    if args.quick:
      lines += ['', 'The bounds are set for the full-size shapes; on these small '
                'shapes fixed costs (biases, the batch, XLA\'s own buffers) '
                'weigh as much as the matrices, so the ratios are reported but '
                'not judged.']
    if 'gpt2' in results:
      lines += ['', 'No bound is set on GPT-2\'s peak against Adam\'s: the '
                'floor of any method that keeps a full fp32 first moment is '
                'SGD-with-momentum\'s peak (params + M + the model\'s own '
                'gradients and activations), and the check above holds Alada '
                'to it. Below that floor only a smaller M helps '
                '(`mu_dtype=jnp.bfloat16` or `\'int8\'`). Folding the gradient into M '
                'inside '
                'the backward pass does not lower it: see '
                'docs/research/in_backward.md '
                '(`python -m benchmarks.research.in_backward`).']
    lines += ['']
  return '\n'.join(lines)


def to_json(results, info, seconds) -> dict[str, Any]:
  def convert(x):
    if isinstance(x, harness.Memory):
      return {**x.__dict__, 'peak': x.peak}
    if isinstance(x, harness.Timing):
      return {'median_s': x.median, 'seconds': x.seconds}
    if isinstance(x, dict):
      return {str(k): convert(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
      return [convert(v) for v in x]
    return x
  return {'machine': info, 'seconds': seconds, 'results': convert(results)}


ALL_PARTS = 'mlp,gpt2,update,sweep,methods'
DEFAULT_OUT = os.path.join('out', 'benchmarks')
PUBLISHED = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.run', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
      '--out', default=None,
      help=f'folder for results.md, results.json and the plots (default: '
           f'{DEFAULT_OUT}, under the current directory; git-ignored)')
  parser.add_argument(
      '--publish', action='store_true',
      help='maintainers: write into the committed benchmarks/results/ that '
           'the README quotes; only for a full run (no --quick, no --only)')
  parser.add_argument('--quick', action='store_true',
                      help='small shapes: a smoke run of the whole suite; its '
                           'figures are reported, the full-size bounds are '
                           'not judged')
  parser.add_argument('--jobs', type=int, default=2,
                      help='programs compiled at once (default 2)')
  parser.add_argument('--warmup', type=int, default=2,
                      help='untimed steps of each program before the timed '
                           'rounds (default 2; GPT-2 takes at most 1)')
  parser.add_argument('--rounds', type=int, default=None,
                      help='timed rounds (default 7, 5 for GPT-2)')
  parser.add_argument('--only', default=ALL_PARTS,
                      help='comma-separated parts to run, from '
                           f'{ALL_PARTS} (default: all)')
  return parser


def parse_args(argv=None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  unknown = set(args.only.split(',')) - set(ALL_PARTS.split(','))
  if unknown:
    parser.error(f'--only: unknown parts {sorted(unknown)}; choose from {ALL_PARTS}')
  if args.publish:
    if args.out is not None:
      parser.error('--publish writes to benchmarks/results; drop --out')
    if args.quick or args.only != ALL_PARTS:
      parser.error('--publish refreshes the committed full results: run it '
                   'without --quick and --only')
    args.out = PUBLISHED
  elif args.out is None:
    args.out = DEFAULT_OUT
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  parts = set(args.only.split(','))
  start = time.perf_counter()
  log = lambda s: print(f'[{time.perf_counter() - start:6.0f} s] {s}',
                        flush=True)
  info = machine()
  log(f'{info["device"]}, jax {info["jax"]}')
  names = list(harness.OPTIMIZERS)
  if args.quick:
    mlp = models_lib.mlp(layers=4, width=256, batch=8)
    gpt2 = models_lib.gpt2(layers=2, d=128, heads=4, vocab=1024, ctx=128,
                           seq=64)
    widths = [128, 256, 512]
  else:
    mlp = models_lib.mlp()
    gpt2 = models_lib.gpt2()
    widths = [512, 1024, 2048, 4096]
  rounds = args.rounds or 7
  results: dict[str, Any] = {}

  if 'mlp' in parts:
    log(f'{mlp.name}: compiling and timing')
    results['mlp'] = bench_model(mlp, names, args.jobs, args.warmup, rounds, log)
    results['mlp_name'] = mlp.name
  if 'gpt2' in parts:
    log(f'{gpt2.name}: compiling and timing')
    # A GPT-2 step takes seconds on a CPU: one warm-up run is enough for the
    # ahead-of-time compiled program.
    results['gpt2'] = bench_model(gpt2, names, args.jobs, min(args.warmup, 1),
                                  args.rounds or 5, log)
    results['gpt2_name'] = gpt2.name
  if 'update' in parts:
    log('optimizer update alone on the GPT-2-shaped params')
    results['update'] = bench_update(gpt2, names, args.jobs, args.warmup,
                                     rounds, log)
  if 'sweep' in parts:
    sweep = {}
    for w in widths:
      model = models_lib.mlp(layers=mlp.config['layers'], width=w, batch=8)
      if 'mlp' in results and model.name == mlp.name:
        sweep[w] = results['mlp']
        continue
      log(f'sweep: {model.name}')
      sweep[w] = bench_model(model, names, args.jobs, args.warmup, rounds,
                             lambda s: None)
    results['sweep'] = sweep
    results['sweep_name'] = (f'MLP of {mlp.config["layers"]} tanh layers of '
                             'width d, batch 8')
  if 'methods' in parts:
    results['methods'] = methods_lib.run(args.quick, args.jobs, args.warmup,
                                         rounds, log)

  seconds = time.perf_counter() - start
  os.makedirs(args.out, exist_ok=True)
  written = [os.path.join(args.out, 'results.md'),
             os.path.join(args.out, 'results.json')]
  with open(written[0], 'w') as f:
    f.write(markdown(results, info, args, seconds) + '\n')
  with open(written[1], 'w') as f:
    json.dump(to_json(results, info, seconds), f, indent=1)
  from benchmarks import plots  # pylint: disable=g-import-not-at-top
  written += plots.write_all(results, info, args.out)
  if 'methods' in results:
    written.append(methods_lib.plot(results['methods'], args.out))
  print(markdown(results, info, args, seconds))
  log(f'done in {seconds / 60:.1f} min; wrote ' + ', '.join(written))
  return 0


if __name__ == '__main__':
  sys.exit(main())
