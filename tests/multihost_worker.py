"""One process of the multi-host checks behind tests/test_multihost.py.

Two of these, started together on one machine, form a two-process JAX
cluster on localhost: ``jax.distributed.initialize`` with a 127.0.0.1
coordinator, gloo CPU collectives, 4 simulated CPU devices per process, one
global 2 x 4 mesh of 8 devices. A third, alone (``--num_processes 1``), runs
the same code on 8 devices of one process: the reference.

  python -m tests.multihost_worker --mode train --out DIR --ckpt_dir CKPT \
      --num_processes 2 --process_id 0 --coordinator 127.0.0.1:PORT  # and 1
  python -m tests.multihost_worker --mode train --out DIR --ckpt_dir CKPT \
      --num_processes 1                                         # reference
  python -m tests.multihost_worker --mode resume ...             # both again

``train`` trains a small MLP (params sharded over both mesh axes, the batch
over ``x``; each process feeds only its own rows of the batch, with
``jax.make_array_from_process_local_data``) with each optimizer for STEPS
steps, writing an orbax checkpoint of params and optimizer state after
SAVE_AT steps (every process writes its own shards). ``resume`` restores that
checkpoint in fresh processes into the target shardings and trains the
remaining steps. Process 0 writes ``{mode}_{optimizer}.npz`` into
``--out``: the params and optimizer state, gathered from every process,
after SAVE_AT steps (``at_save[...]``: as saved, or as restored) and after
STEPS steps (``final[...]``), and ``{mode}.json`` (device and process counts,
how each leaf is sharded, whether the restored arrays got the target
shardings). ``--perturb_process K`` adds 1e-3 to process K's inputs at
step SAVE_AT (the first step after the checkpoint): the tests' comparisons
must catch it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if 'jax' in sys.modules:
  raise RuntimeError('tests.multihost_worker must run before JAX is imported')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax

DEVICES = 8  # global: 2 processes x 4, or 1 x 8
STEPS = 6
SAVE_AT = 3
BATCH = 32
OPTIMIZERS = ('alada', 'came')
# name: (shape, PartitionSpec entries on the ('x', 'y') = 2 x 4 mesh)
LEAVES = {
    'w1': ((64, 128), ('x', 'y')),
    'b1': ((128,), ('y',)),
    'w2': ((128, 64), ('y', 'x')),
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m tests.multihost_worker', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--mode', choices=('train', 'resume'), required=True,
                      help='train from scratch (saving a checkpoint), or '
                           'resume from that checkpoint')
  parser.add_argument('--out', required=True,
                      help='directory for the .npz/.json results')
  parser.add_argument('--ckpt_dir', required=True,
                      help='checkpoint directory, shared by the processes')
  parser.add_argument('--num_processes', type=int, default=1,
                      help='1: no jax.distributed, 8 local devices')
  parser.add_argument('--process_id', type=int, default=0,
                      help="this process's id, 0 to num_processes - 1")
  parser.add_argument('--coordinator', default='',
                      help='host:port of the coordinator (process 0)')
  parser.add_argument('--perturb_process', type=int, default=-1,
                      help="add 1e-3 to this process's inputs at step "
                           'SAVE_AT (-1: none); for checking the checks')
  return parser.parse_args(argv)


def start_jax(args):
  """Devices and the cluster, before anything else touches a backend."""
  jax.config.update('jax_num_cpu_devices', DEVICES // args.num_processes)
  if args.num_processes > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes, process_id=args.process_id,
        initialization_timeout=60)
  assert jax.device_count() == DEVICES, jax.devices()
  assert jax.process_count() == args.num_processes


def main(argv=None):
  args = parse_args(argv)
  start_jax(args)
  import jax.numpy as jnp
  import numpy as np
  import optax
  import orbax.checkpoint as ocp
  from jax.experimental import multihost_utils
  from jax.sharding import AxisType
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  import alada_optax
  from alada_optax import sharding as ash

  mesh = jax.make_mesh((2, 4), ('x', 'y'), axis_types=(AxisType.Auto,) * 2)
  params_sh = {k: NamedSharding(mesh, P(*spec))
               for k, (_, spec) in LEAVES.items()}
  batch_sh = NamedSharding(mesh, P('x', None))
  rng = np.random.default_rng(0)
  params0 = {k: (rng.normal(size=shape) / np.sqrt(shape[0])).astype(
      np.float32) for k, (shape, _) in LEAVES.items()}
  teacher = {k: (rng.normal(size=shape) / np.sqrt(shape[0])).astype(
      np.float32) for k, (shape, _) in LEAVES.items()}

  def forward(params, x):
    return jax.nn.tanh(x @ params['w1'] + params['b1']) @ params['w2']

  def global_batch(t):
    """The whole batch of step t; every process can compute it."""
    x = np.random.default_rng(1000 + t).normal(size=(BATCH, 64)).astype(
        np.float32)
    return x, np.asarray(forward(teacher, x))

  def local_rows():
    """The rows of the batch this process's devices hold."""
    idx = batch_sh.addressable_devices_indices_map((BATCH, 64)).values()
    starts = [i[0].start or 0 for i in idx]
    stops = [BATCH if i[0].stop is None else i[0].stop for i in idx]
    return slice(min(starts), max(stops))

  def feed(t):
    """Each process passes only its own rows (as a data loader would)."""
    x, y = global_batch(t)
    rows = local_rows()
    x, y = x[rows].copy(), y[rows].copy()
    if t == SAVE_AT and args.perturb_process == jax.process_index():
      x += 1e-3
    return tuple(jax.make_array_from_process_local_data(batch_sh, a,
                                                        (BATCH, a.shape[1]))
                 for a in (x, y))

  def loss_fn(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)

  def gather(tree):
    return jax.tree.map(np.asarray,
                        multihost_utils.process_allgather(tree, tiled=True))

  def flat(prefix, tree):
    return {prefix + jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(tree)}

  info = {'device_count': jax.device_count(),
          'local_device_count': jax.local_device_count(),
          'process_count': jax.process_count(), 'optimizers': {}}
  for name in OPTIMIZERS:
    opt = {'alada': lambda: alada_optax.alada(1e-2, weight_decay=1e-4),
           'came': lambda: alada_optax.came(1e-2, weight_decay=1e-4)}[name]()
    state_sh = ash.state_shardings(opt, params0, params_sh)

    def train_step(params, state, x, y, opt=opt):
      grads = jax.grad(loss_fn)(params, x, y)
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    step = jax.jit(train_step,
                   in_shardings=(params_sh, state_sh, batch_sh, batch_sh),
                   out_shardings=(params_sh, state_sh))
    path = os.path.join(os.path.abspath(args.ckpt_dir), name)
    arrays = {}
    checkpointer = ocp.StandardCheckpointer()
    if args.mode == 'train':
      params = {k: jax.make_array_from_callback(
          v.shape, params_sh[k], lambda i, v=v: v[i])
                for k, v in params0.items()}
      state = jax.jit(opt.init, out_shardings=state_sh)(params)
      for t in range(SAVE_AT):
        params, state = step(params, state, *feed(t))
      checkpointer.save(path, {'params': params, 'opt_state': state})
      checkpointer.wait_until_finished()
    else:
      abstract = jax.tree.map(
          lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
          {'params': params0,
           'opt_state': jax.eval_shape(opt.init, params0)},
          {'params': params_sh, 'opt_state': state_sh})
      restored = checkpointer.restore(path, abstract)
      params, state = restored['params'], restored['opt_state']
      info['optimizers'][name] = {'restored_shardings_ok': all(
          a.sharding.is_equivalent_to(b.sharding, a.ndim)
          for a, b in zip(jax.tree.leaves(restored),
                          jax.tree.leaves(abstract)))}
    checkpointer.close()
    arrays.update(flat('at_save', gather({'params': params,
                                        'opt_state': state})))
    for t in range(SAVE_AT, STEPS):
      params, state = step(params, state, *feed(t))
    arrays.update(flat('final', gather({'params': params,
                                        'opt_state': state})))
    entry = info['optimizers'].setdefault(name, {})
    entry['shardings'] = {
        jax.tree_util.keystr(k): str(v.sharding.spec)
        for k, v in jax.tree_util.tree_leaves_with_path(
            {'params': params, 'opt_state': state})}
    entry['fully_addressable'] = all(
        v.is_fully_addressable for v in jax.tree.leaves(params))
    if jax.process_index() == 0:
      np.savez(os.path.join(args.out, f'{args.mode}_{name}.npz'), **arrays)
  multihost_utils.sync_global_devices('done')
  if jax.process_index() == 0:
    with open(os.path.join(args.out, f'{args.mode}.json'), 'w') as f:
      json.dump(info, f, indent=1)


if __name__ == '__main__':
  main()
