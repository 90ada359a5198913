"""Where an update takes a different shape per XLA backend, and why.

Four decisions live here: how Alada's parity picks its refit
(:func:`refit_by_parity`, below), how its refits take a factor's norms
(:func:`unit`), how its leaves read the step count and parity
(:func:`clock`), and how Subspace-Momentum's refresh step recomputes its
projectors (:func:`refresh_by_step`). Two more live with
the 8-bit format in ``alada_optax._quantize``, each with its measurement:
how an 8-bit moment's blocks are told apart on TPU (masks of the column
index, not a reshape: ``_TPU_SELECT_BLOCKS``), and how its reductions read
the codes on CPU (viewed block by block: ``_rows_of_blocks``).

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
* **GPU: M is read as stored** (:func:`read_as_stored`). XLA:GPU
  otherwise recomputes the fold inside each reduction and the step, and
  copies M at the end (188 MiB of temporaries on the 2-layer GPT-2 update;
  9.2 MiB with the barrier). The step too reads it so: with a bf16 M, the
  step recomputing the fold from M_t kept a copy of the embedding's M_t
  alive while M_{t+1} overwrote it (74.3 MiB of temporaries on the
  GPT-2-shaped update, 15.6% of the params; 10.4 MiB reading it as
  stored).
* **GPU: small leaves of one kind are refitted as one stack.** XLA:GPU
  launches a kernel per fusion and fuses none of different leaves, so each
  of a model's many small leaves cost as many launches as a large one: on
  the GPT-2-small-shaped update (H100), its 98 biases and norms' scales
  (0.1% of the entries) took 981 of the 1,772 kernels. Refitted in three
  stacks (``_leafwise.stacked``; the fold and the step stay per leaf), the
  update had 1,247; most of what remained per small leaf was writing its
  state (each of p, q, v0 and t0 a buffer of its own; see below). TPU and
  CPU refit leaf by leaf: a CPU launches no kernels, and on v5e the stack
  changes little (864 fusions against 1,110, 61.2 bytes per parameter
  either way, 50.4 against 50.8 MiB of temporaries). The GPU's whole
  structure (the stack, and M read as stored) taken on v5e leaves its
  update no temporaries but costs its train step: a peak of 1,323.6 MiB
  against 1,295.6 (SGD with momentum: 1,293.6), 120.0 bytes per parameter
  against 103.9.
* **GPU: one mean for v0, and the factors' norms from sibling
  reductions.** The refit of q takes the refit of p's v0 instead of a mean
  of its own reduction (:func:`_refits`; for a leaf starting
  now both are the mean of V), and a factor's max and sum of squares are
  reductions of the factor alone (:func:`unit`; a variadic reduction of the
  two would save as many, but the SPMD partitioner turns a custom reduction
  over a sharded factor into all-gathers: 32 on two blocks of
  ``benchmarks.collectives``' 8-device layout, where plain ones are
  all-reduced). A matrix's update is then 12 kernels on the H100 instead of
  16: the GPT-2-small-shaped update has 1,089 (1,247 before), with the same
  HBM bytes (33.5 per parameter). On v5e both cost temporaries: 912 fusions
  (1,110), the same HBM bytes (21.3 per parameter), 66.9 MiB of
  temporaries against 50.8 (57.2 with the sums alone, 60.3 with the mean
  alone), so TPU and CPU keep the max before the sum and a mean per refit.
* **GPU: many leaves' state written by one kernel.** The XLA:GPU of
  jaxlib 0.10 fuses no kernels of different leaves horizontally (16
  independent updates of 768-vectors compile to 16 kernels); its sibling
  multi-output fusion does merge kernels of one shape that read a common
  operand, but not a scalar one. Every leaf's clock (t0) reads the step
  count and every factor's writer the parity: scalars. Read from arrays of
  two entries (:func:`clock`), and with each small leaf's refit picked
  after its stack is split (the parity's select then reads the stack, where
  a plain slice of it is a kernel of its own; picked on the stack, 853
  kernels), the writers of p, q and t0 of many leaves share kernels: the
  GPT-2-small-shaped update with bf16 M has 676 kernels on the H100
  instead of 1,089, at the same HBM bytes and temporaries. With fp32 M the
  merged writers made XLA:GPU keep the products that the column reductions
  read (written from the row reductions' kernels of the 3072 x 768 leaves)
  alive together, 81.8 MiB of temporaries (17% of the params), so there
  the refit of q reads M apart (a barrier of its own, :func:`_refits`):
  742 kernels, 9.6 MiB, 34.5 HBM bytes per parameter instead of 33.5 (the
  products have kernels of their own). With 8-bit M the two arrays cost
  temporaries too (83.2 MiB against 10.4), so its tree reads the count
  itself (``clock(..., shared=False)``): 1,042 kernels (1,178), 10.7 MiB.
  On v5e the arrays change little (1,112 fusions against 1,110, 49.8 MiB
  of temporaries against 50.8, the same bytes): TPU and CPU read the count
  itself.
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

from alada_optax import _leafwise


def reduction_result(r: jax.Array) -> jax.Array:
  """A full-size reduction's result, ending its kernel there."""
  return jax.lax.optimization_barrier(r)


def _unit_from_siblings(factor: jax.Array) -> tuple[jax.Array, ...]:
  """``alada._unit`` from reductions of the factor alone (GPU).

  The sum of squares does not wait for the max: it is taken at three
  power-of-two scalings of the factor, the one in range kept. The factor is
  read apart (a barrier) from the new factor's kernel, which XLA:GPU would
  otherwise fuse these reductions with (both read the factor), making the
  second refit's reduction wait for the first's and M read once more.
  """
  factor = _stored(factor)
  a = jnp.abs(factor)
  scale = jnp.max(a, axis=-1)
  # Each band of the max has a power of two taking f's squares into range
  # (float32: a max in (2^40, 2^128) times 2^-88, in [2^-40, 2^40] times 1,
  # below 2^-40 times 2^88): their sum finite, its largest terms normal.
  maxexp = jnp.finfo(factor.dtype).maxexp
  band, shift = 2.0**(maxexp * 5 // 16), 2.0**(maxexp * 11 // 16)
  high, low = scale > band, scale < 1 / band
  # Each scaled band drops the entries that leave the float range there
  # (negligible beside its max); the select also keeps XLA from folding
  # (f c)^2 into f^2 c^2, whose c^2 is out of range (it does so for a
  # factor of one entry, whose sum it turns into a product).
  scaled = (jnp.where(a > 1 / shift, factor / shift, 0), factor,
            jnp.where(a < band, factor * shift, 0))
  sums = [jnp.sum(jnp.square(x), axis=-1) for x in scaled]
  c = jnp.where(high, 1 / shift, jnp.where(low, shift, 1.0)).astype(
      factor.dtype)
  sum2 = jnp.where(high, sums[0], jnp.where(low, sums[2], sums[1]))
  scale = jnp.where(scale > 0, scale, 1)
  return factor / scale[..., None], scale, sum2 / jnp.square(scale * c)


def unit(plain: Callable, factor: jax.Array) -> tuple[jax.Array, ...]:
  """``plain(factor)``: ``alada._unit``, the factor over its max, the max and
  the quotient's squared norm; on GPU the same from reductions of the
  factor alone (see the module's docstring)."""
  return jax.lax.platform_dependent(factor, cuda=_unit_from_siblings,
                                    rocm=_unit_from_siblings, default=plain)


def _stored(x: Any) -> Any:
  return jax.lax.optimization_barrier(x)


def _refits(refit: Callable, leaf: Any, plan: Any, gpu: bool) -> tuple:
  """Both refits of a leaf. On GPU (``gpu``) the refit of q takes its v0
  from the refit of p (for a leaf starting now, both reductions' means are
  the mean of V) and, with M in float32, reads M apart from it (see the
  module's docstring)."""
  p_refit = refit(leaf, plan, True)
  if not gpu:
    return p_refit, refit(leaf, plan, False)
  if not isinstance(leaf.mu, tuple) and leaf.mu.dtype == jnp.float32:
    leaf = leaf._replace(mu=_stored(leaf.mu), target=_stored(leaf.target))
  return p_refit, refit(leaf, plan, False, p_refit[2])


def _pick(even: jax.Array, refits: tuple) -> Any:
  return jax.tree.map(functools.partial(jnp.where, even), *refits)


def _both(refit: Callable, leaves: Sequence[Any], plans: Sequence[Any],
          even: jax.Array) -> list:
  """Both refits of every leaf; the parity keeps one (no control flow)."""
  return [_pick(even, _refits(refit, leaf, plan, gpu=False))
          for leaf, plan in zip(leaves, plans)]


def _stacked(refit, leaves, plans, even):
  """:func:`_both` as :func:`_refits` does it on GPU, the small leaves of
  one kind refitted as one stack, each leaf's refit picked on its own."""
  refits = _leafwise.stacked(
      lambda leaf, plan: _refits(refit, leaf, plan, gpu=True), leaves, plans)
  return [_pick(even, r) for r in refits]


def _clock_from_arrays(count: jax.Array) -> tuple[jax.Array, jax.Array]:
  """:func:`clock` read from arrays of two entries (GPU).

  Two arrays: with one, XLA:GPU computes the parity in the clocks' writer
  and the factors' writers read it from there as a scalar (the
  GPT-2-small-shaped update with fp32 M, its refit of q not yet reading M
  apart: 767 kernels against 676).
  """
  counts = _stored(jnp.stack([count, count]))
  evens = _stored(jnp.stack([count % 2 == 0] * 2))
  return counts[0], evens[0]


def clock(count: jax.Array, shared: bool = True
          ) -> tuple[jax.Array, jax.Array]:
  """``(count, count % 2 == 0)``: the step count the leaves' clocks read and
  the parity their refits follow; on GPU, where ``shared``, each read from
  an array of two entries, which the writers of many leaves' state share
  (see the module's docstring)."""
  plain = lambda count: (count, count % 2 == 0)
  gpu = _clock_from_arrays if shared else plain
  return jax.lax.platform_dependent(count, cuda=gpu, rocm=gpu, default=plain)


def read_as_stored(leaves: Sequence[Any]) -> list:
  """The leaves, whose ``mu`` (M_{t+1}) and ``target`` the refits and the
  step then read from memory: on GPU (see the module's docstring), as they
  are elsewhere."""
  def stored(leaves):
    return [leaf._replace(mu=_stored(leaf.mu), target=_stored(leaf.target))
            for leaf in leaves]
  return jax.lax.platform_dependent(list(leaves), cuda=stored, rocm=stored,
                                    default=list)


def _one_conditional(refit, leaves, plans, even):
  """One ``lax.cond`` over the whole tree picks every leaf's refit (CPU)."""

  def branch(rows):
    def run(leaves):
      leaves = _stored(leaves)  # an op the simplifier keeps a branch for
      return [refit(leaf, plan, rows) for leaf, plan in zip(leaves, plans)]
    return run

  return jax.lax.cond(even, branch(True), branch(False), leaves)


def refit_by_parity(refit: Callable, leaves: Sequence[Any],
                    plans: Sequence[Any], even: jax.Array, *,
                    reads_gradients: bool = False) -> list:
  """Lines 13-18 of Algorithm 2 for every leaf, one parity for the tree.

  Args:
    refit: ``(leaf, plan, rows, v0=None) -> (p, q, v0, ...)``: the refit
      of p (``rows``) or q of a leaf, with the given ``v0`` if not None;
      given a stack of leaves and its plan
      (:func:`alada_optax._leafwise.stacked`), it refits each on its own.
    leaves: the leaves, pytrees of arrays.
    plans: their static plans.
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
      refit, leaves, plans, even)
  cpu = _both if reads_gradients else _one_conditional
  return jax.lax.platform_dependent(
      list(leaves), even, cpu=per_backend(cpu),
      cuda=per_backend(_stacked), rocm=per_backend(_stacked),
      default=per_backend(_both))


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
