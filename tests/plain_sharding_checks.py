"""The plain optax pattern on 8 simulated CPU devices, for all five optimizers.

Run as a script (XLA_FLAGS must be set before JAX starts):

  python -m tests.plain_sharding_checks OUT.json

For each mesh mode (explicit axes, the default of ``jax.make_mesh``, and
automatic axes) and each optimizer: ``state = jax.jit(tx.init)(params)``, a
jitted update compiled once and run for STEPS steps, against the same steps
on one device. It writes one JSON object; tests/test_sharding.py asserts on it.
"""

from __future__ import annotations

import sys

from benchmarks import simulated_devices

simulated_devices.use_cpu_devices(8, 'tests.plain_sharding_checks')

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import warnings

import jax
import numpy as np
import optax
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import alada_optax
from alada_optax import hlo as hlo_lib
from alada_optax import sharding as ash

# name: (shape, spec on the ('data', 'model') = 2 x 4 mesh)
LEAVES = {
    'w': ((16, 32), P('data', 'model')),
    'w3': ((4, 8, 16), P(None, 'data', 'model')),
    'b': ((32,), P('model')),
}
STEPS = 3


def optimizers():
  return {
      'alada': alada_optax.alada(1e-2),
      # 8-bit M in blocks of 4: whole blocks on every device.
      'alada_int8': alada_optax.alada(
          1e-2, mu_dtype=alada_optax.Int8(block_size=4, min_size=0)),
      # Blocks of 16 where a device holds 8 entries of a row: the scales
      # are not split along the blocks (a block would cross devices).
      'alada_int8_b16': alada_optax.alada(
          1e-2, mu_dtype=alada_optax.Int8(block_size=16, min_size=0)),
      'smmf': alada_optax.smmf(1e-2),
      'came': alada_optax.came(1e-2),
      'adamw_snsm': alada_optax.adamw_snsm(1e-2),
      'adapprox': alada_optax.adapprox(1e-2),
      # The matrix paths the defaults leave out at these sizes.
      'adamw_snsm_rank2': alada_optax.adamw_snsm(1e-2, rank=2),
      'adapprox_factored': alada_optax.adapprox(
          1e-2, max_rank=2, oversample=1, min_dim_size_to_factor=4),
  }


def _max_rel_dev(a, b):
  """max over leaves of max|a - b| / max|b| (0/0 = 0)."""
  worst = 0.0
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if y.size:
      dev = np.max(np.abs(x - y))
      worst = max(worst, 0.0 if dev == 0 else
                  float(dev / max(np.max(np.abs(y)), 1e-30)))
  return worst


def _max_abs_dev(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64)
                                 - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
             if np.size(y))


def _step(tx):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return step


def _layout_ok(state, want):
  return all(a.sharding.is_equivalent_to(b, a.ndim)
             for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want)))


def _sharded_leaves(state):
  return sorted(jax.tree_util.keystr(k) for k, a in
                jax.tree_util.tree_leaves_with_path(state)
                if any(e is not None for e in a.sharding.spec))


def run_mode(axis_type, params0, grads, reference):
  mesh = jax.make_mesh((2, 4), ('data', 'model'),
                       axis_types=(axis_type,) * 2)
  psh = {k: NamedSharding(mesh, s) for k, (_, s) in LEAVES.items()}
  out = {}
  for name, tx in optimizers().items():
    try:
      with jax.set_mesh(mesh):
        params = jax.device_put(params0, psh)
        state = jax.jit(tx.init)(params)           # the plain pattern
        want = ash.state_shardings(tx, params)     # the table
        row = {'init_layout_ok': _layout_ok(state, want),
               'sharded_state_leaves': _sharded_leaves(state)}
        if axis_type == AxisType.Auto:
          # Automatic axes carry no sharding in types: the plain pattern
          # replicates the state (as it does optax.adam's); the layout comes
          # from sharded_init, and jit is told to keep it.
          state = ash.sharded_init(tx).init(params)
          row['sharded_init_layout_ok'] = _layout_ok(state, want)
          step = jax.jit(_step(tx), in_shardings=(psh, want, psh),
                         out_shardings=(psh, want))
        else:
          step = jax.jit(_step(tx))  # shardings in types: nothing to say
        step = step.lower(params, state, params).compile()
        hlo = step.as_text()
        row['collective_bytes_per_step'] = hlo_lib.hlo_collective_bytes_per_step(
            hlo)
        row['largest_collective'] = max(
            [[c.elements, c.op] for c in hlo_lib.hlo_collectives(hlo)],
            default=[0, None])
        for g in grads:
          params, state = step(params, state, jax.device_put(g, psh))
        row['layout_after_steps_ok'] = _layout_ok(state, want)
        row['max_abs_dev_params'] = _max_abs_dev(params, reference[name][0])
        row['max_abs_dev_state'] = _max_abs_dev(state, reference[name][1])
        row['max_rel_dev_params'] = _max_rel_dev(params, reference[name][0])
        row['max_rel_dev_state'] = _max_rel_dev(state, reference[name][1])
        row['error'] = None
    except Exception as e:  # pylint: disable=broad-except
      row = {'error': f'{type(e).__name__}: {str(e).splitlines()[0]}'}
    out[name] = row
  return out


def table_checks(params0):
  """state_partition_specs on chains, and the warning for unknown types."""
  axis_sizes = {'data': 2, 'model': 4}
  specs = {k: s for k, (_, s) in LEAVES.items()}
  out = {}
  chained = optax.chain(optax.clip_by_global_norm(1.0),
                        optax.inject_hyperparams(alada_optax.smmf)(1e-2))
  for name, tx in {**optimizers(), 'chain_smmf': chained}.items():
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      tree = ash.state_partition_specs(tx, params0, specs,
                                       axis_sizes=axis_sizes)
    out[name] = {
        'specs': {jax.tree_util.keystr(k): str(v) for k, v in
                  jax.tree_util.tree_leaves_with_path(
                      tree, is_leaf=lambda x: isinstance(x, P))},
        'warnings': [str(w.message) for w in caught],
    }
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ash.state_partition_specs(optax.adafactor(1e-2), params0, specs,
                              axis_sizes=axis_sizes)
  out['adafactor_warnings'] = [str(w.message) for w in caught]
  return out


def main(out_path):
  rng = np.random.default_rng(0)
  params0 = {k: rng.normal(size=s).astype(np.float32)
             for k, (s, _) in LEAVES.items()}
  grads = [{k: rng.normal(size=s).astype(np.float32)
            for k, (s, _) in LEAVES.items()} for _ in range(STEPS)]
  reference = {}
  for name, tx in optimizers().items():
    step = jax.jit(_step(tx))
    p, s = params0, tx.init(params0)
    for g in grads:
      p, s = step(p, s, g)
    reference[name] = (p, s)
  results = {
      'device_count': jax.device_count(),
      'default_axis_types': [str(t) for t in
                             jax.make_mesh((2, 4), ('a', 'b')).axis_types],
      'explicit': run_mode(AxisType.Explicit, params0, grads, reference),
      'auto': run_mode(AxisType.Auto, params0, grads, reference),
      'table': table_checks(params0),
  }
  with open(out_path, 'w') as f:
    json.dump(results, f, indent=1)


if __name__ == '__main__':
  main(sys.argv[1])
