"""What a compiled step moves between devices, read off its HLO text.

A diagnostic, apart from the optimizers' hot path: the sharded example and
the sharding tests use it to check that a sharded update moves only
vector-sized data::

  compiled = jax.jit(step, in_shardings=..., out_shardings=...).lower(
      *args).compile()
  for c in hlo.hlo_collectives(compiled.as_text()):
    print(c.op, c.shapes, c.bytes)
  print(hlo.hlo_collective_bytes_per_step(compiled.as_text()))
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple, Optional

_COLLECTIVES = (
    'all-reduce', 'all-gather', 'reduce-scatter', 'all-to-all',
    'collective-permute', 'collective-broadcast', 'ragged-all-to-all',
)
_DTYPE_BYTES = {
    'pred': 1, 's4': 1, 'u4': 1, 's8': 1, 'u8': 1, 's16': 2, 'u16': 2,
    's32': 4, 'u32': 4, 's64': 8, 'u64': 8, 'f8e4m3fn': 1, 'f8e5m2': 1,
    'bf16': 2, 'f16': 2, 'f32': 4, 'f64': 8, 'c64': 8, 'c128': 16,
}
_SHAPE_RE = re.compile(r'\b([a-z][a-z0-9]*)\[([0-9,]*)\]')
_COMPUTATION_RE = re.compile(
    r'^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->.*\{\s*$')
_COLLECTIVE_RE = re.compile(
    r'^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.*?)\s+('
    + '|'.join(_COLLECTIVES) + r')(-start)?\('
)
_BRANCHES_RE = re.compile(r'branch_computations=\{([^}]*)\}')
_TRUE_FALSE_RE = re.compile(r'(?:true|false)_computation=%?([\w.\-]+)')
_CALLS_RE = re.compile(r'\b(?:calls|body|to_apply)=%?([\w.\-]+)')


class Collective(NamedTuple):
  """One collective of a compiled HLO module (see :func:`hlo_collectives`).

  Attributes:
    op: e.g. ``'all-reduce'``.
    shapes: ``((dtype, shape), ...)`` of its result, per device.
    elements: number of elements in ``shapes``.
    bytes: their size in bytes.
    computation: the HLO computation it is in.
  """

  op: str
  shapes: tuple
  elements: int
  bytes: int
  computation: Optional[str]


def hlo_collectives(hlo_text: str) -> list[Collective]:
  """The cross-device collectives of a compiled step's HLO text.

  Use it to check what a sharded step moves between devices::

    compiled = jax.jit(step, in_shardings=..., out_shardings=...).lower(
        *args).compile()
    for c in hlo_collectives(compiled.as_text()):
      print(c.op, c.shapes, c.bytes)

  Sizes are read from each instruction's result type, per device: the buffer
  an all-reduce reduces, the gathered result of an all-gather, the buffer an
  all-to-all or collective-permute exchanges. Collectives inside both branches
  of a ``lax.cond`` are listed (only one branch runs in a step; see
  :func:`hlo_collective_bytes_per_step`).

  Returns:
    A list of :class:`Collective` ``(op, shapes, elements, bytes,
    computation)``.
  """
  out = []
  computation = None
  for line in hlo_text.splitlines():
    m = _COMPUTATION_RE.match(line)
    if m:
      computation = m.group(1)
      continue
    m = _COLLECTIVE_RE.match(line)
    if not m:
      continue
    result_type, op, start = m.group(1), m.group(2), m.group(3)
    shapes = [
        (dt, tuple(int(d) for d in dims.split(',') if d))
        for dt, dims in _SHAPE_RE.findall(result_type)
        if dt in _DTYPE_BYTES
    ]
    if start and len(shapes) > 1:
      # An async start's type is (operands..., results...): keep the results.
      shapes = shapes[len(shapes) // 2:]
    elements = sum(math.prod(s) for _, s in shapes)
    nbytes = sum(math.prod(s) * _DTYPE_BYTES[dt] for dt, s in shapes)
    out.append(Collective(op, tuple(shapes), elements, nbytes, computation))
  return out


def hlo_collective_bytes_per_step(hlo_text: str) -> int:
  """Bytes (per device) of the collectives one run of the entry computation
  executes, taking for each ``conditional`` its costliest branch and counting
  a ``while`` body once."""
  own: dict[str, int] = {}
  for c in hlo_collectives(hlo_text):
    own[c.computation] = own.get(c.computation, 0) + c.bytes
  calls: dict[str, list] = {}
  entry = computation = None
  for line in hlo_text.splitlines():
    m = _COMPUTATION_RE.match(line)
    if m:
      computation = m.group(1)
      if line.startswith('ENTRY'):
        entry = computation
      calls.setdefault(computation, [])
      continue
    if computation is None:
      continue
    branches = _BRANCHES_RE.search(line)
    if branches:
      names = [n.strip().lstrip('%') for n in branches.group(1).split(',')]
      calls[computation].append(('max', names))
      continue
    true_false = _TRUE_FALSE_RE.findall(line)
    if true_false:
      calls[computation].append(('max', true_false))
      continue
    for name in _CALLS_RE.findall(line):
      calls[computation].append(('sum', [name]))

  memo: dict[str, int] = {}

  def cost(name):
    if name not in memo:
      memo[name] = 0  # guards against cycles
      total = own.get(name, 0)
      for kind, names in calls.get(name, []):
        costs = [cost(n) for n in names]
        total += max(costs) if kind == 'max' else sum(costs)
      memo[name] = total
    return memo[name]

  if entry is None:
    return sum(own.values())
  return cost(entry)
