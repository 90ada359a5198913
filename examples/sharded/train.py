"""Alada on a device mesh: FSDP x tensor parallel, scan over stacked layers.

Run it with ``python -m examples.sharded.main`` (see main.py and
configs/default.py). Trains a small residual MLP with attention-style
per-head weights, its ``L`` layers stacked along a leading axis and run with
``jax.lax.scan``, on a teacher-student regression task (synthetic data,
nothing downloaded). The mesh is ``data x model`` (2 x 4 by default): the
batch and the first weight axis are sharded over ``data`` (FSDP), the
hidden/head axis over ``model`` (tensor parallel). JAX's SPMD partitioner
does all the distributed work; alada_optax only says where the optimizer
state lives (``alada_optax.sharding.state_shardings``) and which axes of a
stacked leaf are rows, columns and per-matrix batch
(``MatrixDimensionNumbers``).

It prints the state's layout, the loss, what the compiled step moves between
devices (parsed from its HLO), and with ``config.check`` the largest
deviation from the same run on one device; it writes those figures, with the
command, the config and the machine, to ``workdir/results.json``.

:func:`start_devices` must run before anything starts a JAX backend: it asks
for ``config.num_devices`` CPU devices and, with ``config.distributed``, calls
``jax.distributed.initialize()``. With several processes each feeds the
global batch (every process computes the same one) and, for the check,
gathers the params from all of them.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import alada_optax
from alada_optax import MatrixDimensionNumbers
from alada_optax import hlo as alada_hlo
from alada_optax import sharding as alada_sharding
from examples.common import harness

STACKED = ('w_heads', 'w_merge', 'w_up', 'w_down', 'scale')


def start_devices(config: ml_collections.ConfigDict) -> None:
  """CPU device count and the multi-host cluster, before any JAX work."""
  if config.num_devices:
    # Only affects the CPU platform; must happen before JAX starts.
    jax.config.update('jax_num_cpu_devices', config.num_devices)
  if config.distributed:  # one process per host, before any JAX work
    if config.coordinator_address:
      jax.distributed.initialize(
          coordinator_address=config.coordinator_address,
          num_processes=config.num_processes, process_id=config.process_id)
    else:
      jax.distributed.initialize()  # auto-detected: TPU pods, SLURM, Open MPI


def make_layout(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """name: (shape, PartitionSpec, how Alada views it as matrices)."""
  L, d, h = config.num_layers, config.width, config.num_heads  # pylint: disable=invalid-name
  dh, f = d // h, 4 * d
  return {
      # Per-head projection, (L, d, heads, d_head): one matrix (d x d_head)
      # per layer and head; rows sharded over data (FSDP), heads over model.
      'w_heads': ((L, d, h, dh), P(None, 'data', 'model', None),
                  MatrixDimensionNumbers(row_axis=1, col_axis=3)),
      'w_merge': ((L, h, dh, d), P(None, 'model', None, 'data'),
                  MatrixDimensionNumbers(row_axis=(1, 2), col_axis=3)),
      'w_up': ((L, d, f), P(None, 'data', 'model'),
               MatrixDimensionNumbers(1, 2)),
      'w_down': ((L, f, d), P(None, 'model', 'data'),
                 MatrixDimensionNumbers(1, 2)),
      'scale': ((L, d), P(None, 'data'), MatrixDimensionNumbers((), 1)),
      # Not stacked: eq. (12) views (d, 4, d//4) as a d x d matrix whose
      # columns merge (4, d//4); axis 1 has one index per 'model' device, so
      # the merged column axis (q) stays sharded over 'model'.
      'readout': ((d, 4, d // 4), P('data', 'model', None), None),
  }


def init_params(layout: dict[str, tuple], key: jax.Array,
                scale: float = 1.0) -> dict[str, jax.Array]:
  keys = jax.random.split(key, len(layout))
  d = layout['readout'][0][0]
  out = {}
  for k, (name, (shape, _, _)) in zip(keys, layout.items()):
    if name == 'scale':
      out[name] = jnp.ones(shape)
    else:
      fan_in = 4 * d if name == 'w_down' else d
      out[name] = scale * jax.random.normal(k, shape) / np.sqrt(fan_in)
  return out


def forward(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  """L stacked residual blocks, run by lax.scan, then a readout."""
  def block(x, layer):
    heads = jnp.einsum('bd,dhk->bhk', x, layer['w_heads'])
    x = x + jnp.einsum('bhk,hkd->bd', jax.nn.tanh(heads), layer['w_merge'])
    y = jax.nn.gelu(x @ layer['w_up']) @ layer['w_down']
    return x + layer['scale'] * y, None
  x, _ = jax.lax.scan(block, x, {k: params[k] for k in STACKED})
  d = x.shape[-1]
  return x @ params['readout'].reshape(d, d)


def collectives_summary(hlo: str) -> dict[str, Any]:
  """What a compiled step moves between devices: the collectives by kind,
  the bytes per device one step moves (the costliest branch of each cond, a
  loop body as many times as it runs: ``hlo_collective_bytes_per_step``) and
  the largest collective."""
  collectives = alada_hlo.hlo_collectives(hlo)
  largest = max(collectives, key=lambda c: c.elements, default=None)
  kinds = sorted({c.op for c in collectives})
  return {
      'collectives': len(collectives),
      'by_kind': {k: sum(c.op == k for c in collectives) for k in kinds},
      'bytes_per_step': alada_hlo.hlo_collective_bytes_per_step(hlo),
      'largest': None if largest is None else {
          'op': largest.op, 'shapes': [[d, list(shape)]
                                       for d, shape in largest.shapes]},
  }


def describe_collectives(what: str, summary: dict[str, Any]) -> str:
  """One line of :func:`collectives_summary`'s figures."""
  by_kind = ', '.join(f'{n} {k}' for k, n in summary['by_kind'].items())
  big = summary['largest']
  shapes = (tuple((d, tuple(shape)) for d, shape in big['shapes']) if big
            else '-')
  return (f'{what}: {summary["collectives"]} collectives ({by_kind}),'
          f' {summary["bytes_per_step"]:,} bytes per device per step'
          ' (costliest branch of each cond; a loop body as many times as it'
          f' runs); largest: {big["op"] if big else "-"} of {shapes}')


def _to_host(tree: Any) -> Any:
  """numpy copies of (sharded) arrays; gathered from every process."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def _max_rel_dev(a: Any, b: Any) -> float:
  """max over leaves of max|a - b| / max|b|."""
  return max(
      float(np.max(np.abs(np.asarray(x) - np.asarray(y)))
            / max(float(np.max(np.abs(np.asarray(y)))), 1e-30))
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | None = None) -> dict[str, Any]:
  """Trains on the mesh, printing layout, collectives and losses.

  Call :func:`start_devices` first. Returns the figures it printed (the
  collectives of the train step and of Alada's update alone, the params'
  bytes, the loss of every step, the deviation from one device with
  ``config.check``), which it also writes to ``workdir/results.json`` (from
  process 0; not written without a ``workdir``).
  """
  start = time.perf_counter()
  data, model = config.mesh_shape
  mesh = jax.make_mesh((data, model), ('data', 'model'),
                       axis_types=(AxisType.Auto,) * 2)
  layout = make_layout(config)
  dimension_numbers = {k: dn for k, (_, _, dn) in layout.items()}
  params_sh = {k: NamedSharding(mesh, spec)
               for k, (_, spec, _) in layout.items()}
  batch_sh = NamedSharding(mesh, P('data', None))

  @jax.jit
  def batch(t):
    """Inputs and a fixed random teacher's outputs for step t."""
    teacher = init_params(layout, jax.random.key(1), scale=1.2)
    x = jax.random.normal(jax.random.fold_in(jax.random.key(2), t),
                          (config.batch_size, config.width))
    return x, forward(teacher, x)

  def loss_fn(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)

  opt = alada_optax.alada(config.learning_rate,
                          weight_decay=config.weight_decay,
                          dimension_numbers=dimension_numbers)
  # The optimizer state's layout, derived from the params'.
  make_params = lambda key: init_params(layout, key)
  state_sh = alada_sharding.state_shardings(
      opt, jax.eval_shape(make_params, jax.random.key(0)), params_sh,
      dimension_numbers=dimension_numbers)

  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  # Everything is created in place: no device ever holds a whole array.
  params = jax.jit(make_params, out_shardings=params_sh)(jax.random.key(0))
  opt_state = jax.jit(opt.init, out_shardings=state_sh)(params)
  step = jax.jit(train_step,
                 in_shardings=(params_sh, state_sh, batch_sh, batch_sh),
                 out_shardings=(params_sh, state_sh, None),
                 donate_argnums=(0, 1))

  print(f'{jax.device_count()} devices, mesh {dict(mesh.shape)}')
  print(f'{"leaf":<9} {"shape":<17} {"param spec":<30} {"p spec":<22}'
        ' q spec')
  alada_sh = state_sh[0]
  for name, (shape, spec, _) in layout.items():
    print(f'{name:<9} {str(shape):<17} {str(spec):<30}'
          f' {str(alada_sh.p[name].spec):<22} {alada_sh.q[name].spec}')

  x0, y0 = batch(0)
  compiled = step.lower(params, opt_state, x0, y0).compile()
  # What moves between devices: the whole step (the model's own forward and
  # backward communication included), then Alada's update alone.
  update = jax.jit(lambda g, s, p: opt.update(g, s, p),
                   in_shardings=(params_sh, state_sh, params_sh),
                   out_shardings=(params_sh, state_sh))
  param_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
  print(f'params: {param_bytes:,} bytes in all')
  figures = {
      'devices': jax.device_count(), 'mesh': dict(mesh.shape),
      'param_bytes': param_bytes,
      'train_step': collectives_summary(compiled.as_text()),
      'update': collectives_summary(
          update.lower(params, opt_state, params).compile().as_text()),
  }
  print(describe_collectives('train step', figures['train_step']))
  print(describe_collectives('Alada update alone', figures['update']))

  # The start, for the one-device run (a copy: the step donates its inputs).
  keep = _to_host((params, opt_state)) if config.check else None
  losses = []
  for t in range(config.num_steps):
    x, y = batch(t)
    params, opt_state, loss = compiled(
        params, opt_state, jax.device_put(x, batch_sh),
        jax.device_put(y, batch_sh))
    losses.append(float(loss))
    if t % max(1, config.num_steps // 10) == 0 or t == config.num_steps - 1:
      print(f'step {t:4d}  loss {losses[-1]:.5f}')

  figures['losses'] = losses
  figures['max_rel_dev_one_device'] = None
  if config.check:
    one = jax.jit(train_step)
    p1, s1 = keep
    for t in range(config.num_steps):
      p1, s1, _ = one(p1, s1, *batch(t))
    dev = _max_rel_dev(_to_host(params), p1)
    figures['max_rel_dev_one_device'] = dev
    print(f'max deviation, {jax.device_count()} devices vs 1 device, after'
          f' {config.num_steps} steps: {dev:.3g} (relative to each leaf\'s'
          ' max)')
  figures['wall_time_s'] = time.perf_counter() - start
  if workdir and jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, 'results.json')
    with open(path, 'w', encoding='utf-8') as f:
      json.dump({'command': harness.command(), 'machine': harness.machine(),
                 'config': config.to_dict(), **figures}, f, indent=1)
      f.write('\n')
    print(f'wrote {path}')
  return figures
