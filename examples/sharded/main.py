r"""Alada on a device mesh: FSDP x tensor parallel, scan over stacked layers.

  python -m examples.sharded.main                  # 8 simulated CPU devices
  python -m examples.sharded.main --steps 200 --check

Trains a small residual MLP with attention-style per-head weights, its ``L``
layers stacked along a leading axis and run with ``jax.lax.scan``, on a
teacher-student regression task (synthetic data, nothing downloaded). The
mesh is ``data x model`` (2 x 4 by default): the batch and the first weight
axis are sharded over ``data`` (FSDP), the hidden/head axis over ``model``
(tensor parallel). JAX's SPMD partitioner does all the distributed work;
alada_optax only says where the optimizer state lives
(``alada_optax.sharding.state_shardings``) and which axes of a stacked leaf
are rows, columns and per-matrix batch (``MatrixDimensionNumbers``).

It prints the state's layout, the loss, what the compiled step moves between
devices (parsed from its HLO), and with ``--check`` the largest deviation
from the same run on one device.

Without an accelerator it asks XLA for ``--devices`` CPU devices (default 8).
On a real multi-host cluster call ``jax.distributed.initialize()`` first
(``--distributed``) and give the mesh the global device count.
"""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m examples.sharded.main', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--steps', type=int, default=30,
                      help='training steps (default 30)')
  parser.add_argument('--mesh', default='2,4',
                      help='data,model mesh shape (default 2,4); its product '
                           'is the number of devices used')
  parser.add_argument('--devices', type=int, default=8,
                      help='simulated CPU devices (default 8; 0: leave '
                           'XLA_FLAGS alone, e.g. on GPUs)')
  parser.add_argument('--layers', type=int, default=4,
                      help='stacked residual blocks, run by lax.scan (default 4)')
  parser.add_argument('--width', type=int, default=64,
                      help='model width d (default 64; divisible by the mesh '
                           'axes and by --heads)')
  parser.add_argument('--heads', type=int, default=4,
                      help='heads of the per-head projection (default 4)')
  parser.add_argument('--batch', type=int, default=64,
                      help='examples per step (default 64)')
  parser.add_argument('--lr', type=float, default=3e-3,
                      help="Alada's learning rate (default 3e-3)")
  parser.add_argument('--check', action='store_true',
                      help='also run on one device and print the deviation')
  parser.add_argument('--distributed', action='store_true',
                      help='call jax.distributed.initialize() (multi-host)')
  return parser


def _parse_args(argv):
  return build_parser().parse_args(argv)


def main(argv=None):
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  if args.devices and 'jax' not in sys.modules:
    # Only affects the CPU platform; must happen before JAX starts.
    os.environ['XLA_FLAGS'] = (
        os.environ.get('XLA_FLAGS', '')
        + f' --xla_force_host_platform_device_count={args.devices}').strip()

  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from jax.sharding import AxisType
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import alada_optax
  from alada_optax import MatrixDimensionNumbers
  from alada_optax import sharding as alada_sharding

  if args.distributed:
    jax.distributed.initialize()  # one process per host, before any JAX work

  data, model = (int(k) for k in args.mesh.split(','))
  mesh = jax.make_mesh((data, model), ('data', 'model'),
                       axis_types=(AxisType.Auto,) * 2)
  L, d, h = args.layers, args.width, args.heads  # pylint: disable=invalid-name
  dh, f = d // h, 4 * d

  # -- the model: L stacked residual blocks, run by lax.scan -----------------
  # name: (shape, PartitionSpec, how Alada views it as matrices)
  layout = {
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
  specs = {k: spec for k, (_, spec, _) in layout.items()}
  dimension_numbers = {k: dn for k, (_, _, dn) in layout.items()}
  params_sh = {k: NamedSharding(mesh, s) for k, s in specs.items()}
  batch_sh = NamedSharding(mesh, P('data', None))

  def init_params(key, scale=1.0):
    keys = jax.random.split(key, len(layout))
    out = {}
    for k_, (name, (shape, _, _)) in zip(keys, layout.items()):
      if name == 'scale':
        out[name] = jnp.ones(shape)
      else:
        fan_in = f if name == 'w_down' else d
        out[name] = scale * jax.random.normal(k_, shape) / np.sqrt(fan_in)
    return out

  def forward(params, x):
    def block(x, layer):
      heads = jnp.einsum('bd,dhk->bhk', x, layer['w_heads'])
      x = x + jnp.einsum('bhk,hkd->bd', jax.nn.tanh(heads), layer['w_merge'])
      y = jax.nn.gelu(x @ layer['w_up']) @ layer['w_down']
      return x + layer['scale'] * y, None
    stacked = {k: params[k] for k in ('w_heads', 'w_merge', 'w_up', 'w_down',
                                      'scale')}
    x, _ = jax.lax.scan(block, x, stacked)
    return x @ params['readout'].reshape(d, d)

  @jax.jit
  def batch(t):
    """Inputs and a fixed random teacher's outputs for step t."""
    teacher = init_params(jax.random.key(1), scale=1.2)
    x = jax.random.normal(jax.random.fold_in(jax.random.key(2), t),
                          (args.batch, d))
    return x, forward(teacher, x)

  def loss_fn(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)

  opt = alada_optax.alada(args.lr, weight_decay=1e-4,
                          dimension_numbers=dimension_numbers)
  # The optimizer state's layout, derived from the params'.
  state_sh = alada_sharding.state_shardings(
      opt, jax.eval_shape(init_params, jax.random.key(0)), params_sh,
      dimension_numbers=dimension_numbers)

  def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  # Everything is created in place: no device ever holds a whole array.
  params = jax.jit(init_params, out_shardings=params_sh)(jax.random.key(0))
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
  for what, hlo in (
      ('train step', compiled.as_text()),
      ('Alada update alone',
       update.lower(params, opt_state, params).compile().as_text())):
    collectives = alada_sharding.hlo_collectives(hlo)
    largest = max(collectives, key=lambda c: c.elements, default=None)
    kinds = sorted({c.op for c in collectives})
    by_kind = ', '.join(
        f'{sum(c.op == k for c in collectives)} {k}' for k in kinds)
    print(f'{what}: {len(collectives)} collectives ({by_kind}),'
          f' {alada_sharding.hlo_collective_bytes_per_step(hlo):,} bytes per'
          ' device per step (costliest branch of each cond; a loop body'
          ' counted once); largest: '
          f'{largest.op if largest else "-"} of'
          f' {largest.shapes if largest else "-"}')

  keep = (jax.device_get(params), jax.device_get(opt_state))
  losses = []
  for t in range(args.steps):
    x, y = batch(t)
    params, opt_state, loss = compiled(
        params, opt_state, jax.device_put(x, batch_sh),
        jax.device_put(y, batch_sh))
    losses.append(float(loss))
    if t % max(1, args.steps // 10) == 0 or t == args.steps - 1:
      print(f'step {t:4d}  loss {losses[-1]:.5f}')

  if args.check:
    one = jax.jit(train_step)
    p1, s1 = keep
    for t in range(args.steps):
      p1, s1, _ = one(p1, s1, *batch(t))
    dev = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))
              / max(float(np.max(np.abs(np.asarray(b)))), 1e-30))
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p1)))
    print(f'max deviation, {jax.device_count()} devices vs 1 device, after'
          f' {args.steps} steps: {dev:.3g} (relative to each leaf\'s max)')
  return losses


if __name__ == '__main__':
  main()
