r"""Alada's first moment in 8 bits: how alada_optax._quantize's maps do.

    python -m benchmarks.research.quantized_moment               # all, CPU
    python -m benchmarks.research.quantized_moment --only roundtrip,ema
    python -m benchmarks.research.quantized_moment --only compile
    python -m benchmarks.research.quantized_moment --only lm [--bits 4]
    TPU_VENV/bin/python -m benchmarks.research.quantized_moment \
        --only compile --target v5e     # deviceless, see docs/accelerators.md
    GPU_VENV/bin/python -m benchmarks.research.quantized_moment \
        --only compile --target h100

Every map of ``_quantize.MAPS``, blocks of 64 and 256, nearest and stochastic
rounding, on five kinds of float32 data (1024 x 1024 for the round trips,
256 x 1024 for the runs of 500 steps; 128 x 512 with ``--small``):

* ``gauss``: N(0, 1); ``t2``: Student-t with 2 degrees of freedom;
* ``rows``, ``cols``: an Adam-like first moment, the EMA (b1 = 0.9) of 200
  steps of gradients ``sigma (0.1 a + n_t)`` (``a`` a fixed N(0, 1)
  signal; the noise ``n_t`` one of 32 N(0, 1) arrays drawn once, its signs
  flipped per entry by a hash of ``t // 32``) whose scale ``sigma`` is
  ``10^U(-6, 0)`` per row (an embedding's rows: each block sees one scale)
  or per column (every block mixes six decades); ``cols2``: the same with
  ``10^U(-2, 0)`` per column (two decades).

Sections (``--only``; all by default):

* ``roundtrip``: ``decode(encode(x))`` against ``x``: the RMS of the
  relative error over the non-zero entries, the RMS of the error in units of
  the entry's scale ``sigma`` relative to the data's RMS in those units
  (``norm``), the fraction of non-zero entries decoded to 0 (``underflow``),
  and the largest error over its block's absmax;
* ``candidates``: nearest rounding, blocks of 256, to the levels of the
  maps considered (and of a square map and mu-law maps, not kept), by a
  sorted search in NumPy: the relative error, ``norm``, the underflow;
* ``ema``: ``M <- dec(enc(b1 M + (1 - b1) g))`` for 500 steps (the counter is
  the step) beside the float32 EMA of the same gradients (those of ``gauss``:
  ``0.1 a + n``; ``t2``: ``0.1 a`` plus Student-t noise; the others as
  above): ``norm`` and ``underflow`` of the last step, and the mean of
  ``|M_q| - |M|`` in ``sigma`` units over the RMS (``bias``);
* ``idle``: after 200 quantized steps of ``rows``, 500 steps in which 64
  whole rows and 10% of the other entries get a zero gradient: the step by
  which every idle entry inside the active rows decodes to exactly 0, their
  largest residue over their block's absmax at step 500, and the idle rows'
  largest ``|M_500| / |M_0|`` (float32: ``0.9^500 = 1.3e-23``). Nearest
  rounding is run as is and with ``toward_zero=(g == 0)``;
* ``compile``: the naive fold and requantize of one 50304 x 768 leaf,
  ``(codes, scales, g) -> encode(b1 decode(codes, scales) + (1 - b1) g)``,
  donated, compiled for ``--target`` (``cpu``; ``v5e``, ``h100``
  deviceless): temporaries, bytes accessed (CPU and TPU), kernels, and on
  CPU the median time of 5 runs; beside the float32 and bfloat16 folds,
  blocks of 64, the fold that also returns the new M as stored (what Alada's
  refit and step read), a leaf whose last axis (700) is not a multiple of
  the block, and a what-if that cuts the blocks by slices and selects
  instead of a reshape; and the decode alone (times ``g``, not timed);
* ``lm`` (not in the default: about 4 minutes, 9 with ``--bits 4``): the suite's benchmark LM
  (``benchmarks.methods.task``, as ``python -m benchmarks.run`` trains it)
  with Alada's fp32 ``M`` and 8-bit ``M`` (``Int8()``), three data orders
  (keys 7, 8, 9) at Alada's recommended rate (the middle of its grid), the
  grid at key 7, and eight data orders (keys 7-14) at the grid's top rate,
  where the task is at the edge of stability: the held-out loss and the
  state over the fp32 params. With
  ``--bits 4`` the same for a 4-bit stretch instead: 15 levels (codes -7..7,
  ``_quantize``'s largest code set to 7 for the run) of the linear, cubic and
  quartic maps in blocks of 256, and linear in blocks of 64; the codes are
  held in int8 containers, and the state is counted as packed (half a byte
  a code), which ``_quantize`` does not implement.
"""

import argparse
import contextlib
import functools
import math
import os
import sys
import time

TARGET_ENV = {  # as benchmarks.accelerators sets them, before jax loads
    'v5e': {'TPU_SKIP_MDS_QUERY': '1', 'TF_CPP_MIN_LOG_LEVEL': '2',
            'ALLOW_MULTIPLE_LIBTPU_LOAD': '1'},
    'h100': {'JAX_SKIP_CUDA_CONSTRAINTS_CHECK': '1',
             'CUDA_VISIBLE_DEVICES': '-1', 'TF_CPP_MIN_LOG_LEVEL': '2'},
}
if '--target' in sys.argv[:-1]:  # before jax loads its plugins
  for _k, _v in TARGET_ENV.get(sys.argv[sys.argv.index('--target') + 1],
                               {}).items():
    os.environ.setdefault(_k, _v)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from alada_optax import _quantize as q  # pylint: disable=wrong-import-position

B1 = 0.9
DATA = ('gauss', 't2', 'rows', 'cols', 'cols2')
BLOCKS = (64, 256)


def formats():
  for map_name in q.MAPS:
    for block in BLOCKS:
      for stochastic in (False, True):
        yield q.Int8(map_name, block, stochastic)


def label(fmt, toward_zero=False, sep=' | '):
  rounding = 'stochastic' if fmt.stochastic else (
      'nearest, toward_zero' if toward_zero else 'nearest')
  return sep.join([fmt.map, str(fmt.block_size), rounding])


# -- data ---------------------------------------------------------------------

BANK = 32  # noise arrays drawn once; step t uses bank[t % BANK], its sign
           # flipped per entry by a hash of t // BANK


class Data:
  """One kind of data: each entry's scale, the signal, the noise bank."""

  def __init__(self, kind, shape):
    rng = np.random.default_rng(DATA.index(kind))
    self.kind, self.shape = kind, shape
    s = np.ones(shape)
    if kind == 'rows':
      s = s * 10.0**rng.uniform(-6, 0, (shape[0], 1))
    elif kind == 'cols':
      s = s * 10.0**rng.uniform(-6, 0, (1, shape[1]))
    elif kind == 'cols2':
      s = s * 10.0**rng.uniform(-2, 0, (1, shape[1]))
    self.sigma = jnp.asarray(s, jnp.float32)
    self.signal = jnp.asarray(0.1 * rng.standard_normal(shape), jnp.float32)
    draw = ((lambda: rng.standard_t(2, shape)) if kind == 't2'
            else (lambda: rng.standard_normal(shape)))
    self.bank = jnp.asarray(np.stack([draw() for _ in range(BANK)]),
                            jnp.float32)
    self.samples = jnp.asarray(draw(), jnp.float32)  # round-trip data

  @property
  def args(self):
    return self.sigma, self.signal, self.bank


def gradient(args, t):
  """The gradient of step t: sigma (signal + noise_t)."""
  sigma, signal, bank = args
  flip = (q.random_bits(signal.shape, t // BANK, 99) & 1) == 1
  noise = jax.lax.dynamic_index_in_dim(bank, t % BANK, keepdims=False)
  return sigma * (signal + jnp.where(flip, -noise, noise))


@jax.jit
def warm_ema(args):
  def body(t, m):
    return B1 * m + (1 - B1) * gradient(args, t)
  return jax.lax.fori_loop(0, 200, body, jnp.zeros(args[1].shape))


def roundtrip_data(data):
  """Gaussian and Student-t samples; the others' 200-step EMA."""
  return data.samples if data.kind in ('gauss', 't2') else warm_ema(data.args)


# -- round trips --------------------------------------------------------------

def _absmax(scales, fmt, n):
  """Each entry's block absmax."""
  return q._expand(  # pylint: disable=protected-access
      scales, fmt.block_size, n)


@functools.partial(jax.jit, static_argnums=1)
def roundtrip_stats(x, fmt, s):
  codes, scales = q.encode(x, fmt, counter=0)
  dec = q.decode(codes, scales, fmt)
  err = dec - x
  nz = x != 0
  rel = jnp.where(nz, err / jnp.where(nz, x, 1), 0)
  absmax = _absmax(scales, fmt, x.shape[-1])
  return {
      'rel': jnp.sqrt(jnp.sum(rel**2) / jnp.sum(nz)),
      'norm': jnp.sqrt(jnp.mean((err / s)**2) / jnp.mean((x / s)**2)),
      'underflow': jnp.sum(nz & (dec == 0)) / jnp.sum(nz),
      'max': jnp.max(jnp.where(absmax > 0, jnp.abs(err) / absmax, 0)),
  }


def roundtrip(shape):
  lines = ['| map | block | rounding | ' + ' | '.join(
      f'{k}: rel RMS | norm | underflow | max/absmax' for k in DATA) + ' |',
           '|---|---:|---|' + '---:|' * (4 * len(DATA))]
  data = [Data(k, shape) for k in DATA]
  xs = [(roundtrip_data(d), d.sigma) for d in data]
  for fmt in formats():
    cells = []
    for x, s in xs:
      r = {n: float(v) for n, v in roundtrip_stats(x, fmt, s).items()}
      cells += [f'{r["rel"]:.3g}', f'{r["norm"]:.3g}',
                f'{r["underflow"]:.2e}', f'{r["max"]:.4f}']
    lines.append(f'| {label(fmt)} | ' + ' | '.join(cells) + ' |')
  return lines


# -- candidate maps, by table ------------------------------------------------

def candidate_levels():
  """128 levels of each map measured before choosing (float64)."""
  k = np.arange(128) / 127
  out = {name: np.asarray(q.levels(name), np.float64) for name in q.MAPS}
  out['square'] = k**2
  for mu in (255, 4096, 1e5):
    out[f'mu-law {mu:g}'] = np.expm1(k * np.log1p(mu)) / mu
  return out


def candidates(shape, block=256):
  """Nearest rounding to each candidate's levels, by a sorted search."""
  lines = ['| map | max/absmax | smallest level | ' + ' | '.join(
      f'{k}: rel RMS | norm | underflow' for k in DATA) + ' |',
           '|---|---:|---:|' + '---:|' * (3 * len(DATA))]
  data = [Data(k, shape) for k in DATA]
  xs = [(np.asarray(roundtrip_data(d), np.float64).reshape(-1, block),
         np.asarray(d.sigma, np.float64).reshape(-1, block)) for d in data]
  for name, lev in candidate_levels().items():
    cells = [f'{np.max(np.diff(lev)) / 2:.4f}', f'{lev[1]:.1e}']
    for x, s in xs:
      absmax = np.max(np.abs(x), axis=-1, keepdims=True)
      y = np.abs(x) / np.where(absmax > 0, absmax, 1)
      k = np.clip(np.searchsorted(lev, y, side='right') - 1, 0, 126)
      lo, hi = lev[k], lev[k + 1]
      dec = np.sign(x) * absmax * np.where(y - lo > hi - y, hi, lo)
      err, nz = dec - x, x != 0
      cells += [f'{np.sqrt(np.mean((err[nz] / x[nz])**2)):.3g}',
                f'{np.sqrt(np.mean((err / s)**2) / np.mean((x / s)**2)):.3g}',
                f'{np.mean(dec[nz] == 0):.2e}']
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


# -- EMA through the quantizer ------------------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def ema_stats(fmt, args, steps=500):
  shape = args[1].shape
  def body(t, carry):
    m, mq = carry
    g = gradient(args, t)
    m = B1 * m + (1 - B1) * g
    codes, scales = q.encode(B1 * mq + (1 - B1) * g, fmt, counter=t)
    return m, q.decode(codes, scales, fmt)
  zeros = jnp.zeros(shape)
  m, mq = jax.lax.fori_loop(0, steps, body, (zeros, zeros))
  s = args[0]
  rms = jnp.sqrt(jnp.mean((m / s)**2))
  nz = m != 0
  return {
      'norm': jnp.sqrt(jnp.mean(((mq - m) / s)**2)) / rms,
      'underflow': jnp.sum(nz & (mq == 0)) / jnp.sum(nz),
      'bias': jnp.mean((jnp.abs(mq) - jnp.abs(m)) / s) / rms,
  }


def ema(shape):
  lines = ['| map | block | rounding | ' + ' | '.join(
      f'{k}: norm | underflow | bias' for k in DATA) + ' |',
           '|---|---:|---|' + '---:|' * (3 * len(DATA))]
  data = [Data(k, shape) for k in DATA]
  for fmt in formats():
    cells = []
    for d in data:
      r = {n: float(v) for n, v in ema_stats(fmt, d.args).items()}
      cells += [f'{r["norm"]:.3g}', f'{r["underflow"]:.2e}',
                f'{r["bias"]:+.2e}']
    lines.append(f'| {label(fmt)} | ' + ' | '.join(cells) + ' |')
  return lines


# -- idle entries -------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=(0, 1))
def idle_stats(fmt, toward_zero, args):
  shape = args[1].shape
  idle_rows = jnp.arange(shape[0])[:, None] < 64
  scattered = (jax.random.uniform(jax.random.key(5), shape) < 0.1) & ~idle_rows
  idle = idle_rows | scattered

  def step(t, mq, g):
    codes, scales = q.encode(B1 * mq + (1 - B1) * g, fmt, counter=t,
                             toward_zero=(g == 0) if toward_zero else None)
    return q.decode(codes, scales, fmt)

  m0 = jax.lax.fori_loop(0, 200, lambda t, m: step(t, m, gradient(args, t)),
                         jnp.zeros(shape))

  def body(t, carry):
    mq, first = carry
    mq = step(t, mq, jnp.where(idle, 0, gradient(args, t)))
    done = ~jnp.any(scattered & (mq != 0))
    return mq, jnp.where((first < 0) & done, t - 199, first)
  mq, first = jax.lax.fori_loop(200, 700, body, (m0, jnp.int32(-1)))
  _, scales = q.encode(mq, fmt, counter=0)
  absmax = _absmax(scales, fmt, shape[-1])
  residue = jnp.max(jnp.where(scattered, jnp.abs(mq) / jnp.where(
      absmax > 0, absmax, 1), 0))
  ratio = jnp.abs(mq) / jnp.where(m0 != 0, jnp.abs(m0), 1)
  return {'first': first, 'residue': residue,
          'rows': jnp.max(jnp.where(idle_rows & (m0 != 0), ratio, 0)),
          'rows_zero': jnp.all(jnp.where(idle_rows, mq == 0, True))}


def idle(shape):
  lines = ['| map | block | rounding | scattered idle: all 0 by step | '
           'their residue / absmax at 500 | idle rows: max abs(M_500 / M_0) | '
           'rows exactly 0 |', '|---|---:|---|---:|---:|---:|---|']
  args = Data('rows', shape).args
  lines.append(f'| float32 M | | | > 500 | <= {B1**500:.1e} | '
               f'{B1**500:.2e} | False |')
  for fmt in formats():
    for toward in ((False, True) if not fmt.stochastic else (False,)):
      r = idle_stats(fmt, toward, args)
      first = int(r['first'])
      lines.append(
          f'| {label(fmt, toward)} | {first if first >= 0 else "> 500"} | '
          f'{float(r["residue"]):.2e} | {float(r["rows"]):.2e} | '
          f'{bool(r["rows_zero"])} |')
  return lines


# -- compile facts ------------------------------------------------------------

def _kernels(text):
  """Fusions and custom calls of the ENTRY computation."""
  entry = text[text.index('ENTRY'):]
  entry = entry[:entry.index('\n}')]
  return sum(line.count(' fusion(') + line.count(' custom-call(')
             for line in entry.splitlines())


@contextlib.contextmanager
def _sliced_blocks(on):
  """What if the blocks were cut without a reshape (a what-if for TPU).

  The block maxima from one reduction per block of a slice of the last axis,
  and each entry's scale picked by a chain of selects on its block index,
  in place of ``_quantize``'s reshape to ``(..., nblocks, block)`` (a
  relayout on TPU, whose tiles span the last two axes).
  """
  if not on:
    yield
    return
  saved = q._block_absmax, q._expand  # pylint: disable=protected-access

  def absmax(a, block):
    return jnp.concatenate(
        [jnp.max(a[..., i:i + block], axis=-1, keepdims=True)
         for i in range(0, a.shape[-1], block)], axis=-1)

  def expand(scales, block, n):
    shape = scales.shape[:-1] + (n,)
    which = jax.lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1) // block
    out = jnp.broadcast_to(scales[..., :1], shape)
    for b in range(1, scales.shape[-1]):
      out = jnp.where(which == b, scales[..., b:b + 1], out)
    return out

  # pylint: disable-next=protected-access
  q._block_absmax, q._expand = absmax, expand
  try:
    yield
  finally:
    q._block_absmax, q._expand = saved  # pylint: disable=protected-access


def compile_facts(target, leaf=(50304, 768)):
  if target == 'cpu':
    device = jax.devices('cpu')[0]
  else:
    from benchmarks import accelerators  # pylint: disable=g-import-not-at-top
    device = accelerators.topology(target).devices[0]
  sharding = jax.sharding.SingleDeviceSharding(device)
  b1 = jnp.float32(B1)

  def spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

  programs = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    def fold(m, g, dtype=dtype):
      return (b1 * m.astype(jnp.float32) + (1 - b1) * g).astype(dtype)
    programs[f'{jnp.dtype(dtype).name} M: fold'] = (
        fold, (spec(leaf, dtype), spec(leaf, jnp.float32)), (0,))
  cases = [(q.Int8(m, 256, s), leaf, False, False)
           for m in q.MAPS for s in (False, True)]
  cases += [(q.Int8('cubic', 64, False), leaf, False, False),
            (q.Int8('cubic', 256, False), leaf, True, False),
            (q.Int8('linear', 256, False), leaf, True, False),
            (q.Int8('cubic', 256, False), (leaf[0], 700), False, False),
            (q.Int8('cubic', 256, False), leaf, False, True)]
  for fmt, shape, returns_m, sliced in cases:
    def requantize(codes, scales, g, fmt=fmt, returns_m=returns_m,
                   sliced=sliced):
      with _sliced_blocks(sliced):
        m = b1 * q.decode(codes, scales, fmt) + (1 - b1) * g
        new = q.encode(m, fmt, counter=jnp.uint32(7))
        return new + (q.decode(*new, fmt),) if returns_m else new
    name = (f'{label(fmt, sep=" ")}: decode, fold, encode'
            + (', new M as stored' if returns_m else '')
            + (f' ({shape[0]} x {shape[1]})' if shape != leaf else '')
            + (', blocks by slices and selects' if sliced else ''))
    programs[name] = (requantize, (
        spec(shape, jnp.int8),
        spec(q.scales_shape(shape, fmt.block_size), jnp.float32),
        spec(shape, jnp.float32)), (0, 1))

  cpu, tpu = target == 'cpu', target == 'v5e'
  fmt = q.Int8('cubic', 256)
  for sliced in (False, True):
    def scale_by(codes, scales, g, sliced=sliced):
      with _sliced_blocks(sliced):
        return q.decode(codes, scales, fmt) * g
    programs['cubic 256: decode times g' + (
        ', blocks by slices and selects' if sliced else '')] = (scale_by, (
            spec(leaf, jnp.int8), spec(q.scales_shape(leaf, 256), jnp.float32),
            spec(leaf, jnp.float32)), ())

  lines = [f'| program ({target}) | temporaries MiB | full-size f32 temporary '
           '| kernels |' + (' bytes accessed / entry |' if cpu or tpu else '')
           + (' CPU ms |' if cpu else ''),
           '|---|---:|---|---:|' + ('---:|' if cpu or tpu else '')
           + ('---:|' if cpu else '')]
  for name, (fn, args, donate) in programs.items():
    compiled = jax.jit(fn, donate_argnums=donate).lower(*args).compile()
    mem = compiled.memory_analysis()
    temp = mem.temp_size_in_bytes
    n = math.prod(args[0].shape)
    try:
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      accessed = (cost or {}).get('bytes accessed')
    except Exception:  # pylint: disable=broad-except
      accessed = None
    ms = ''
    if target == 'cpu':
      inputs = [jnp.zeros(a.shape, a.dtype) + (0 if a.dtype == jnp.int8 else 1)
                for a in args]
      runs = []
      for _ in range(6 if donate else 0):
        fresh = [x.copy() if i in donate else x for i, x in enumerate(inputs)]
        start = time.perf_counter()
        jax.block_until_ready(compiled(*fresh))
        runs.append(time.perf_counter() - start)
      ms = f'{1e3 * float(np.median(runs[1:])):.1f}' if runs else ''
    lines.append(
        f'| {name} | {temp / 2**20:.1f} | {"yes" if temp >= 4 * n else "no"} '
        f'| {_kernels(compiled.as_text())} |'
        + (f' {accessed / n:.1f} |' if cpu or tpu else '')
        + (f' {ms} |' if cpu else ''))
  return lines


def lm(bits, small=False):
  """The ``lm`` section: the benchmark LM's held-out loss per variant
  (``small``: the suite's ``--quick`` task, a smoke run)."""
  import optax  # pylint: disable=g-import-not-at-top
  import alada_optax  # pylint: disable=g-import-not-at-top
  from benchmarks import harness, methods  # pylint: disable=g-import-not-at-top
  if bits == 8:
    variants = {'fp32 M': None, '8-bit, cubic, 256': q.Int8()}
  else:  # Set before anything is traced: every level and search reads it.
    q._TOP = 2**(bits - 1) - 1  # pylint: disable=protected-access
    variants = {f'{bits}-bit, {m}, {b}': q.Int8(m, b) for m, b in (
        ('linear', 256), ('cubic', 256), ('quartic', 256), ('linear', 64))}
  t = methods.task(small)
  model, data = t.lm, t.lm_data()
  params = harness.concrete_params(model)
  stream, heldout = jnp.asarray(data.train), jnp.asarray(data.heldout)
  grid = methods.METHODS['Alada'].grid
  top = range(7, 15)  # data orders at the grid's top rate
  runs = ([(7, lr) for lr in grid] + [(8, grid[1]), (9, grid[1])]
          + [(k, grid[-1]) for k in top if k != 7])
  lines = [f'Alada on the benchmark LM ({model.name}, {t.steps} steps); '
           f'held-out loss at lr {grid[1]:g}, keys 7 / 8 / 9, at key 7 '
           f'over the grid {", ".join(f"{lr:g}" for lr in grid)}, and at lr '
           f'{grid[-1]:g} for keys {top[0]}-{top[-1]} (their median)', '',
           '| M | state / fp32 params | keys 7, 8, 9 | grid at key 7 | '
           f'lr {grid[-1]:g}, keys {top[0]}-{top[-1]} (median) |',
           '|---|---:|---|---|---|']
  for name, fmt in variants.items():
    tx = optax.inject_hyperparams(
        lambda learning_rate, fmt=fmt: alada_optax.alada(
            learning_rate, mu_dtype=fmt))(learning_rate=grid[1])
    state0 = jax.eval_shape(tx.init, params)
    compiled = jax.jit(methods.lm_program(model, tx, t.steps, t.warmup)).lower(
        params, state0, jax.random.key(7), stream, heldout).compile()
    stored = sum(x.size * (bits / 8 if x.dtype == jnp.int8 else
                           x.dtype.itemsize) for x in jax.tree.leaves(state0))
    loss = {}
    for key, lr in runs:
      state = tx.init(params)
      state.hyperparams['learning_rate'] = jnp.asarray(lr, jnp.float32)
      loss[key, lr] = float(compiled(params, state, jax.random.key(key),
                                     stream, heldout)[0])
    lines.append(
        f'| {name} | {stored / harness.tree_bytes(params):.4f}x | '
        + ', '.join(f'{loss[k, grid[1]]:.4f}' for k in (7, 8, 9)) + ' | '
        + ', '.join(f'{loss[7, lr]:.4f}' for lr in grid) + ' | '
        + ', '.join(f'{loss[k, grid[-1]]:.4f}' for k in top)
        + f' ({np.median([loss[k, grid[-1]] for k in top]):.4f}) |')
    print(lines[-1], flush=True)
  return lines


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.research.quantized_moment',
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--only',
                      default='roundtrip,candidates,ema,idle,compile',
                      help='comma-separated sections (default: all)')
  parser.add_argument('--target', default='cpu', choices=('cpu', 'v5e', 'h100'),
                      help="the compile section's compiler: this machine's "
                      'CPU, or deviceless TPU v5e / H100 (from the side '
                      "environment that has its plugin)")
  parser.add_argument('--small', action='store_true',
                      help='128 x 512 data; for lm, the suite\'s --quick task '
                      '(a smoke run)')
  parser.add_argument('--bits', type=int, default=8, choices=(8, 4),
                      help="the lm section's codes: 8 (fp32 and 8-bit M) or "
                      '4 (the 4-bit stretch)')
  args = parser.parse_args(argv)
  shapes = {'roundtrip': (1024, 1024), 'candidates': (1024, 1024),
            'ema': (256, 1024), 'idle': (256, 1024)}
  start = time.perf_counter()
  print(f'jax {jax.__version__}, {jax.devices()[0].platform}, '
        f'{os.cpu_count()} cores; target {args.target}')
  sections = {'roundtrip': roundtrip, 'candidates': candidates, 'ema': ema,
              'idle': idle}
  for name in args.only.split(','):
    shape = (128, 512) if args.small else shapes.get(name)
    print(f'\n## {name}' + (f', data {shape[0]} x {shape[1]}\n'
                             if name not in ('compile', 'lm') else '\n'))
    if name == 'lm':
      lines = lm(args.bits, args.small)
    else:
      lines = (compile_facts(args.target) if name == 'compile'
               else sections[name](shape))
    print('\n'.join(lines), flush=True)
  print(f'\n{time.perf_counter() - start:.0f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
