"""Two JAX processes on localhost against one: Alada and CAME, orbax restarts.

  python -m pytest -q tests/test_multihost.py

Starts tests/multihost_worker.py as subprocesses (CPU only, no accelerator):

1. a two-process cluster (``jax.distributed`` with a 127.0.0.1 coordinator,
   gloo collectives, 4 simulated CPU devices per process, one 2 x 4 mesh)
   trains a small sharded MLP with each optimizer, writing an orbax
   checkpoint half-way; at the same time one process with 8 simulated
   devices runs the same code on the same mesh shape: the reference;
2. a fresh two-process cluster restores the checkpoint into the target
   shardings and trains the remaining steps; another does the same with one
   process's inputs perturbed at the first resumed step, to show that the
   comparisons below catch a wrong step.

Every worker has a timeout; on a failure or timeout the others of its run are
killed and every worker's stderr is shown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip('orbax.checkpoint')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIMIZERS = ('alada', 'came')
WORKER_TIMEOUT_S = 120
# Two processes against one: only the order of float32 reductions (gloo's
# all-reduce against the in-process one) differs.
PARAMS_RTOL = 1e-5
STATE_RTOL = 2e-5


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env():
  env = dict(os.environ)
  env.pop('JAX_PLATFORMS', None)
  env.pop('XLA_FLAGS', None)  # the worker asks for its own CPU devices
  env.setdefault('OPENBLAS_NUM_THREADS', '1')
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  return env


class _Worker:
  """One worker subprocess, in its own process group, logging to files."""

  def __init__(self, name, args, log_dir):
    self.name = name
    self.stdout_path = os.path.join(log_dir, f'{name}.out')
    self.stderr_path = os.path.join(log_dir, f'{name}.err')
    with open(self.stdout_path, 'w') as out, open(self.stderr_path, 'w') as err:
      self.proc = subprocess.Popen(
          [sys.executable, '-m', 'tests.multihost_worker', *args],
          cwd=REPO, env=_env(), stdout=out, stderr=err,
          start_new_session=True)

  def kill(self):
    if self.proc.poll() is None:
      try:
        os.killpg(self.proc.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      self.proc.wait()

  def report(self):
    with open(self.stderr_path, errors='replace') as f:
      err = f.read()
    with open(self.stdout_path, errors='replace') as f:
      out = f.read()
    return (f'--- {self.name}: exit status {self.proc.returncode}\n'
            f'stdout (end):\n{out[-2000:]}\nstderr (end):\n{err[-6000:]}')


def _run_all(groups, log_dir, timeout_s=WORKER_TIMEOUT_S):
  """Starts every worker of ``groups`` (name: argument list) and waits.

  Raises AssertionError with every worker's output if one fails or the
  timeout passes; stragglers are killed either way.
  """
  workers = [_Worker(name, args, log_dir) for name, args in groups.items()]
  deadline = time.monotonic() + timeout_s
  failed = None
  try:
    while any(w.proc.poll() is None for w in workers):
      bad = [w for w in workers if w.proc.poll() not in (None, 0)]
      if bad:
        failed = f'{bad[0].name} failed'
        break
      if time.monotonic() > deadline:
        failed = f'timed out after {timeout_s} s'
        break
      time.sleep(0.2)
    if failed is None and any(w.proc.returncode for w in workers):
      failed = 'failed: ' + ', '.join(
          w.name for w in workers if w.proc.returncode)
  finally:
    for w in workers:
      w.kill()
  if failed:
    raise AssertionError(
        f'tests.multihost_worker: {failed}\n'
        + '\n'.join(w.report() for w in workers))


def _cluster(prefix, mode, out, ckpt, *extra):
  """Arguments of the two workers of one two-process run."""
  port = _free_port()
  return {
      f'{prefix}{i}': ['--mode', mode, '--out', out, '--ckpt_dir', ckpt,
                       '--num_processes', '2', '--process_id', str(i),
                       '--coordinator', f'127.0.0.1:{port}', *extra]
      for i in range(2)}


def _load(out, mode):
  with open(os.path.join(out, f'{mode}.json')) as f:
    info = json.load(f)
  arrays = {}
  for name in OPTIMIZERS:
    with np.load(os.path.join(out, f'{mode}_{name}.npz')) as z:
      arrays[name] = {k: z[k] for k in z.files}
  return info, arrays


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('multihost')
  dirs = {k: str(root / k) for k in ('two', 'one', 'resumed', 'perturbed',
                                     'ckpt', 'ckpt_one', 'logs')}
  for d in dirs.values():
    os.makedirs(d)
  start = time.monotonic()
  _run_all({
      **_cluster('train', 'train', dirs['two'], dirs['ckpt']),
      'reference': ['--mode', 'train', '--out', dirs['one'],
                    '--ckpt_dir', dirs['ckpt_one'], '--num_processes', '1'],
  }, dirs['logs'])
  _run_all({
      **_cluster('resume', 'resume', dirs['resumed'], dirs['ckpt']),
      **_cluster('perturbed', 'resume', dirs['perturbed'], dirs['ckpt'],
                 '--perturb_process', '1'),
  }, dirs['logs'])
  out = {'seconds': time.monotonic() - start, 'ckpt': dirs['ckpt']}
  for key, mode in (('two', 'train'), ('one', 'train'),
                    ('resumed', 'resume'), ('perturbed', 'resume')):
    out[key] = _load(dirs[key], mode)
  return out


def _max_rel_dev(a, b, prefix):
  """max over leaves under ``prefix`` of max|a - b| / max|b| (0/0 = 0)."""
  worst = 0.0
  keys = [k for k in b if k.startswith(prefix)]
  assert keys and set(keys) == {k for k in a if k.startswith(prefix)}
  for k in keys:
    x, y = a[k].astype(np.float64), b[k].astype(np.float64)
    dev = float(np.max(np.abs(x - y))) if y.size else 0.0
    scale = float(np.max(np.abs(y))) if y.size else 0.0
    worst = max(worst, 0.0 if dev == 0 else dev / max(scale, 1e-30))
  return worst


def _bit_identical(a, b, prefix):
  keys = [k for k in b if k.startswith(prefix)]
  assert keys and set(keys) == {k for k in a if k.startswith(prefix)}
  return all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])
             for k in keys)


def test_two_processes_form_one_mesh(runs):
  info, _ = runs['two']
  assert (info['process_count'], info['device_count'],
          info['local_device_count']) == (2, 8, 4)
  for name in OPTIMIZERS:
    # Each process holds only its shards: the arrays span both processes.
    assert not info['optimizers'][name]['fully_addressable'], name
  assert runs['one'][0]['process_count'] == 1
  assert runs['one'][0]['device_count'] == 8
  # Same mesh, same shardings in both runs.
  assert ({n: o['shardings'] for n, o in info['optimizers'].items()}
          == {n: o['shardings'] for n, o in
              runs['one'][0]['optimizers'].items()})


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_two_processes_match_one(runs, name):
  two, one = runs['two'][1][name], runs['one'][1][name]
  for when in ('at_save', 'final'):
    assert _max_rel_dev(two, one, f"{when}['params']") < PARAMS_RTOL, when
    assert _max_rel_dev(two, one, f"{when}['opt_state']") < STATE_RTOL, when


def test_both_processes_write_the_checkpoint(runs):
  for name in OPTIMIZERS:
    for process in (0, 1):
      data = os.path.join(runs['ckpt'], name, f'ocdbt.process_{process}', 'd')
      assert os.path.isdir(data) and os.listdir(data), data


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_restart_is_bit_identical(runs, name):
  """Restored into fresh processes: the same state, the same next steps."""
  saved, resumed = runs['two'][1][name], runs['resumed'][1][name]
  assert runs['resumed'][0]['optimizers'][name]['restored_shardings_ok']
  assert (runs['resumed'][0]['optimizers'][name]['shardings']
          == runs['two'][0]['optimizers'][name]['shardings'])
  assert _bit_identical(resumed, saved, "at_save['params']")
  assert _bit_identical(resumed, saved, "at_save['opt_state']")
  assert _bit_identical(resumed, saved, "final['params']")
  assert _bit_identical(resumed, saved, "final['opt_state']")


@pytest.mark.parametrize('name', OPTIMIZERS)
def test_the_comparisons_catch_one_wrong_process(runs, name):
  """1e-3 added to process 1's inputs for one step: both checks fail."""
  perturbed = runs['perturbed'][1][name]
  assert _bit_identical(perturbed, runs['two'][1][name], 'at_save')
  assert not _bit_identical(perturbed, runs['two'][1][name], "final['params']")
  assert _max_rel_dev(perturbed, runs['one'][1][name],
                      "final['params']") > 10 * PARAMS_RTOL
