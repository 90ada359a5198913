"""Alada in the frameworks people train with, and in their checkpoints.

Flax NNX (nnx.Optimizer), Flax Linen (TrainState), orbax-checkpoint, and
stacked (scan-over-layers) params factored per layer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import alada_optax
from alada_optax import MatrixDimensionNumbers as MDN


def _plain_optax_run(opt, params, grad_fn, steps):
  """Reference: the optax loop written out, params as a plain dict."""
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    grads = grad_fn(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(steps):
    params, state = step(params, state)
  return params, state


# -- stacked layers -------------------------------------------------------------

def test_stacked_layers_behave_like_separate_leaves():
  """(L, d_in, d_out) with MatrixDimensionNumbers(1, 2) == L (d_in, d_out)
  leaves, including layers whose first gradients are zero (they start later,
  each on its own clock)."""
  num_layers, d_in, d_out, steps = 4, 12, 20, 9
  starts = np.array([0, 0, 2, 5])  # step of each layer's first non-zero grad
  rng = np.random.default_rng(0)
  with jax.enable_x64(True):
    x0 = rng.normal(size=(num_layers, d_in, d_out))
    grads = [rng.normal(size=x0.shape) * (t >= starts)[:, None, None]
             for t in range(steps)]
    stacked_opt = alada_optax.alada(1e-2, weight_decay=1e-3,
                                    dimension_numbers=MDN(1, 2))
    separate_opt = alada_optax.alada(1e-2, weight_decay=1e-3)

    def run(opt, to_tree, from_tree):
      params = to_tree(jnp.asarray(x0))
      state = opt.init(params)
      step = jax.jit(lambda p, s, g: (lambda u, s: (
          optax.apply_updates(p, u), s))(*opt.update(g, s, p)))
      history = []
      for g in grads:
        params, state = step(params, state, to_tree(jnp.asarray(g)))
        history.append(from_tree(params))
      return history, state

    stacked, stacked_state = run(
        stacked_opt, lambda x: {'w': x}, lambda t: np.asarray(t['w']))
    separate, separate_state = run(
        separate_opt,
        lambda x: {f'layer{i}': x[i] for i in range(num_layers)},
        lambda t: np.stack([np.asarray(t[f'layer{i}'])
                            for i in range(num_layers)]))
    deviation = max(np.max(np.abs(a - b)) for a, b in zip(stacked, separate))
    print(f"stacked vs separate: max abs deviation {deviation:.3g}")
    # Equal up to the order of float64 reductions (measured: ~4e-16).
    assert deviation < 1e-13, deviation
    s, t = stacked_state[0], separate_state[0]
    np.testing.assert_array_equal(
        s.t0['w'], [t.t0[f'layer{i}'] for i in range(num_layers)])
    np.testing.assert_array_equal(s.t0['w'], starts)
    np.testing.assert_allclose(
        s.p['w'], np.stack([t.p[f'layer{i}'] for i in range(num_layers)]),
        rtol=1e-13)
    np.testing.assert_allclose(
        s.q['w'], np.stack([t.q[f'layer{i}'] for i in range(num_layers)]),
        rtol=1e-13)


def test_stacked_layers_default_view_differs():
  """Without dimension numbers, eq. (12) views the stack as one matrix."""
  params = {'w': jnp.zeros((4, 12, 20))}
  state = alada_optax.scale_by_alada().init(params)
  assert state.v0['w'].shape == ()  # one matrix, not 4
  state = alada_optax.scale_by_alada(dimension_numbers=MDN(1, 2)).init(params)
  assert state.v0['w'].shape == (4,)
  assert state.p['w'].shape == (4, 12) and state.q['w'].shape == (4, 20)


# -- Flax NNX ---------------------------------------------------------------------

def test_flax_nnx_optimizer_step():
  nnx = pytest.importorskip('flax.nnx')

  class Mlp(nnx.Module):

    def __init__(self, rngs):
      self.up = nnx.Linear(6, 16, rngs=rngs)
      self.down = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
      return self.down(jax.nn.gelu(self.up(x)))

  x = jax.random.normal(jax.random.key(1), (8, 6))
  y = jax.random.normal(jax.random.key(2), (8, 3))
  tx = alada_optax.alada(1e-2, weight_decay=1e-3)
  model = Mlp(nnx.Rngs(0))
  graphdef, params0 = nnx.split(model, nnx.Param)
  params0 = nnx.as_pure(params0)  # plain arrays, for the reference
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(
        lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer)) for _ in range(5)]
  assert losses[-1] < losses[0]

  def loss_fn(params):
    return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)

  want_params, want_state = _plain_optax_run(
      tx, params0, jax.grad(loss_fn), 5)
  got = nnx.as_pure(nnx.state(model, nnx.Param))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  got_state = nnx.as_pure(optimizer.opt_state)
  assert isinstance(got_state[0], alada_optax.ScaleByAladaState)
  assert int(got_state[0].count) == 5
  for a, b in zip(jax.tree.leaves(got_state), jax.tree.leaves(want_state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# -- Flax Linen -------------------------------------------------------------------

def test_flax_linen_train_state_step():
  nn = pytest.importorskip('flax.linen')
  from flax.training import train_state  # pylint: disable=g-import-not-at-top

  class Mlp(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.gelu(nn.Dense(16)(x)))

  x = jax.random.normal(jax.random.key(1), (8, 6))
  y = jax.random.normal(jax.random.key(2), (8, 3))
  model = Mlp()
  params = model.init(jax.random.key(0), x)['params']
  tx = alada_optax.alada(optax.linear_schedule(1e-2, 1e-3, 10),
                         weight_decay=1e-3)
  state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=tx)

  def loss_fn(params):
    return jnp.mean((model.apply({'params': params}, x) - y) ** 2)

  @jax.jit
  def train_step(state):
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss

  losses = []
  for _ in range(5):
    state, loss = train_step(state)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  assert int(state.step) == 5
  want_params, _ = _plain_optax_run(tx, params, jax.grad(loss_fn), 5)
  # Two compiled programs (value_and_grad here, grad there): XLA may fuse
  # them differently, and float32 rounding then differs by CPU.
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# -- orbax-checkpoint -------------------------------------------------------------

_CKPT_STEPS = 8


# The first moment in bf16, and in 8 bits (blocks of 4: several per row).
_CKPT_MU = {'bf16': jnp.bfloat16,
            'int8': alada_optax.Int8(block_size=4, min_size=0)}


@functools.lru_cache(maxsize=None)  # one compile per mu for both save steps
def _ckpt_setup(mu='bf16'):
  rng = np.random.default_rng(0)
  params = {
      'stacked': jnp.asarray(rng.normal(size=(3, 8, 12)), jnp.float32),
      'dense': jnp.asarray(rng.normal(size=(8, 12)), jnp.float32),
      'bias': jnp.zeros((12,), jnp.float32),
      'head': jnp.zeros((12, 2), jnp.float32),  # zero first gradients below
  }
  grads = []
  for t in range(_CKPT_STEPS):
    g = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32)
         for k, v in params.items()}
    if t < 3:
      g['head'] = jnp.zeros_like(g['head'])
    grads.append(g)
  # mu_dtype (a callable type) and dimension_numbers are static: without
  # static_args inject_hyperparams would take a callable for a schedule.
  opt = optax.inject_hyperparams(
      alada_optax.alada, static_args=('mu_dtype', 'dimension_numbers'))(
      learning_rate=optax.cosine_decay_schedule(1e-2, 100),
      weight_decay=1e-3,
      mu_dtype=_CKPT_MU[mu],
      dimension_numbers={'stacked': MDN(1, 2), 'dense': None, 'bias': None,
                         'head': None},
  )

  @jax.jit
  def step(params, state, g):
    updates, state = opt.update(g, state, params)
    return optax.apply_updates(params, updates), state

  return params, grads, opt, step


@pytest.mark.parametrize('mu', sorted(_CKPT_MU))
@pytest.mark.parametrize('save_at', [3, 4])  # odd and even step counts
def test_orbax_checkpoint_continuation_is_bit_identical(tmp_path, save_at, mu):
  ocp = pytest.importorskip('orbax.checkpoint')
  params, grads, opt, step = _ckpt_setup(mu)
  state = opt.init(params)
  history = []
  for t, g in enumerate(grads):
    params, state = step(params, state, g)
    history.append((params, state))
    if t + 1 == save_at:
      with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(tmp_path / 'ckpt', {'params': params, 'opt_state': state})

  # A fresh process would build this target from shapes alone.
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        history[0][0])
  target = jax.eval_shape(
      lambda p: {'params': p, 'opt_state': opt.init(p)}, shapes)
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(tmp_path / 'ckpt', target)
  params_r, state_r = restored['params'], restored['opt_state']
  assert jax.tree.structure(state_r) == jax.tree.structure(state)
  if mu == 'int8':  # every leaf's codes and scales come back
    alada_state = state_r.inner_state[0]
    assert {str(x.dtype) for x in jax.tree.leaves(alada_state.mu)} == {'int8'}
    assert len(jax.tree.leaves(alada_state.mu_scale)) == 4
  saved_params, saved_state = history[save_at - 1]
  for a, b in zip(jax.tree.leaves((params_r, state_r)),
                  jax.tree.leaves((saved_params, saved_state))):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  for g in grads[save_at:]:
    params_r, state_r = step(params_r, state_r, g)
  for a, b in zip(jax.tree.leaves((params_r, state_r)),
                  jax.tree.leaves(history[-1])):
    np.testing.assert_array_equal(a, b)


# The checkpointed layout of alada()'s state: paths, shapes and dtypes. A
# change here breaks restoring checkpoints written by earlier versions; see
# docs/scaling_out.md ("Checkpoints") before changing it.
_STATE_LAYOUT = [
    ('[0].count', (), 'int32'),
    ("[0].mu['bias']", (12,), 'float32'),
    ("[0].mu['dense']", (8, 12), 'float32'),
    ("[0].mu['head']", (12, 2), 'float32'),
    ("[0].mu['stacked']", (3, 8, 12), 'float32'),
    ("[0].p['bias']", (1,), 'float32'),
    ("[0].p['dense']", (8,), 'float32'),
    ("[0].p['head']", (12,), 'float32'),
    ("[0].p['stacked']", (3, 8), 'float32'),
    ("[0].q['bias']", (12,), 'float32'),
    ("[0].q['dense']", (12,), 'float32'),
    ("[0].q['head']", (2,), 'float32'),
    ("[0].q['stacked']", (3, 12), 'float32'),
    ("[0].v0['bias']", (), 'float32'),
    ("[0].v0['dense']", (), 'float32'),
    ("[0].v0['head']", (), 'float32'),
    ("[0].v0['stacked']", (3,), 'float32'),
    ("[0].t0['bias']", (), 'int32'),
    ("[0].t0['dense']", (), 'int32'),
    ("[0].t0['head']", (), 'int32'),
    ("[0].t0['stacked']", (3,), 'int32'),
    ('[2].count', (), 'int32'),
]


def test_state_layout_is_stable():
  params, _, _, _ = _ckpt_setup()
  opt = alada_optax.alada(
      optax.cosine_decay_schedule(1e-2, 100), weight_decay=1e-3,
      dimension_numbers={'stacked': MDN(1, 2), 'dense': None, 'bias': None,
                         'head': None})
  state = jax.eval_shape(opt.init, params)
  layout = [(jax.tree_util.keystr(path), tuple(x.shape), str(x.dtype))
            for path, x in jax.tree_util.tree_leaves_with_path(state)]
  assert layout == _STATE_LAYOUT
  # mu_scale holds the 8-bit moment's scales, None (no leaf) in floats.
  assert alada_optax.ScaleByAladaState._fields == (
      'count', 'mu', 'p', 'q', 'v0', 't0', 'mu_scale')
  assert [type(s).__name__ for s in state] == [
      'ScaleByAladaState', 'EmptyState', 'ScaleByScheduleState']
