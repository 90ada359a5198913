r"""What each optimizer's sharded update moves between devices, from its HLO.

    python -m benchmarks.collectives                 # 27-40 s on 2 CPU cores
    python -m benchmarks.collectives --quick --only alada,smmf,adam \
        --breakdown smmf                             # what the tests run, ~15 s

On 8 simulated CPU devices (a 2 x 4 ``('data', 'model')`` mesh; set up here,
before JAX starts), the params of a transformer block of width ``d`` (256;
MLP width ``4 d``) are sharded FSDP x tensor-parallel::

  attn_qkv (d, 3d) P('data', 'model')     attn_out (d, d)  P('model', 'data')
  mlp_up   (d, 4d) P('data', 'model')     mlp_down (4d, d) P('model', 'data')
  mlp_up_bias (4d,) P('model')            ln1_scale, ln2_scale (d,) P('data')

and each optimizer's state is laid out by
``alada_optax.sharding.state_shardings``. The update alone (``tx.update`` +
``optax.apply_updates``, with those shardings in and out) is compiled for both
kinds of mesh axes (``AxisType.Auto``: the SPMD partitioner picks the
intermediate layouts; ``AxisType.Explicit``: sharding in types, where the
optimizers pin some layouts themselves), and its HLO is read with
``alada_optax.hlo``: the collectives by kind, the largest one, and the bytes
one step moves per device (each collective's result size per device, the
convention of :mod:`alada_optax.hlo`). Where the update branches, bytes per
step are the mean over the steady state's steps (Alada: its even and odd
steps; Subspace-Momentum: 199 steps between projector refreshes and one
refresh), and the *worst* step is the costliest branch of every
``conditional`` (a refresh). Each ``while`` body counts as many times as
XLA's known trip count says (Adapprox's power iterations run twice), as
``alada_optax.hlo.hlo_collective_bytes_per_step`` counts them.

For the optimizers named by ``--breakdown`` each matrix leaf is also compiled
alone, which says which leaf and which operation (the op name XLA keeps in the
collective's metadata, e.g. ``_smmf_leaf/reshape``) moves what.

Writes ``collectives.md`` and ``collectives.json`` under ``--out`` (default
``out/collectives``), prints the markdown; nothing runs on an accelerator
(JAX_PLATFORMS defaults to cpu here).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
import time
import warnings
from typing import Any, Callable, Optional, Union

DEVICES = 8
MESH_SHAPE = (2, 4)
MESH_AXES = ('data', 'model')


if __name__ == '__main__':  # python -m benchmarks.collectives
  from benchmarks import simulated_devices  # pylint: disable=g-import-not-at-top
  simulated_devices.use_cpu_devices(DEVICES, 'benchmarks.collectives')

# pylint: disable=g-import-not-at-top,wrong-import-position
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import alada_optax
from alada_optax import hlo as hlo_lib
from alada_optax import sharding as ash

KINDS = ('all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all',
         'collective-permute')
MODES = {'auto': AxisType.Auto, 'explicit': AxisType.Explicit}
DEFAULT_OUT = os.path.join('out', 'collectives')
DEFAULT_BREAKDOWN = 'smmf,adapprox,adamw_snsm'


def layout(d: int) -> dict[str, tuple[tuple[int, ...], P]]:
  """name: (shape, PartitionSpec) of a transformer block of width ``d``."""
  f = 4 * d
  return {
      'attn_qkv': ((d, 3 * d), P('data', 'model')),
      'attn_out': ((d, d), P('model', 'data')),
      'mlp_up': ((d, f), P('data', 'model')),
      'mlp_down': ((f, d), P('model', 'data')),
      'mlp_up_bias': ((f,), P('model')),
      'ln1_scale': ((d,), P('data')),
      'ln2_scale': ((d,), P('data')),
  }


# Which branch of the update's conditionals a step takes, and how often: Alada
# refits p on even steps and q on odd ones (on CPU one lax.cond for the tree,
# whose HLO branches are (false, true): 1 refits p, 0 refits q; on GPU and TPU
# no conditional, both refits every step); Subspace-Momentum recomputes its
# projector once every update_proj_gap = 200 steps (lax.cond: branch 0 keeps
# it, branch 1 recomputes it). (label, branch index, steps per cycle).
CYCLES = {
    'alada': (('even step', 1, 1), ('odd step', 0, 1)),
    'adamw_snsm': (('between refreshes', 0, 199), ('projector refresh', 1, 1)),
}


def optimizers(quick: bool) -> dict[str, tuple[str, Callable[[], Any]]]:
  """name: (how it is built, factory). At full size the defaults take every
  method's matrix path (Adapprox factors, Subspace-Momentum projects); with
  ``quick`` (d = 64) smaller ranks keep them on it."""
  if quick:
    snsm = ('adamw_snsm(rank=8)', lambda: alada_optax.adamw_snsm(1e-3, rank=8))
    adapprox = ('adapprox(max_rank=4, min_dim_size_to_factor=16)',
                lambda: alada_optax.adapprox(1e-3, max_rank=4,
                                             min_dim_size_to_factor=16))
  else:
    snsm = ('adamw_snsm (rank 128)', lambda: alada_optax.adamw_snsm(1e-3))
    adapprox = ('adapprox (max rank 32)', lambda: alada_optax.adapprox(1e-3))
  return {
      'alada': ('alada', lambda: alada_optax.alada(1e-3)),
      'smmf': ('smmf', lambda: alada_optax.smmf(1e-3)),
      'came': ('came', lambda: alada_optax.came(1e-3)),
      'adapprox': adapprox,
      'adamw_snsm': snsm,
      'adam': ('optax.adam', lambda: optax.adam(1e-3)),
      'adafactor': ('optax.adafactor', lambda: optax.adafactor(1e-3)),
  }


# -- bytes per step, loops and branches -------------------------------------

def bytes_per_step(hlo_text: str, branch: Union[Callable, int] = max,
                   loops: bool = True) -> dict[str, int]:
  """``alada_optax.hlo.hlo_collective_bytes_per_step`` (its ``branch`` and
  ``loops``), with the number of loops XLA gave no trip count (counted once).
  """
  return {'bytes': hlo_lib.hlo_collective_bytes_per_step(
              hlo_text, branch, loops),
          'unknown_trip_counts': (hlo_lib.hlo_unknown_trip_counts(hlo_text)
                                  if loops else 0)}


def collectives_with_op_names(hlo_text: str) -> list[dict[str, Any]]:
  """Every collective (``alada_optax.hlo.hlo_collectives``) with the op name
  XLA kept in its metadata (the JAX operation it was made for), shortened."""
  return [{
      'op': c.op, 'shapes': [[dt, list(s)] for dt, s in c.shapes],
      'elements': c.elements, 'bytes': c.bytes,
      'computation': c.computation,
      'op_name': short_op_name(c.op_name) if c.op_name else None,
  } for c in hlo_lib.hlo_collectives(hlo_text)]


def short_op_name(name: str) -> str:
  """``jit(step)/jit(_smmf_leaf)/reshape`` -> ``_smmf_leaf/reshape``."""
  name = re.sub(r'^jit\(step\)/', '', name)
  return re.sub(r'jit\(([^()]*)\)', r'\1', name)


def describe(c: dict[str, Any]) -> str:
  """``all-gather f32[128,1024]``; a tuple as ``f32[256] + f32[256]``, or
  ``all-reduce of 8 arrays, the largest f32[256,128]`` past three."""
  name = lambda dt, s: f'{dt}[{",".join(map(str, s))}]'
  shapes = c['shapes']
  if len(shapes) > 3:
    dt, s = max(shapes, key=lambda x: math.prod(x[1]))
    return f'{c["op"]} of {len(shapes)} arrays, the largest {name(dt, s)}'
  return f'{c["op"]} ' + ' + '.join(name(dt, s) for dt, s in shapes)


# -- compiling the sharded update ------------------------------------------

def _abstract(tree, shardings):
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree, shardings)


def _shard_bytes(tree) -> int:
  return sum(math.prod(x.sharding.shard_shape(x.shape))
             * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def compile_update(tx, leaves: dict[str, tuple], mesh,
                   cycle: tuple = ()) -> dict[str, Any]:
  """Compiles ``tx``'s update of ``leaves`` on ``mesh``; what its HLO moves.

  ``cycle``: the steady state's steps as ``(label, branch, weight)`` (see
  ``CYCLES``); ``bytes_mean`` is their weighted mean (without conditionals,
  or without a cycle, the costliest branch: every step is alike).
  """
  psh = {k: NamedSharding(mesh, s) for k, (_, s) in leaves.items()}
  params = _abstract({k: jax.ShapeDtypeStruct(shape, jnp.float32)
                      for k, (shape, _) in leaves.items()}, psh)
  with jax.set_mesh(mesh), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ssh = ash.state_shardings(tx, params, psh)
    state = _abstract(jax.eval_shape(tx.init, params), ssh)

    def step(params, state, grads):
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    text = jax.jit(step, in_shardings=(psh, ssh, psh),
                   out_shardings=(psh, ssh)).lower(
                       params, state, params).compile().as_text()
  colls = collectives_with_op_names(text)
  largest = max(colls, key=lambda c: c['bytes'], default=None)
  worst = bytes_per_step(text, max)
  steps = {label: bytes_per_step(text, k)['bytes'] for label, k, _ in cycle}
  mean = (sum(steps[label] * w for label, _, w in cycle)
          / sum(w for *_, w in cycle)) if cycle else worst['bytes']
  return {
      'counts': {k: sum(c['op'] == k for c in colls) for k in KINDS},
      'other_kinds': sorted({c['op'] for c in colls} - set(KINDS)),
      'largest': largest,
      'largest_array_ndim': max((len(s) for c in colls for _, s in c['shapes']),
                                default=0),
      'conditionals': text.count(' conditional('),
      'bytes_steps': steps,
      'bytes_mean': mean,
      'bytes_worst': worst['bytes'],
      'bytes_loops_once': bytes_per_step(text, max, loops=False)['bytes'],
      'unknown_trip_counts': worst['unknown_trip_counts'],
      'state_bytes_per_device': _shard_bytes(state),
      'param_bytes': sum(math.prod(s) * 4 for s, _ in leaves.values()),
      'param_bytes_per_device': _shard_bytes(params),
      # The state fields state_shardings does not know (it replicates them).
      'warnings': sorted({m.group(1) for w in caught
                          if 'replicated' in str(w.message)
                          for m in re.finditer(r'\.(\w+)\[', str(w.message))}),
      'collectives': colls,
  }


def measure(width: int = 256, quick: bool = False,
            modes: tuple[str, ...] = tuple(MODES),
            only: Optional[tuple[str, ...]] = None,
            breakdown: tuple[str, ...] = tuple(DEFAULT_BREAKDOWN.split(',')),
            log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
  """The whole measurement (what ``main`` prints and writes).

  Needs ``DEVICES`` JAX devices: run it in a process that called
  ``_use_cpu_devices`` first (``python -m benchmarks.collectives``).
  """
  if jax.device_count() < DEVICES:
    raise RuntimeError(
        f'needs {DEVICES} devices, JAX has {jax.device_count()}: run python -m '
        'benchmarks.collectives (it sets up 8 simulated CPU devices)')
  leaves = layout(width)
  opts = optimizers(quick)
  names = [n for n in opts if only is None or n in only]
  out: dict[str, Any] = {
      'width': width, 'quick': quick,
      'mesh': dict(zip(MESH_AXES, MESH_SHAPE)),
      'leaves': {k: [list(s), str(p)] for k, (s, p) in leaves.items()},
      'optimizers': {n: opts[n][0] for n in names},
      'modes': {},
  }
  for mode in modes:
    mesh = jax.make_mesh(MESH_SHAPE, MESH_AXES,
                         axis_types=(MODES[mode],) * len(MESH_AXES),
                         devices=jax.devices()[:DEVICES])
    rows = {}
    for name in names:
      t0 = time.perf_counter()
      cycle = CYCLES.get(name, ())
      row = compile_update(opts[name][1](), leaves, mesh, cycle)
      if name in breakdown:
        row['leaves'] = {}
        for leaf, (shape, spec) in leaves.items():
          if len(shape) < 2:
            continue
          alone = compile_update(opts[name][1](), {leaf: (shape, spec)}, mesh,
                                 cycle)
          row['leaves'][leaf] = {
              k: alone[k] for k in ('bytes_mean', 'bytes_steps', 'bytes_worst',
                                    'param_bytes', 'param_bytes_per_device',
                                    'collectives', 'counts')}
      row['seconds'] = time.perf_counter() - t0
      log(f'{mode:8s} {name:10s} {row["seconds"]:5.1f} s  '
          f'{row["bytes_mean"]:,.0f} (worst {row["bytes_worst"]:,}) bytes per'
          ' step')
      rows[name] = row
    out['modes'][mode] = rows
  return out


# -- the report ------------------------------------------------------------

def _kib(n: int) -> str:
  return f'{n:,}' if n < 10_000 else f'{n / 1024:,.1f} KiB'


def _largest_cell(row) -> str:
  c = row['largest']
  return '-' if c is None else f'{describe(c)} ({_kib(c["bytes"])})'


def summary_table(result: dict[str, Any], mode: str) -> list[str]:
  rows = result['modes'][mode]
  head = ('| optimizer | ' + ' | '.join(KINDS)
          + ' | largest collective | bytes/step | worst step | bytes/step'
          ' / params | state bytes/device |')
  lines = [head, '|---|' + '---:|' * len(KINDS) + '---|---:|---:|---:|---:|']
  for name, row in rows.items():
    counts = ' | '.join(str(row['counts'][k]) for k in KINDS)
    ratio = row['bytes_mean'] / row['param_bytes']
    note = ' ¹' if row['warnings'] else ''
    lines.append(
        f'| {result["optimizers"][name]}{note} | {counts}'
        f' | {_largest_cell(row)}'
        f' | {_kib(round(row["bytes_mean"]))} | {_kib(row["bytes_worst"])}'
        f' | {ratio:.3g} | {_kib(row["state_bytes_per_device"])} |')
  return lines


def steps_line(result: dict[str, Any], mode: str) -> str:
  """The bytes of each kind of step, where the update branches."""
  parts = []
  for name, row in result['modes'][mode].items():
    if row['bytes_steps']:
      steps = ', '.join(f'{label} {v:,}'
                        for label, v in row['bytes_steps'].items())
      parts.append(f'{result["optimizers"][name]}: {steps}, worst'
                   f' {row["bytes_worst"]:,}')
    elif row['conditionals']:
      parts.append(f'{result["optimizers"][name]}: {row["conditionals"]}'
                   ' conditionals, counted at their costliest branch')
  return ('Bytes per step by kind of step: ' + '; '.join(parts) + '.'
          if parts else '')


def breakdown_table(result: dict[str, Any], mode: str,
                    top: int = 3) -> list[str]:
  lines = ['| optimizer | leaf | bytes/step (worst) | / leaf bytes'
           ' | largest collectives (bytes) and the op they were made for |',
           '|---|---|---:|---:|---|']
  for name, row in result['modes'][mode].items():
    for leaf, info in row.get('leaves', {}).items():
      shape, spec = result['leaves'][leaf]
      colls = sorted(info['collectives'], key=lambda c: -c['bytes'])[:top]
      what = '; '.join(
          f'{describe(c)} ({_kib(c["bytes"])})'
          + (f' ← `{c["op_name"]}`' if c['op_name'] else ' (no op name)')
          for c in colls) or '-'
      mean = round(info['bytes_mean'])
      worst = ('' if info['bytes_worst'] == mean
               else f' ({_kib(info["bytes_worst"])})')
      lines.append(
          f'| {result["optimizers"][name]} | `{leaf}` {tuple(shape)} {spec}'
          f' | {_kib(mean)}{worst}'
          f' | {info["bytes_mean"] / info["param_bytes"]:.3g} | {what} |')
  return lines


def markdown(result: dict[str, Any], command: str, seconds: float,
             info: dict[str, Any]) -> str:
  first = next(iter(result['modes'].values()))
  row = next(iter(first.values()))
  lines = [
      f'`{command}` ({seconds:.0f} s wall; {info["cpu"]}, {info["cpu_cores"]}'
      f' cores; jax {info["jax"]}, optax {info["optax"]}).',
      '',
      f'{DEVICES} simulated CPU devices, mesh {result["mesh"]}; a transformer'
      f' block of width {result["width"]}: params {row["param_bytes"]:,} bytes'
      f' ({row["param_bytes_per_device"]:,} per device). Counts: the'
      ' collectives of the compiled update (`tx.update` + `apply_updates`), by'
      ' kind (every branch of a conditional, a loop body once). Bytes: per'
      ' device, each collective\'s result; bytes/step is the mean over the'
      ' steady state\'s steps (loop bodies times their trip count), worst'
      ' step the costliest branch of every conditional.',
  ]
  for mode in result['modes']:
    lines += ['', f'### {mode} mesh axes (AxisType.{MODES[mode].name})', '']
    lines += summary_table(result, mode)
    steps = steps_line(result, mode)
    if steps:
      lines += ['', steps]
    if any('leaves' in r for r in result['modes'][mode].values()):
      lines += ['', f'Each matrix leaf alone ({mode} axes; / leaf bytes: bytes'
                ' per device per step over the whole leaf\'s bytes):', '']
      lines += breakdown_table(result, mode)
  notes = sorted({f'{result["optimizers"][n]}\'s `{", ".join(r["warnings"])}`'
                  for m in result['modes'].values()
                  for n, r in m.items() if r['warnings']})
  if notes:
    lines += ['', '¹ `state_shardings` warns about state it does not know and'
              ' replicates it: ' + '; '.join(notes) + '.']
  return '\n'.join(lines) + '\n'


def machine() -> dict[str, Any]:
  cpu = None
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((l.split(':', 1)[1].strip() for l in f
                  if l.startswith('model name')), None)
  except OSError:
    pass
  return {'cpu': cpu or 'unknown CPU', 'cpu_cores': os.cpu_count(),
          'jax': jax.__version__, 'optax': optax.__version__,
          'devices': jax.device_count(),
          'platform': jax.devices()[0].platform}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.collectives', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', default=DEFAULT_OUT,
                      help='folder for collectives.md and collectives.json '
                           '(default: %(default)s, under the current '
                           'directory; git-ignored)')
  parser.add_argument('--quick', action='store_true',
                      help='width 64 (smaller ranks for adapprox and '
                           'adamw_snsm, so that they still take their matrix '
                           'paths); compiling dominates the time, so it is '
                           'hardly faster: --only, --modes and --breakdown '
                           'cut it')
  parser.add_argument('--width', type=int, default=None,
                      help='model width d (default 256, 64 with --quick); '
                           'divisible by 8')
  parser.add_argument('--modes', default=','.join(MODES),
                      help='mesh axis types, from %(default)s')
  parser.add_argument('--only', default=None,
                      help='comma-separated optimizers to measure, from '
                           + ','.join(optimizers(False)) + ' (default: all)')
  parser.add_argument('--breakdown', default=DEFAULT_BREAKDOWN,
                      help='comma-separated optimizers whose matrix leaves are '
                           'also compiled one at a time (default: '
                           '%(default)s; "" for none)')
  return parser


def parse_args(argv=None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  names = set(optimizers(False))
  for flag in ('only', 'breakdown'):
    value = getattr(args, flag)
    chosen = tuple(n for n in (value or '').split(',') if n)
    if set(chosen) - names:
      parser.error(f'--{flag}: unknown {sorted(set(chosen) - names)}; choose '
                   f'from {",".join(names)}')
    setattr(args, flag, chosen if (chosen or flag == 'breakdown') else None)
  args.modes = tuple(m for m in args.modes.split(',') if m)
  if not args.modes or set(args.modes) - set(MODES):
    parser.error(f'--modes: choose from {",".join(MODES)}')
  if args.width is None:
    args.width = 64 if args.quick else 256
  if args.width % 8:
    parser.error('--width must be divisible by 8 (the mesh shards it)')
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  start = time.perf_counter()
  log = lambda s: print(f'[{time.perf_counter() - start:5.0f} s] {s}',
                        flush=True)
  info = machine()
  result = measure(args.width, args.quick, args.modes, args.only,
                   args.breakdown, log)
  seconds = time.perf_counter() - start
  command = shlex.join(['python', '-m', 'benchmarks.collectives',
                        *(argv if argv is not None else sys.argv[1:])])
  report = markdown(result, command, seconds, info)
  print(report)
  os.makedirs(args.out, exist_ok=True)
  md = os.path.join(args.out, 'collectives.md')
  js = os.path.join(args.out, 'collectives.json')
  with open(md, 'w', encoding='utf-8') as f:
    f.write(report)
  with open(js, 'w', encoding='utf-8') as f:
    json.dump({'machine': info, 'seconds': seconds, 'command': command,
               **result}, f, indent=1)
  print(f'wrote {md}, {js}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
