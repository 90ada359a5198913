"""An independent float64 NumPy transcription of ``alada_optax._quantize``.

Written from the format's documentation: each map's 128 levels listed, the
blocks cut by slicing the last axis, the two levels around each value found
by a search of the sorted levels, and the counter-based random bits in NumPy
uint32 arithmetic.
"""

from __future__ import annotations

import math

import numpy as np


def levels(map_name):
  """The 128 levels v_0 = 0 < ... < v_127 = 1 of a map."""
  if map_name == 'dynamic':  # Decade i: 2^i levels up to 10^(i-6).
    v = [0.0]
    for i in range(7):
      n = 2**i
      v += list(10.0**(i - 6) * (0.1 + 0.9 * np.arange(1, n + 1) / n))
    return np.array(v)
  p = {'linear': 1, 'cubic': 3, 'quartic': 4}[map_name]
  return (np.arange(128) / 127.0)**p


def bits(shape, counter, seed):
  """The hash documented in random_bits, in NumPy uint32 arithmetic."""
  def mix(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x7FEB352D)
    h = h ^ (h >> np.uint32(15))
    h = h * np.uint32(0x846CA68B)
    return h ^ (h >> np.uint32(16))
  with np.errstate(over='ignore'):
    key = mix(np.uint32(counter % 2**32)
              ^ mix(np.uint32(seed) + np.uint32(0x9E3779B9)))
    index = np.arange(math.prod(shape), dtype=np.uint64).astype(np.uint32)
    return mix(mix(index ^ key) + key).reshape(shape)


def uniforms(shape, counter, seed):
  """Uniforms in [0, 1) from the top 24 bits of :func:`bits`."""
  return (bits(shape, counter, seed) >> np.uint32(8)).astype(np.float64) * (
      2.0**-24)


def encode(x, map_name, block_size, u=None, toward_zero=None):
  """Codes, scales and each entry's margin from its rounding decision.

  The nearer of the two levels around ``|x| / scale`` is taken, or (with
  uniforms ``u``) the upper where ``u (hi - lo) < y - lo``; where
  ``toward_zero`` is set, the lower unless ``y`` is the upper level. The
  margin is the decision's distance from its threshold, relative to the
  upper level (inf where the decision has none).
  """
  x = np.asarray(x, np.float64)
  lev = levels(map_name)
  codes = np.zeros(x.shape, np.int64)
  margin = np.full(x.shape, np.inf)
  scales = []
  for start in range(0, x.shape[-1], block_size):
    cut = (Ellipsis, slice(start, start + block_size))
    blk = x[cut]
    s = np.max(np.abs(blk), axis=-1, keepdims=True)
    y = np.abs(blk) / np.where(s > 0, s, 1)
    k = np.clip(np.searchsorted(lev, y, side='right') - 1, 0, 126)
    lo, hi = lev[k], lev[k + 1]
    if u is None:
      up, m = y - lo > hi - y, np.abs(2 * y - lo - hi)
    else:
      up, m = u[cut] * (hi - lo) < y - lo, np.abs(u[cut] * (hi - lo) - y + lo)
    if toward_zero is not None:
      down = np.broadcast_to(toward_zero, x.shape)[cut]
      up = np.where(down, y >= hi, up)
      m = np.where(down, np.abs(hi - y), m)
    codes[cut] = np.sign(blk) * (k + up)
    margin[cut] = m / hi
    scales.append(s[..., 0])
  return codes, np.stack(scales, axis=-1), margin


def decode(codes, scales, map_name, block_size):
  lev = levels(map_name)
  s = np.repeat(scales, block_size, axis=-1)[..., :codes.shape[-1]]
  return np.sign(codes) * lev[np.abs(codes)] * s
