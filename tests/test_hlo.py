"""alada_optax.hlo.hlo_memory_bytes_per_step: what a program moves in memory.

The TPU-shaped module below is written by hand as XLA:TPU prints its
optimized HLO (layouts with memory spaces: ``S(1)`` on-chip, none for HBM),
so the accounting is tested without libtpu; a real CPU program checks that
the parser reads what XLA:CPU prints.
"""

import jax
import jax.numpy as jnp

from alada_optax import hlo

F = 4 * 1024  # bytes of an f32[1024]

_HLO = '\n'.join([
    'HloModule m',
    '%fused (p: f32[1024], q: f32[1024]) -> f32[1024] {',
    '  %p = f32[1024]{0} parameter(0)',
    '  %q = f32[1024]{0} parameter(1)',
    '  ROOT %m = f32[1024]{0} multiply(%p, %q)',
    '}',
    '%small (x: f32[1024]) -> f32[1024] {',
    '  %x = f32[1024]{0:T(1024)} parameter(0)',
    '  ROOT %n = f32[1024]{0:T(1024)} negate(%x)',
    '}',
    '%big (x: f32[1024]) -> f32[1024] {',
    '  %x = f32[1024]{0:T(1024)} parameter(0)',
    '  %f = f32[1024]{0:T(1024)} fusion(%x, %x), kind=kLoop, calls=%fused',
    '  ROOT %g = f32[1024]{0:T(1024)} fusion(%f, %x), kind=kLoop, '
    'calls=%fused',
    '}',
    '%body (t: (s32[], f32[1024])) -> (s32[], f32[1024]) {',
    '  %t = (s32[], f32[1024]{0}) parameter(0)',
    '  %y = f32[1024]{0} get-tuple-element(%t), index=1',
    '  %z = f32[1024]{0} fusion(%y, %y), kind=kLoop, calls=%fused',
    '}',
    '%cond (t: (s32[], f32[1024])) -> pred[] {',
    '  %t = (s32[], f32[1024]{0}) parameter(0)',
    '  %i = s32[] get-tuple-element(%t), index=0',
    '  ROOT %lt = pred[] compare(%i, %i), direction=LT',
    '}',
    'ENTRY %main (a: f32[1024], b: f32[4096], c: s32[]) -> f32[1024] {',
    '  %a = f32[1024]{0:T(1024)} parameter(0)',
    '  %b = f32[4096]{0:T(1024)} parameter(1)',
    '  %c = s32[] parameter(2)',
    # Prefetched into VMEM: only its HBM side counts.
    '  %cs = (f32[1024]{0:T(1024)S(1)}, f32[1024]{0:T(1024)}, u32[]{:S(2)}) '
    'copy-start(%a)',
    '  %cd = f32[1024]{0:T(1024)S(1)} copy-done(%cs)',
    # A quarter of b sliced into VMEM: the quarter, once.
    '  %ss = ((f32[4096]{0:T(1024)}), f32[1024]{0:T(1024)S(1)}, s32[]{:S(2)}) '
    'slice-start(%b), slice={[0:1024]}',
    '  %sd = f32[1024]{0:T(1024)S(1)} slice-done(%ss)',
    # Reads both from VMEM, writes HBM: its result only.
    '  %k = f32[1024]{0:T(1024)} fusion(%cd, %sd), kind=kLoop, calls=%fused',
    # Reads HBM twice (the same operand counts each time), writes VMEM.
    '  %v = f32[1024]{0:T(1024)S(1)} fusion(%k, %k), kind=kLoop, '
    'calls=%fused',
    # Evicted to HBM: its HBM side.
    '  %es = (f32[1024]{0:T(1024)}, f32[1024]{0:T(1024)S(1)}, u32[]{:S(2)}) '
    'copy-start(%v)',
    '  %ed = f32[1024]{0:T(1024)} copy-done(%es)',
    '  %r = f32[1024]{0:T(1024)} conditional(%c, %ed, %ed), '
    'branch_computations={%small, %big}',
    '  %w = (s32[], f32[1024]{0}) while(%init), condition=%cond, body=%body, '
    'backend_config={"known_trip_count":{"n":"3"}}',
    '  ROOT %o = f32[1024]{0:T(1024)} bitcast(%r)',
    '}',
])


def test_counts_main_memory_only():
  entry = F + F + F + 2 * F + F  # cs, ss, k, v (reads), es
  small, big = 2 * F, 6 * F  # a negate; two fusions of 2 reads + 1 write
  body, condition = 3 * F, 2 * 4 + 1  # a compare of two s32[] to a pred[]
  loop = 3 * body + 4 * condition
  assert hlo.hlo_memory_bytes_per_step(_HLO) == entry + big + loop
  assert hlo.hlo_memory_bytes_per_step(_HLO, branch=min) == (
      entry + small + loop)
  assert hlo.hlo_memory_bytes_per_step(_HLO, branch=0) == entry + small + loop
  assert hlo.hlo_memory_bytes_per_step(_HLO, loops=False) == (
      entry + big + body + condition)
  # The on-chip side: both copies' VMEM ends, the slice's, the fusions'.
  assert hlo.hlo_memory_bytes_per_step(_HLO, memory_space=1) == 6 * F


def test_reads_what_xla_cpu_prints():
  x = jnp.zeros(1024, jnp.float32)
  compiled = jax.jit(lambda x: 2 * x + 1, donate_argnums=0).lower(x).compile()
  assert hlo.hlo_memory_bytes_per_step(compiled.as_text()) == 2 * F
