"""Tests of alada_optax.sharding, and of Alada under jit on 8 CPU devices.

The multi-device checks run in a subprocess (tests/sharded_checks.py) because
the number of simulated CPU devices must be set (XLA_FLAGS) before JAX starts,
and pytest has already started JAX for the other test modules.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import alada_optax
from alada_optax import MatrixDimensionNumbers as MDN
from alada_optax import ScaleByAladaState
from alada_optax import hlo as hlo_lib
from alada_optax import sharding as ash
from examples.sharded import train as sharded_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AXIS_SIZES = {'x': 2, 'y': 4}


# -- the spec rules, in process ------------------------------------------------

@pytest.mark.parametrize('sizes, entries, axis_sizes, want', [
    ((8, 16), ('x', None), AXIS_SIZES, 'x'),            # major axis sharded
    ((2, 64), ('x', 'y'), AXIS_SIZES, ('x', 'y')),      # 1 per device, then y
    ((4, 64), ('x', 'y'), AXIS_SIZES, 'x'),             # 2 per device: stop
    ((8, 16), (None, 'x'), AXIS_SIZES, None),           # minor only: none
    ((1, 16), (None, 'x'), AXIS_SIZES, 'x'),            # size-1 major is free
    ((6, 16), ('y', None), AXIS_SIZES, None),           # 6 % 4: not even
    ((8, 16), (('x', 'y'), None), AXIS_SIZES, ('x', 'y')),
    ((2, 64), ('x', 'y'), None, 'x'),                   # no sizes: first only
    ((8, 16), (None, 'x'), None, None),
    ((), (), AXIS_SIZES, None),
])
def test_merged_axis_entry(sizes, entries, axis_sizes, want):
  assert ash.merged_axis_entry(sizes, entries, axis_sizes) == want


def _params():
  return {
      'dense': jnp.zeros((64, 256)),
      'eq12': jnp.zeros((2, 64, 128)),  # rows (2, 64), columns 128
      'bias': jnp.zeros((256,)),
      'stacked': jnp.zeros((4, 64, 128)),
      'scalar': jnp.zeros(()),
  }


_SPECS = {
    'dense': P('x', 'y'),
    'eq12': P('x', 'y', None),
    'bias': P('y'),
    'stacked': P(None, 'x', 'y'),
    'scalar': P(),
}
_DIM_NUMS = {'dense': None, 'eq12': None, 'bias': None, 'stacked': MDN(1, 2),
             'scalar': None}


def test_alada_state_specs():
  params = _params()
  opt = alada_optax.alada(1e-3, dimension_numbers=_DIM_NUMS)
  specs = ash.state_partition_specs(
      opt, params, _SPECS, dimension_numbers=_DIM_NUMS, axis_sizes=AXIS_SIZES)
  state = jax.eval_shape(opt.init, params)
  assert jax.tree.structure(specs) == jax.tree.structure(state)
  alada_specs = specs[0]
  assert isinstance(alada_specs, ScaleByAladaState)
  assert alada_specs.count == P()
  assert alada_specs.mu == _SPECS
  assert alada_specs.p == {'dense': P('x'), 'eq12': P(('x', 'y')),
                           'bias': P(None), 'stacked': P(None, 'x'),
                           'scalar': P(None)}
  assert alada_specs.q == {'dense': P('y'), 'eq12': P(None), 'bias': P('y'),
                           'stacked': P(None, 'y'), 'scalar': P(None)}
  assert alada_specs.v0 == alada_specs.t0 == {
      'dense': P(), 'eq12': P(), 'bias': P(), 'stacked': P(None),
      'scalar': P()}


def test_specs_from_logical_axis_names():
  """Logical names (t5x / flax logical partitioning) work without a mesh."""
  params = {'w': jnp.zeros((8, 32, 128)), 'k': jnp.zeros((4, 64, 128))}
  specs = {'w': P('layers', None, 'mlp'), 'k': P('embed', 'heads', None)}
  state = jax.eval_shape(scale_by_alada_init, params)
  out = ash.scale_by_alada_state_specs(state, specs)
  # Without mesh sizes, only the first sharded axis of merged rows is kept.
  assert out.p == {'w': P('layers'), 'k': P('embed')}
  assert out.q == {'w': P('mlp'), 'k': P(None)}


def scale_by_alada_init(params):
  return alada_optax.scale_by_alada().init(params)


def test_t5x_style_rule():
  """The per-state rule has t5x's OptaxStatePartitionRules signature."""
  params = {'stacked': jnp.zeros((4, 64, 128))}
  rule = functools.partial(ash.scale_by_alada_state_specs,
                           dimension_numbers=MDN(1, 2))
  state = alada_optax.scale_by_alada(dimension_numbers=MDN(1, 2)).init(params)
  out = rule(state, {'stacked': P('layers', 'embed', 'mlp')})
  assert out.p == {'stacked': P('layers', 'embed')}
  assert out.q == {'stacked': P('layers', 'mlp')}
  assert out.v0 == {'stacked': P('layers')}


def test_nested_optax_states():
  params = _params()
  labels = {k: 'alada' if k != 'scalar' else 'adam' for k in params}
  opts = {
      'inject_hyperparams': optax.inject_hyperparams(alada_optax.alada)(
          learning_rate=1e-3, dimension_numbers=_DIM_NUMS),
      'multisteps': optax.MultiSteps(
          alada_optax.alada(1e-3, dimension_numbers=_DIM_NUMS), 2),
      'masked': optax.masked(
          alada_optax.scale_by_alada(dimension_numbers=_DIM_NUMS),
          {k: k != 'bias' for k in params}),
      'multi_transform': optax.multi_transform(
          {'alada': alada_optax.alada(1e-3, dimension_numbers=_DIM_NUMS),
           'adam': optax.adam(1e-3)}, labels),
  }
  for name, opt in opts.items():
    state = jax.eval_shape(opt.init, params)
    specs = ash.state_partition_specs(
        opt, params, _SPECS, dimension_numbers=_DIM_NUMS,
        axis_sizes=AXIS_SIZES)
    assert jax.tree.structure(specs) == jax.tree.structure(state), name
    found = [s for s in jax.tree.leaves(
        specs, is_leaf=lambda x: isinstance(x, ScaleByAladaState))
             if isinstance(s, ScaleByAladaState)]
    assert len(found) == 1, name
    mu_specs = {k: v for k, v in found[0].mu.items()
                if not isinstance(v, optax.MaskedNode)}
    assert all(mu_specs[k] == _SPECS[k] for k in mu_specs), name
    assert found[0].p['stacked'] == P(None, 'x'), name
  # MultiSteps' accumulated gradients and Adam's moments follow the params.
  ms = ash.state_partition_specs(opts['multisteps'], params, _SPECS,
                                 dimension_numbers=_DIM_NUMS)
  assert ms.acc_grads == _SPECS and ms.mini_step == P()
  mt = ash.state_partition_specs(opts['multi_transform'], params, _SPECS,
                                 dimension_numbers=_DIM_NUMS)
  adam_state = mt.inner_states['adam'].inner_state[0]
  assert adam_state.mu['scalar'] == P()
  assert isinstance(adam_state.mu['dense'], optax.MaskedNode)
  masked = ash.state_partition_specs(opts['masked'], params, _SPECS,
                                     dimension_numbers=_DIM_NUMS)
  assert isinstance(masked.inner_state.p['bias'], optax.MaskedNode)


def test_wrong_dimension_numbers_are_named():
  params = {'stacked': jnp.zeros((4, 64, 128))}
  opt = alada_optax.alada(1e-3, dimension_numbers=MDN(1, 2))
  with pytest.raises(ValueError, match=r"\['stacked'\].*dimension_numbers"):
    ash.state_partition_specs(opt, params, {'stacked': P()})


def test_state_shardings_on_one_device_mesh():
  """NamedShardings out, usable as jit out_shardings (a 1x1 mesh here)."""
  mesh = jax.make_mesh((1, 1), ('x', 'y'), devices=jax.devices()[:1])
  params = _params()
  params_sh = {k: NamedSharding(mesh, s) for k, s in _SPECS.items()}
  opt = alada_optax.alada(1e-3, dimension_numbers=_DIM_NUMS)
  state_sh = ash.state_shardings(opt, params, params_sh,
                                 dimension_numbers=_DIM_NUMS)
  # (2, 64) rows: 2 rows of axis 0 per device on a 1x1 mesh, so only 'x'.
  assert state_sh[0].p['eq12'] == NamedSharding(mesh, P('x'))
  state = jax.jit(opt.init, out_shardings=state_sh)(
      jax.device_put(params, params_sh))
  assert state[0].q['dense'].sharding == NamedSharding(mesh, P('y'))
  # sharded_init does the same from the params' own shardings.
  state2 = ash.sharded_init(opt, dimension_numbers=_DIM_NUMS).init(
      jax.device_put(params, params_sh))
  assert state2[0].p['stacked'].sharding == NamedSharding(mesh, P(None, 'x'))
  # ... and is plain init for params without NamedShardings.
  chex_eq = jax.tree.map(np.array_equal,
                         ash.sharded_init(opt, dimension_numbers=_DIM_NUMS)
                         .init(params), opt.init(params))
  assert all(jax.tree.leaves(chex_eq))


def test_hlo_collectives_parser():
  hlo = '\n'.join([
      'HloModule m',
      '%branch_a (p: f32[8]) -> f32[8] {',
      '  %ar = f32[8]{0} all-reduce(f32[8]{0} %p), replica_groups={}',
      '}',
      '%branch_b (p: f32[8]) -> f32[8] {',
      '  ROOT %ag = f32[64,2]{1,0} all-gather(%p), dimensions={0}',
      '}',
      'ENTRY %main (a: f32[8], c: pred[]) -> f32[8] {',
      '  %t = (f32[4]{0}, bf16[2]{0}) all-reduce(%a, %b), to_apply=%add',
      '  %cond = f32[8] conditional(%c, %a, %a), '
      'branch_computations={%branch_a, %branch_b}',
      '}',
  ])
  coll = hlo_lib.hlo_collectives(hlo)
  assert [(c.op, c.elements, c.bytes, c.computation) for c in coll] == [
      ('all-reduce', 8, 32, 'branch_a'),
      ('all-gather', 128, 512, 'branch_b'),
      ('all-reduce', 6, 20, 'main'),
  ]
  assert hlo_lib.hlo_collective_bytes_per_step(hlo) == 20 + 512


# -- 8 simulated devices, in a subprocess -------------------------------------

def _run_checks(tmp_path_factory, *flags, module='tests.sharded_checks'):
  """Runs ``python -m module OUT *flags`` (8 simulated devices, set up by the
  module before JAX starts) and returns the JSON it wrote to OUT."""
  out = tmp_path_factory.mktemp(module.split('.')[-1]) / 'results.json'
  env = dict(os.environ)
  env.pop('JAX_PLATFORMS', None)
  proc = subprocess.run(
      [sys.executable, '-m', module, str(out), *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
      check=False)
  if proc.returncode:
    raise AssertionError(f'{module} failed:\n{proc.stdout}\n{proc.stderr}')
  with open(out) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def checks(tmp_path_factory):
  return _run_checks(tmp_path_factory)


def test_eight_devices(checks):
  assert checks['device_count'] == 8


def test_state_specs_follow_the_params(checks):
  """mu as its param; p and q along the param axes they come from."""
  assert checks['specs'] == checks['expected_specs']
  assert checks['init_state_specs_ok']
  assert checks['state_specs_after_steps_ok']


def test_eight_devices_match_one(checks):
  # Only the order of float32 reductions differs.
  assert max(checks['max_rel_dev_params']) < 1e-5
  assert max(checks['max_rel_dev_state']) < 1e-5


def test_no_matrix_moves_between_devices(checks):
  """Every collective of the compiled step is vector-sized."""
  largest_vector = checks['largest_factor_elements']
  assert checks['smallest_matrix_shard_elements'] > largest_vector
  assert checks['collectives'], 'expected the row/column all-reduces'
  for op, shapes, elements, _ in checks['collectives']:
    assert elements <= largest_vector, (op, shapes)
  assert {c[0] for c in checks['collectives']} <= {'all-reduce', 'all-gather'}
  # Bytes per step: well under 1% of the params' bytes here.
  assert checks['collective_bytes_per_step_bound'] < checks['param_bytes'] / 50


def test_collective_check_sees_materialized_matrices(tmp_path_factory):
  """A naive Alada that reshapes full tensors into matrices does move
  matrices (the leaf whose merged rows cannot stay sharded): the check above
  would fail on it."""
  naive = _run_checks(tmp_path_factory, '--materialize')
  largest_vector = naive['largest_factor_elements']
  moved = [c for c in naive['collectives'] if c[2] > largest_vector]
  assert moved, naive['collectives']


def _needs(checks, key, package):
  if checks[key] is None:
    pytest.skip(f'{package} is not installed')
  return checks[key]


def test_sharded_checkpoint_restore_is_bit_identical(checks):
  _needs(checks, 'restore', 'orbax-checkpoint')
  assert set(checks['restore']) == {'3', '4'}  # odd and even steps
  for step, r in checks['restore'].items():
    assert r == {'shardings_ok': True, 'bit_identical': True,
                 'same_structure': True}, step


def test_checkpoint_restores_onto_another_mesh(checks):
  _needs(checks, 'restore_other_mesh', 'orbax-checkpoint')
  assert checks['restore_other_mesh'] == {'shardings_ok': True,
                                          'values_equal': True}


def test_flax_nnx_sharded(checks):
  nnx_checks = _needs(checks, 'nnx', 'flax')
  np.testing.assert_allclose(nnx_checks['losses_8'], nnx_checks['losses_1'],
                             rtol=1e-5)
  assert nnx_checks['max_rel_dev_params'] < 1e-5
  assert nnx_checks['state_layout_ok'] and nnx_checks['mu_like_params']


def test_explicit_mesh_axes(checks):
  """A mesh with explicit axes (sharding in types): same steps, vectors moved."""
  explicit = checks['explicit_axes']
  assert explicit['error'] is None
  assert explicit['max_rel_dev_params'] < 1e-5
  assert explicit['largest_collective_elements'] <= checks[
      'largest_factor_elements']
  assert set(explicit['collective_ops']) <= {'all-reduce', 'all-gather'}


def test_sharded_example_runs(tmp_path):
  """examples/sharded (main.py, train.py), small, on 8 simulated devices:
  what it prints is what its results.json records."""
  env = dict(os.environ)
  env.pop('JAX_PLATFORMS', None)
  proc = subprocess.run(
      [sys.executable, '-m', 'examples.sharded.main',
       '--config.num_steps=2', '--config.num_layers=1', '--config.width=16',
       '--config.num_heads=4', f'--workdir={tmp_path}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
      check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert '8 devices' in proc.stdout
  assert 'step    1  loss' in proc.stdout
  with open(tmp_path / 'results.json', encoding='utf-8') as f:
    results = json.load(f)
  assert results['command'].startswith('python -m examples.sharded.main ')
  assert results['devices'] == 8 and len(results['losses']) == 2
  assert f'params: {results["param_bytes"]:,} bytes' in proc.stdout
  for what, key in (('train step', 'train_step'),
                    ('Alada update alone', 'update')):
    assert sharded_train.describe_collectives(what, results[key]) in (
        proc.stdout.splitlines())
  assert set(results['update']['by_kind']) == {'all-reduce'}


# -- the plain optax pattern, all five optimizers, both mesh modes -----------

_PLAIN_NAMES = ('alada', 'alada_int8', 'alada_int8_b16', 'smmf', 'came', 'adamw_snsm', 'adapprox',
                'adamw_snsm_rank2', 'adapprox_factored')


@pytest.fixture(scope='module')
def plain(tmp_path_factory):
  return _run_checks(tmp_path_factory, module='tests.plain_sharding_checks')


@pytest.mark.parametrize('mode', ['explicit', 'auto'])
@pytest.mark.parametrize('name', _PLAIN_NAMES)
def test_plain_pattern_matches_one_device(plain, mode, name):
  """jit(tx.init)(params), then a jitted update: runs, equals 1 device."""
  assert plain['device_count'] == 8
  row = plain[mode][name]
  if name == 'alada_int8_b16' and mode == 'explicit':
    # Its blocks would cross devices: named, where auto axes run it.
    assert "leaf ['b'] has its last axis of 32 split into 4 shards" in (
        row['error']), row['error']
    return
  assert row['error'] is None, row['error']
  assert row['max_rel_dev_params'] < 1e-5
  assert row['max_rel_dev_state'] < 1e-5


@pytest.mark.parametrize(
    'name', [n for n in _PLAIN_NAMES if n != 'alada_int8_b16'])
def test_explicit_init_lays_out_the_state(plain, name):
  """On explicit axes (jax.make_mesh's default) init itself gives the table's
  layout, factors sharded along the param axes they come from, and update
  keeps it."""
  assert plain['default_axis_types'] == ['AxisType.Explicit'] * 2
  row = plain['explicit'][name]
  assert row['init_layout_ok'] and row['layout_after_steps_ok']
  want = {'alada': "[0].p['w']", 'alada_int8': "[0].mu_scale['w']",
          'alada_int8_b16': "[0].mu_scale['w']",
          'smmf': "[0].m_row['w']",
          'came': "[0].v_col['w']", 'adamw_snsm': "[0].nu['w']",
          'adapprox': "[0].nu['w']", 'adamw_snsm_rank2': "[0].proj['w']",
          'adapprox_factored': "[0].u['w']"}[name]
  assert want in row['sharded_state_leaves']


@pytest.mark.parametrize('name', _PLAIN_NAMES)
def test_auto_axes_sharded_init_lays_out_the_state(plain, name):
  row = plain['auto'][name]
  assert row['sharded_init_layout_ok'] and row['layout_after_steps_ok']


@pytest.mark.parametrize('mode', ['explicit', 'auto'])
@pytest.mark.parametrize('name', ['alada', 'alada_int8', 'came', 'adamw_snsm',
                                  'adapprox'])
def test_plain_pattern_moves_only_vectors(plain, mode, name):
  """With the defaults (no matrix method at these sizes) nothing larger than
  a factor (32 floats here) crosses devices."""
  assert plain[mode][name]['largest_collective'][0] <= 32


def test_table_covers_all_optimizers_and_chains(plain):
  table = plain['table']
  expect = {
      'alada': {"[0].p['w']": "P('data',)", "[0].q['w']": "P('model',)",
                "[0].mu['w3']": "P(None, 'data', 'model')"},
      # codes like the param; scales along their blocks (whole blocks per
      # device: 32 / 4 = 8 entries, 2 blocks, of 'w' on each).
      'alada_int8': {"[0].mu['w']": "P('data', 'model')",
                     "[0].mu_scale['w']": "P('data', 'model')",
                     "[0].mu_scale['w3']": "P(None, 'data', 'model')",
                     "[0].mu_scale['b']": "P('model',)"},
      'alada_int8_b16': {"[0].mu_scale['w']": "P('data', None)",
                         "[0].mu_scale['b']": 'P(None,)'},
      'smmf': {"[0].m_row['w']": "P('data',)", "[0].m_sign['b']":
               "P('model',)", "[0].m_col['w']": 'P(None,)'},
      'came': {"[0].v_row['w3']": "P(None, 'data')",
               "[0].res_col['w']": "P('model',)"},
      'adamw_snsm': {"[0].nu['w']": "P('model',)",
                     "[0].mu['w']": "P('data', 'model')"},
      'adamw_snsm_rank2': {"[0].proj['w']": "P('data', None)",
                           "[0].mu['w']": "P(None, 'model')"},
      'adapprox_factored': {"[0].q['w']": "P('data', None)",
                            "[0].u['w3']": "P('model', None)"},
      'chain_smmf': {"[1].inner_state[0].v_row['w']": "P('data',)"},
  }
  for name, specs in expect.items():
    for key, spec in specs.items():
      assert table[name]['specs'][key] == spec, (name, key)
    assert not table[name]['warnings'], name
  # A state type the table does not know is named, not silently replicated.
  assert any("v_row['w']" in w for w in table['adafactor_warnings'])
