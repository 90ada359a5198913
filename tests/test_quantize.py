"""Tests of alada_optax._quantize: 8-bit codes with per-block absmax scales.

Most tests run one jitted round trip of every map at once on one of two
shapes (rows of 300 entries in blocks of 64: four full blocks and a short one
of 44; and (3, 2, 100) in blocks of 256: one short block), so the module
compiles a handful of programs.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alada_optax import _quantize as q
from tests import quantize_reference

MAPS = q.MAPS
ROWS, N, B = 16, 300, 64  # The main shape and block size.
F32_TINY = float(np.finfo(np.float32).tiny)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _all_maps(x, block_size, stochastic, dtype, counter=0, seed=0):
  """{map: (codes, scales, decoded)} of x, decoded as `dtype`."""
  out = {}
  for map_name in MAPS:
    fmt = q.Int8(map_name, block_size, stochastic)
    codes, scales = q.encode(x, fmt, counter=counter, seed=seed)
    out[map_name] = codes, scales, q.decode(codes, scales, fmt, dtype)
  return out


def _round_trip(x, block_size=B, stochastic=False, counter=0, seed=0,
                dtype=jnp.float32):
  out = _all_maps(jnp.asarray(x), block_size, stochastic, dtype, counter, seed)
  return {m: tuple(np.asarray(a) for a in v) for m, v in out.items()}


def _data(shape=(ROWS, N), seed=0, decades=3):
  """float32 values of random sign, log-uniform over `decades` decades."""
  rng = np.random.default_rng(seed)
  mag = 10.0**rng.uniform(-decades, 0, shape) * rng.choice([-1, 1], shape)
  return mag.astype(np.float32)


def _mixed(seed=0):
  """Rows of uniform, Gaussian and log-uniform (3 and 8 decades) values."""
  rng = np.random.default_rng(seed)
  x = _data(seed=seed, decades=3)
  x[:4] = rng.uniform(-1, 1, (4, N))
  x[4:8] = rng.standard_normal((4, N))
  x[8:12] = _data((4, N), seed + 1, decades=8)
  return x


# The independent float64 NumPy transcription of the format.
_np_levels = quantize_reference.levels
_np_bits = quantize_reference.bits
_np_encode = quantize_reference.encode
_np_decode = quantize_reference.decode


def _expand(scales, block_size=B, n=N):
  return np.repeat(np.asarray(scales, np.float64), block_size,
                   axis=-1)[..., :n]


# The format and its sizes.


def test_format_validation():
  assert q.Int8() == q.Int8('cubic', 256, False, 4096)
  for bad in [dict(map='log'), dict(block_size=0), dict(block_size=2.0),
              dict(block_size=True), dict(stochastic=1), dict(min_size=-1),
              dict(min_size=1.5)]:
    with pytest.raises(ValueError):
      q.Int8(**bad)
  with pytest.raises(ValueError, match='counter'):
    q.encode(jnp.ones(3), q.Int8(stochastic=True))
  with pytest.raises(ValueError, match='floating'):
    q.encode(jnp.ones(3, jnp.int32), q.Int8())


@pytest.mark.parametrize('shape, block_size, expected', [
    ((), 256, ()),
    ((0,), 64, (0,)),
    ((5,), 64, (1,)),
    ((768,), 256, (3,)),
    ((50304, 768), 256, (50304, 3)),
    ((16, 300), 64, (16, 5)),  # 4 full blocks and one of 44
    ((3, 2, 100), 256, (3, 2, 1)),
])
def test_scales_shape_and_bytes(shape, block_size, expected):
  fmt = q.Int8('linear', block_size)
  assert q.scales_shape(shape, block_size) == expected
  assert q.state_bytes(shape, fmt) == math.prod(shape) + 4 * math.prod(
      expected)
  out = jax.eval_shape(functools.partial(q.encode, fmt=fmt),
                       jax.ShapeDtypeStruct(shape, jnp.float32))
  assert out[0].shape == shape and out[0].dtype == jnp.int8
  assert out[1].shape == expected and out[1].dtype == jnp.float32


def test_scalars_and_empty():
  shapes = [(), (1,), (0,), (0, 5), (3, 0)]
  fmt = q.Int8('dynamic', 4)

  @jax.jit
  def run(xs):
    return [q.decode(*q.encode(x, fmt), fmt) for x in xs]

  xs = [jnp.full(shape, -2.5) for shape in shapes]
  for x, dec in zip(xs, run(xs)):
    assert dec.shape == x.shape
    np.testing.assert_array_equal(np.asarray(dec), np.asarray(x))


# The maps.


@pytest.mark.parametrize('map_name', MAPS)
def test_levels(map_name):
  lev = np.asarray(q.levels(map_name), np.float64)
  assert lev.shape == (128,) and lev[0] == 0 and lev[-1] == 1
  assert np.all(np.diff(lev) > 0)
  np.testing.assert_allclose(lev, _np_levels(map_name), rtol=6e-7, atol=0)
  assert q.max_error(map_name) == pytest.approx(
      np.max(np.diff(_np_levels(map_name))) / 2, rel=1e-12)


@pytest.mark.parametrize('map_name', ['linear', 'cubic', 'quartic'])
def test_lower_level_is_exact_but_within_roundings_of_a_level(map_name):
  """The power maps' level below y, found from a root of y without a search:
  the largest k in 0..126 with v_k <= y (float64 levels), off by one only
  within 16 float32 roundings of a level. Over 2^20 float32 values spread
  evenly over their bits in [2^-60, 1], each level and its neighbours."""
  lev = _np_levels(map_name)
  lo, hi = (np.array([2.0**-60, 1], np.float32).view(np.int32))
  spread = np.linspace(lo, hi, 2**20).astype(np.int32).view(np.float32)
  at = lev.astype(np.float32)
  near = (at[:, None].view(np.int32) + np.arange(-3, 4)).view(np.float32)
  y = np.concatenate([[0], spread, near.ravel()])
  y = y[(y >= 0) & (y <= 1)]
  p = q._POWERS[map_name]
  k = np.asarray(jax.jit(q._power_lower, static_argnums=1)(y, p))
  want = np.clip(np.searchsorted(lev, y.astype(np.float64), 'right') - 1, 0,
                 126)
  off = k != want
  gap = np.abs(y[off, None] - lev[None, :]).min(axis=1)
  assert np.all(np.abs(k - want) <= 1), map_name
  assert np.all(gap <= 16 * 2.0**-24 * y[off]), map_name


def test_cube_root_to_float32_rounding():
  """:func:`_cube_root` within 8 float32 roundings over [2^-60, 1], and 0
  (not NaN) at and below 2^-60."""
  lo, hi = (np.array([2.0**-60, 1], np.float32).view(np.int32))
  y = np.linspace(lo, hi, 2**20).astype(np.int32).view(np.float32)[1:]
  got = np.asarray(jax.jit(q._cube_root)(y), np.float64)
  want = np.cbrt(y.astype(np.float64))
  assert np.max(np.abs(got - want) / want) <= 8 * 2.0**-24
  edge = np.asarray(jax.jit(q._cube_root)(
      np.array([0, 1e-30, 2.0**-60, 0.125, 1], np.float32)))
  np.testing.assert_array_equal(edge[:3], 0)
  np.testing.assert_allclose(edge[3:], [0.5, 1], rtol=8 * 2.0**-24)


def test_max_errors():
  got = {m: round(q.max_error(m), 5) for m in MAPS}
  assert got == {'linear': 0.00394, 'dynamic': 0.00703, 'cubic': 0.01172,
                 'quartic': 0.01556}


# Round trips with nearest rounding.

CASES = [((ROWS, N), B), ((3, 2, 100), 256)]


@pytest.mark.parametrize('shape, block_size', CASES)
def test_round_trip_bound(shape, block_size):
  """|x - dec| <= max_error(map) * the block's absmax, tightly."""
  x = _mixed(1) if shape == (ROWS, N) else _data(shape, seed=1, decades=2)
  s_want = np.max(np.abs(np.pad(
      x, [(0, 0)] * (x.ndim - 1) + [(0, (-shape[-1]) % block_size)])
      .reshape(shape[:-1] + (-1, block_size))), axis=-1)
  for map_name, (_, scales, dec) in _round_trip(x, block_size).items():
    np.testing.assert_array_equal(scales, s_want)
    s = _expand(scales, block_size, shape[-1])
    err = np.abs(np.asarray(dec, np.float64) - x)
    assert np.all(err <= q.max_error(map_name) * s * (1 + 1e-6)), map_name
    if shape == (ROWS, N):  # Uniform rows come within 10% of the bound.
      assert np.max(err / s) > 0.9 * q.max_error(map_name), map_name
    # Each block's absmax round-trips exactly ('linear': within a rounding,
    # XLA computing (c / 127) s as c (s / 127)).
    at = np.abs(x) == s
    rel = 0 if map_name != 'linear' else 2**-23
    np.testing.assert_allclose(dec[at], x[at], rtol=rel, atol=0,
                               err_msg=map_name)


@pytest.mark.parametrize('shape, block_size', CASES)
def test_matches_numpy_transcription(shape, block_size):
  """Codes equal the float64 transcription's, but at float32 near-ties."""
  x = _data(shape, seed=2, decades=8)
  for map_name, (codes, scales, dec) in _round_trip(x, block_size).items():
    want, want_scales, margin = _np_encode(x, map_name, block_size)
    np.testing.assert_array_equal(scales, want_scales)
    near_tie = margin < 2.0**-20  # within ~16 float32 roundings
    assert near_tie.sum() <= 2, map_name
    codes = codes.astype(np.int64)
    np.testing.assert_array_equal(codes[~near_tie], want[~near_tie])
    assert np.all(np.abs(codes - want) <= 1)
    np.testing.assert_allclose(
        dec, _np_decode(codes, want_scales, map_name, block_size),
        rtol=6e-7, atol=0)


@pytest.mark.parametrize('stochastic', [False, True])
def test_zero_blocks_and_zero_entries(stochastic):
  x = _data(seed=3)
  x[1] = 0  # five zero blocks
  x[2, 64:128] = -0.0  # a block of negative zeros
  x[0, ::7] = 0  # zeros inside non-zero blocks
  x[3, 5] = -0.0
  x[4, 256:] = 0  # a zero short block
  zero = x == 0
  for map_name, (codes, scales, dec) in _round_trip(
      x, stochastic=stochastic, counter=7).items():
    assert np.all(codes[zero] == 0), map_name
    assert np.all(scales[1] == 0) and scales[2, 1] == 0 and scales[4, 4] == 0
    assert np.all(np.isfinite(dec)), map_name
    assert np.all(dec[zero] == 0), map_name
    if map_name != 'linear':  # 3 decades: nothing underflows
      assert np.all(dec[~zero] != 0), map_name


@pytest.mark.parametrize('stochastic', [False, True])
def test_sign_symmetry(stochastic):
  x = _data(seed=4, decades=6)
  pos = _round_trip(x, stochastic=stochastic, counter=1)
  neg = _round_trip(-x, stochastic=stochastic, counter=1)
  for map_name in MAPS:
    (codes, scales, dec), (n_codes, n_scales, n_dec) = pos[map_name], neg[
        map_name]
    np.testing.assert_array_equal(n_codes, -codes)
    np.testing.assert_array_equal(n_scales, scales)
    np.testing.assert_array_equal(n_dec, -dec)
    assert np.all(np.sign(codes[codes != 0]) == np.sign(x[codes != 0]))


def test_extreme_scales():
  """Scale-free from block absmax 1e-37 to the float32 max."""
  absmax = np.array([1e30, 3.0e38, 1e-30, 1e-37] * 4)[:, None]
  unit = _data(seed=5)
  unit[:, ::B] = 1  # every block's absmax
  x = (unit.astype(np.float64) * absmax).astype(np.float32)
  for map_name, (_, scales, dec) in _round_trip(x).items():
    dec = dec.astype(np.float64)
    assert np.all(np.isfinite(dec))
    s = _expand(scales)
    # Entries below the smallest normal may flush to zero.
    err = np.abs(dec - x)
    assert np.all(err <= q.max_error(map_name) * s * (1 + 1e-6) + 2 * F32_TINY)
    assert np.all(dec[:, ::B] == x[:, ::B])


def test_no_nan_inside_for_zero_blocks():
  """Eagerly, op by op, under debug_nans: no 0 / 0 anywhere.

  (Under jit a 0 / 0 would go unseen: XLA converts NaN to the int 0 and a
  comparison with NaN is false, so a zero block would still get zero codes.)
  """
  x = jnp.asarray([[0.0, -0.0, 0.0, 0.0, 1.0, 0.0, -2.0, 0.5]])
  fmt = q.Int8('linear', 4)
  with jax.debug_nans(True):
    dec = q.decode(*q.encode(x, fmt), fmt)
  assert np.all(np.asarray(dec)[0, :4] == 0)


def test_absmax_round_trips_where_the_bits_are_near_one():
  """The absmax decodes to itself where stochastic rounding draws u ~ 1.

  XLA may compute a / s as a * (1 / s) (on CPU it does for a divisor that is
  a broadcast), and 41 * (1 / 41) = 1 - 2^-24 would round down to v_126
  where u >= 1 - 2^-20, in every map (the largest top gap, quartic's, is
  0.031 > 2^-4). encode sets the absmax's ratio to 1 itself; on CPU its
  division is exact today, so this guards against a rewrite (or a backend's
  approximate division) rather than failing without the guard.
  """
  shape = (3, 2, 100)
  hits = [(c,) + tuple(i) for c in range(8192) for i in np.argwhere(
      (_np_bits(shape, c, 0) >> 8) >= 2**24 - 16)]
  assert len(hits) >= 3
  for counter, *where in hits:
    x = np.full(shape, 3.0, np.float32)
    x[tuple(where)] = 41.0
    for map_name, (_, _, dec) in _round_trip(
        x, 256, stochastic=True, counter=int(counter)).items():
      assert dec[tuple(where)] == 41.0, (map_name, counter)


def test_subnormal_blocks_decode_to_zero_or_within_the_bound():
  x = np.zeros((ROWS, N), np.float32)
  x[0, :3] = [1e-40, -3e-41, 5e-45]  # a subnormal block
  x[1, :2] = [2e-38, 1e-40]  # a normal absmax, a subnormal entry
  for map_name, (_, _, dec) in _round_trip(x).items():
    assert np.all(np.isfinite(dec))
    # XLA flushes subnormals: a subnormal block decodes as a zero block (or,
    # where a backend keeps them, within the bound).
    bound = q.max_error(map_name) * np.abs(x).max(-1, keepdims=True) * 1.01
    assert np.all((dec == 0) | (np.abs(dec - x) <= bound))
    assert dec[1, 0] == x[1, 0]


def test_mixed_decades_in_a_block():
  """Entries 10^-e and 3 10^-e, e = 0..12, in one block."""
  e = np.arange(13)
  x = np.zeros((ROWS, N), np.float32)
  x[0, :26] = np.concatenate([10.0**-e, -(10.0**-e) / 3])
  for map_name, (_, _, dec) in _round_trip(x).items():
    lev = _np_levels(map_name)
    y, d = x[0, :26].astype(np.float64), dec[0, :26].astype(np.float64)
    # Entries from the map's second level up keep the local relative gap;
    # those below half the first level underflow to 0.
    big = np.abs(y) >= lev[2]
    local = np.max(np.diff(lev)[1:] / lev[1:-1]) / 2
    assert np.all(np.abs(d - y)[big] <= local * np.abs(y[big]) * 1.001)
    assert np.all(d[np.abs(y) < lev[1] / 2 * 0.999] == 0)
    assert np.all(np.sign(d[d != 0]) == np.sign(y[d != 0]))
    assert np.all(d[np.abs(y) >= lev[1]] != 0)


def test_bfloat16():
  """bf16 in: the codes of its float32 value; bf16 out: one more rounding."""
  x = jnp.asarray(_mixed(6), jnp.bfloat16)
  x32 = np.asarray(x, np.float32)
  got = _round_trip(x, dtype=jnp.bfloat16)
  want = _round_trip(x32)
  for map_name in MAPS:
    codes, scales, dec = got[map_name]
    assert scales.dtype == np.float32 and dec.dtype == jnp.bfloat16
    np.testing.assert_array_equal(codes, want[map_name][0])
    np.testing.assert_array_equal(scales, want[map_name][1])
    err = np.abs(dec.astype(np.float64) - x32)
    assert np.all(err <= q.max_error(map_name) * _expand(scales) * 1.001
                  + np.abs(x32) * 2**-8)


def test_short_last_block_is_its_own():
  """Blocks are cut at multiples of 64: 256..299 is the last one."""
  x = np.full((ROWS, N), 0.5, np.float32)
  x[0, 299] = 8.0  # in the short last block
  x[1, 255] = -8.0  # the last entry of the fourth block
  x[2, 256] = 8.0  # the first of the short block
  codes, scales, dec = _round_trip(x)['linear']
  np.testing.assert_array_equal(scales[:3], [[0.5, 0.5, 0.5, 0.5, 8.0],
                                             [0.5, 0.5, 0.5, 8.0, 0.5],
                                             [0.5, 0.5, 0.5, 0.5, 8.0]])
  assert np.all(scales[3:] == 0.5)
  small = 8 / 127 * 8  # 0.5 / 8 * 127 = 7.94 rounds to 8
  want = x.copy()
  want[0, 256:299] = want[1, 192:255] = want[2, 257:] = small
  np.testing.assert_allclose(dec, want, rtol=1e-6)
  assert np.all(codes[3:] == 127)


# Stochastic rounding.


def test_random_bits_match_their_transcription():
  shape, counter, seed = (ROWS, N), 123456789, 42
  bits = jax.jit(q.random_bits, static_argnums=0)(shape, counter, seed)
  np.testing.assert_array_equal(np.asarray(bits),
                                _np_bits(shape, counter, seed))


def test_stochastic_matches_numpy_transcription():
  """With the transcription's bits: codes equal but at float32 near-ties."""
  counter, seed = 123456789, 42
  x = _data(seed=7, decades=6)
  u = (_np_bits(x.shape, counter, seed) >> 8) * 2.0**-24
  out = _round_trip(x, stochastic=True, counter=counter, seed=seed)
  for map_name, (codes, _, _) in out.items():
    want, _, margin = _np_encode(x, map_name, B, u=u)
    near = margin < 2.0**-20
    assert near.sum() <= 2, map_name
    np.testing.assert_array_equal(codes[~near], want[~near])


def test_random_bits_are_uniform_and_decorrelated():
  n = 1 << 16
  draw = jax.jit(lambda c, s: q._uniform((n,), c, s, jnp.float32))
  u, v, w = (np.asarray(draw(c, s), np.float64)
             for c, s in [(5, 0), (6, 0), (5, 1)])
  # Mean, variance, lag-1 and cross correlations within 5 standard errors.
  for a in (u, v, w):
    assert abs(a.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(a.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / math.sqrt(n)
  for a, b in [(u, v), (u, w)]:
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(n)
  # Each of the 24 bits used is set half of the time.
  bits = np.round(u * 2**24).astype(np.int64)
  ones = np.array([(bits >> b & 1).mean() for b in range(24)])
  assert np.all(np.abs(ones - 0.5) < 5 * math.sqrt(0.25 / n))


def test_stochastic_rounding_is_unbiased():
  """Means of ~6,300 roundings per value are within 5 standard errors.

  Every block starts with its absmax 1 and cycles through 12 values; 16
  counters times ~390 entries a value. A rounding between the levels lo and
  hi has a standard deviation of at most (hi - lo) / 2, so the mean of n
  independent ones is within 5 (hi - lo) / (2 sqrt(n)) but with probability
  below 6e-7 (the seeds are fixed: the test is deterministic).
  """
  vals = np.array([0.7071, -0.3, 0.123, -0.0456, 0.01, 3.3e-3, -7.7e-4, 2e-5,
                   -1.5e-6, 0.37e-6, 5.1e-8, 0.9999])
  pos = np.arange(N) % B
  x = np.where(pos == 0, 1.0, vals[(pos - 1) % len(vals)])
  x = np.tile(x.astype(np.float32), (ROWS, 1))
  which = np.broadcast_to(np.where(pos == 0, -1, (pos - 1) % len(vals)),
                          x.shape)
  sums = {m: np.zeros(len(vals)) for m in MAPS}
  counts = np.bincount(which[which >= 0], minlength=len(vals))
  counters = range(100, 116)
  for counter in counters:
    for map_name, (_, _, dec) in _round_trip(x, stochastic=True,
                                             counter=counter).items():
      assert np.all(dec[:, ::B] == 1)
      sums[map_name] += np.bincount(which[which >= 0],
                                    weights=dec[which >= 0].astype(np.float64),
                                    minlength=len(vals))
  y = x[0, 1:len(vals) + 1].astype(np.float64)
  n = counts * len(counters)
  for map_name in MAPS:
    lev = _np_levels(map_name)
    k = np.clip(np.searchsorted(lev, np.abs(y), side='right') - 1, 0, 126)
    tol = 5 * (lev[k + 1] - lev[k]) / (2 * np.sqrt(n)) + 1e-6 * np.abs(y)
    mean = sums[map_name] / n
    assert np.all(np.abs(mean - y) <= tol), (map_name, (mean - y) / tol)


def test_stochastic_rounding_is_deterministic():
  x = _data(seed=8)
  a = _round_trip(x, stochastic=True, counter=10)
  b = _round_trip(x, stochastic=True, counter=10)
  c = _round_trip(x, stochastic=True, counter=11)
  d = _round_trip(x, stochastic=True, counter=10, seed=1)
  for map_name in MAPS:
    np.testing.assert_array_equal(a[map_name][0], b[map_name][0])
    np.testing.assert_array_equal(a[map_name][1], b[map_name][1])
    for other in (c, d):
      codes, other_codes = (r[map_name][0].astype(int) for r in (a, other))
      assert 0.2 < np.mean(codes != other_codes) < 0.8, map_name
      assert np.all(np.abs(codes - other_codes) <= 1)


# A decaying moment.


def test_a_zero_gradients_moment_reaches_zero():
  """M <- Q(0.9 M) for entries whose gradient is 0, the block's scale held.

  Nearest rounding keeps a residue (0.9 v_1 rounds back to v_1, for every
  map); rounding them towards zero reaches exact 0 in 500 steps, as
  stochastic rounding does.
  """
  b1 = 0.9
  x = _data((1, B), seed=9)
  x[0, 0] = 1.0  # the entry that keeps its value (and the block's scale)
  idle = np.arange(B) > 0

  @jax.jit
  def run(m):
    out = {}
    for map_name in MAPS:
      for name, stochastic, toward in [('nearest', False, False),
                                       ('toward_zero', False, True),
                                       ('stochastic', True, False)]:
        fmt = q.Int8(map_name, B, stochastic)
        def body(t, m, fmt=fmt, toward=toward):
          codes, scales = q.encode(
              jnp.where(idle, b1 * m, m), fmt, counter=t,
              toward_zero=jnp.asarray(idle) if toward else None)
          return q.decode(codes, scales, fmt)
        out[map_name, name] = jax.lax.fori_loop(0, 500, body, m)
    return out

  for (map_name, name), m in run(jnp.asarray(x)).items():
    m = np.asarray(m)[0]
    assert m[0] == 1
    if name == 'nearest':
      assert np.count_nonzero(m[1:]) > 5, map_name
    else:
      np.testing.assert_array_equal(m[1:], 0, err_msg=f'{map_name} {name}')


@pytest.mark.parametrize('shape, block_size', [((16, 300), 64), ((3, 2, 100),
                                                                 32),
                                               ((5, 768), 256), ((4, 41), 1)])
def test_tpus_block_forms_are_the_reshapes_bit_for_bit(shape, block_size):
  """On TPU the blocks are told apart by masks (q._TPU_SELECT_BLOCKS): the
  same maxima and broadcasts as the reshapes CPU and GPU use."""
  a = jnp.abs(jnp.asarray(_data(shape, seed=7)))
  nblocks = -(-shape[-1] // block_size)
  want = np.max(np.pad(np.asarray(a), [(0, 0)] * (a.ndim - 1) + [
      (0, nblocks * block_size - shape[-1])]).reshape(
          shape[:-1] + (nblocks, block_size)), axis=-1)
  got = jax.jit(q._masked_absmax, static_argnums=1)(a, block_size)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(q._block_absmax(a, block_size), want)
  expanded = jax.jit(q._selected_expand, static_argnums=(1, 2))(
      jnp.asarray(want), block_size, shape[-1])
  np.testing.assert_array_equal(expanded, _expand(want, block_size, shape[-1]))
  np.testing.assert_array_equal(
      q._expand(jnp.asarray(want), block_size, shape[-1]), expanded)
