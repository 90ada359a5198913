"""An independent float64 NumPy transcription of Algorithm 2 of the Alada paper.

Written from the paper, not from the package: it reshapes each tensor to the
``m x n`` matrix of eq. (12) explicitly and runs Algorithm 2 line by line, with
the readings the package documents (step by the bias-corrected momentum,
U~ clamped at 0) and its one extension (a leaf starts at its first non-zero
gradient), both switchable so tests can see what the literal algorithm does;
and the package's two options: the step bound, and factors that fit G^2 (the
paper's Section III) instead of line 7's M~^2.

Parity: Algorithm 2 refits p on even steps and q on odd ones, the steps of
one run. The package keeps one parity for the whole tree, the step count's
(``count``, 0 at the first update): a leaf whose first non-zero gradient
arrives on an odd step refits q first. With every leaf starting at step 0
(the paper's setting) this is Algorithm 2's parity exactly.

An 8-bit first moment (``quantize``): after line 5, M_{t+1} is stored as
the codes and per-block scales of ``tests.quantize_reference`` (blocks along
the tensor's last axis, entries whose gradient is 0 rounded towards 0), and
everything after line 5 reads the stored, decoded M_{t+1}, including the
start's v_0 (the mean of V = M~_1^2, G_0^2 as stored).
"""

from __future__ import annotations

import math

import numpy as np

from tests import quantize_reference


def eq12(shape):
  """(m, n) of eq. (12); vectors are 1 x n, scalars 1 x 1."""
  if len(shape) == 0:
    return 1, 1
  if len(shape) == 1:
    return 1, shape[0]
  gaps = [
      abs(math.prod(shape[:j]) - math.prod(shape[j:]))
      for j in range(1, len(shape))
  ]
  j = 1 + gaps.index(min(gaps))
  return math.prod(shape[:j]), math.prod(shape[j:])


class AladaLeaf:
  """Algorithm 2 for one tensor, in float64."""

  def __init__(self, shape, b1=0.9, b2=0.9, eps=1e-16, *, step_bound=1.0,
               second_moment='momentum', bias_corrected_step=True,
               start_at_nonzero=True, quantize=None, seed=0):
    self.shape = tuple(shape)
    self.m, self.n = eq12(self.shape)
    self.b1, self.b2, self.eps = b1, b2, eps
    self.bias_corrected_step = bias_corrected_step
    self.start_at_nonzero = start_at_nonzero
    self.step_bound = step_bound
    # 'gradient': the factors fit G_t^2, the paper's Section III (eq. (8),
    # Algorithm 1), with Section IV's first moment and bias corrections.
    self.second_moment = second_moment
    self.bounded = 0  # entries whose step the bound changed, over all steps
    # 8 bits: dict(map=, block_size=, stochastic=) for a tensor of one axis
    # or more; the stochastic rounding's bits from (count, seed).
    self.quantize = quantize if self.shape else None
    self.seed = seed
    self.margin = np.inf  # the closest call of a rounding decision, over all
    self.M = np.zeros((self.m, self.n))  # line 1
    self.t = 0
    self.count = 0  # steps of the whole run, the parity's clock
    self.p = self.q = None
    self.v0 = None

  def step(self, grad):
    """Returns W_{t+1} (the step before the learning rate), shaped like grad."""
    G = np.asarray(grad, np.float64).reshape(self.m, self.n)
    even = self.count % 2 == 0
    self.count += 1
    if self.start_at_nonzero and self.t == 0 and not np.any(G):
      return np.zeros(self.shape)  # not started: state stays M = 0
    b1, b2, eps, t = self.b1, self.b2, self.eps, self.t
    self.M = b1 * self.M + (1 - b1) * G  # line 5
    if self.quantize:  # stored in 8 bits; read back as stored
      q = self.quantize
      u = (quantize_reference.uniforms(self.shape, self.count - 1, self.seed)
           if q['stochastic'] else None)
      codes, scales, margin = quantize_reference.encode(
          self.M.reshape(self.shape), q['map'], q['block_size'], u=u,
          toward_zero=G.reshape(self.shape) == 0)
      self.margin = min(self.margin, float(np.min(margin)))
      self.M = quantize_reference.decode(
          codes, scales, q['map'], q['block_size']).reshape(self.m, self.n)
    M_tilde = self.M / (1 - b1 ** (t + 1))  # line 6
    V = M_tilde**2 if self.second_moment == 'momentum' else G**2  # line 7
    if t == 0:  # lines 8-12
      # With 8 bits, G_0^2 as stored: V = M~_1^2, M~_1 = Q((1 - b1) G_0) /
      # (1 - b1) (the package's start reads V; in floats V = G_0^2).
      start = V if self.quantize and self.second_moment == 'momentum' else G**2
      self.v0 = np.sum(start) / (self.m * self.n)
      self.p = math.sqrt(self.v0) * np.ones(self.m)
      self.q = math.sqrt(self.v0) * np.ones(self.n)
    if even:  # lines 13-15
      self.p = b2 * self.p + (1 - b2) * (V @ self.q) / (self.q @ self.q + eps)
    else:  # lines 16-18
      self.q = b2 * self.q + (1 - b2) * (V.T @ self.p) / (self.p @ self.p + eps)
    U = np.outer(self.p, self.q)  # line 20
    U_tilde = (U - b2 ** (t + 1) * self.v0) / (1 - b2 ** (t + 1))  # line 21
    numerator = M_tilde if self.bias_corrected_step else self.M
    W = numerator / np.sqrt(np.maximum(U_tilde, 0) + eps)  # line 22
    if self.step_bound is not None:  # the safeguard: |W| <= step_bound
      self.bounded += int(np.sum(np.abs(W) > self.step_bound))
      W = np.clip(W, -self.step_bound, self.step_bound)
    self.t += 1
    return W.reshape(self.shape)


def alada_step(x0, b1=0.9, b2=0.9, eps=1e-16, **leaf_kwargs):
  """Algorithm 2 on a dict of arrays shaped like ``x0``.

  Returns ``(reference_step, leaves)``: the step of every leaf for
  :func:`tests.trajectories.compare_with_reference` (which adds the learning
  rate and decoupled weight decay), and the leaves, whose states it updates.
  """
  # Leaf i's stochastic rounding takes seed i, its index in the tree.
  leaves = {k: AladaLeaf(np.shape(x0[k]), b1, b2, eps, seed=i, **leaf_kwargs)
            for i, k in enumerate(sorted(x0))}
  return (lambda g, t: {k: leaves[k].step(g[k]) for k in g}), leaves
