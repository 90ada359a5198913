"""What a compiled step moves between devices and to memory, read off its
HLO text.

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
# A computation's first line, with its signature (optimized HLO) or without
# (the unoptimized HLO of jax.jit(...).lower(...).as_text(dialect='hlo')).
_ANY_COMPUTATION_RE = re.compile(
    r'^(?:ENTRY\s+)?%?([\w.\-]+)\s*(?:\(.*\)\s*->.*)?\{\s*$')


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


def _computations(
    hlo_text: str) -> tuple[dict[str, list[str]], Optional[str]]:
  """Each computation's lines by name, and the entry computation's name."""
  bodies: dict[str, list[str]] = {}
  entry = computation = None
  for line in hlo_text.splitlines():
    m = _ANY_COMPUTATION_RE.match(line)
    if m:
      computation = m.group(1)
      bodies[computation] = []
      if line.startswith('ENTRY'):
        entry = computation
    elif computation is not None:
      bodies[computation].append(line)
  return bodies, entry


def _branch_picker(branch: Union[Callable[[list[int]], int], int]
                   ) -> Callable[[list[int]], int]:
  """The ``branch`` argument of the per-step counts, as a function of the
  branches' costs."""
  return branch if callable(branch) else (
      lambda costs: costs[min(branch, len(costs) - 1)])


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

  pick = _branch_picker(branch)
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

# Instructions that touch no buffer themselves (an async op's `-done` is
# counted at its `-start`; control flow through its computations).
_NO_TRAFFIC = frozenset((
    'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast',
    'after-all', 'partition-id', 'replica-id', 'opt-barrier', 'iota',
    'add-dependency', 'domain'))
_INSTRUCTION_RE = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\(.*?\)|\S+)\s+([a-z][a-z0-9\-]*)'
    r'\((.*)$')
_ARRAY_RE = re.compile(r'\b([a-z][a-z0-9]*)\[([0-9,]*)\](\{[^}]*\})?')
_MEMORY_SPACE_RE = re.compile(r'\bS\((\d+)\)')


def _arrays(hlo_type: str) -> list[tuple[int, int]]:
  """``(bytes, memory space)`` of each array of an HLO type, in order."""
  out = []
  for dtype, dims, layout in _ARRAY_RE.findall(hlo_type):
    if dtype in _DTYPE_BYTES:
      space = _MEMORY_SPACE_RE.search(layout or '')
      out.append((math.prod(int(d) for d in dims.split(',') if d)
                  * _DTYPE_BYTES[dtype], int(space.group(1)) if space else 0))
  return out


def hlo_memory_bytes_per_step(
    hlo_text: str,
    branch: Union[Callable[[list[int]], int], int] = max,
    loops: bool = True,
    memory_space: int = 0,
) -> int:
  """Bytes one run of a compiled program reads and writes in main memory.

  Each top-level instruction (a kernel: a fusion, a custom call, a copy;
  not the instructions inside fusions) counts its operands and its results
  that live in ``memory_space``: 0, the device's main memory (HBM on TPU
  and GPU). An asynchronous copy or slice counts where it touches that
  memory (the part sliced, not its whole source). On TPU the compiler's
  memory-space assignment keeps some buffers in on-chip memory (``S(1)``,
  VMEM, in the optimized HLO's layouts), prefetching and evicting them with
  asynchronous copies: those accesses are not main-memory traffic and are
  not counted here, while ``compiled.cost_analysis()['bytes accessed']``
  counts both sides of every copy and the on-chip reads and writes too.

  An upper bound where a kernel reads only part of an operand (a slice
  inside a fusion) and where a cache serves repeated reads; conditionals and
  loops count as in :func:`hlo_collective_bytes_per_step`.

  Args:
    hlo_text: the optimized HLO text (``compiled.as_text()``).
    branch: picks among a ``conditional``'s branches (see
      :func:`hlo_collective_bytes_per_step`).
    loops: a ``while`` body counts as many times as its ``known_trip_count``
      (once where XLA does not know it); with ``False``, once.
    memory_space: the memory space counted (0: main memory).

  Returns:
    The bytes.

  Examples:
    A kernel that reads 8 floats and writes 8, and a copy of them into
    on-chip memory (``S(1)``) that reads them once more from main memory:

    >>> hlo_text = '''
    ... HloModule step
    ... %fused (p: f32[8]) -> f32[8] {
    ...   %p = f32[8]{0} parameter(0)
    ...   ROOT %m = f32[8]{0} multiply(%p, %p)
    ... }
    ... ENTRY %main (x: f32[8]) -> (f32[8], f32[8]) {
    ...   %x = f32[8]{0} parameter(0)
    ...   %f = f32[8]{0} fusion(%x), kind=kLoop, calls=%fused
    ...   %s = (f32[8]{0:S(1)}, f32[8]{0}, u32[]{:S(2)}) copy-start(%x)
    ...   %d = f32[8]{0:S(1)} copy-done(%s)
    ...   ROOT %t = (f32[8]{0}, f32[8]{0:S(1)}) tuple(%f, %d)
    ... }
    ... '''
    >>> from alada_optax.hlo import hlo_memory_bytes_per_step
    >>> hlo_memory_bytes_per_step(hlo_text)
    96
  """
  bodies, entry = _computations(hlo_text)
  pick = _branch_picker(branch)
  main = lambda arrays: sum(b for b, space in arrays if space == memory_space)
  memo: dict[str, int] = {}

  def cost(name: str) -> int:
    if name in memo:
      return memo[name]
    memo[name] = 0  # guards against cycles
    types: dict[str, str] = {}
    total = 0
    for line in bodies.get(name, []):
      m = _INSTRUCTION_RE.match(line)
      if not m:
        continue
      result, hlo_type, op, rest = m.groups()
      types[result] = hlo_type
      if op == 'conditional':
        names = _TRUE_FALSE_RE.findall(rest) or [
            n.strip().lstrip('%') for b in _BRANCHES_RE.findall(rest)
            for n in b.split(',')]
        total += pick([cost(n) for n in names])
        continue
      if op == 'while':
        trips = _TRIP_COUNT_RE.search(rest)
        n = int(trips.group(1)) if loops and trips else 1
        total += n * cost(_BODY_RE.search(rest).group(1))
        total += (n + bool(loops and trips)) * cost(
            _CONDITION_RE.search(rest).group(1))
        continue
      if op == 'call':
        total += sum(cost(c) for c in _CALLS_RE.findall(rest))
        continue
      if op in _NO_TRAFFIC or op.endswith('-done'):
        continue
      operands = re.findall(r'%([\w.\-]+)', rest.split(')', 1)[0])
      read = [a for o in operands for a in _arrays(types.get(o, ''))]
      written = _arrays(hlo_type)
      if op == 'copy-start':  # (destination, source, context)
        total += main(written[:2])
      elif op in ('slice-start', 'slice', 'dynamic-slice'):
        # ((source), destination, context), or the slice itself.
        part = written[-2] if op == 'slice-start' else written[0]
        total += main([part]) + main([(part[0], read[0][1])] if read else [])
      else:
        if op.endswith('-start') and len(written) > 1:
          written = written[len(written) // 2:]  # (operands..., results...)
        total += main(written) + main(read)
    memo[name] = total
    return total

  return cost(entry) if entry is not None else sum(cost(n) for n in bodies)


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
  bodies, _ = _computations(hlo_text)
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
