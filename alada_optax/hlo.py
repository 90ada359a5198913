"""What a compiled step moves between devices, read off its HLO text.

A diagnostic, apart from the optimizers' hot path: the sharded example and
the sharding tests use it to check that a sharded update moves only
vector-sized data::

  compiled = jax.jit(step, in_shardings=..., out_shardings=...).lower(
      *args).compile()
  for c in hlo.hlo_collectives(compiled.as_text()):
    print(c.op, c.shapes, c.bytes)
  print(hlo.hlo_collective_bytes_per_step(compiled.as_text()))

``python -m benchmarks.collectives`` tabulates it for every optimizer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import NamedTuple, Optional, Union

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
_WHILE_RE = re.compile(r'\swhile\(')
_BODY_RE = re.compile(r'\bbody=%?([\w.\-]+)')
_CONDITION_RE = re.compile(r'\bcondition=%?([\w.\-]+)')
_TRIP_COUNT_RE = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CALLS_RE = re.compile(r'\b(?:calls|to_apply)=%?([\w.\-]+)')
_OP_NAME_RE = re.compile(r'op_name="([^"]*)"')


class Collective(NamedTuple):
  """One collective of a compiled HLO module (see :func:`hlo_collectives`).

  Attributes:
    op: e.g. ``'all-reduce'``.
    shapes: ``((dtype, shape), ...)`` of its result, per device.
    elements: number of elements in ``shapes``.
    bytes: their size in bytes.
    computation: the HLO computation it is in.
    op_name: the JAX operation XLA made it for, from its metadata (e.g.
      ``jit(step)/jit(_smmf_leaf)/reshape``), or None.
  """

  op: str
  shapes: tuple
  elements: int
  bytes: int
  computation: Optional[str]
  op_name: Optional[str] = None


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

  Args:
    hlo_text: the HLO text of a compiled step (``compiled.as_text()``).

  Returns:
    A list of :class:`Collective` ``(op, shapes, elements, bytes,
    computation, op_name)``.

  Examples:
    A hand-written module whose two branches move 8 and 16 floats (a real
    one needs several devices; its text reads the same):

    >>> hlo_text = '''
    ... HloModule step
    ... %even (x: f32[8]) -> f32[8] {
    ...   %x = f32[8]{0} parameter(0)
    ...   ROOT %r = f32[8]{0} all-reduce(%x), to_apply=%add
    ... }
    ... %odd (x: f32[8]) -> f32[16] {
    ...   %x = f32[8]{0} parameter(0)
    ...   ROOT %r = f32[16]{0} all-gather(%x), dimensions={0}
    ... }
    ... ENTRY %main (i: s32[], x: f32[8]) -> f32[8] {
    ...   %i = s32[] parameter(0)
    ...   %x = f32[8]{0} parameter(1)
    ...   ROOT %c = f32[8]{0} conditional(%i, %x, %x), branch_computations={%even, %odd}
    ... }
    ... '''
    >>> from alada_optax.hlo import hlo_collectives
    >>> for c in hlo_collectives(hlo_text):
    ...   print(c.op, c.shapes, c.bytes, c.computation)
    all-reduce (('f32', (8,)),) 32 even
    all-gather (('f32', (16,)),) 64 odd
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
    name = _OP_NAME_RE.search(line)
    out.append(Collective(op, tuple(shapes), elements, nbytes, computation,
                          name.group(1) if name else None))
  return out


def hlo_collective_bytes_per_step(
    hlo_text: str,
    branch: Union[Callable[[list[int]], int], int] = max,
    loops: bool = True,
) -> int:
  """Bytes per device of the collectives one run of the entry computation makes.

  Args:
    hlo_text: the compiled step's HLO text.
    branch: picks among a ``conditional``'s branches: a function of their
      costs (``max``, the default: the costliest step; ``min``: the cheapest)
      or the index of the branch every conditional takes (the last one where
      it has fewer; ``lax.switch``'s order, ``lax.cond``'s
      ``(false, true)``). Alada's even steps are ``branch=0``, its odd ones
      ``branch=1``.
    loops: a ``while`` body counts as many times as its
      ``known_trip_count`` (once where XLA does not know it: see
      :func:`hlo_unknown_trip_counts`); with ``False``, once.

  Returns:
    The bytes, as :func:`hlo_collectives` sizes them.

  Examples:
    The module of :func:`hlo_collectives`' example, whose conditional runs
    one of its two branches:

    >>> hlo_text = '''
    ... HloModule step
    ... %even (x: f32[8]) -> f32[8] {
    ...   %x = f32[8]{0} parameter(0)
    ...   ROOT %r = f32[8]{0} all-reduce(%x), to_apply=%add
    ... }
    ... %odd (x: f32[8]) -> f32[16] {
    ...   %x = f32[8]{0} parameter(0)
    ...   ROOT %r = f32[16]{0} all-gather(%x), dimensions={0}
    ... }
    ... ENTRY %main (i: s32[], x: f32[8]) -> f32[8] {
    ...   %i = s32[] parameter(0)
    ...   %x = f32[8]{0} parameter(1)
    ...   ROOT %c = f32[8]{0} conditional(%i, %x, %x), branch_computations={%even, %odd}
    ... }
    ... '''
    >>> from alada_optax.hlo import hlo_collective_bytes_per_step
    >>> hlo_collective_bytes_per_step(hlo_text)  # the costlier branch
    64
    >>> hlo_collective_bytes_per_step(hlo_text, branch=min)
    32
    >>> hlo_collective_bytes_per_step(hlo_text, branch=0)
    32
  """
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
      calls[computation].append(('branch', names, 1))
      continue
    true_false = _TRUE_FALSE_RE.findall(line)
    if true_false:
      calls[computation].append(('branch', true_false, 1))
      continue
    body = _BODY_RE.search(line)
    if body and _WHILE_RE.search(line):
      trips = _TRIP_COUNT_RE.search(line)
      n = int(trips.group(1)) if (loops and trips) else 1
      calls[computation].append(('call', [body.group(1)], n))
      condition = _CONDITION_RE.search(line)
      if condition:  # evaluated once more than the body runs
        calls[computation].append(
            ('call', [condition.group(1)], n + 1 if loops and trips else 1))
      continue
    for name in _CALLS_RE.findall(line):
      calls[computation].append(('call', [name], 1))

  pick = branch if callable(branch) else (
      lambda costs: costs[min(branch, len(costs) - 1)])
  memo: dict[str, int] = {}

  def cost(name):
    if name not in memo:
      memo[name] = 0  # guards against cycles
      total = own.get(name, 0)
      for kind, names, times in calls.get(name, []):
        costs = [cost(n) for n in names]
        total += times * (pick(costs) if kind == 'branch' else sum(costs))
      memo[name] = total
    return memo[name]

  return sum(own.values()) if entry is None else cost(entry)


def hlo_unknown_trip_counts(hlo_text: str) -> int:
  """The ``while`` loops whose trip count XLA does not know.

  :func:`hlo_collective_bytes_per_step` counts the body of each such loop
  once.

  Args:
    hlo_text: the HLO text of a compiled program.

  Returns:
    The number of ``while`` instructions without a ``known_trip_count``.

  Examples:
    A loop that stops on a value is one XLA cannot count:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> from alada_optax.hlo import hlo_unknown_trip_counts
    >>> def f(x):
    ...   return jax.lax.while_loop(lambda x: x.sum() < 10, lambda x: x + 1, x)
    >>> compiled = jax.jit(f).lower(jnp.zeros(4)).compile()
    >>> hlo_unknown_trip_counts(compiled.as_text())
    1
  """
  return sum(1 for line in hlo_text.splitlines()
             if _WHILE_RE.search(line) and _BODY_RE.search(line)
             and not _TRIP_COUNT_RE.search(line))


class Structure(NamedTuple):
  """What a compiled program launches, read off its HLO text.

  Attributes:
    kernels: ``fusion`` and ``custom-call`` instructions of the computations
      that are not themselves fused (ENTRY, the branches of conditionals,
      loop bodies): a kernel launch each, on a GPU, where they run (every
      branch is counted, though one runs per step).
    conditionals: ``conditional`` instructions (``lax.cond``,
      ``lax.switch``); on XLA:GPU each copies its branch index to the host
      and waits for the device.
    whiles: ``while`` instructions (on XLA:GPU the predicate is read on the
      host every iteration).
    collectives: cross-device collectives (:func:`hlo_collectives`).
  """

  kernels: int
  conditionals: int
  whiles: int
  collectives: int


_KERNEL_RE = re.compile(r'\s(?:fusion|custom-call)\(')
_FUSION_CALLS_RE = re.compile(r'\sfusion\(.*?\bcalls=%?([\w.\-]+)')
_CONDITIONAL_RE = re.compile(r'\sconditional\(')
# A computation's first line, with its signature (optimized HLO) or without
# (the unoptimized HLO of jax.jit(...).lower(...).as_text(dialect='hlo')).
_ANY_COMPUTATION_RE = re.compile(
    r'^(?:ENTRY\s+)?%?([\w.\-]+)\s*(?:\(.*\)\s*->.*)?\{\s*$')


def hlo_structure(hlo_text: str) -> Structure:
  """Kernels, control flow and collectives of an HLO module's text.

  Works on the optimized HLO of any backend (``compiled.as_text()``) and on
  the unoptimized one (``lowered.as_text(dialect='hlo')``), where there are
  no fusions yet but the control flow the program asks for is all there.

  Args:
    hlo_text: the HLO text, optimized or not.

  Returns:
    A :class:`Structure` ``(kernels, conditionals, whiles, collectives)``.

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from alada_optax.hlo import hlo_structure
    >>> def f(x, i):
    ...   return jax.lax.cond(i > 0, lambda x: 2 * x, lambda x: x + 1, x)
    >>> lowered = jax.jit(f).lower(jnp.zeros(4), 1)
    >>> hlo_structure(lowered.as_text(dialect='hlo'))
    Structure(kernels=0, conditionals=1, whiles=0, collectives=0)
  """
  bodies: dict[str, list[str]] = {}
  computation = None
  for line in hlo_text.splitlines():
    m = _ANY_COMPUTATION_RE.match(line)
    if m:
      computation = m.group(1)
      bodies[computation] = []
    elif computation is not None:
      bodies[computation].append(line)
  fused = {m.group(1) for lines in bodies.values() for line in lines
           for m in [_FUSION_CALLS_RE.search(line)] if m}
  kernels = conditionals = whiles = 0
  for name, lines in bodies.items():
    if name in fused:
      continue
    for line in lines:
      kernels += bool(_KERNEL_RE.search(line))
      conditionals += bool(_CONDITIONAL_RE.search(line))
      whiles += bool(_WHILE_RE.search(line))
  return Structure(kernels, conditionals, whiles,
                   len(hlo_collectives(hlo_text)))
