"""Tests of alada_optax.alada against the float64 transcription and optax habits."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import _common_test as optax_common

import alada_optax
from alada_optax import alada, scale_by_alada
from tests import alada_reference as ref
from tests import quantize_reference
from tests import trajectories
from tests import transform_checks
from tests.optax_checks import OptaxCommonChecks

# Leaves of every order the paper's eq. (12) treats, including ties.
SHAPES = {
    'matrix': (4, 6),
    'tensor3': (2, 3, 4),  # |2-12| vs |6-4| -> 6 x 4
    'tensor4': (2, 3, 2, 5),  # 6 x 10
    'tie': (2, 5, 2),  # |2-10| = |10-2| -> first split: 2 x 10
    'vector': (7,),
    'scalar': (),
}


# -- exactness against the float64 transcription of Algorithm 2 -------------

# The default (each entry's step bounded by 1), the paper's Algorithm 2, and
# factors fitting G^2 (the paper's Section III), bounded and not.
MODES = [pytest.param({}, id='default'),
         pytest.param({'step_bound': None}, id='paper'),
         pytest.param({'second_moment': 'gradient'}, id='gradient'),
         pytest.param({'second_moment': 'gradient', 'step_bound': None},
                      id='gradient-unbounded')]


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize(
    'make_opt',
    [
        pytest.param(lambda lr, wd, **kw: alada(lr, weight_decay=wd, **kw),
                     id='alias'),
        pytest.param(
            lambda lr, wd, **kw: optax.chain(
                scale_by_alada(**kw),
                optax.add_decayed_weights(wd),
                optax.scale_by_learning_rate(lr),
            ),
            id='chain',
        ),
    ],
)
def test_matches_float64_transcription(make_opt, mode):
  steps, wd = 48, 1e-2
  # The paper's eta_0 (1 - t/T) schedule (float64 under x64 for a traced t).
  lr = lambda t: 0.05 - (0.05 / 60) * t
  x0, grad_fn = trajectories.quadratic_problem(SHAPES)
  step, leaves = ref.alada_step(x0, **mode)
  _, _, state = trajectories.compare_with_reference(
      make_opt(lr, wd, **mode), step, x0, grad_fn, steps, lr,
      weight_decay=wd, tol=1e-10)
  if mode.get('step_bound', 1.0) is not None:  # the problem exercises it
    assert sum(leaf.bounded for leaf in leaves.values()) > 0
  alada_state = state[0]
  for k, leaf in leaves.items():
    np.testing.assert_allclose(alada_state.p[k], leaf.p, rtol=1e-10)
    np.testing.assert_allclose(alada_state.q[k], leaf.q, rtol=1e-10)
    np.testing.assert_allclose(
        np.asarray(alada_state.mu[k]).reshape(leaf.m, leaf.n), leaf.M,
        rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(alada_state.v0[k], leaf.v0, rtol=1e-10)


@pytest.fixture
def gpu_structure(monkeypatch):
  """Alada built with the GPU's refits (``_backends``) on the CPU: both
  refits with one mean for v0, the small leaves of one kind refitted as one
  stack, the factors' norms from sibling reductions, the step count and
  parity read from two-entry arrays."""
  from alada_optax import _backends, _leafwise  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(_backends, '_one_conditional', _backends._stacked)
  monkeypatch.setattr(_backends, 'clock',
                      lambda count, shared: _backends._clock_from_arrays(count))
  monkeypatch.setattr(_backends, 'unit',
                      lambda plain, f: _backends._unit_from_siblings(f))
  monkeypatch.setattr(_leafwise, '_COMPILED', type(_leafwise._COMPILED)())


@pytest.mark.parametrize('mode', MODES[:2])
def test_gpu_structure_matches_float64_transcription(gpu_structure, mode):
  """Leaves of one kind refitted as one stack: each still runs Algorithm 2
  on its own, from its own first non-zero gradient."""
  del gpu_structure
  shapes = {'a': (4, 6), 'b': (4, 6), 'c': (7,), 'd': (7,), 'e': (7,),
            'f': (), 'g': (), 'h': (2, 3, 4), 'i': (5,)}
  starts = {'a': 0, 'b': 3, 'c': 0, 'd': 1, 'e': 6, 'f': 0, 'g': 2}
  x0, grad_fn = trajectories.quadratic_problem(shapes, seed=5)

  def delayed(x, t):
    g = grad_fn(x, t)
    return {k: g[k] if t >= starts.get(k, 0) else np.zeros_like(g[k])
            for k in g}

  _, _, state = trajectories.compare_with_reference(
      alada(0.03, weight_decay=1e-2, **mode),
      ref.alada_step(x0, **mode)[0], x0, delayed, 24, 0.03,
      weight_decay=1e-2, tol=1e-10)
  for k, s in starts.items():
    assert int(state[0].t0[k]) == s


# 8-bit first moments: blocks of 4 (or 3) along the last axis, so the leaves
# have several blocks and a short last one; every map, and stochastic
# rounding (whose bits the transcription hashes the same way).
QUANTIZED = [
    pytest.param(dict(map='cubic', block_size=4, stochastic=False), id='cubic'),
    pytest.param(dict(map='linear', block_size=4, stochastic=False),
                 id='linear'),
    pytest.param(dict(map='dynamic', block_size=3, stochastic=False),
                 id='dynamic'),
    pytest.param(dict(map='quartic', block_size=4, stochastic=True),
                 id='quartic-stochastic'),
]


# With leaves whose last axis is several whole blocks (of 3 and of 4): there
# the passes read the codes block by block (_quantize._rows_of_blocks).
SHAPES_8BIT = {**SHAPES, 'blocks': (3, 12), 'blocks3': (2, 2, 24)}


@pytest.mark.parametrize('step_bound', [1.0, None], ids=['default', 'paper'])
@pytest.mark.parametrize('fmt', QUANTIZED)
def test_8bit_moment_matches_float64_transcription(fmt, step_bound):
  steps, wd, lr = 24, 1e-2, 0.05
  x0, grad_fn = trajectories.quadratic_problem(SHAPES_8BIT)
  step, leaves = ref.alada_step(x0, step_bound=step_bound, quantize=fmt)
  opt = alada(lr, weight_decay=wd, step_bound=step_bound,
              mu_dtype=alada_optax.Int8(**fmt, min_size=0))
  _, _, state = trajectories.compare_with_reference(
      opt, step, x0, grad_fn, steps, lr, weight_decay=wd, tol=1e-10)
  # No rounding decision of the run was within float rounding of its
  # threshold (where the two could round apart).
  assert min(leaf.margin for leaf in leaves.values()) > 1e-9
  alada_state = state[0]
  for k, leaf in leaves.items():
    got = quantize_reference.decode(
        np.asarray(alada_state.mu[k]), np.asarray(alada_state.mu_scale[k]),
        fmt['map'], fmt['block_size']) if SHAPES_8BIT[k] else alada_state.mu[k]
    assert alada_state.mu[k].dtype == (np.int8 if SHAPES_8BIT[k]
                                       else np.float64)
    np.testing.assert_allclose(np.asarray(got).reshape(leaf.m, leaf.n),
                               leaf.M, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(alada_state.p[k], leaf.p, rtol=1e-10)


def test_8bit_transcription_sees_the_quantizer():
  """The transcription with 8 bits is not fp32 M's: the test above can fail."""
  x0, grad_fn = trajectories.quadratic_problem(SHAPES)
  fmt = dict(map='linear', block_size=4, stochastic=False)
  step8, _ = ref.alada_step(x0, quantize=fmt)
  step32, _ = ref.alada_step(x0)
  got = trajectories.run_reference(step8, x0, grad_fn, 8, 0.05)
  want = trajectories.run_reference(step32, x0, grad_fn, 8, 0.05)
  assert trajectories.max_rel_err(got[-1], want[-1]) > 1e-6


def test_state_shapes_are_mu_plus_m_plus_n():
  params = {k: jnp.zeros(s) for k, s in SHAPES.items()}
  state = scale_by_alada().init(params)
  for k, s in SHAPES.items():
    m, n = ref.eq12(s)
    chex.assert_shape(state.mu[k], s)
    chex.assert_shape(state.p[k], (m,))
    chex.assert_shape(state.q[k], (n,))
    chex.assert_shape(state.v0[k], ())
    chex.assert_shape(state.t0[k], ())
  chex.assert_shape(state.count, ())
  n_state = sum(x.size for x in jax.tree.leaves(state))
  n_params = sum(x.size for x in jax.tree.leaves(params))
  n_factors = sum(sum(ref.eq12(s)) for s in SHAPES.values())
  assert n_state == n_params + n_factors + 2 * len(SHAPES) + 1


def test_parity_comes_from_count():
  """Even steps refit only p, odd steps only q."""
  params = jnp.zeros((3, 4))
  opt = scale_by_alada()
  state = opt.init(params)
  update = jax.jit(opt.update)
  grads = jnp.arange(12.0).reshape(3, 4) - 5.0
  for t in range(6):
    _, new = update(grads * (1 + t), state)
    changed_p = not np.array_equal(new.p, state.p)
    changed_q = not np.array_equal(new.q, state.q)
    if t == 0:
      assert changed_p and not np.any(new.q - np.sqrt(new.v0))
    else:
      assert (changed_p, changed_q) == ((True, False) if t % 2 == 0
                                        else (False, True)), t
    assert int(new.count) == t + 1
    state = new


def test_a_leaf_starting_on_an_odd_step_refits_q_first():
  """One parity for the tree: a late leaf follows the step count's parity."""
  params = {'early': jnp.zeros((3, 4)), 'late': jnp.zeros((3, 4))}
  opt = scale_by_alada()
  update = jax.jit(opt.update)
  g = jnp.arange(12.0).reshape(3, 4) - 5.0
  state = opt.init(params)
  _, state = update({'early': g, 'late': jnp.zeros_like(g)}, state)
  assert float(state.v0['late']) == 0  # not started at count 0
  _, new = update({'early': g, 'late': g}, state)  # count 1: odd
  root = np.sqrt(float(new.v0['late']))
  np.testing.assert_allclose(new.p['late'], np.full(3, root), rtol=1e-6)
  assert not np.allclose(new.q['late'], root, rtol=1e-3)  # q refitted
  np.testing.assert_array_equal(new.p['early'], state.p['early'])
  assert int(new.t0['late']) == 1


# -- beyond the paper: leaves whose first gradients are zero ------------------

def test_literal_algorithm_blows_up_on_zero_first_gradient():
  """Why the extension exists: literal Algorithm 2 steps by ~M / sqrt(eps)."""
  shape = (3, 4)
  g = np.random.default_rng(1).normal(size=shape)
  literal = ref.AladaLeaf(shape, start_at_nonzero=False, step_bound=None)
  for _ in range(5):
    literal.step(np.zeros(shape))
  with np.errstate(invalid='ignore', divide='ignore'):
    step = literal.step(g)
  adam_like = ref.AladaLeaf(shape).step(g)  # first step of a fresh leaf
  assert np.max(np.abs(step)) / np.max(np.abs(adam_like)) > 1e5


@pytest.mark.parametrize('quantize', [
    None, dict(map='cubic', block_size=4, stochastic=False)],
                         ids=['fp32', 'int8'])
def test_zero_first_gradients_start_the_leaf_later(quantize):
  """A leaf started at step k runs Algorithm 2 exactly, from its own t = 0
  (with an 8-bit M, exactly as the transcription quantizes it)."""
  shapes = {'lora_a': (4, 6), 'head': (5,), 'dense': (2, 3, 4)}
  x0, grad_fn = trajectories.quadratic_problem(shapes, seed=3)
  starts = {'lora_a': 5, 'head': 2, 'dense': 0}

  def delayed(x, t):
    g = grad_fn(x, t)
    return {k: g[k] if t >= starts[k] else np.zeros_like(g[k]) for k in g}

  steps = 40
  mu_dtype = quantize and alada_optax.Int8(**quantize, min_size=0)
  got, _, state = trajectories.compare_with_reference(
      alada(0.03, mu_dtype=mu_dtype), ref.alada_step(x0, quantize=quantize)[0],
      x0, delayed, steps, 0.03, tol=1e-10)
  for k, s in starts.items():
    assert int(state[0].t0[k]) == s
  # Before its start, a leaf does not move at all.
  np.testing.assert_array_equal(got[4]['lora_a'], x0['lora_a'])
  # Its first step has Adam's first-step size (|W| ~ 1), not 1e8.
  first = np.abs(got[5]['lora_a'] - x0['lora_a']) / 0.03
  assert 0.1 < np.max(first) < 10


@pytest.mark.parametrize(
    'mu_dtype', [None, alada_optax.Int8(block_size=4, min_size=0)],
    ids=['fp32', 'int8'])
def test_no_nan_or_inf_from_finite_inputs(mu_dtype):
  """Rounding can push U~ below zero; the clamp keeps the step finite."""
  opt = alada(1e-2, mu_dtype=mu_dtype)
  update = jax.jit(opt.update)
  rng = np.random.default_rng(0)
  for shape in [(8, 8), (3, 5, 7), (6,)]:
    params = jnp.zeros(shape)
    state = opt.init(params)
    g0 = jnp.asarray(rng.normal(size=shape) * 1e3, jnp.float32)
    # Gradients that cancel the momentum to exactly 0, tiny ones and huge ones.
    seq = [g0, -0.9 * g0 / 0.1 * 0.1, jnp.zeros(shape), g0 * 1e-30,
           g0 * 1e15, -g0 * 3e34, jnp.zeros(shape), -g0]
    for g in seq:
      updates, state = update(g, state, params)
      params = optax.apply_updates(params, updates)
      for leaf in jax.tree.leaves((updates, state, params)):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64))), shape


def test_u_tilde_clamp_prevents_nan():
  """A state whose p q^T is below b2^(t+1) v0: U~ < 0, clamped to 0.

  Built, not hoped for from rounding: v0 = 1 with p = q = 1e-3 at t = 1 and
  a small gradient (the q refit adds ~1e-12), so that U~ is about -4 in
  every entry, on every machine. Without the clamp the step is NaN.
  """
  shape = (4, 6)
  state = scale_by_alada().init(jnp.zeros(shape))
  state = state._replace(
      count=jnp.ones([], jnp.int32), p=jnp.full((4,), 1e-3),
      q=jnp.full((6,), 1e-3), v0=jnp.ones([]))
  g = np.full(shape, 1e-6, np.float32)
  d, new = jax.jit(scale_by_alada().update)(jnp.asarray(g), state)
  u_tilde = (np.outer(new.p, new.q) - 0.81 * new.v0) / (1 - 0.81)
  assert np.all(u_tilde < -4), u_tilde  # the clamp is needed everywhere
  # The float64 transcription from the same state: M~ / sqrt(0 + eps).
  leaf = ref.AladaLeaf(shape)
  leaf.t, leaf.p, leaf.q, leaf.v0 = 1, np.full(4, 1e-3), np.full(6, 1e-3), 1.0
  np.testing.assert_allclose(d, leaf.step(g), rtol=1e-5)
  assert np.all(np.isfinite(d))


@functools.cache
def _scaled_run(scale: float, steps: int = 4):
  """Updates and states of scale_by_alada on 4 x 6 gradients of ``scale``."""
  g = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  opt = scale_by_alada()
  state = opt.init(jnp.zeros((4, 6)))
  out = []
  for t in range(steps):
    d, state = _UPDATE(jnp.asarray(g * np.float32(scale * (1 + 0.1 * t))),
                       state)
    out.append((np.asarray(d), state))
  return out


_UPDATE = jax.jit(scale_by_alada().update)


def test_factor_norm_in_every_band_of_its_scale():
  """The factors' squared unit norms on GPU, from sums at three power-of-two
  scalings (no reduction reads the max), as alada._unit's: right from 1e-30
  to 1e37, where the plain sum of squares underflows or overflows, also
  with rows of a batch in different bands, and 0 for a zero factor. A
  factor of one entry (a vector leaf's p) too: there XLA turns the sum into
  elementwise products, which it would fold into f^2 c^2 (0 * inf) without
  the select."""
  from alada_optax._backends import _unit_from_siblings as _unit  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  scales = np.float32([1e-30, 1e-13, 1.0, 3e11, 1e20, 1e37, 0.0])
  for n in (33, 1):
    f = rng.uniform(0.1, 1.0, size=(7, n)).astype(np.float32) * scales[:, None]
    u, scale, norm2 = jax.jit(_unit)(jnp.asarray(f))
    f64 = f.astype(np.float64)
    top = np.max(np.abs(f64), axis=-1)
    want = np.sum((f64 / np.where(top > 0, top, 1)[:, None])**2, axis=-1)
    assert np.all(want[:-1] >= 1) and want[-1] == 0
    np.testing.assert_allclose(norm2, want, rtol=1e-5)
    np.testing.assert_allclose(scale, np.where(top > 0, top, 1), rtol=1e-7)
    np.testing.assert_allclose(np.sum(np.square(u), axis=-1), want,
                               rtol=1e-5)
  for x in scales:  # one entry, no batch
    _, _, norm2 = jax.jit(_unit)(jnp.float32([x]))
    assert float(norm2) == (1.0 if x else 0.0), x


def test_huge_gradients_scale_like_unit_ones():
  """1e19 (G^2 = 1e38, still a float32, as in Adam): Alada is scale-free."""
  for (d, state), (d1, _) in zip(_scaled_run(1e19), _scaled_run(1.0)):
    for x in jax.tree.leaves(state):
      assert np.all(np.isfinite(x))
    np.testing.assert_allclose(d, d1, rtol=1e-4)


@pytest.mark.parametrize('scale', [1e20, 1e30, 1e37])
def test_updates_finite_wherever_adams_are(scale):
  """Past 1e19 the factors saturate; updates stay finite, as Adam's do."""
  g = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  adam = optax.scale_by_adam()
  adam_state = adam.init(jnp.zeros((4, 6)))
  for t, (d, state) in enumerate(_scaled_run(scale)):
    a, adam_state = adam.update(
        jnp.asarray(g * np.float32(scale * (1 + 0.1 * t))), adam_state)
    assert np.all(np.isfinite(a))  # the premise: Adam's are finite
    assert np.all(np.isfinite(d)), (t, d)
    for x in (state.p, state.q, state.v0):
      assert np.all(np.isfinite(x)), t


def test_underflowing_gradients_do_as_documented():
  """Entries of 1e-30: squares flush to 0, the leaf cannot start (docstring)."""
  opt = scale_by_alada()
  state = opt.init(jnp.zeros((4, 6)))
  g = jnp.full((4, 6), 1e-30)
  for _ in range(3):
    d, state = _UPDATE(g, state)
    assert float(state.v0) == 0 and not np.any(state.p) and not np.any(state.q)
    np.testing.assert_allclose(
        d, np.asarray(state.mu, np.float64) / (0.1 * 1e-8), rtol=1e-5)
    assert np.max(np.abs(d)) <= 10 * 1e-30 * 1e8
  # The first gradient large enough starts the leaf, Adam-sized.
  d, state = _UPDATE(jnp.ones((4, 6)), state)
  assert int(state.t0) == 3 and float(state.v0) > 0
  assert 0.5 < np.max(np.abs(d)) < 2


# -- the default safeguard: bounded steps where the rank-one fit is stale ------

@functools.cache
def _jitted_update(step_bound, mu_dtype=None):
  return jax.jit(alada(1.0, step_bound=step_bound, mu_dtype=mu_dtype).update)


def _rare_row_largest_step(step_bound, silent, rows=100, cols=8, row=3,
                           mu_dtype=None):
  """Largest |update| of an embedding row that is silent for ``silent`` steps
  and then reappears on an odd step (lr 1: the update is the step itself)."""
  rng = np.random.default_rng(0)
  params = jnp.zeros((rows, cols))
  update = _jitted_update(step_bound, mu_dtype)
  state = alada(1.0, step_bound=step_bound, mu_dtype=mu_dtype).init(params)
  back = 20 + silent + 1 - (20 + silent) % 2  # odd: p is the stale factor
  largest = 0.0
  for t in range(back + 20):
    g = 0.1 * rng.normal(size=(rows, cols)) + 0.05
    if 20 <= t < back:
      g[row] = 0.0
    updates, state = update(jnp.asarray(g, jnp.float32), state, params)
    if t >= back:
      largest = max(largest, float(jnp.max(jnp.abs(updates[row]))))
  return largest


@pytest.mark.parametrize('silent', [200, 600])
def test_rare_row_steps_are_bounded_by_default(silent):
  """A row idle long enough for its p_i to decay steps by at most the bound."""
  assert _rare_row_largest_step(1.0, silent) <= 1.0 + 1e-6
  assert _rare_row_largest_step(0.5, silent) <= 0.5 + 1e-6


def test_rare_row_spikes_in_paper_mode():
  """Algorithm 2 itself: p_i ~ b2^300 p_i, so U~ ~ 0 and the step ~ M~/sqrt(eps)."""
  assert _rare_row_largest_step(None, 600) > 1e4


def test_bound_changes_only_the_entries_beyond_it():
  """Where |W| <= step_bound the default is Algorithm 2 bit for bit."""
  params = jnp.zeros((6, 5))
  rng = np.random.default_rng(4)
  grads = [jnp.asarray(rng.normal(size=(6, 5)) * rng.lognormal(size=(6, 1)),
                       jnp.float32) for _ in range(7)]
  exact, bounded = scale_by_alada(step_bound=None), scale_by_alada()
  s_exact, s_bounded = exact.init(params), bounded.init(params)
  acted = 0
  for g in grads:
    w_exact, s_exact = jax.jit(exact.update)(g, s_exact)
    w_bounded, s_bounded = jax.jit(bounded.update)(g, s_bounded)
    w_exact, w_bounded = np.asarray(w_exact), np.asarray(w_bounded)
    inside = np.abs(w_exact) <= 1
    acted += int(np.sum(~inside))
    np.testing.assert_array_equal(w_bounded[inside], w_exact[inside])
    np.testing.assert_array_equal(w_bounded[~inside], np.sign(w_exact[~inside]))
    chex.assert_trees_all_equal(s_bounded, s_exact)  # the state is untouched
  assert acted > 0


@pytest.mark.parametrize('step_bound', [1.0, None])
def test_matrix_parabola_at_lr_3e_3(step_bound):
  """optax's own 2x2 matrix_parabola check at lr 3e-3 (30,000 steps)."""
  params, final, obj_fn = optax_common._setup_matrix_parabola(jnp.float32)
  opt = alada(3e-3, step_bound=step_bound)

  def body(carry, _):
    x, state = carry
    updates, state = opt.update(jax.grad(obj_fn)(x), state, x)
    return (optax.apply_updates(x, updates), state), jnp.max(jnp.abs(updates))

  (x, _), steps = jax.jit(lambda x: jax.lax.scan(
      body, (x, opt.init(x)), length=30_000))(params)
  if step_bound is None:  # the paper's steps reach thousands of times the lr
    assert float(jnp.max(steps)) > 100 * 3e-3
  else:
    assert float(jnp.max(steps)) <= 3e-3 * (1 + 1e-6)
    np.testing.assert_allclose(x, final, rtol=3e-2, atol=3e-2)


# -- optax habits -------------------------------------------------------------

@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtypes(dtype):
  params = {'w': jnp.ones((4, 3), dtype), 'b': jnp.ones((3,), dtype)}
  grads = jax.tree.map(lambda x: x * 0.5, params)
  for mu_dtype in [None, jnp.bfloat16]:
    opt = alada(1e-2, mu_dtype=mu_dtype)
    state = opt.init(params)
    updates, new_state = jax.jit(opt.update)(grads, state, params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    want_mu = dtype if mu_dtype is None else mu_dtype
    assert all(x.dtype == want_mu for x in jax.tree.leaves(new_state[0].mu))
    for x in jax.tree.leaves((new_state[0].p, new_state[0].q,
                              new_state[0].v0)):
      assert x.dtype == jnp.float32
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)


def test_float64_factors_stay_float64():
  with jax.enable_x64(True):
    state = scale_by_alada().init({'w': jnp.ones((2, 3), jnp.float64)})
    assert state.p['w'].dtype == jnp.float64
    assert state.v0['w'].dtype == jnp.float64


def test_no_recompilation_on_second_step():
  params = {'w': jnp.ones((3, 4)), 'b': jnp.ones(4)}
  opt = alada(0.1)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: jnp.sum(p['w'] ** 2) + jnp.sum(p['b']))(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params, state = step(params, opt.init(params))
  n = step._cache_size()
  for _ in range(3):
    params, state = step(params, state)
  assert step._cache_size() == n


def test_schedule_and_float_same_trajectory():
  chex.assert_trees_all_close(
      transform_checks.trajectory(alada(optax.constant_schedule(0.05))),
      transform_checks.trajectory(alada(0.05)), rtol=1e-5)


def test_multisteps_matches_plain_on_averaged_grads():
  """MultiSteps(k) over k identical micro-batches == the plain optimizer."""
  k = 3
  plain = transform_checks.trajectory(alada(0.05), steps=4)
  multi = transform_checks.trajectory(
      optax.MultiSteps(alada(0.05), every_k_schedule=k), steps=4 * k)
  chex.assert_trees_all_close(multi[k - 1::k], plain, rtol=1e-5)


@pytest.mark.parametrize('setup', ['quadratic', 'rosenbrock'])
def test_convergence(setup):
  if setup == 'quadratic':
    x0, xstar = jnp.array([[-1.0, 10.0], [3.0, 0.5]]), jnp.array(
        [[1.0, -1.0], [2.0, 0.0]])
    loss = lambda x: jnp.sum((x - xstar) ** 2)
    # Not much larger: on a 2x2 matrix whose M~^2 is nearly anti-diagonal the
    # rank-one fit drives U~ to ~0 off the dominant entries and Algorithm 2
    # itself diverges (the float64 transcription does too, at lr = 0.05).
    lr, steps = 0.01, 3000
  else:
    x0, xstar = jnp.zeros(2), jnp.ones(2)
    loss = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    lr, steps = 2e-3, 20000
  opt = alada(optax.linear_schedule(lr, lr * 0.01, steps))

  def body(carry, _):
    x, state = carry
    updates, state = opt.update(jax.grad(loss)(x), state, x)
    return (optax.apply_updates(x, updates), state), None

  (x, _), _ = jax.jit(
      lambda x: jax.lax.scan(body, (x, opt.init(x)), length=steps))(x0)
  np.testing.assert_allclose(x, xstar, atol=2e-2)


def test_public_api():
  for name in ['scale_by_alada', 'alada', 'ScaleByAladaState',
               'MatrixDimensionNumbers']:
    assert hasattr(alada_optax, name)
  assert set(alada_optax.ScaleByAladaState._fields) >= {
      'count', 'mu', 'p', 'q'}


class TestAladaOptaxChecks(OptaxCommonChecks):
  OPTIMIZERS = [
      pytest.param(alada, {'learning_rate': 1e-3}, id='alada'),
      pytest.param(alada, {'learning_rate': 1e-3, 'weight_decay': 1e-4,
                           'b2': 0.95}, id='alada-wd'),
      pytest.param(alada, {'learning_rate': 1e-3, 'second_moment': 'gradient'},
                   id='alada-gradient'),
  ]


class TestAladaTransform(transform_checks.TransformChecks):
  ALIAS = alada
  SCALE_BY = scale_by_alada
  NAME = 'scale_by_alada'
  INJECT_KWARGS = dict(learning_rate=0.05, b1=0.8, b2=0.85, weight_decay=1e-2,
                       step_bound=0.5)


def test_docstring_examples():
  """The examples in alada's docstrings run and print what they show."""
  import doctest  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module('alada_optax.alada')
  result = doctest.testmod(module, verbose=False)
  assert result.attempted > 0 and result.failed == 0, result


def test_public_api_is_sorted_and_importable():
  assert list(alada_optax.__all__) == sorted(alada_optax.__all__)
  for name in alada_optax.__all__:
    assert hasattr(alada_optax, name), name
  for internal in ('MatrixPlan', 'plan_for', 'square_shape'):
    assert internal not in alada_optax.__all__


def test_second_moment_must_be_momentum_or_gradient():
  with pytest.raises(ValueError, match='second_moment must be one of'):
    alada(1e-3, second_moment='grad')
  with pytest.raises(ValueError, match='second_moment'):
    scale_by_alada(second_moment=None)
