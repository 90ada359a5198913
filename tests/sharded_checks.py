"""Alada on 8 simulated CPU devices: the checks behind tests/test_sharding.py.

Run as a script (it sets XLA_FLAGS before JAX starts, which a pytest process
that has already imported JAX cannot do):

  python -m tests.sharded_checks OUT.json [--materialize]

It writes one JSON object of measurements to OUT.json; the tests assert on it.
``--materialize`` compiles a deliberately wrong Alada that reshapes each full
tensor into its ``m x n`` matrix view (as a naive implementation would), to
show that the collective check catches matrices moving between devices.
"""

from __future__ import annotations

import os
import sys

from benchmarks import simulated_devices

simulated_devices.use_cpu_devices(8, 'tests.sharded_checks')

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import math
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import alada_optax
from alada_optax import MatrixDimensionNumbers as MDN
from alada_optax import matricize
from alada_optax import hlo as hlo_lib
from alada_optax import sharding as ash

# name: (shape, PartitionSpec on the ('x', 'y') = 2 x 4 mesh, dimension numbers)
LEAVES = {
    'dense': ((64, 256), P('x', 'y'), None),
    # eq. (12) merges axes 0 and 1 into the rows (m = 4*32 = 128, n = 128);
    # the major merged axis is sharded: p is sharded along 'x'.
    'eq12_major': ((4, 32, 128), P('x', None, 'y'), None),
    # Rows merged from (2, 64), sharded on both: 1 row of axis 0 per device,
    # so p is sharded along ('x', 'y').
    'eq12_both': ((2, 64, 128), P('x', 'y', None), None),
    # Rows merged from (8, 16) with only the minor one sharded: the merged
    # shards are not contiguous, p is replicated (q still along 'y').
    'eq12_minor': ((8, 16, 128), P(None, 'x', 'y'), None),
    'bias': ((256,), P('y'), None),
    # Scan-over-layers: 4 stacked (64, 128) layers, factored per layer.
    'stacked': ((4, 64, 128), P(None, 'x', 'y'), MDN(1, 2)),
    # Attention (d_model, heads, d_head), factored per head; heads sharded.
    'heads': ((64, 4, 32), P('x', 'y', None), MDN(0, 2)),
    'scalar': ((), P(), None),
}
# The specs state_shardings must give p and q (and v0/t0).
EXPECTED = {
    'dense': (P('x'), P('y'), P()),
    'eq12_major': (P('x'), P('y'), P()),
    'eq12_both': (P(('x', 'y')), P(None), P()),
    'eq12_minor': (P(None), P('y'), P()),
    'bias': (P(None), P('y'), P()),
    'stacked': (P(None, 'x'), P(None, 'y'), P(None)),
    'heads': (P('y', 'x'), P('y', None), P('y')),
    'scalar': (P(None), P(None), P()),
}
# Layers of 'stacked' whose gradients are zero before these steps.
STACKED_START = (0, 0, 2, 3)
STEPS = 8
SAVE_AT = (3, 4)  # checkpoint after an odd and an even number of steps


def _grads(t):
  rng = np.random.default_rng(100 + t)
  g = {k: rng.normal(size=s).astype(np.float32) for k, (s, _, _) in
       LEAVES.items()}
  gate = (t >= np.asarray(STACKED_START)).astype(np.float32)
  g['stacked'] = g['stacked'] * gate[:, None, None]
  return g


def _spec_str(s):
  return str(s)


def _max_rel_dev(a, b):
  """max over leaves of max|a - b| / max|b| (0/0 = 0)."""
  worst = 0.0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    scale = np.max(np.abs(y)) if y.size else 0.0
    dev = np.max(np.abs(x - y)) if y.size else 0.0
    worst = max(worst, 0.0 if dev == 0 else dev / max(scale, 1e-30))
  return float(worst)


def _materialize_plans():
  """Monkeypatches MatrixPlan to reshape full tensors (the naive way)."""
  plan_cls = matricize.MatrixPlan

  def to_matrix(self, x):
    order = self.batch_axes + self.row_axes + self.col_axes
    return jnp.transpose(x, order).reshape(self.batch_shape + (self.m, self.n))

  def from_matrix(self, mat):
    order = self.batch_axes + self.row_axes + self.col_axes
    shaped = mat.reshape(tuple(self.shape[a] for a in order))
    return jnp.transpose(shaped, np.argsort(order))

  def sum_over_cols(self, x):
    return jnp.sum(to_matrix(self, x), axis=-1)

  def sum_over_rows(self, x):
    return jnp.sum(to_matrix(self, x), axis=-2)

  def expand_rows(self, p):
    full = jnp.broadcast_to(p[..., :, None], self.batch_shape + (self.m, self.n))
    return from_matrix(self, full)

  def expand_cols(self, q):
    full = jnp.broadcast_to(q[..., None, :], self.batch_shape + (self.m, self.n))
    return from_matrix(self, full)

  plan_cls.sum_over_cols = sum_over_cols
  plan_cls.sum_over_rows = sum_over_rows
  plan_cls.expand_rows = expand_rows
  plan_cls.expand_cols = expand_cols


def main(out_path, materialize=False):
  if materialize:
    _materialize_plans()
  results = {'device_count': jax.device_count()}
  # Auto axes: the classic SPMD partitioner decides every intermediate's
  # layout (explicit axes are checked in _explicit_axes below).
  mesh = jax.make_mesh((2, 4), ('x', 'y'), axis_types=(AxisType.Auto,) * 2)
  rng = np.random.default_rng(0)
  params0 = {k: rng.normal(size=s).astype(np.float32)
             for k, (s, _, _) in LEAVES.items()}
  dim_nums = {k: dn for k, (_, _, dn) in LEAVES.items()}
  params_sh = {k: NamedSharding(mesh, spec) for k, (_, spec, _) in
               LEAVES.items()}
  opt = alada_optax.alada(1e-2, weight_decay=1e-4, dimension_numbers=dim_nums)
  state_sh = ash.state_shardings(opt, params0, params_sh,
                                 dimension_numbers=dim_nums)
  alada_sh = state_sh[0]
  results['specs'] = {
      k: [_spec_str(alada_sh.p[k].spec), _spec_str(alada_sh.q[k].spec),
          _spec_str(alada_sh.v0[k].spec), _spec_str(alada_sh.t0[k].spec),
          _spec_str(alada_sh.mu[k].spec)]
      for k in LEAVES
  }
  results['expected_specs'] = {
      k: [_spec_str(p), _spec_str(q), _spec_str(b), _spec_str(b),
          _spec_str(LEAVES[k][1])]
      for k, (p, q, b) in EXPECTED.items()
  }

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  sharded_step = jax.jit(step, in_shardings=(params_sh, state_sh, params_sh),
                         out_shardings=(params_sh, state_sh))
  params = jax.device_put(params0, params_sh)
  state = jax.jit(opt.init, out_shardings=state_sh)(params)
  results['init_state_specs_ok'] = all(
      a.sharding.is_equivalent_to(b, a.ndim)
      for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_sh), strict=True))

  # What the compiled step moves between devices.
  compiled = sharded_step.lower(params, state, params).compile()
  sharded_step = compiled  # run what was inspected, and compile once
  hlo = compiled.as_text()
  coll = hlo_lib.hlo_collectives(hlo)
  results['collectives'] = [
      [c.op, [[dt, list(s)] for dt, s in c.shapes], c.elements, c.bytes]
      for c in coll
  ]
  results['collective_bytes_static'] = sum(c.bytes for c in coll)
  results['collective_bytes_per_step_bound'] = (
      hlo_lib.hlo_collective_bytes_per_step(hlo))
  plans = matricize.tree_plans(params0, dim_nums)
  results['largest_factor_elements'] = max(
      max(math.prod(pl.row_factor_shape), math.prod(pl.col_factor_shape))
      for pl in jax.tree.leaves(plans)
  )
  results['smallest_matrix_shard_elements'] = min(
      math.prod(params_sh[k].shard_shape(s))
      for k, (s, _, _) in LEAVES.items() if len(s) >= 2
  )
  results['param_bytes'] = sum(v.nbytes for v in params0.values())
  if materialize:
    with open(out_path, 'w') as f:
      json.dump(results, f)
    return

  # 8 devices against 1, step by step; checkpoints on the way.
  single_step = jax.jit(step)
  p1, s1 = params0, opt.init(params0)
  p8, s8 = params, state
  dev_params, dev_state = [], []
  saved = {}
  ckpt_dir = tempfile.mkdtemp(prefix='alada_sharded_ckpt_')
  try:
    import orbax.checkpoint as ocp
  except ImportError:  # reported as None: the tests skip
    ocp = None
  checkpointer = ocp.StandardCheckpointer() if ocp else None
  history8 = {}
  for t in range(STEPS):
    g = _grads(t)
    p1, s1 = single_step(p1, s1, g)
    p8, s8 = sharded_step(p8, s8, jax.device_put(g, params_sh))
    history8[t + 1] = (p8, s8)
    dev_params.append(_max_rel_dev(p8, p1))
    dev_state.append(_max_rel_dev(s8, s1))
    if checkpointer and t + 1 in SAVE_AT:
      path = os.path.join(ckpt_dir, f'step_{t + 1}')
      checkpointer.save(path, {'params': p8, 'opt_state': s8})
      saved[t + 1] = path
  if checkpointer:
    checkpointer.wait_until_finished()
  results['max_rel_dev_params'] = dev_params
  results['max_rel_dev_state'] = dev_state
  results['max_abs_dev_params'] = max(
      float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
      for a, b in zip(jax.tree.leaves(p8), jax.tree.leaves(p1), strict=True))
  results['state_specs_after_steps_ok'] = all(
      a.sharding.is_equivalent_to(b, a.ndim)
      for a, b in zip(jax.tree.leaves(s8), jax.tree.leaves(state_sh), strict=True))

  results['restore'] = results['restore_other_mesh'] = None
  if checkpointer:
    _restore_checks(results, checkpointer, saved, history8, params, state,
                    params_sh, state_sh, sharded_step, opt, params0, dim_nums)
  shutil.rmtree(ckpt_dir, ignore_errors=True)
  try:
    import flax.nnx  # pylint: disable=unused-import
  except ImportError:  # reported as None: the tests skip
    results['nnx'] = None
  else:
    results['nnx'] = _nnx_sharded(mesh)
  results['explicit_axes'] = _explicit_axes(params0, p1)
  with open(out_path, 'w') as f:
    json.dump(results, f)


def _restore_checks(results, checkpointer, saved, history8, params, state,
                    params_sh, state_sh, sharded_step, opt, params0,
                    dim_nums):
  """Orbax: restore sharded, continue bit-identically, restore elsewhere."""
  # Restore into an abstract, sharded target and continue: bit-identical.
  abstract = jax.tree.map(
      lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
      {'params': params, 'opt_state': state},
      {'params': params_sh, 'opt_state': state_sh},
  )
  restore = {}
  for k, path in saved.items():
    r = checkpointer.restore(path, abstract)
    shardings_ok = all(
        a.sharding.is_equivalent_to(b.sharding, a.ndim)
        for a, b in zip(jax.tree.leaves(r), jax.tree.leaves(abstract), strict=True))
    pr, sr = r['params'], r['opt_state']
    for t in range(k, STEPS):
      pr, sr = sharded_step(pr, sr, jax.device_put(_grads(t), params_sh))
    pu, su = history8[STEPS]
    identical = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves((pr, sr)), jax.tree.leaves((pu, su)), strict=True))
    restore[str(k)] = {'shardings_ok': shardings_ok,
                       'bit_identical': identical,
                       'same_structure': jax.tree.structure(sr)
                       == jax.tree.structure(su)}
  results['restore'] = restore

  # Restore onto another mesh: 4 x 2 with the axes' roles swapped, so every
  # sharded array's shards sit on other devices.
  other = jax.make_mesh((4, 2), ('y', 'x'), axis_types=(AxisType.Auto,) * 2)
  other_params_sh = {k: NamedSharding(other, spec)
                     for k, (_, spec, _) in LEAVES.items()}
  other_state_sh = ash.state_shardings(opt, params0, other_params_sh,
                                       dimension_numbers=dim_nums)
  other_target = jax.tree.map(
      lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
      {'params': params, 'opt_state': state},
      {'params': other_params_sh, 'opt_state': other_state_sh},
  )
  r = checkpointer.restore(saved[SAVE_AT[0]], other_target)
  p_saved, s_saved = history8[SAVE_AT[0]]
  results['restore_other_mesh'] = {
      'shardings_ok': all(
          a.sharding.is_equivalent_to(b.sharding, a.ndim)
          for a, b in zip(jax.tree.leaves(r), jax.tree.leaves(other_target), strict=True)),
      'values_equal': all(
          np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
              jax.tree.leaves(r), jax.tree.leaves(
                  {'params': p_saved, 'opt_state': s_saved}), strict=True)),
  }
  checkpointer.close()


def _explicit_axes(params0, want_params):
  """The same steps on a mesh with explicit axes (sharding in types).

  Returns the error if tracing or compiling fails, and the deviation from one
  device after all STEPS.
  """
  mesh = jax.make_mesh((2, 4), ('x', 'y'),
                       axis_types=(AxisType.Explicit,) * 2)
  dim_nums = {k: dn for k, (_, _, dn) in LEAVES.items()}
  opt = alada_optax.alada(1e-2, weight_decay=1e-4, dimension_numbers=dim_nums)
  psh = {k: NamedSharding(mesh, spec) for k, (_, spec, _) in LEAVES.items()}
  ssh = ash.state_shardings(opt, params0, psh, dimension_numbers=dim_nums)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  try:
    with jax.set_mesh(mesh):
      params = jax.device_put(params0, psh)
      state = jax.jit(opt.init, out_shardings=ssh)(params)
      jitted = jax.jit(step, in_shardings=(psh, ssh, psh),
                       out_shardings=(psh, ssh)).lower(
                           params, state, params).compile()
      coll = hlo_lib.hlo_collectives(jitted.as_text())
      for t in range(STEPS):
        params, state = jitted(params, state, jax.device_put(_grads(t), psh))
  except Exception as e:  # pylint: disable=broad-except
    return {'error': f'{type(e).__name__}: {str(e).splitlines()[0]}'}
  return {'error': None,
          'max_rel_dev_params': _max_rel_dev(params, want_params),
          'largest_collective_elements': max(c.elements for c in coll),
          'collective_ops': sorted({c.op for c in coll})}


def _nnx_sharded(mesh):
  """Flax NNX with sharding-annotated params, 8 devices vs 1 device."""
  from flax import nnx

  class Mlp(nnx.Module):

    def __init__(self, rngs, sharded):
      init = nnx.initializers.lecun_normal()
      part = (lambda f, names: nnx.with_partitioning(f, names)) if sharded \
          else (lambda f, names: f)
      self.up = nnx.Linear(16, 64, rngs=rngs,
                           kernel_init=part(init, (None, 'y')),
                           bias_init=part(nnx.initializers.zeros, ('y',)))
      self.down = nnx.Linear(64, 8, rngs=rngs,
                             kernel_init=part(init, ('y', None)))

    def __call__(self, x):
      return self.down(jax.nn.gelu(self.up(x)))

  tx = alada_optax.alada(1e-2)
  x = jax.random.normal(jax.random.key(1), (32, 16))
  y = jax.random.normal(jax.random.key(2), (32, 8))

  @nnx.jit
  def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(
        lambda m: jnp.mean((m(x) - y) ** 2))(model)
    optimizer.update(model, grads)
    return loss

  def run(sharded):
    if sharded:
      with jax.set_mesh(mesh):
        model = Mlp(nnx.Rngs(0), sharded=True)
        optimizer = nnx.Optimizer(
            model, ash.sharded_init(tx), wrt=nnx.Param)
        xs = jax.device_put(x, NamedSharding(mesh, P('x')))
        losses = [float(train_step(model, optimizer, xs, y)) for _ in range(4)]
    else:
      model = Mlp(nnx.Rngs(0), sharded=False)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
      losses = [float(train_step(model, optimizer, x, y)) for _ in range(4)]
    return model, optimizer, losses

  m8, o8, l8 = run(True)
  m1, o1, l1 = run(False)
  params8 = nnx.as_pure(nnx.state(m8, nnx.Param))
  params1 = nnx.as_pure(nnx.state(m1, nnx.Param))
  alada8 = nnx.as_pure(o8.opt_state)[0]
  want = ash.state_shardings(nnx.as_pure(o8.opt_state), params8)[0]
  return {
      'losses_8': l8,
      'losses_1': l1,
      'max_rel_dev_params': _max_rel_dev(params8, params1),
      'p_specs': [str(a.sharding.spec) for a in jax.tree.leaves(alada8.p)],
      'state_layout_ok': all(
          a.sharding.is_equivalent_to(b, a.ndim)
          for a, b in zip(jax.tree.leaves(alada8), jax.tree.leaves(want), strict=True)),
      'mu_like_params': all(
          a.sharding.is_equivalent_to(b.sharding, a.ndim)
          for a, b in zip(jax.tree.leaves(alada8.mu),
                          jax.tree.leaves(params8), strict=True)),
  }


if __name__ == '__main__':
  main(sys.argv[1], materialize='--materialize' in sys.argv[2:])
