"""Where an update takes a different shape per XLA backend, and why.

Two decisions live here: how Alada's parity picks its refit
(:func:`refit_by_parity`, below), and how Subspace-Momentum's refresh step
recomputes its projectors (:func:`refresh_by_step`). A third, how an 8-bit
moment's blocks are told apart on TPU (masks of the column index, not a
reshape), lives with the format in ``alada_optax._quantize``
(``_TPU_SELECT_BLOCKS``, with its measurement).

Alada refits one factor per step: p on even steps, q on odd ones, with one
parity (the step count's) for the whole tree. How that choice is compiled
is the one structural decision that the backends disagree on; it lives
here, with the measurements behind it (compile facts from XLA's own CPU,
H100 and TPU v5e compilers; ``python -m benchmarks.accelerators`` prints
them, ``docs/accelerators.md`` has the tables):

* **TPU and GPU: no control flow.** Both refits are computed every step
  and the parity keeps one. On TPU the fold of G into M and both
  reductions of M fuse into one pass over M (a minimal program of that
  pass and the step on one 50257 x 768 matrix: 24.1 bytes per parameter,
  Adam's 28). A ``conditional`` there
  would put the refits in branches of their own, which XLA:TPU cannot fuse
  with the fold (on the GPT-2-small-shaped update, 2 layers: 49.4 bytes per
  parameter with one conditional, 38.6 without; Adam's 50.9). On GPU every
  ``conditional`` copies its branch index to the host and waits for the
  device (``ConditionalThunk``), one blocking synchronisation per step;
  XLA:GPU does not fuse a row and a column reduction, so M is read once
  more instead, which costs no memory.
* **GPU: M is read as stored.** XLA:GPU otherwise recomputes the fold
  inside each reduction and the step, and copies M at the end (188 MiB of
  temporaries on the 2-layer GPT-2 update; 9.2 MiB with the barrier).
* **CPU: one conditional for the whole tree.** XLA:CPU runs the two
  reductions as two passes over M, each as long as the fold: with both, the
  GPT-2-small update alone took 1.38x Adam's; with one ``lax.cond``
  picking the refit of every leaf, 1.02x (medians of 9 interleaved rounds).
  On CPU a conditional costs nothing like a GPU's.
* **Every backend: the reduction's result leaves its kernel as it is.**
  XLA's CPU row reductions run several times slower when their result is
  selected or multiplied in the same kernel (the GPT-2-small update: 810 ms
  against 382 ms); on TPU the barrier also removes 9.1 MiB of temporaries
  of the 2-layer update; on GPU it saves 14 of
  the 433 kernels of the 2-layer update.

A two-way conditional whose branches hold only elementwise ops and
reductions is turned into selects (both branches run) by XLA's conditional
simplifier; the CPU branches start with an optimization barrier, which the
simplifier does not count as cheap, so that the conditional is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def reduction_result(r: jax.Array) -> jax.Array:
  """A full-size reduction's result, ending its kernel there."""
  return jax.lax.optimization_barrier(r)


def _stored(x: Any) -> Any:
  return jax.lax.optimization_barrier(x)


def _both(refit: Callable, leaves: Sequence[Any], even: jax.Array) -> list:
  """Both refits of every leaf; the parity keeps one (no control flow)."""
  pick = functools.partial(jnp.where, even)
  return [jax.tree.map(pick, refit(i, leaf, True), refit(i, leaf, False))
          for i, leaf in enumerate(leaves)]


def _both_read_as_stored(refit, leaves, even):
  """:func:`_both`, with each leaf's M (and G) read from memory (GPU)."""
  return _both(refit, [leaf._replace(mu=_stored(leaf.mu),
                                     target=_stored(leaf.target))
                       for leaf in leaves], even)


def _one_conditional(refit, leaves, even):
  """One ``lax.cond`` over the whole tree picks every leaf's refit (CPU)."""

  def branch(rows):
    def run(leaves):
      leaves = _stored(leaves)  # an op the simplifier keeps a branch for
      return [refit(i, leaf, rows) for i, leaf in enumerate(leaves)]
    return run

  return jax.lax.cond(even, branch(True), branch(False), leaves)


def refit_by_parity(refit: Callable, leaves: Sequence[Any],
                    even: jax.Array, *, reads_gradients: bool = False) -> list:
  """Lines 13-18 of Algorithm 2 for every leaf, one parity for the tree.

  Args:
    refit: ``(i, leaf, rows) -> (p, q, v0)``: the refit of p (``rows``) or
      q of the ``i``-th leaf.
    leaves: the leaves, pytrees of arrays (what is static about leaf ``i``,
      ``refit`` knows).
    even: the step count is even (refit p).
    reads_gradients: the refits read the gradients (``second_moment=
      'gradient'``): no conditional then on CPU either, since a conditional
      over the whole tree would keep every leaf's gradient alive until the
      backward pass ends (on a 4-layer MLP's train step, 1.19x the peak of
      SGD with momentum instead of 1.10x).

  Returns:
    Each leaf's ``refit(i, leaf, even)``, in the backend's structure.
  """
  if not leaves:
    return []
  per_backend = lambda structure: lambda leaves, even: structure(
      refit, leaves, even)
  cpu = _both if reads_gradients else _one_conditional
  return jax.lax.platform_dependent(
      list(leaves), even, cpu=per_backend(cpu),
      cuda=per_backend(_both_read_as_stored),
      rocm=per_backend(_both_read_as_stored), default=per_backend(_both))


def _max_and_sumsq_two_passes(x):
  scale = jnp.max(jnp.abs(x), axis=-1)
  scale = jnp.where(scale > 0, scale, 1)
  return scale, jnp.sum(jnp.square(x / scale[..., None]), axis=-1)


def _max_and_sumsq_one_pass(x):
  def combine(a, b):  # a running max, and the sum of squares over it
    top = jnp.maximum(a[0], b[0])
    safe = jnp.where(top > 0, top, 1)
    return top, a[1] * jnp.square(a[0] / safe) + b[1] * jnp.square(b[0] / safe)

  size = jnp.abs(x)
  zero = jnp.zeros([], size.dtype)
  scale, sumsq = jax.lax.reduce((size, (size > 0).astype(size.dtype)),
                                (zero, zero), combine, (x.ndim - 1,))
  return jnp.where(scale > 0, scale, 1), sumsq


def max_and_scaled_sumsq(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``s = max|x|`` (1 where x is 0) and ``sum((x / s)^2)``, over the last axis.

  * **GPU: one pass**, a variadic reduction carrying the running max and
    the sum of squares scaled to it (the same value up to rounding): the
    two reductions of two passes are two kernels, and XLA:GPU fuses
    neither into the other. On the GPT-2-shaped update (H100): 1,146
    kernels against 1,250.
  * **TPU and CPU: two passes.** On v5e the one pass leaves the bytes per
    parameter as they are (61.2) and adds 4.7 MiB of temporaries (55.5
    against 50.8 MiB).
  """
  return jax.lax.platform_dependent(
      x, cuda=_max_and_sumsq_one_pass, rocm=_max_and_sumsq_one_pass,
      default=_max_and_sumsq_two_passes)


def small_leaves_stacked_on_gpu(tree_kernel: Callable,
                                stacked: Callable) -> Callable:
  """``tree_kernel(gs, states, plans, count)``, on GPU as ``stacked``.

  ``stacked`` is the same step with the small leaves of one kind stacked
  into one (``_leafwise.stacked_small_leaves``).

  * **GPU: small leaves stacked.** XLA:GPU launches a kernel per fusion and
    fuses none of different leaves, so each of a model's many small leaves
    costs as many launches as a large one: on the GPT-2-small-shaped update
    (H100), the 98 biases and norms' scales (0.1% of the entries) took 981
    of its 1,772 kernels; stacked by kind (three kinds), 528 (slicing the
    results back into each leaf's buffers takes most of those).
  * **TPU and CPU: leaf by leaf.** On v5e the stacked update accesses 70.8
    bytes per parameter against 61.2 (its memory-space assignment moves
    more of the large matrices into on-chip memory), with 57.1 MiB of
    temporaries against 50.8; a CPU launches no kernels.
  """

  def by_backend(gs, states, plans, count):
    run = lambda kernel: lambda gs, states, count: kernel(gs, states, plans,
                                                          count)
    return jax.lax.platform_dependent(
        gs, states, count, cuda=run(stacked), rocm=run(stacked),
        default=run(tree_kernel))

  return by_backend


def refresh_by_step(refresh: jax.Array, refits: Sequence[Callable],
                    kept: Sequence[Any]) -> list:
  """``[refit() if refresh else k for refit, k in zip(refits, kept)]``.

  The refits read the gradients (Subspace-Momentum's projectors from the
  gradient's singular vectors, every ``update_proj_gap`` steps), so they
  cannot all run every step as Alada's do.

  * **GPU and TPU: one conditional for all of them.** XLA:GPU runs each
    ``conditional`` as a blocking copy of its predicate to the host; one per
    leaf was 50 per step on the GPT-2-small-shaped update.
  * **CPU: one conditional per refit.** A conditional costs no
    synchronisation there, and one over all the leaves keeps every
    gradient alive until the backward pass ends: the donated train step of
    the 8 x 2048^2 MLP with ``adamw_snsm`` peaked at 529.4 MiB (1.27x
    Adam's) with one, 304.7 MiB (0.73x) with one per leaf. (On GPU the
    same cost is likely; it is not measured yet.)
  """
  if not refits:
    return []

  def one(_):
    return jax.lax.cond(refresh, lambda: [refit() for refit in refits],
                        lambda: list(kept))

  def per_refit(_):
    return [jax.lax.cond(refresh, refit, lambda k=k: k)
            for refit, k in zip(refits, kept)]

  return jax.lax.platform_dependent(0, cpu=per_refit, default=one)
