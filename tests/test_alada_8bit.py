"""Alada with its first moment in 8 bits (``mu_dtype='int8'``, ``Int8``).

The update against the float64 transcription is in tests/test_alada.py
(``test_8bit_moment_matches_float64_transcription``, and the start at the
first non-zero gradient, ``test_zero_first_gradients_start_the_leaf_later``); orbax, sharding and the
compiled peaks in tests/test_frameworks.py, tests/test_sharding.py and
tests/test_memory.py. Here: which leaves are stored in 8 bits, the errors,
the features of optax that must keep working, and the behaviours 8-bit
states are known to get wrong (weights that drift with a zero gradient, the
first step of a returning embedding row).
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alada_optax import Int8, alada
from tests import test_alada
from tests import trajectories
from tests import transform_checks
from tests.optax_checks import OptaxCommonChecks

SMALL = Int8(block_size=4, min_size=0)  # several blocks on the small shapes


def _leaves_in_8_bits(state):
  return sorted(jax.tree_util.keystr(k) for k, x in
                jax.tree_util.tree_leaves_with_path(state.mu)
                if x.dtype == jnp.int8)


def test_int8_is_the_default_format():
  params = {'w': jnp.zeros((128, 256)), 'b': jnp.zeros((256,)),
            'e': jnp.zeros((64, 64)), 's': jnp.zeros(())}
  for mu_dtype in ('int8', jnp.int8, Int8()):
    state = alada(1e-3, mu_dtype=mu_dtype).init(params)[0]
    # At least min_size = 4096 entries and one axis: 'w' and 'e'.
    assert _leaves_in_8_bits(state) == ["['e']", "['w']"]
    assert state.mu_scale['w'].shape == (128, 1)  # blocks of 256
    assert state.mu_scale['e'].shape == (64, 1)
    assert state.mu_scale['b'] is None and state.mu['b'].dtype == jnp.float32
  assert Int8() == Int8('cubic', 256, False, 4096)


def test_state_is_a_quarter_of_the_params():
  params = {'w': jnp.zeros((768, 3072)), 'b': jnp.zeros((3072,))}
  state = alada(1e-3, mu_dtype='int8').init(params)
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
  params_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  # int8 codes, a float32 scale per 256 entries, p, q, v0, t0; the bias fp32.
  assert nbytes / params_bytes < 0.26


def test_quantize_mask_keeps_chosen_leaves_in_floats():
  params = {'embed': jnp.zeros((64, 128)), 'dense': jnp.zeros((64, 128)),
            'head': {'w': jnp.zeros((128, 64))}}
  fmt = Int8(min_size=0)
  by_tree = alada(1e-3, mu_dtype=fmt,
                  quantize_mask={'embed': False, 'dense': True, 'head': True})
  by_path = alada(1e-3, mu_dtype=fmt, quantize_mask=lambda p: (
      jax.tree_util.tree_map_with_path(
          lambda k, _: 'embed' not in jax.tree_util.keystr(k), p)))
  for tx in (by_tree, by_path):
    state = tx.init(params)[0]
    assert _leaves_in_8_bits(state) == ["['dense']", "['head']['w']"]
    assert state.mu['embed'].dtype == jnp.float32
    grads = jax.tree.map(jnp.ones_like, params)
    updates, new = jax.jit(tx.update)(grads, tx.init(params), params)
    chex.assert_trees_all_equal_shapes_and_dtypes(tx.init(params), new)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(updates))


def test_wide_last_axes_warn_on_tpu(monkeypatch):
  """On TPU a leaf whose last axis holds more than 16 blocks compiles to
  transposes of the leaf (docs/guides/dtypes.md): init says which leaf, and
  the block size that avoids it. Elsewhere, and at 16 blocks, nothing."""
  params = {'wide': jnp.zeros((8, 17 * 256)), 'ok': jnp.zeros((8, 16 * 256)),
            'masked': jnp.zeros((8, 40 * 256))}
  mask = {'wide': True, 'ok': True, 'masked': False}
  tx = alada(1e-3, mu_dtype='int8', quantize_mask=mask)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    tx.init(params)  # this backend: no warning
  monkeypatch.setattr(jax, 'default_backend', lambda: 'tpu')
  with pytest.warns(UserWarning) as caught:
    tx.init(params)
  messages = [str(w.message) for w in caught]
  assert len(messages) == 1, messages
  assert "leaf ['wide']" in messages[0] and '17 blocks of 256' in messages[0]
  assert 'Int8(block_size=512)' in messages[0]  # 9 blocks of 4352
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    alada(1e-3, mu_dtype=Int8(block_size=512), quantize_mask=mask).init(
        params)


def test_bad_arguments_are_named():
  with pytest.raises(TypeError, match='mu_dtype'):
    alada(1e-3, mu_dtype='int4')
  with pytest.raises(TypeError, match='mu_dtype'):
    alada(1e-3, mu_dtype=jnp.int32)
  with pytest.raises(ValueError, match='quantize_mask needs an 8-bit'):
    alada(1e-3, quantize_mask={'w': True})
  with pytest.raises(ValueError, match='block_size'):
    Int8(block_size=0)
  with pytest.raises(ValueError, match='min_size'):
    Int8(min_size=-1)
  with pytest.raises(TypeError, match='quantize_mask must hold Python bools'):
    alada(1e-3, mu_dtype='int8', quantize_mask={'w': 1}).init(
        {'w': jnp.zeros((64, 64))})
  with pytest.raises(ValueError, match='prefix'):
    alada(1e-3, mu_dtype='int8', quantize_mask={'v': True}).init(
        {'w': jnp.zeros((64, 64))})
  # A state made with fp32 M does not pass for an 8-bit one silently.
  params = {'w': jnp.zeros((64, 64))}
  fp32 = alada(1e-3).init(params)
  with pytest.raises(ValueError, match="leaf \\['w'\\]"):
    alada(1e-3, mu_dtype='int8').update(params, fp32, params)


def _run(tx, grads, params):
  update = jax.jit(tx.update)
  state = tx.init(params)
  history = []
  for g in grads:
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  return history, state


@pytest.mark.parametrize('fmt', [Int8(min_size=0),
                                 Int8(min_size=0, stochastic=True),
                                 Int8('linear', min_size=0)],
                         ids=['cubic', 'cubic-stochastic', 'linear'])
def test_zero_gradient_entries_do_not_drift(fmt):
  """An entry whose gradient is always 0 never moves, inside blocks that
  learn; one whose gradient stops reaches exactly 0 momentum and stops
  (nearest rounding alone would keep the block's smallest level forever)."""
  rng = np.random.default_rng(0)
  params = {'w': jnp.zeros((8, 512))}
  never, stops = (slice(None), 5), (slice(None), 300)
  grads = []
  for t in range(500):
    g = rng.normal(size=(8, 512)).astype(np.float32)
    g[never] = 0
    if t >= 20:
      g[stops] = 0
    grads.append({'w': jnp.asarray(g)})
  history, state = _run(alada(1e-2, mu_dtype=fmt), grads, params)
  w = [np.asarray(h['w']) for h in history]
  assert np.all(w[-1][never] == 0)
  codes = np.asarray(state[0].mu['w'])
  assert np.all(codes[never] == 0) and np.all(codes[stops] == 0)
  # Stopped well before the end: the last 300 steps move it by nothing.
  np.testing.assert_array_equal(w[-1][stops], w[199][stops])
  # The fp32 moment's own decay moves it, for comparison, by a residue.
  fp32, _ = _run(alada(1e-2), grads, params)
  assert np.all(np.asarray(fp32[-1]['w'])[never] == 0)


def test_rare_row_steps_are_bounded_by_default():
  """An embedding row silent for 600 steps returns on an odd step: its
  largest step is at most the bound (lr 1 here, so the step itself)."""
  largest = test_alada._rare_row_largest_step(  # pylint: disable=protected-access
      1.0, 600, cols=64, mu_dtype=Int8(min_size=0, block_size=64))
  assert 0.1 < largest <= 1.0 + 1e-6


def test_dtypes():
  params = {'w': jnp.ones((16, 12), jnp.bfloat16), 'b': jnp.ones((3,))}
  grads = jax.tree.map(lambda x: x * 0.5, params)
  tx = alada(1e-2, mu_dtype=SMALL)
  state = tx.init(params)
  updates, new = jax.jit(tx.update)(grads, state, params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  assert new[0].mu['w'].dtype == jnp.int8
  assert new[0].mu_scale['w'].dtype == jnp.float32  # bf16 params: f32 scales
  chex.assert_trees_all_equal_shapes_and_dtypes(state, new)


def test_multisteps_matches_plain_on_averaged_grads():
  k = 3
  plain = transform_checks.trajectory(alada(0.05, mu_dtype=SMALL), steps=4)
  multi = transform_checks.trajectory(
      optax.MultiSteps(alada(0.05, mu_dtype=SMALL), every_k_schedule=k),
      steps=4 * k)
  chex.assert_trees_all_close(multi[k - 1::k], plain, rtol=1e-5)


def test_masked_leaves_keep_no_state():
  params = {'w': jnp.ones((8, 8)), 'b': jnp.ones((8,))}
  tx = optax.masked(alada(1e-2, mu_dtype=SMALL), {'w': True, 'b': False})
  state = tx.init(params)
  assert isinstance(state.inner_state[0].mu['b'], optax.MaskedNode)
  assert state.inner_state[0].mu['w'].dtype == jnp.int8
  updates, _ = jax.jit(tx.update)(params, state, params)
  assert np.all(np.isfinite(updates['w']))


def test_eager_updates_compile_once():
  """Int8 is part of the compiled kernel's key: eager steps reuse it."""
  params = {'w': jnp.ones((8, 8))}
  tx = alada(1e-2, mu_dtype=SMALL)
  state = tx.init(params)
  from alada_optax import _leafwise  # pylint: disable=g-import-not-at-top
  before = len(_leafwise._COMPILED)  # pylint: disable=protected-access
  for _ in range(3):
    _, state = tx.update(params, state, params)
  again = alada(1e-2, mu_dtype=SMALL)
  again.update(params, again.init(params), params)
  assert len(_leafwise._COMPILED) <= before + 1  # pylint: disable=protected-access


def test_trains_like_fp32_on_the_quadratic():
  """On the noisy quadratic the 8-bit run's loss stays within 10% of fp32's."""
  shapes = {'a': (32, 64), 'b': (64, 16), 'c': (128,)}
  x0, grad_fn = trajectories.quadratic_problem(shapes, seed=1, steps=200)
  final = {}
  for name, mu in (('fp32', None), ('int8', Int8(min_size=0, block_size=64))):
    got, _ = trajectories.run_optax(alada(0.02, mu_dtype=mu), x0, grad_fn,
                                    200, dtype=jnp.float32)
    final[name] = got[-1]
  # Distance to the fp32 run relative to the distance travelled.
  moved = max(float(np.max(np.abs(final['fp32'][k] - x0[k]))) for k in x0)
  apart = max(float(np.max(np.abs(final['int8'][k] - final['fp32'][k])))
              for k in x0)
  assert apart < 0.1 * moved, (apart, moved)


class TestAlada8BitOptaxChecks(OptaxCommonChecks):
  OPTIMIZERS = [
      pytest.param(alada, {'learning_rate': 1e-3, 'mu_dtype': Int8(
          block_size=2, min_size=0)}, id='alada-int8'),
  ]
