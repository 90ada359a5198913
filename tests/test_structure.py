"""The update's control flow does not grow with the number of leaves.

On XLA:GPU every ``conditional`` that survives compilation copies its branch
index to the host and blocks until the stream drains, and every ``while``
loop reads its predicate on the host each iteration: control flow per leaf is
a blocking host synchronization per leaf per step. These tests hold every
optimizer of the package to at most one conditional and one while loop per
update, whatever the number of leaves, on the program JAX lowers for a GPU
(what the update asks for, before any compiler pass: lowering needs no
plugin, so this runs in CI on CPU). What the GPU and TPU compilers make of it is measured by
``python -m benchmarks.accelerators`` (docs/accelerators.md).
"""

import re

import jax
import jax.numpy as jnp
import optax
import pytest

import alada_optax
from alada_optax import hlo

# Small shapes that still take every method's matrix path: AdamW-SN-SM's
# rank and Adapprox's factoring threshold are set below these sides.
OPTIMIZERS = {
    'alada': lambda: alada_optax.alada(1e-3),
    'alada step_bound=None': lambda: alada_optax.alada(1e-3, step_bound=None),
    'alada second_moment=gradient': lambda: alada_optax.alada(
        1e-3, second_moment='gradient'),
    'alada bf16 M': lambda: alada_optax.alada(1e-3, mu_dtype=jnp.bfloat16),
    'smmf': lambda: alada_optax.smmf(1e-3),
    'came': lambda: alada_optax.came(1e-3),
    'adamw_sn': lambda: alada_optax.adamw_sn(1e-3),
    'adamw_snsm': lambda: alada_optax.adamw_snsm(1e-3, rank=4),
    'adapprox': lambda: alada_optax.adapprox(
        1e-3, max_rank=4, min_dim_size_to_factor=16),
}


def tree(leaves: int):
  """``leaves`` leaves: small matrices of varied shapes and as many
  vectors."""
  out = {}
  for i in range(leaves // 2):
    rows, cols = 16 + 8 * (i % 3), 24 + 8 * (i % 2)
    out[f'layer{i}'] = {'w': jax.ShapeDtypeStruct((rows, cols), jnp.float32),
                        'b': jax.ShapeDtypeStruct((cols,), jnp.float32)}
  return out


# The program is lowered for an NVIDIA GPU, where each conditional and each
# while loop's iteration is a host synchronization: JAX lowers for any
# platform without its plugin. (Lowered for the CPU, jax.random's threefry
# becomes a rolled while loop, which the GPU and TPU lowerings unroll.)
PLATFORM = 'cuda'


def lowered_text(fn, *args) -> str:
  """The HLO JAX lowers ``fn`` to for ``PLATFORM``, before any compiler pass.

  Printed from the module, with each computation's signature:
  ``hlo.hlo_structure`` finds computations by their signature, which
  ``Lowered.as_text(dialect='hlo')`` leaves out (it would count nothing).
  """
  lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=(PLATFORM,))
  return lowered.compiler_ir('hlo').as_hlo_module().to_string()


def lowered_update_text(opt, params) -> str:
  """:func:`lowered_text` of ``opt``'s update and apply on ``params``."""
  state = jax.eval_shape(opt.init, params)

  def update(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return lowered_text(update, params, state, params)


def lowered_structure(opt, params) -> hlo.Structure:
  return hlo.hlo_structure(lowered_update_text(opt, params))


@pytest.fixture(scope='module', params=list(OPTIMIZERS))
def structures(request):
  """(name, structure with 6 leaves, structure with 12 leaves)."""
  make = OPTIMIZERS[request.param]
  return (request.param, lowered_structure(make(), tree(6)),
          lowered_structure(make(), tree(12)))


def test_at_most_one_conditional(structures):
  name, _, twelve = structures
  assert twelve.conditionals <= 1, (
      f'{name}: {twelve.conditionals} conditionals in the update of 12 '
      'leaves; at most one per update (on XLA:GPU each blocks the host)')


def test_at_most_one_while_loop(structures):
  name, _, twelve = structures
  assert twelve.whiles <= 1, (
      f'{name}: {twelve.whiles} while loops in the update of 12 leaves; at '
      'most one per update (on XLA:GPU each iteration reads its predicate on '
      'the host)')


def test_control_flow_does_not_grow_with_the_leaves(structures):
  name, six, twelve = structures
  assert (twelve.conditionals, twelve.whiles) == (
      six.conditionals, six.whiles), (
          f'{name}: conditionals, while loops {six.conditionals}, '
          f'{six.whiles} with 6 leaves and {twelve.conditionals}, '
          f'{twelve.whiles} with 12')


def test_the_count_reads_control_flow_per_leaf():
  """The counter itself: a cond per leaf is seen as one per leaf."""

  def update(params, count):
    return jax.tree.map(
        lambda p: jax.lax.cond(count % 2 == 0, lambda: p * 2, lambda: p + 1),
        params)

  for n in (6, 12):
    text = lowered_text(update, tree(n), jax.ShapeDtypeStruct((), jnp.int32))
    assert hlo.hlo_structure(text).conditionals == n


def small_leaves(k: int):
  """``k`` vectors and ``k`` small matrices, each of one shape."""
  return {f'layer{i}': {'w': jax.ShapeDtypeStruct((16, 24), jnp.float32),
                        'b': jax.ShapeDtypeStruct((64,), jnp.float32)}
          for i in range(k)}


@pytest.mark.parametrize('name', ['alada', 'alada bf16 M'])
def test_alada_refits_small_leaves_of_one_kind_together_on_gpu(name):
  """On a GPU each reduction is a kernel launch at least: Alada's refits of
  small leaves of one shape are one stack's (``_backends``), so the
  reductions do not grow with their number."""
  def reductions(k):
    return lowered_update_text(OPTIMIZERS[name](), small_leaves(k)).count(
        ' reduce(')

  assert reductions(8) == reductions(4) > 0


def test_alada_reads_its_clock_from_two_entry_arrays_on_gpu():
  """XLA:GPU writes many leaves' state in one kernel only where their
  writers read a common operand of more than one entry (``_backends.clock``):
  the step count and the parity reach every leaf from one two-entry array
  each, however many leaves; the CPU, and a tree with 8-bit M, read the
  count itself."""
  def clock_arrays(k, platform='cuda', **kwargs):
    opt = alada_optax.alada(1e-3, **kwargs)
    state = jax.eval_shape(opt.init, small_leaves(k))

    def update(params, state, grads):
      return opt.update(grads, state, params)

    text = jax.jit(update).trace(small_leaves(k), state, small_leaves(k)).lower(
        lowering_platforms=(platform,)).compiler_ir('hlo').as_hlo_module(
        ).to_string()
    return sorted(re.findall(r'= (\w+)\[2\]\S* opt-barrier\(', text))

  assert clock_arrays(4) == clock_arrays(8) == ['pred', 's32']
  assert clock_arrays(4, 'cpu') == []
  # An 8-bit M's tree reads the count itself: the arrays cost it
  # temporaries (``_backends``).
  assert clock_arrays(4, mu_dtype='int8') == []
