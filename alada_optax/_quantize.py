"""8-bit block-wise storage of a signed float tensor (issue 24's first piece).

A tensor ``x`` is stored as int8 ``codes`` shaped like ``x`` and one scale,
the absolute maximum, per block of ``block_size`` consecutive entries along
its **last axis**: ``scales`` has the shape ``x.shape[:-1] + (nblocks,)`` with
``nblocks = ceil(x.shape[-1] / block_size)``. When the last axis is not a
multiple of the block, its final block is short (it holds the remaining
entries; nothing is stored for padding). A scalar is one block (its scale is
a scalar). A block never crosses a shard boundary when the last axis is
sharded in multiples of ``block_size``.

A code's magnitude ``k`` in ``0..127`` indexes 128 levels
``0 = v_0 < v_1 < ... < v_127 = 1`` of the format's map and its sign is the
entry's: an entry decodes to ``sign(code) * v_|code| * scale``. The maps are
symmetric in sign, zero is a level (a zero entry decodes to exactly 0, and a
zero block, scale 0, to exact zeros), and the largest level is 1 (the block's
absmax decodes to itself; with ``'linear'`` under jit, to within a rounding,
since XLA computes ``(code / 127) * scale`` as ``code * (scale / 127)``).
Code -128 is never written.

Maps (``Int8.map``), with the largest error of nearest rounding relative to
the block's absmax (half the widest gap between levels) and the smallest
non-zero level:

* ``'linear'``: ``v_k = k / 127`` (absmax scaling, as in praxis and most int8
  schemes); error <= 1/254 = 0.0039, smallest level 7.9e-3.
* ``'dynamic'``: a dynamic tree map as in bitsandbytes (Dettmers, 2016), made
  symmetric: 7 decades, decade ``i = 0..6`` holding ``2^i`` levels linearly
  spaced in ``(10^(i-7), 10^(i-6)]``, ``v = 10^(i-6) (n + 9 j) / (10 n)`` for
  ``n = 2^i``, ``j = 1..n`` (index ``k = n - 1 + j``); error <= 0.9/128 =
  0.0070, smallest level 1e-6. bitsandbytes' signed table puts each decade's
  levels at the midpoints of the same intervals and has +1 but not -1;
  here a block's absmax round-trips exactly whatever its sign.
* ``'cubic'`` and ``'quartic'``: companded, ``v_k = (k / 127)^p`` with
  ``p = 3`` (error <= 0.0117, smallest level 4.9e-7) or ``p = 4`` (error <=
  0.0156, smallest level 3.8e-9): the relative resolution of a float over
  the decades below the absmax, encoded and decoded elementwise.

Encoding finds, elementwise and without a table search, the two levels
around ``|x| / scale`` and picks one of them: the nearer, or, with
``Int8.stochastic``, the upper with probability
``(|x| / scale - lo) / (hi - lo)``, which is unbiased in expectation for every
map. The random bits are a hash of the entry's flat index, a step
``counter`` and an optional ``seed`` (no state: the same counter gives the
same codes, and a resumed run reproduces them bit for bit; the bits are a
function of the entry's index in the whole tensor, not of its sharding).

Nearest rounding never lets a decaying value reach zero by itself: with
``b1 = 0.9`` and the scale held by the block's other entries, ``0.9 v_1``
rounds back to ``v_1`` (for every map), so the moment of an entry whose
gradient stays zero keeps a residue. ``encode(..., toward_zero=mask)`` rounds
the masked entries' magnitudes down instead; a fold passes ``g == 0``.

Arithmetic is float32 (float64 for float64 inputs). Where ``|x| / scale``
lies within float32 rounding of a decision (the midpoint of two levels, or
the stochastic threshold), the compiler's rewrites (``a / s`` as
``a * (1 / s)``, fused multiply-adds) may tip it either way. Backends that flush
subnormals (XLA on CPU, GPU and TPU) treat a subnormal block as a zero block:
it decodes to zeros, never to NaN. Non-finite entries are not supported (their
block decodes to non-finite values).

Everything here is pure ``jax.numpy``, shape-static and jit-able.
"""

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

# Map name -> exponent p of the power maps (v_k = (k / 127)^p); 'dynamic' is
# not a power map.
_POWERS = {'linear': 1, 'cubic': 3, 'quartic': 4}
MAPS = ('linear', 'dynamic', 'cubic', 'quartic')
_TOP = 127  # The largest code magnitude.


@dataclasses.dataclass(frozen=True)
class Int8:
  """An 8-bit storage of a first moment: int8 codes and per-block scales.

  Pass it as ``mu_dtype`` to :func:`alada_optax.alada` (``mu_dtype='int8'``
  is ``Int8()``): each leaf with at least ``min_size`` entries keeps its
  first moment as one int8 code per entry and one float32 scale (the
  absolute maximum) per block of ``block_size`` consecutive entries along its
  last axis; smaller leaves keep it in the params' dtype. A code indexes one
  of 128 levels ``0 = v_0 < ... < v_127 = 1`` of ``map``, signed:

  * ``'cubic'`` (the default): ``v_k = (k / 127)^3``, companded: a float's
    relative resolution over the six decades below each block's absmax,
    with error at most 0.0117 of the absmax;
  * ``'quartic'``: ``(k / 127)^4``, eight decades, error at most 0.0156;
  * ``'linear'``: ``k / 127``, absmax scaling as most int8 schemes, error
    at most 0.0039 but nothing below 0.0079 of the absmax;
  * ``'dynamic'``: a symmetric dynamic tree map as in bitsandbytes, seven
    decades, error at most 0.0070 (its decode is a table walk: slower).

  Attributes:
    map: One of ``'cubic'``, ``'quartic'``, ``'linear'``, ``'dynamic'``.
    block_size: Entries per scale along the last axis (a positive int).
      A block never crosses a shard boundary where the last axis is sharded
      in multiples of it. On TPU, a leaf whose last axis holds more than 16
      blocks compiles to transposes of the leaf (see the dtypes guide;
      ``init`` warns there): give it larger blocks, or keep it out by
      ``quantize_mask``.
    stochastic: Round stochastically (unbiased; the bits are a hash of the
      entry's index and the step: no state) instead of to the nearest level.
    min_size: Leaves with fewer entries keep their first moment in the
      params' dtype (biases, norms' scales: their bytes are negligible).

  Examples:
    >>> import jax.numpy as jnp
    >>> import alada_optax
    >>> params = {'w': jnp.zeros((512, 256)), 'b': jnp.zeros((256,))}
    >>> tx = alada_optax.alada(1e-3, mu_dtype='int8')
    >>> state = tx.init(params)
    >>> print(state[0].mu['w'].dtype, state[0].mu_scale['w'].shape)
    int8 (512, 1)
    >>> print(state[0].mu['b'].dtype, state[0].mu_scale['b'])  # 256 < 4096
    float32 None

  References:
    Dettmers et al., `8-bit Optimizers via Block-wise Quantization
    <https://arxiv.org/abs/2110.02861>`_, 2022
  """

  map: str = 'cubic'
  block_size: int = 256
  stochastic: bool = False
  min_size: int = 4096

  def __post_init__(self):
    if self.map not in MAPS:
      raise ValueError(f'map must be one of {MAPS}, got {self.map!r}.')
    for name in ('block_size', 'min_size'):
      value = getattr(self, name)
      if (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
          or value < (1 if name == 'block_size' else 0)):
        raise ValueError(f'{name} must be a positive int, got {value!r}.')
    if not isinstance(self.stochastic, bool):
      raise ValueError(f'stochastic must be a bool, got {self.stochastic!r}.')


def moment_dtype(transform: str, mu_dtype):
  """A first moment's ``mu_dtype``: None, a floating dtype, or an :class:`Int8`.

  ``'int8'`` (or ``jnp.int8``) is ``Int8()``. Raises a TypeError naming
  ``transform`` for anything else.
  """
  if mu_dtype is None or isinstance(mu_dtype, Int8):
    return mu_dtype
  try:
    dtype = jnp.dtype(mu_dtype)
  except TypeError:
    dtype = None
  if dtype == jnp.int8:
    return Int8()
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
        f'{transform}: mu_dtype must be a floating-point dtype, \'int8\' or'
        f' an alada_optax.Int8, got {mu_dtype!r}.')
  return dtype


def scales_shape(shape: tuple[int, ...], block_size: int) -> tuple[int, ...]:
  """The shape of the scales of a tensor of ``shape``."""
  shape = tuple(shape)
  if not shape:
    return ()
  return shape[:-1] + (-(-shape[-1] // block_size),)


def state_bytes(shape: tuple[int, ...], fmt: Int8) -> int:
  """Bytes stored for a tensor of ``shape``: 1 a code, 4 a (float32) scale."""
  return math.prod(shape) + 4 * math.prod(scales_shape(shape, fmt.block_size))


# Levels of the maps, elementwise. `_value(k)` is v_k for an int32 k in
# 0..127; `_lower(y)` is a k in 0..126 with v_k <= y <= v_{k+1} for y in
# [0, 1], up to float rounding: where y lies within rounding of a level,
# k may be off by one, and the choice between v_k and v_{k+1} made by value
# below still gives that level.


def _power_value(k, p, dtype):
  # k * (1 / 127): 127 * (1 / 127) is 1 in float32 and float64.
  c = k.astype(dtype) * jnp.asarray(1 / _TOP, dtype)
  v = c
  for _ in range(p - 1):
    v = v * c
  return v


def _power_lower(y, p):
  """``floor(127 y^(1/p))``: the largest k in 0..126 with v_k <= y, up to
  float rounding.

  The root, elementwise and fused into the pass that encodes: y itself for
  the linear map, two square roots for the quartic, and for the cubic
  :func:`_cube_root`. Where y lies within rounding of a level, k may be off
  by one; the choice between v_k and v_{k+1} made by value gives that level.
  (It replaced a binary search of the levels, seven rounds of a level, a
  compare and a select: the timings are in docs/research/quantized_moment.md.)
  """
  root = {1: lambda y: y, 3: _cube_root,
          4: lambda y: jnp.sqrt(jnp.sqrt(y))}[p](y)
  return jnp.clip(jnp.floor(root * _TOP), 0, _TOP - 1).astype(jnp.int32)


def _cube_root(y):
  """``y^(1/3)`` for y in [0, 1], to 8 ulps (0 at and below 2^-60).

  The inverse cube root r's bit-level seed (``0x54a218ea - bits / 3`` of
  float32 bits, taken in float arithmetic: about 3% off), Newton steps
  ``r <- r (4 - y r^3) / 3`` in y's dtype (each squares the error: three
  reach float32's rounding, four float64's), then ``y r^2``: multiplies
  only. ``jnp.cbrt`` is a scalar call on XLA:CPU; ``exp(log(y) / 3)`` is as
  fast but its error grows with ``|log y|`` (22 float32 ulps near 2^-60,
  against these steps' 7).
  """
  tiny = 2.0**-60
  y = jnp.maximum(y, tiny)
  bits = jax.lax.bitcast_convert_type(y.astype(jnp.float32), jnp.int32)
  r = jax.lax.bitcast_convert_type(
      (1419909354.0 - bits.astype(jnp.float32) * (1 / 3)).astype(jnp.int32),
      jnp.float32).astype(y.dtype)
  third = y * (1 / 3)
  for _ in range(3 if y.dtype == jnp.float32 else 4):
    r = r * (4 / 3 - third * (r * r * r))
  return jnp.where(y > tiny, y * r * r, 0)


def _dynamic_value(k, dtype):
  # Decade i holds k in [n, 2n), n = 2^i; its top is 10^(i-6).
  n, top = jnp.ones_like(k), jnp.full_like(k, 1e-6, dtype=dtype)
  for i in range(1, 7):
    above = k >= 2**i
    n = jnp.where(above, 2**i, n)
    top = jnp.where(above, jnp.asarray(10.0**(i - 6), dtype), top)
  j = k - n + 1
  v = top * ((n + 9 * j).astype(dtype) / (10 * n).astype(dtype))
  return jnp.where(k == 0, 0, v)


def _dynamic_lower(y):
  # The decade of y: y in (10^(i-7), 10^(i-6)], i = 0 for y <= 1e-6.
  n = jnp.ones_like(y, dtype=jnp.int32)
  top = jnp.full_like(y, 1e-6)
  for i in range(1, 7):
    above = y > jnp.asarray(10.0**(i - 7), y.dtype)
    n = jnp.where(above, 2**i, n)
    top = jnp.where(above, jnp.asarray(10.0**(i - 6), y.dtype), top)
  # y = top (n + 9 j) / (10 n)  <=>  j = (10 n y / top - n) / 9.
  nf = n.astype(y.dtype)
  j = jnp.floor((10 * nf * (y / top) - nf) / 9).astype(jnp.int32)
  return n - 1 + jnp.clip(j, 0, n - 1)


def _value(k, map_name, dtype):
  if map_name == 'dynamic':
    return _dynamic_value(k, dtype)
  return _power_value(k, _POWERS[map_name], dtype)


def _lower(y, map_name):
  k = _dynamic_lower(y) if map_name == 'dynamic' else _power_lower(
      y, _POWERS[map_name])
  return jnp.clip(k, 0, _TOP - 1)


def levels(map_name: str) -> jax.Array:
  """The 128 levels ``v_0 = 0 < ... < v_127 = 1`` of a map, float32.

  The signed table of 255 values is ``concatenate([-levels[:0:-1], levels])``
  (code ``c`` at index ``c + 127``).
  """
  Int8(map_name)  # Validates the name.
  return jax.jit(_value, static_argnums=(1, 2))(
      jnp.arange(_TOP + 1), map_name, jnp.float32)


def max_error(map_name: str) -> float:
  """The largest ``|x - decode(encode(x))| / absmax`` of nearest rounding.

  Half the widest gap between the map's levels, in exact arithmetic.
  """
  Int8(map_name)  # Validates the name.
  if map_name == 'dynamic':  # The top decade's gap, 0.9 / 64.
    return 0.9 / 64 / 2
  v = (np.arange(_TOP + 1) / _TOP)**_POWERS[map_name]
  return float(np.max(np.diff(v)) / 2)


# Blocks along the last axis.


# On TPU, a block of the last axis is a lane-aligned run of its tiles, but
# the (..., nblocks, block_size) view of the reshapes below is not a bitcast
# of a row-major array (its tiles pad nblocks): XLA:TPU lays out every
# array that meets one of those reshapes column-major instead, transposing
# the codes, the params and the gradients into it and back (one 3072 x 768
# leaf's update: 150.6 bytes per parameter against bf16 M's 50.2). There the
# blocks are told apart by their column index instead: one masked reduction
# over the whole last axis per block, and a select per block for a broadcast,
# which fuse with their producers and consumers in row-major layout (73.7
# bytes per parameter, no transposes; the same values, bit for bit). Their
# work grows with the number of blocks: at 16 blocks (a 768 x 4096 leaf)
# XLA:TPU's estimated cycles match the reshapes' (613k against 620k, at 73.8
# bytes per parameter against 185.9); beyond that the reshapes are kept.
_TPU_SELECT_BLOCKS = 16


def warn_if_wide_on_tpu(transform: str, leaf: str, shape: tuple[int, ...],
                        fmt: Int8) -> None:
  """On TPU, a warning where a leaf's last axis holds more blocks than
  ``_TPU_SELECT_BLOCKS``: there the reshapes below make XLA:TPU transpose
  the leaf, several times its size in temporaries (a 4096 x 11008 leaf's
  update on v5e: 860.8 MiB; docs/research/quantized_moment.md)."""
  n, nblocks = shape[-1], scales_shape(shape, fmt.block_size)[-1]
  if nblocks <= _TPU_SELECT_BLOCKS or jax.default_backend() != 'tpu':
    return
  # The smallest multiple of 256 that cuts the axis into at most 16 blocks.
  wide = math.ceil(math.ceil(n / _TPU_SELECT_BLOCKS) / 256) * 256
  warnings.warn(
      f'{transform}: leaf {leaf} has {nblocks} blocks of {fmt.block_size} '
      f'along its last axis of {n}; on TPU more than {_TPU_SELECT_BLOCKS} '
      'compile to transposes of the leaf, with temporaries several times its'
      f' size. Use Int8(block_size={wide}) or larger, or keep the leaf in '
      'floats with quantize_mask.', stacklevel=4)


def _on_explicit_mesh(x):
  """Whether ``x`` lives on a mesh with explicit axes. There every branch of
  ``platform_dependent`` is traced with sharding in types, and the TPU forms'
  per-block slices and selects of a sharded axis are not allowed: the
  reshapes are kept (on TPU too)."""
  try:
    mesh = jax.typeof(x).sharding.mesh
  except Exception:  # pylint: disable=broad-except
    return False
  return any(t == jax.sharding.AxisType.Explicit
             for t in getattr(mesh, 'axis_types', ()))


def _by_backend(x, nblocks, tpu, default):
  """``default(x)``, or ``tpu(x)`` on TPU where its per-block form pays: at
  most ``_TPU_SELECT_BLOCKS`` blocks, and not on explicit mesh axes."""
  if nblocks > _TPU_SELECT_BLOCKS or _on_explicit_mesh(x):
    return default(x)
  return jax.lax.platform_dependent(x, tpu=tpu, default=default)


def _block_index(shape, block_size):
  return jax.lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1) // (
      block_size)


def _block_absmax(a, block_size):
  """Max of ``a`` (>= 0) per block of the last axis; a short last block."""
  n = a.shape[-1]
  nblocks = -(-n // block_size)
  if nblocks == 0:
    return jnp.zeros(a.shape[:-1] + (0,), a.dtype)
  if nblocks == 1:
    return jnp.max(a, axis=-1, keepdims=True, initial=0)

  def reshaped(a):
    pad = nblocks * block_size - n
    if pad:  # Zeros do not change a max of absolute values.
      a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)])
    return jnp.max(a.reshape(a.shape[:-1] + (nblocks, block_size)), axis=-1)

  return _by_backend(a, nblocks, lambda a: _masked_absmax(a, block_size),
                     reshaped)


def _masked_absmax(a, block_size):
  """:func:`_block_absmax` by masks of the column index (TPU's form)."""
  nblocks = -(-a.shape[-1] // block_size)
  block = _block_index(a.shape, block_size)
  return jnp.stack([jnp.max(jnp.where(block == b, a, 0), axis=-1)
                    for b in range(nblocks)], axis=-1)


def _expand(scales, block_size, n):
  """Each block's scale broadcast to its entries: shape ``(..., n)``."""
  nblocks = scales.shape[-1]
  shape = scales.shape[:-1] + (n,)
  if nblocks <= 1:
    return jnp.broadcast_to(scales, shape)

  def reshaped(scales):
    full = jnp.broadcast_to(scales[..., None],
                            scales.shape + (block_size,)).reshape(
                                scales.shape[:-1] + (nblocks * block_size,))
    return full[..., :n] if nblocks * block_size != n else full

  return _by_backend(scales, nblocks,
                     lambda s: _selected_expand(s, block_size, n), reshaped)


def _selected_expand(scales, block_size, n):
  """:func:`_expand` by a select per block (TPU's form)."""
  shape = scales.shape[:-1] + (n,)
  block = _block_index(shape, block_size)
  full = jnp.broadcast_to(scales[..., :1], shape)
  for b in range(1, scales.shape[-1]):
    full = jnp.where(block >= b, jnp.broadcast_to(scales[..., b:b + 1], shape),
                     full)
  return full


# Counter-based random bits.

_GOLDEN = 0x9E3779B9


def _mix32(h):
  """lowbias32 (C. Wellons' hash-prospector): a bijection of uint32."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def _flat_index(shape):
  """Each entry's row-major flat index, uint32 (mod 2^32), without a reshape."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for axis in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * (
        jnp.uint32(stride % 2**32))
    stride *= shape[axis]
  return index


def random_bits(shape, counter, seed=0) -> jax.Array:
  """uint32 bits per entry from (flat index, counter, seed); no state.

  ``h = mix(mix(index ^ key) + key)`` with ``key = mix(counter ^
  mix(seed + 0x9E3779B9))`` and ``mix`` the lowbias32 finalizer.
  """
  counter = jnp.asarray(counter).astype(jnp.uint32)
  seed = jnp.asarray(seed).astype(jnp.uint32)
  key = _mix32(counter ^ _mix32(seed + jnp.uint32(_GOLDEN)))
  return _mix32(_mix32(_flat_index(shape) ^ key) + key)


def _uniform(shape, counter, seed, dtype):
  """Uniform in [0, 1) from the top 24 bits of :func:`random_bits`."""
  bits = random_bits(shape, counter, seed) >> 8
  return bits.astype(dtype) * jnp.asarray(2.0**-24, dtype)


def _compute_dtype(dtype):
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f'expected a floating-point tensor, got {dtype}.')
  return jnp.promote_types(dtype, jnp.float32)


def encode(
    x: jax.typing.ArrayLike,
    fmt: Int8,
    *,
    counter: jax.typing.ArrayLike | None = None,
    seed: jax.typing.ArrayLike = 0,
    toward_zero: jax.typing.ArrayLike | None = None,
    scales: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Codes and scales of ``x`` in ``fmt``.

  Args:
    x: A floating-point tensor.
    fmt: The storage format.
    counter: The step (an integer scalar, taken mod 2^32); required with
      ``fmt.stochastic``, unused otherwise.
    seed: Mixed into the stochastic rounding's bits (an integer scalar), e.g.
      to decorrelate leaves of the same shape.
    toward_zero: Optional boolean mask broadcastable to ``x``: its entries'
      magnitudes are rounded down (to the level at or below, up to float
      rounding) whatever ``fmt``'s rounding.
    scales: each block's absmax of ``x``, if computed already (by
      :func:`fold_absmax`, say).

  Returns:
    ``(codes, scales)``: int8 codes shaped like ``x``, and the blocks'
    absolute maxima, shape :func:`scales_shape`, float32 (float64 for float64
    ``x``).
  """
  x = jnp.asarray(x)
  dtype = _compute_dtype(x.dtype)
  if fmt.stochastic and counter is None:
    raise ValueError('stochastic rounding needs a counter.')
  if x.ndim == 0:
    if toward_zero is not None:
      toward_zero = jnp.reshape(toward_zero, (1,))
    codes, scales = encode(
        x.reshape(1), fmt, counter=counter, seed=seed,
        toward_zero=toward_zero,
        scales=None if scales is None else jnp.reshape(scales, (1,)))
    return codes.reshape(()), scales.reshape(())
  n = x.shape[-1]
  a = jnp.abs(x).astype(dtype)
  if scales is None:
    scales = _block_absmax(a, fmt.block_size)
  scales = scales.astype(dtype)
  s = _expand(scales, fmt.block_size, n)
  # In [0, 1], 0 in a zero block, and exactly 1 at the absmax.
  # a * (1 / s), the reciprocal taken per block: a full-size division is an
  # expensive op to XLA. Blocks beyond 2^64 are scaled by
  # 2^-64 first (1 / s would be subnormal, flushed to 0, beyond 2^126).
  pre = jnp.where(scales > 2.0**64, jnp.asarray(2.0**-64, dtype), 1)
  inverse = jnp.where(scales > 0, 1 / jnp.where(scales > 0, scales * pre, 1), 0)
  y = a * _expand(pre, fmt.block_size, n) * _expand(inverse, fmt.block_size, n)
  y = jnp.where((s > 0) & (a >= s), 1, jnp.minimum(y, 1))
  k = _lower(y, fmt.map)
  lo, hi = _value(k, fmt.map, dtype), _value(k + 1, fmt.map, dtype)
  if fmt.stochastic:
    up = _uniform(x.shape, counter, seed, dtype) * (hi - lo) < y - lo
  else:  # Nearest.
    up = y - lo > hi - y
  if toward_zero is not None:
    up = jnp.where(toward_zero, y >= hi, up)
  magnitude = k + up.astype(jnp.int32)
  codes = jnp.where(x < 0, -magnitude, magnitude).astype(jnp.int8)
  return codes, scales


def _rows_of_blocks(codes, fmt, batch_axes=()):
  """The number of blocks where the blocks tile the last axis of ``codes``
  (not one of ``batch_axes``) more than once, off explicit mesh axes; None
  otherwise.

  There, on CPU, the reductions below (the fold's absmax, the refit's) read
  every array viewed as ``(..., nblocks, block_size)`` (a bitcast), each
  block's scale broadcast along its own axis. Otherwise XLA:CPU reshapes
  the scales' broadcast or the reduced tensor inside the pass, behind its
  elementwise ops, and its reductions run several times slower. One
  24576 x 768 leaf's donated update on CPU (XLA's trace, mean of 5 steps,
  two interleaved runs of each): the blocks' absmax of the fold 163 ms
  against 19, the refit's reduction of the decoded square 98 ms against 15
  (fp32 M: 12), the whole update 324 ms against 91 (fp32 M: 40). The
  encode's pass keeps the codes' shape (viewed, XLA:CPU copied the new codes
  out of the refit's conditional). Elsewhere the arrays keep their shape: on
  the GPT-2-shaped update the view cost the H100 25 more kernels (1,348
  against 1,323), and TPU keeps its masks (see ``_TPU_SELECT_BLOCKS``).
  """
  n = codes.shape[-1] if codes.ndim else 1
  nblocks = -(-n // fmt.block_size)
  if (nblocks <= 1 or n % fmt.block_size or codes.ndim - 1 in batch_axes
      or _on_explicit_mesh(codes)):  # (branches' sharding types must agree)
    return None
  return nblocks


def _view(a, nblocks):
  return a.reshape(a.shape[:-1] + (nblocks, -1))


def fold(codes: jax.Array, scales: jax.Array, fmt: Int8,
         b: jax.typing.ArrayLike, x: jax.Array, dtype: jax.typing.DTypeLike,
         *, counter: jax.typing.ArrayLike | None = None,
         seed: jax.typing.ArrayLike = 0) -> tuple[jax.Array, jax.Array]:
  """``encode(b * decode(codes, scales) + (1 - b) * x)``, an entry whose
  ``x`` is 0 rounded towards zero: a moment's fold in 8 bits.

  Two passes over the codes and ``x``, each block's absmax from one and the
  codes from the other, instead of writing the folded tensor: XLA:CPU's
  reductions (its YNNPACK kernels) fuse only producers that nothing else
  reads, constants' broadcasts included, so the inputs and the constants of
  the absmax's pass go through an optimization barrier (which XLA:CPU turns
  into a barrier against merging the two passes; one 3072 x 768 leaf's
  update: 9.0 MiB less temporaries). Rounding towards zero where ``x`` is 0
  lets such an entry decay to 0 (nearest rounding would keep a residue of
  the block's smallest level).

  Args:
    codes, scales: the moment as stored.
    fmt: its format.
    b: the decay.
    x: what folds in.
    dtype: the arithmetic's.
    counter, seed: the stochastic rounding's (see :func:`encode`).

  Returns:
    The new ``(codes, scales)``.
  """
  def passes(codes, scales, x, absmax=None):
    m = decode(codes, scales, fmt, dtype)
    if absmax is None:
      absmax = _fold_absmax(codes, scales, x, fmt, b)
    return encode(b * m + (1 - b) * x.astype(dtype), fmt, counter=counter,
                  seed=seed, toward_zero=x == 0, scales=absmax)

  nblocks = _rows_of_blocks(codes, fmt)
  if nblocks is None:
    return passes(codes, scales, x)

  def rows(codes, scales, x):  # the absmax's pass block by block
    absmax = _fold_absmax(_view(codes, nblocks), scales[..., None],
                          _view(x, nblocks), fmt, b)[..., 0]
    return passes(codes, scales, x, absmax)

  return jax.lax.platform_dependent(codes, scales, x, cpu=rows,
                                    default=passes)


def _fold_absmax(codes, scales, x, fmt, b):
  """The scales of ``b * decode(codes, scales) + (1 - b) * x``, each block's
  absmax as :func:`encode` computes them, in a pass of its own."""
  compute = _compute_dtype(scales.dtype)
  codes, scales, x, b, inv_top, floor = jax.lax.optimization_barrier((
      codes, scales, x, jnp.asarray(b, compute),
      jnp.asarray(1 / _TOP, compute), jnp.asarray(-_TOP, compute)))
  if fmt.map == 'dynamic':
    m = decode(codes, scales, fmt, compute)
  else:
    m = _decode_power(codes, scales, fmt, compute, inv_top, floor)
  y = jnp.abs(b * m + (1 - b) * x.astype(compute))
  if y.ndim == 0:
    return y
  return _block_absmax(y, fmt.block_size)


def _decode_power(codes, scales, fmt, compute, inv_top, floor):
  """A power map's decode, the sign carried through (v_k (-1)^... = the odd
  power's sign, |c| for the even one): the same values, bit for bit, in ops
  that XLA:CPU fuses into the reductions that read them (a select or an
  integer conversion there makes it write the decoded tensor first). A
  product by 1 / 127, not a quotient: XLA rewrites (c / 127) * s as
  c s / 127, which rounds the absmax off."""
  s = _expand(scales.astype(compute), fmt.block_size, codes.shape[-1])
  c = jnp.maximum(codes.astype(compute), floor) * inv_top
  v = {1: c, 3: c * c * c, 4: c * c * c * jnp.abs(c)}[_POWERS[fmt.map]]
  return v * s


def reduce_decoded(codes: jax.Array, scales: jax.Array, fmt: Int8, plan,
                   dtype: jax.typing.DTypeLike, reduction):
  """``reduction(decode(codes, scales, fmt, dtype), plan)``, for a reduction
  written against the tensor's :class:`~alada_optax.matricize.MatrixPlan`.

  Where the blocks tile a row or column axis that is last, it reads the codes
  viewed block by block, with ``plan.split_last(block_size)`` (see
  ``_rows_of_blocks``).
  """
  flat = lambda codes, scales: reduction(decode(codes, scales, fmt, dtype),
                                         plan)
  nblocks = _rows_of_blocks(codes, fmt, plan.batch_axes)
  if nblocks is None:
    return flat(codes, scales)

  def rows(codes, scales):
    return reduction(decode(_view(codes, nblocks), scales[..., None], fmt,
                            dtype), plan.split_last(fmt.block_size))

  return jax.lax.platform_dependent(codes, scales, cpu=rows, default=flat)


def decode(
    codes: jax.Array,
    scales: jax.Array,
    fmt: Int8,
    dtype: jax.typing.DTypeLike = jnp.float32,
) -> jax.Array:
  """The tensor that ``(codes, scales)`` store in ``fmt``, as ``dtype``."""
  codes, scales = jnp.asarray(codes), jnp.asarray(scales)
  if codes.ndim == 0:
    return decode(codes.reshape(1), scales.reshape(1), fmt, dtype).reshape(())
  compute = _compute_dtype(scales.dtype)
  if fmt.map == 'dynamic':
    s = _expand(scales.astype(compute), fmt.block_size, codes.shape[-1])
    k = jnp.minimum(jnp.abs(codes.astype(jnp.int32)), _TOP)
    v = _value(k, fmt.map, compute)
    return (jnp.where(codes < 0, -v, v) * s).astype(dtype)
  # The constants through a barrier with the codes: XLA:CPU's reductions
  # fuse a constant's broadcast only if nothing else reads it, and the
  # decodes of a tree's leaves of one shape would share it (the 4 x 256^2
  # MLP's update: 512 KiB of broadcast constants without it).
  codes, scales, inv_top, floor = jax.lax.optimization_barrier((
      codes, scales, jnp.asarray(1 / _TOP, compute),
      jnp.asarray(-_TOP, compute)))
  return _decode_power(codes, scales, fmt, compute, inv_top,
                       floor).astype(dtype)
