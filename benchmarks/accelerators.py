r"""What XLA's GPU and TPU compilers make of each optimizer, without a device.

    python -m benchmarks.accelerators --tpu-python TPU_VENV/bin/python \
        --gpu-python GPU_VENV/bin/python   # every target: most of an hour on
                                           # 2 cores
    python -m benchmarks.accelerators --quick      # small shapes: a smoke run
    python -m benchmarks.accelerators --publish ...  # refresh benchmarks/results/
    python -m benchmarks.accelerators --from-json A.json B.json  # merge runs

XLA's own compilers for an H100 (the jax-cuda12 plugin with an H100 target
description) and for TPUs (libtpu's deviceless topologies) run on a machine
with neither. This command compiles, for each target (``h100``, ``v5e``,
``v6e`` by default; ``v4`` and ``v5p`` also compile), each model and each
optimizer,

* ``update``: the donated update alone, ``harness.update_step``:
  ``f(params, state, grads) -> (params, state)`` with params and state donated
  (in the same order in and out: crossed, JAX pairs the donated buffers by
  shape and both compilers add full-size copies);
* ``train``: the donated train step, ``harness.train_step`` (batch 1 x 256);

on GPT-2-small-shaped params (``models.gpt2()``, 148 leaves) and on a
LLaMA-style model whose layers are stacked (8 layers of d=1024 as leaves with
a leading layer axis, run by ``lax.scan``; the package's optimizers get
``dimension_numbers`` that factor each layer's matrix apart). It reads off the
compiled program: kernels, conditionals, while loops, collectives
(``alada_optax.hlo.hlo_structure``), temporaries and the peak
(``compiled.memory_analysis()``, as ``harness.Memory``), and on TPU the bytes
accessed (``cost_analysis()``) per parameter. ``sharded`` compiles the update
of a 19-leaf GPT-2-like tree (the embeddings and 4 blocks of d=768, vocab
50304) on a TPU ``v5e:2x2`` mesh with params sharded on both axes, and counts
its collectives with ``benchmarks.collectives.compile_update``.

These are compile facts, deterministic, not times: a time needs the device
(``python -m benchmarks.gpu`` times on a GPU).

The command installs nothing. Each backend's plugin lives in its own side
virtual environment (see docs/accelerators.md)::

  python3 -m venv tpu-venv && tpu-venv/bin/pip install "jax[tpu]==0.10.2" optax
  python3 -m venv gpu-venv && gpu-venv/bin/pip install "jax==0.10.2" \
      "jaxlib==0.10.2" "jax-cuda12-plugin==0.10.2" "jax-cuda12-pjrt==0.10.2" \
      nvidia-cuda-nvcc-cu12 optax
  tpu-venv/bin/pip install --no-deps -e . ; gpu-venv/bin/pip install --no-deps -e .

The targets whose plugin the running interpreter imports are compiled in it;
the others with the interpreter given by ``--tpu-python`` / ``--gpu-python``
(or $ALADA_TPU_PYTHON / $ALADA_GPU_PYTHON). Each target's programs are
compiled in ``--jobs`` worker processes at once, with this source tree first
on their PYTHONPATH (the alada_optax they import is recorded in the results).
The results go to ``accelerators.md`` and ``accelerators.json`` under
``--out`` (default ``out/accelerators``, git-ignored), and to the committed
``benchmarks/results/`` only with ``--publish`` (a full run).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

MiB = 2**20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join('out', 'accelerators')
PUBLISHED = os.path.join(ROOT, 'benchmarks', 'results')

# The H100 SXM device description (132 SMs, 3.35 TB/s, 80 GB, compute
# capability 9.0) in XLA's target-config format; --h100-config reads another.
H100_CONFIG = """\
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84929347584
  shared_memory_per_block_optin: 232448
  cuda_compute_capability {
    major: 9
  }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info {
  major: 9
  minor: 7
}
runtime_version {
  major: 12
  minor: 8
  patch: 0
}
device_description_str: "NVIDIA H100 80GB HBM3"
"""

# target -> (backend, TPU topology name).
TARGETS = {
    'h100': ('gpu', None),
    'v5e': ('tpu', 'v5e:2x2'),
    'v6e': ('tpu', 'v6e:2x2'),
    'v5p': ('tpu', 'v5p:2x2x1'),
    'v4': ('tpu', 'v4:2x2x1'),
}
DEFAULT_TARGETS = ('h100', 'v5e', 'v6e')
SHARDED_TARGETS = ('v5e',)  # a 2 x 2 mesh of the first of these selected

BACKENDS = {
    'tpu': {
        'module': 'libtpu',
        # Several workers at once: libtpu's lockfile would admit one.
        'env': {'TPU_SKIP_MDS_QUERY': '1', 'TF_CPP_MIN_LOG_LEVEL': '2',
                'ALLOW_MULTIPLE_LIBTPU_LOAD': '1'},
        'recipe': 'python3 -m venv tpu-venv && tpu-venv/bin/pip install '
                  '"jax[tpu]==0.10.2" optax && tpu-venv/bin/pip install '
                  '--no-deps -e .',
    },
    'gpu': {
        'module': 'jax_cuda12_plugin',
        # No CUDA runtime or driver here: the plugin compiles for the target
        # description without one.
        'env': {'JAX_SKIP_CUDA_CONSTRAINTS_CHECK': '1',
                'CUDA_VISIBLE_DEVICES': '-1', 'TF_CPP_MIN_LOG_LEVEL': '2'},
        'recipe': 'python3 -m venv gpu-venv && gpu-venv/bin/pip install '
                  '"jax==0.10.2" "jaxlib==0.10.2" "jax-cuda12-plugin==0.10.2" '
                  '"jax-cuda12-pjrt==0.10.2" nvidia-cuda-nvcc-cu12 optax && '
                  'gpu-venv/bin/pip install --no-deps -e .',
    },
}

OPTIMIZERS = {  # --optimizers key -> row name
    'sgdm': 'SGD+momentum',
    'adam': 'Adam',
    'adafactor': 'Adafactor',
    'alada': 'Alada',
    'alada_bf16': 'Alada, bf16 M',
    'alada_int8': 'Alada, 8-bit M',
    'smmf': 'SMMF',
    'came': 'CAME',
    'adamw_snsm': 'AdamW-SN-SM',
    'adapprox': 'Adapprox',
}
MODELS = ('gpt2', 'llama')
PROGRAMS = ('update', 'train', 'sharded')


# -- what is compiled ---------------------------------------------------------

def make_optimizer(key: str, dims: Any = None,
                   quick: bool = False) -> optax.GradientTransformation:
  """The optimizer ``key`` as the suite builds it (``harness.OPTIMIZERS``,
  ``methods.METHODS``), with ``dims`` as the ``dimension_numbers`` of the
  package's optimizers that take them (SMMF views every leaf as one
  near-square matrix and CAME factors the last two axes: neither takes any).
  With ``quick``, AdamW-SN-SM and Adapprox get ranks small enough for the
  small shapes to take their matrix paths (as ``benchmarks.collectives``)."""
  import alada_optax  # pylint: disable=g-import-not-at-top
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  from benchmarks import methods  # pylint: disable=g-import-not-at-top
  lr = harness.LEARNING_RATE
  name = OPTIMIZERS[key]
  if key in ('sgdm', 'adam', 'adafactor'):
    return harness.OPTIMIZERS[name]()
  if key in ('smmf', 'came'):
    return methods.METHODS[name].make(lr)
  if key == 'alada':
    return alada_optax.alada(lr, dimension_numbers=dims)
  if key == 'alada_bf16':
    return alada_optax.alada(lr, mu_dtype=jnp.bfloat16, dimension_numbers=dims)
  if key == 'alada_int8':
    return alada_optax.alada(lr, mu_dtype='int8', dimension_numbers=dims)
  if key == 'adamw_snsm':
    return alada_optax.adamw_snsm(lr, dimension_numbers=dims,
                                  **({'rank': 8} if quick else {}))
  if key == 'adapprox':
    return alada_optax.adapprox(
        lr, dimension_numbers=dims,
        **({'max_rank': 4, 'min_dim_size_to_factor': 16} if quick else {}))
  raise ValueError(key)


def llama(layers: int = 8, d: int = 1024, heads: int = 8, ffn: int = 2816,
          vocab: int = 32000, batch: int = 1, seq: int = 256):
  """A LLaMA-style decoder with its layers stacked: RMSNorm, rotary
  attention, a SwiGLU MLP, untied embedding and readout; each layer's weights
  are one leaf with a leading layer axis, and ``lax.scan`` runs the layers."""
  from benchmarks import models  # pylint: disable=g-import-not-at-top
  hd = d // heads

  def init(key):
    ks = jax.random.split(key, 9)
    normal = lambda k, s, std=0.02: std * jax.random.normal(k, s)
    out_std = 0.02 / math.sqrt(2 * layers)
    return {
        'embed': normal(ks[0], (vocab, d)),
        'layers': {
            'attn_norm': jnp.ones((layers, d)),
            'wq': normal(ks[1], (layers, d, d)),
            'wk': normal(ks[2], (layers, d, d)),
            'wv': normal(ks[3], (layers, d, d)),
            'wo': normal(ks[4], (layers, d, d), out_std),
            'mlp_norm': jnp.ones((layers, d)),
            'w_gate': normal(ks[5], (layers, d, ffn)),
            'w_up': normal(ks[6], (layers, d, ffn)),
            'w_down': normal(ks[7], (layers, ffn, d), out_std),
        },
        'final_norm': jnp.ones((d,)),
        'lm_head': normal(ks[8], (d, vocab)),
    }

  def rms_norm(scale, x):
    return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * scale

  def rope(x):  # (b, s, h, hd)
    s = x.shape[1]
    freqs = 1.0 / 10000 ** (jnp.arange(0, hd, 2) / hd)
    angles = jnp.arange(s)[:, None] * freqs[None]
    cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)

  def layer(x, p):
    b, s, _ = x.shape
    h = rms_norm(p['attn_norm'], x)
    q, k, v = ((h @ p[w]).reshape(b, s, heads, hd) for w in ('wq', 'wk', 'wv'))
    q, k = rope(q), rope(k)
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(hd)
    mask = jnp.tril(jnp.ones((s, s), bool))
    w = jax.nn.softmax(jnp.where(mask, logits, jnp.finfo(logits.dtype).min))
    x = x + jnp.einsum('bhqk,bkhd->bqhd', w, v).reshape(b, s, d) @ p['wo']
    h = rms_norm(p['mlp_norm'], x)
    x = x + (jax.nn.silu(h @ p['w_gate']) * (h @ p['w_up'])) @ p['w_down']
    return x, None

  def loss(params, tokens):
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    x, _ = jax.lax.scan(layer, params['embed'][inputs], params['layers'])
    logits = rms_norm(params['final_norm'], x) @ params['lm_head']
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))

  def make_batch(key):
    return jax.random.randint(key, (batch, seq + 1), 0, vocab)

  return models.Model(
      f'LLaMA-style, {layers} stacked layers (lax.scan), d={d}, SwiGLU '
      f'{ffn}, vocab {vocab}, batch {batch}x{seq}', init, loss, make_batch,
      dict(layers=layers, d=d, heads=heads, ffn=ffn, vocab=vocab, batch=batch,
           seq=seq))


def stacked_dimension_numbers(params) -> Any:
  """Each layer of a stacked leaf is its own matrix (or vector): axis 0 of
  ``params['layers']`` is a batch axis; the other leaves take eq. (12)."""
  import alada_optax  # pylint: disable=g-import-not-at-top
  dn = alada_optax.MatrixDimensionNumbers
  return {
      'embed': None, 'final_norm': None, 'lm_head': None,
      'layers': {k: dn(1, 2) if len(v.shape) == 3 else dn((), 1)
                 for k, v in params['layers'].items()},
  }


def make_model(name: str, quick: bool):
  """(Model, dimension_numbers or None) of ``--models`` name."""
  from benchmarks import models  # pylint: disable=g-import-not-at-top
  if name == 'gpt2':
    model = (models.gpt2(layers=2, d=128, heads=4, vocab=1024, ctx=128, seq=64)
             if quick else models.gpt2())
    return model, None
  if name == 'llama':
    model = (llama(layers=2, d=128, heads=4, ffn=352, vocab=1024, seq=64)
             if quick else llama())
    params = jax.eval_shape(model.init, jax.random.key(0))
    return model, stacked_dimension_numbers(params)
  raise ValueError(name)


def sharded_leaves(quick: bool) -> dict[str, tuple]:
  """The 19-leaf GPT-2-like tree of ``sharded``: ``name: (shape,
  PartitionSpec)``; the blocks' matrices laid out as
  ``benchmarks.collectives.layout`` (FSDP x tensor-parallel)."""
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from benchmarks import collectives  # pylint: disable=g-import-not-at-top
  d, vocab, ctx = (64, 1024, 128) if quick else (768, 50304, 1024)
  leaves = {'wte': ((vocab, d), P('model', 'data')),
            'wpe': ((ctx, d), P('data', 'model'))}
  for i in range(4):
    for name, (shape, spec) in collectives.layout(d).items():
      if len(shape) == 2:
        leaves[f'block{i}_{name}'] = (shape, spec)
  leaves['ln_f_scale'] = ((d,), P('model'))
  return leaves


def topology(target: str, h100_config: Optional[str] = None):
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  backend, name = TARGETS[target]
  if backend == 'gpu':
    config = H100_CONFIG
    if h100_config:
      with open(h100_config, encoding='utf-8') as f:
        config = f.read()
    return topologies.get_topology_desc(platform='cuda', target_config=config,
                                        topology='1x1x1')
  return topologies.get_topology_desc(topology_name=name, platform='tpu')


def _on(sharding, tree):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def compile_program(job: dict[str, Any], topo):
  """The donated program of one job (model, program 'update' or 'train',
  optimizer, quick) compiled for ``topo``'s first device:
  ``(compiled, model, params, state, seconds)``."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  quick = job['quick']
  model, dims = make_model(job['model'], quick)
  opt = make_optimizer(job['optimizer'], dims, quick)
  params = jax.eval_shape(model.init, jax.random.key(0))
  state = jax.eval_shape(opt.init, params)
  if job['program'] == 'update':
    step, third = harness.update_step(opt), params
  else:
    step = harness.train_step(model, opt)
    third = jax.eval_shape(model.batch, jax.random.key(1))
  one = jax.sharding.SingleDeviceSharding(topo.devices[0])
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      *_on(one, (params, state, third))).compile()
  return compiled, model, params, state, time.perf_counter() - start


def compile_one(job: dict[str, Any], topo) -> dict[str, Any]:
  """Compiles one job (target, model, program, optimizer) for ``topo``'s
  first device; what its compiled program says."""
  from alada_optax import hlo  # pylint: disable=g-import-not-at-top
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  if job['program'] == 'sharded':
    return compile_sharded(job, topo)
  compiled, model, params, state, seconds = compile_program(job, topo)
  memory = harness.Memory.of(compiled, params, state)
  structure = hlo.hlo_structure(compiled.as_text())
  accessed = harness.bytes_accessed(compiled)
  hbm = hlo.hlo_memory_bytes_per_step(compiled.as_text())
  size = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
  return {
      **job, 'model_name': model.name,
      'leaves': len(jax.tree.leaves(params)), 'parameters': size,
      **structure._asdict(),
      'memory': {**memory.__dict__, 'peak': memory.peak},
      'bytes_accessed': accessed,
      'bytes_per_param': None if accessed is None else accessed / size,
      'hbm_bytes': hbm, 'hbm_bytes_per_param': hbm / size,
      'compile_s': seconds,
  }


SHARDED_CYCLES = {'alada': 'alada', 'alada_bf16': 'alada',
                  'alada_int8': 'alada',
                  'adamw_snsm': 'adamw_snsm'}


def compile_sharded(job: dict[str, Any], topo) -> dict[str, Any]:
  """The update of ``sharded_leaves`` on a 2 x 2 ('data', 'model') mesh of
  the topology, by ``benchmarks.collectives.compile_update``."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  from benchmarks import collectives  # pylint: disable=g-import-not-at-top
  mesh = topologies.make_mesh(topo, (2, 2), collectives.MESH_AXES)
  leaves = sharded_leaves(job['quick'])
  opt = make_optimizer(job['optimizer'], None, job['quick'])
  start = time.perf_counter()
  row = collectives.compile_update(
      opt, leaves, mesh,
      collectives.CYCLES.get(SHARDED_CYCLES.get(job['optimizer']), ()))
  seconds = time.perf_counter() - start
  largest = row['largest']
  return {
      **job, 'model_name': (f'GPT-2-like, {len(leaves)} leaves (embeddings '
                            'and 4 blocks), sharded on a 2 x 2 mesh'),
      'leaves': len(leaves),
      'parameters': sum(math.prod(s) for s, _ in leaves.values()),
      'collectives': len(row['collectives']), 'counts': row['counts'],
      'largest': None if largest is None else {
          'bytes': largest['bytes'], 'what': collectives.describe(largest),
          'op_name': largest['op_name']},
      'conditionals': row['conditionals'],
      'bytes_mean': row['bytes_mean'], 'bytes_worst': row['bytes_worst'],
      'param_bytes_per_device': row['param_bytes_per_device'],
      'compile_s': seconds,
  }


def versions() -> dict[str, Any]:
  """What the worker's interpreter compiles with."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import alada_optax  # pylint: disable=g-import-not-at-top
  out = {'python': sys.executable, 'alada_optax': alada_optax.__file__,
         'jax': jax.__version__}
  for dist in ('jaxlib', 'libtpu', 'jax-cuda12-plugin', 'optax'):
    try:
      out[dist] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def worker(jobs_file: str, results_file: str, h100_config: Optional[str]):
  """Compiles the jobs of ``jobs_file`` (one target), appending a JSON line
  per job to ``results_file``; prints a line per job."""
  with open(jobs_file, encoding='utf-8') as f:
    jobs = json.load(f)
  topo = topology(jobs[0]['target'], h100_config)
  info = versions()
  with open(results_file, 'a', encoding='utf-8') as out:
    out.write(json.dumps({'versions': info, 'target': jobs[0]['target']})
              + '\n')
    out.flush()
    for job in jobs:
      try:
        row = compile_one(job, topo)
      except Exception as e:  # pylint: disable=broad-except
        row = {**job, 'error': f'{type(e).__name__}: {str(e)[:500]}'}
      out.write(json.dumps(row) + '\n')
      out.flush()
      print(f'{job["target"]} {job["model"]} {job["program"]} '
            f'{job["optimizer"]}: ' + (row['error'][:200] if 'error' in row
                                       else f'{row["compile_s"]:.0f} s'),
            flush=True)


# -- running the workers ------------------------------------------------------

def _has_module(python: str, module: str) -> bool:
  if os.path.abspath(python) == os.path.abspath(sys.executable):
    return importlib.util.find_spec(module) is not None
  try:
    return subprocess.run(
        [python, '-c', 'import importlib.util, sys; '
         f'sys.exit(importlib.util.find_spec({module!r}) is None)'],
        capture_output=True, timeout=60, check=False).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


def interpreters(args) -> dict[str, Optional[str]]:
  """backend -> the interpreter that imports its plugin (this one first)."""
  out = {}
  for backend, spec in BACKENDS.items():
    given = getattr(args, f'{backend}_python')
    out[backend] = next((p for p in (sys.executable, given)
                         if p and _has_module(p, spec['module'])), None)
  return out


def how_to_get(backend: str) -> str:
  spec = BACKENDS[backend]
  return (f'no interpreter imports {spec["module"]} (the {backend.upper()} '
          f'compiler): make a side environment, outside the project, with\n'
          f'  {spec["recipe"]}\nand pass --{backend}-python '
          f'{backend}-venv/bin/python (or set ALADA_{backend.upper()}_PYTHON);'
          ' see docs/accelerators.md')


def plan(args) -> list[dict[str, Any]]:
  """The jobs, costliest first (GPT-2 before the stacked model, the train
  step before the update, the package's optimizers before optax's)."""
  jobs = []
  cost = lambda j: (j['program'] != 'train', j['program'] != 'sharded',
                    j['model'] != 'gpt2',
                    list(OPTIMIZERS).index(j['optimizer']) < 3)
  sharded_target = next((t for t in SHARDED_TARGETS if t in args.targets),
                        None)
  for target in args.targets:
    for program in args.programs:
      if program == 'sharded':
        if target != sharded_target:
          continue
        models = ['gpt2_19']
      else:
        models = args.models
      for model in models:
        for opt in args.optimizers:
          jobs.append({'target': target, 'model': model, 'program': program,
                       'optimizer': opt, 'quick': args.quick})
  return sorted(jobs, key=cost)


def run_workers(jobs, pythons, args, log) -> tuple[list, dict]:
  """Compiles ``jobs`` in worker processes (``args.jobs`` at once; a target's
  jobs split into ``args.jobs`` groups); the rows and each target's
  versions."""
  groups = []
  for target in dict.fromkeys(j['target'] for j in jobs):
    mine = [j for j in jobs if j['target'] == target]
    n = max(1, min(args.jobs, len(mine)))
    groups += [(target, mine[i::n]) for i in range(n)]
  tmp = tempfile.mkdtemp(prefix='accelerators-')
  env_path = os.pathsep.join(
      [ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep)
                if p])
  os.makedirs(args.out, exist_ok=True)
  errlog = os.path.join(args.out, 'workers.log')
  lock = threading.Lock()

  def one(index, target, group):
    backend = TARGETS[target][0]
    jobs_file = os.path.join(tmp, f'{index}.jobs.json')
    results_file = os.path.join(tmp, f'{index}.results.jsonl')
    with open(jobs_file, 'w', encoding='utf-8') as f:
      json.dump(group, f)
    cmd = [pythons[backend], '-m', 'benchmarks.accelerators', '--_worker',
           jobs_file, results_file]
    if args.h100_config:
      cmd += ['--h100-config', os.path.abspath(args.h100_config)]
    env = {**os.environ, **BACKENDS[backend]['env'], 'PYTHONPATH': env_path}
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
      lines = []
      for line in proc.stdout:
        lines.append(line)
        if line.startswith(target + ' '):
          log(line.rstrip())
      proc.wait()
    with lock, open(errlog, 'a', encoding='utf-8') as f:
      f.write(f'== worker {index} ({target}, {len(group)} jobs): '
              f'{shlex.join(cmd)} -> {proc.returncode}\n' + ''.join(lines))
    rows, info = [], {}
    if os.path.exists(results_file):
      with open(results_file, encoding='utf-8') as f:
        for line in f:
          row = json.loads(line)
          if 'versions' in row:
            info = row['versions']
          else:
            rows.append(row)
    done = {(r['model'], r['program'], r['optimizer']) for r in rows}
    for j in group:  # a worker that died leaves its remaining jobs unreported
      if (j['model'], j['program'], j['optimizer']) not in done:
        rows.append({**j, 'error': f'worker exited with {proc.returncode} '
                                   f'before this job (see {errlog})'})
    return rows, info

  with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
    futures = [pool.submit(one, i, t, g) for i, (t, g) in enumerate(groups)]
    results = [f.result() for f in futures]
  rows = [r for rs, _ in results for r in rs]
  infos = {}
  for (target, _), (_, info) in zip(groups, results):
    infos.setdefault(target, info)
  return rows, infos


# -- the report -----------------------------------------------------------------

def _mib(n: Optional[float]) -> str:
  return '' if n is None else f'{n / MiB:,.1f}'


def _order(rows):
  keys = list(OPTIMIZERS)
  return sorted(rows, key=lambda r: keys.index(r['optimizer']))


def _per_param(b: Optional[float]) -> str:
  return '' if b is None else f'{b:.1f}'


def program_table(rows: list[dict[str, Any]], tpu: bool) -> list[str]:
  """One (target, model, program): a row per optimizer."""
  by = {r['optimizer']: r for r in rows if 'error' not in r}
  ref = lambda k: by[k]['memory']['peak'] if k in by else None
  adam, sgd = ref('adam'), ref('sgdm')
  head = ('| optimizer | kernels | conditionals | while loops | collectives '
          '| temporaries MiB (% params) | peak MiB | / Adam | / SGD+m '
          '| HBM bytes / param |'
          + (' bytes accessed / param |' if tpu else ''))
  lines = [head, '|---|' + '---:|' * (9 + tpu)]
  for r in _order(rows):
    name = OPTIMIZERS[r['optimizer']]
    if 'error' in r:
      lines.append(f'| {name} | failed: {r["error"][:120]} |'
                   + ' |' * (8 + tpu))
      continue
    m = r['memory']
    cells = [f'{r["kernels"]:,}', str(r['conditionals']), str(r['whiles']),
             str(r['collectives']),
             f'{_mib(m["temporaries"])} ({100 * m["temporaries"] / m["params"]:.1f}%)',
             f'{m["peak"] / MiB:,.1f}',
             '' if adam is None else f'{m["peak"] / adam:.3f}',
             '' if sgd is None else f'{m["peak"] / sgd:.3f}',
             _per_param(r.get('hbm_bytes_per_param'))]
    if tpu:
      b = r.get('bytes_per_param')
      cells.append('n/a' if b is None else f'{b:.1f}')
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


TPU_MEMORY_PROGRAMS = ('train', 'update')


def tpu_memory_table(rows: list[dict[str, Any]]) -> list[str]:
  """The rows of ``benchmarks.research.tpu_memory`` (a TPU program's memory
  read three ways): a table per program, each reading against SGD with
  momentum's."""
  lines = []
  for program in TPU_MEMORY_PROGRAMS:
    mine = [r for r in rows if r['program'] == program]
    if not mine:
      continue
    sgd = next((r for r in mine if r['optimizer'] == 'sgdm'), None)
    ratio = lambda r, k: '' if sgd is None else f'{r[k] / sgd[k]:.3f}'
    lines += [f'{mine[0]["target"]}, {program}, {mine[0]["model"]}:', '',
              '| optimizer | temp size MiB | args + temps MiB | / SGD+m '
              '| compiler peak MiB | / SGD+m | HBM allocated MiB | / SGD+m '
              '| of it the temp block MiB |',
              '|---|' + '---:|' * 8]
    for r in mine:
      lines.append(
          f'| {r["optimizer"]} | {r["temporaries"] / MiB:,.1f} '
          f'| {r["peak"] / MiB:,.1f} | {ratio(r, "peak")} '
          f'| {r["compiler_peak"] / MiB:,.1f} | {ratio(r, "compiler_peak")} '
          f'| {r["hbm_allocated"] / MiB:,.1f} | {ratio(r, "hbm_allocated")} '
          f'| {r["hbm_temp_block"] / MiB:,.1f} |')
    lines.append('')
  return lines


def sharded_table(rows: list[dict[str, Any]]) -> list[str]:
  from benchmarks import collectives  # pylint: disable=g-import-not-at-top
  kinds = collectives.KINDS
  lines = ['| optimizer | collectives | ' + ' | '.join(kinds)
           + ' | largest collective (bytes per device) | bytes / step '
           '(worst) | conditionals |',
           '|---|---:|' + '---:|' * len(kinds) + '---|---:|---:|']
  for r in _order(rows):
    name = OPTIMIZERS[r['optimizer']]
    if 'error' in r:
      lines.append(f'| {name} | failed: {r["error"][:120]} |'
                   + ' |' * (3 + len(kinds)))
      continue
    big = r['largest']
    big = '-' if big is None else f'{big["what"]} ({big["bytes"]:,})'
    lines.append(
        f'| {name} | {r["collectives"]} | '
        + ' | '.join(str(r['counts'].get(k, 0)) for k in kinds)
        + f' | {big}'
        f' | {round(r["bytes_mean"]):,} ({r["bytes_worst"]:,})'
        f' | {r["conditionals"]} |')
  return lines


def headline(rows: list[dict[str, Any]]) -> list[str]:
  """The GPT-2-shaped figures of issue 22's table, a row per optimizer."""
  get = {(r['target'], r['program'], r['optimizer']): r for r in rows
         if r['model'] == 'gpt2' and 'error' not in r}
  if not any(k[0] in ('h100', 'v5e') for k in get):
    return []
  lines = ['| | H100 update: kernels | conditionals | temp MiB | HBM '
           'bytes/param | H100 train step: kernels | v5e update: HBM '
           'bytes/param | bytes accessed/param | temp MiB | v5e update peak '
           'MiB |', '|---|' + '---:|' * 9]
  for key, name in OPTIMIZERS.items():
    hu, ht, vu = (get.get(k) for k in (('h100', 'update', key),
                                       ('h100', 'train', key),
                                       ('v5e', 'update', key)))
    if not (hu or ht or vu):
      continue
    b = vu and vu.get('bytes_per_param')
    cells = [f'{hu["kernels"]:,}' if hu else '', str(hu['conditionals'])
             if hu else '', _mib(hu['memory']['temporaries']) if hu else '',
             _per_param(hu and hu.get('hbm_bytes_per_param')),
             f'{ht["kernels"]:,}' if ht else '',
             _per_param(vu and vu.get('hbm_bytes_per_param')),
             f'{b:.1f}' if b else '',
             _mib(vu['memory']['temporaries']) if vu else '',
             f'{vu["memory"]["peak"] / MiB:,.0f}' if vu else '']
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


PROGRAM_TITLES = {
    'update': 'the donated update alone (`harness.update_step`)',
    'train': 'the donated train step (`harness.train_step`)',
}


def markdown(report: dict[str, Any]) -> str:
  rows = report['rows']
  tree = report['tree']
  lines = [
      '# Compiled for GPU and TPU: compile facts, not times', '',
      f'`{report["command"]}` on {report["machine"]["cpu"]} '
      f'({report["machine"]["cpu_cores"]} cores), {report["date"]}, '
      f'{report["seconds"] / 60:.1f} min; source tree {tree["root"]} at '
      f'commit {tree["commit"]}{" (with local changes)" if tree["dirty"] else ""}'
      + ('; small shapes (--quick)' if report['quick'] else '') + '.', '',
  ]
  if report.get('sources'):
    lines += ['Merged from the results of ' + '; '.join(
        f'`{c}`' for c in report['sources']) + '.', '']
  lines += [
      'What XLA\'s own compilers decided for each program, compiled without '
      'a device (deviceless TPU topologies from libtpu; the jax-cuda12 plugin '
      'with an H100 target description): deterministic compile facts, **not '
      'times** (`python -m benchmarks.gpu` times on a device). Kernels: '
      '`fusion` and `custom-call` launches of the computations that are not '
      'fused (every branch of a conditional counts, one runs per step); '
      'conditionals (on XLA:GPU each copies its branch index to the host and '
      'blocks until the stream drains) and while loops (a host-read predicate '
      'per iteration on XLA:GPU), collectives: `alada_optax.hlo.hlo_structure`'
      ' of `compiled.as_text()`. Temporaries and peak: '
      '`compiled.memory_analysis()` (peak = arguments + outputs - donated + '
      'temporaries, `harness.Memory`); / Adam and / SGD+m: the peak over the '
      'same program\'s with Adam and with SGD+momentum. HBM bytes / param: '
      'what the kernels read and write in the device\'s main memory '
      '(`alada_optax.hlo.hlo_memory_bytes_per_step`: each top-level '
      'instruction\'s operands and results outside on-chip memory) over the '
      'number of parameters. Bytes accessed / param: `cost_analysis()["bytes '
      'accessed"]` over the number of parameters (TPU only: the GPU path '
      'gives no cost analysis); it also counts the on-chip (VMEM) side of '
      'the copies XLA:TPU makes to prefetch buffers there, and their reads.',
      '']
  for target, info in report['versions'].items():
    lines.append(f'- {target}: jax {info.get("jax")}, jaxlib '
                 f'{info.get("jaxlib")}'
                 + (f', libtpu {info["libtpu"]}' if 'libtpu' in info else '')
                 + (f', jax-cuda12-plugin {info["jax-cuda12-plugin"]}'
                    if 'jax-cuda12-plugin' in info else '')
                 + f', optax {info.get("optax")}; alada_optax from '
                 f'`{info.get("alada_optax")}`')
  lines.append('')
  top = headline(rows)
  if top:
    lines += ['## GPT-2-small-shaped params (148 leaves at full size)', '']
    lines += top + ['']
  for target in dict.fromkeys(r['target'] for r in rows):
    tpu = TARGETS[target][0] == 'tpu'
    mine = [r for r in rows if r['target'] == target]
    for program in PROGRAMS:
      for model in dict.fromkeys(r['model'] for r in mine
                                 if r['program'] == program):
        these = [r for r in mine if r['program'] == program
                 and r['model'] == model]
        ok = next((r for r in these if 'error' not in r), None)
        if program == 'sharded':
          title = (f'## {target}, sharded update: '
                   + (ok['model_name'] if ok else model))
          lines += [title, '', 'The update (not donated) with params sharded '
                    'on both axes of a 2 x 2 (data, model) mesh, state by '
                    '`alada_optax.sharding.state_shardings`; collectives of '
                    'the compiled program by kind, the largest one, and the '
                    'bytes per device one step moves (the mean over the steady'
                    ' state\'s steps; worst: the costliest branch), as '
                    '`benchmarks.collectives` counts them.', '']
          lines += sharded_table(these) + ['']
          continue
        name = ok['model_name'] if ok else model
        extra = (f'; {ok["leaves"]} leaves, {ok["parameters"] / 1e6:,.1f}M '
                 f'params, {ok["memory"]["params"] / MiB:,.1f} MiB'
                 if ok else '')
        lines += [f'## {target}, {PROGRAM_TITLES[program]}: {name}{extra}', '']
        lines += program_table(these, tpu) + ['']
  compile_s = sum(r.get('compile_s', 0) for r in rows)
  lines += [f'{len(rows)} programs, {compile_s / 60:.1f} min of compiling '
            f'in all; {sum("error" in r for r in rows)} failed.', '']
  return '\n'.join(lines)


def _job_key(row) -> tuple:
  return (row['target'], row['model'], row['program'], row['optimizer'])


def merge(paths: list[str]) -> dict[str, Any]:
  """One report from the JSON results of several runs (``accelerators.json``,
  or a worker's ``.jsonl``): a job measured again replaces the earlier row
  (a failed row never replaces a measured one), and the latest run with a
  source tree heads the report."""
  reports = []
  for path in paths:
    with open(path, encoding='utf-8') as f:
      if path.endswith('.jsonl'):
        lines = [json.loads(line) for line in f if line.strip()]
        head = next((r for r in lines if 'versions' in r), {})
        reports.append({'rows': [r for r in lines if 'versions' not in r],
                        'versions': ({head['target']: head['versions']}
                                     if head else {}),
                        'command': f'(worker results {os.path.basename(path)})'})
      else:
        reports.append(json.load(f))
  first = next((r for r in reversed(reports) if 'tree' in r), reports[-1])
  rows: dict[tuple, dict[str, Any]] = {}
  versions: dict[str, Any] = {}
  for r in reports:
    for row in r['rows']:
      old = rows.get(_job_key(row))
      if old is None or 'error' not in row or 'error' in old:
        rows[_job_key(row)] = row
    for target, info in r.get('versions', {}).items():
      versions.setdefault(target, info)
  return {**first, 'rows': list(rows.values()), 'versions': versions,
          'seconds': sum(r.get('seconds', 0) for r in reports),
          'quick': any(r.get('quick') for r in reports),
          'sources': [s for r in reports
                      for s in r.get('sources', [r.get('command')])]}


def tree_info() -> dict[str, Any]:
  def git(*a):
    try:
      return subprocess.run(['git', '-C', ROOT, *a], capture_output=True,
                            text=True, check=False, timeout=30).stdout.strip()
    except OSError:
      return ''
  dirty = git('status', '--porcelain', '--untracked-files=no')
  return {'root': ROOT, 'commit': git('rev-parse', '--short', 'HEAD') or '?',
          'dirty': bool(dirty)}


def write(report: dict[str, Any], out: str) -> list[str]:
  """accelerators.md and accelerators.json under ``out``."""
  os.makedirs(out, exist_ok=True)
  md = os.path.join(out, 'accelerators.md')
  js = os.path.join(out, 'accelerators.json')
  with open(md, 'w', encoding='utf-8') as f:
    f.write(markdown(report))
  with open(js, 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=1)
  return [md, js]


# -- the command ------------------------------------------------------------------

def _choices(value: str, allowed, flag: str, parser) -> list[str]:
  chosen = [v for v in value.split(',') if v]
  unknown = [v for v in chosen if v not in allowed]
  if unknown or not chosen:
    parser.error(f'--{flag}: unknown {unknown}; choose from {",".join(allowed)}')
  return chosen


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.accelerators', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(
      '--target', '--targets', dest='targets', default=None,
      help='comma-separated targets, from ' + ','.join(TARGETS)
           + f' (default: those of {",".join(DEFAULT_TARGETS)} whose compiler '
           'is importable)')
  parser.add_argument('--models', default=','.join(MODELS),
                      help='comma-separated, from %(default)s')
  parser.add_argument('--programs', default=','.join(PROGRAMS),
                      help='comma-separated, from %(default)s (sharded: on '
                           f'{"/".join(SHARDED_TARGETS)} only)')
  parser.add_argument('--optimizers', default=','.join(OPTIMIZERS),
                      help='comma-separated, from %(default)s')
  parser.add_argument('--quick', action='store_true',
                      help='small shapes (a 2-block GPT-2 of d=128, a 2-layer '
                           'stacked model, a d=64 sharded tree): a smoke run')
  parser.add_argument('--jobs', type=int,
                      default=max(1, min(os.cpu_count() or 1, 4)),
                      help='worker processes compiling at once (default: the '
                           'CPU cores, at most 4: %(default)s here; each takes '
                           'up to a few GiB)')
  parser.add_argument('--tpu-python', default=os.environ.get('ALADA_TPU_PYTHON'),
                      help='an interpreter that imports libtpu, for the TPU '
                           'targets (default: $ALADA_TPU_PYTHON)')
  parser.add_argument('--gpu-python', default=os.environ.get('ALADA_GPU_PYTHON'),
                      help='an interpreter that imports jax_cuda12_plugin, for '
                           'h100 (default: $ALADA_GPU_PYTHON)')
  parser.add_argument('--h100-config', default=None,
                      help='a GPU target description (.txtpb) to use instead '
                           'of the built-in H100 SXM one')
  parser.add_argument('--out', default=None,
                      help=f'folder for accelerators.md and accelerators.json '
                           f'(default: {DEFAULT_OUT}, git-ignored)')
  parser.add_argument('--publish', action='store_true',
                      help='maintainers: write into the committed '
                           'benchmarks/results/; only for a full run (every '
                           'default target, no --quick, no filters)')
  parser.add_argument('--from-json', nargs='+', default=None, metavar='FILE',
                      help='compile nothing: write the report of these JSON '
                           'results (accelerators.json of earlier runs, '
                           'merged; a job in a later file replaces the same '
                           'job in an earlier one) under --out')
  parser.add_argument('--_worker', nargs=2, help=argparse.SUPPRESS)
  return parser


def parse_args(argv=None) -> argparse.Namespace:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args._worker:  # pylint: disable=protected-access
    return args
  full = (args.targets is None and args.models == ','.join(MODELS)
          and args.programs == ','.join(PROGRAMS)
          and args.optimizers == ','.join(OPTIMIZERS) and not args.quick)
  args.models = _choices(args.models, MODELS, 'models', parser)
  args.programs = _choices(args.programs, PROGRAMS, 'programs', parser)
  args.optimizers = _choices(args.optimizers, OPTIMIZERS, 'optimizers', parser)
  if args.targets is not None:
    args.targets = _choices(args.targets, TARGETS, 'target', parser)
  if args.publish and not args.from_json:
    if args.out is not None:
      parser.error('--publish writes to benchmarks/results; drop --out')
    if not full:
      parser.error('--publish refreshes the committed full results: run it '
                   'without --quick, --target, --models, --programs and '
                   '--optimizers')
    args.out = PUBLISHED
  elif args.publish:
    args.out = PUBLISHED
  elif args.out is None:
    args.out = DEFAULT_OUT
  if args.jobs < 1:
    parser.error('--jobs must be at least 1')
  args.parser = parser
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  if args._worker:  # pylint: disable=protected-access
    worker(*args._worker, args.h100_config)  # pylint: disable=protected-access
    return 0
  if args.from_json:
    report = merge(args.from_json)
    written = write(report, args.out)
    print(markdown(report))
    print('wrote ' + ', '.join(written))
    return 0
  # This process compiles nothing: keep it off any plugin it may import.
  jax.config.update('jax_platforms', 'cpu')
  start = time.perf_counter()
  log = lambda s: print(f'[{time.perf_counter() - start:6.0f} s] {s}',
                        flush=True)
  pythons = interpreters(args)
  if args.targets is None:
    targets = [t for t in DEFAULT_TARGETS if pythons[TARGETS[t][0]]]
    missing = [how_to_get(b) for b in ('gpu', 'tpu')
               if b not in {TARGETS[t][0] for t in targets}]
    if missing and (args.publish or not targets):
      args.parser.error('\n'.join(missing))
    for message in missing:
      log(f'skipping some targets: {message}')
    args.targets = targets
  else:
    for backend in dict.fromkeys(TARGETS[t][0] for t in args.targets):
      if not pythons[backend]:
        args.parser.error(how_to_get(backend))
  jobs = plan(args)
  log(f'{len(jobs)} programs for {",".join(args.targets)}, {args.jobs} at a '
      'time; compile facts, not times: nothing runs on a device')
  rows, infos = run_workers(jobs, pythons, args, log)
  from benchmarks import run as run_lib  # pylint: disable=g-import-not-at-top
  host = run_lib.machine()
  command = shlex.join(['python', '-m', 'benchmarks.accelerators',
                        *(argv if argv is not None else sys.argv[1:])])
  report = {
      'command': command, 'date': datetime.date.today().isoformat(),
      'machine': {k: host[k] for k in ('cpu', 'cpu_cores', 'python')},
      'tree': tree_info(), 'quick': args.quick,
      'seconds': time.perf_counter() - start,
      'versions': infos, 'rows': rows,
  }
  written = write(report, args.out)
  print(markdown(report))
  failed = sum('error' in r for r in rows)
  log(f'done in {report["seconds"] / 60:.1f} min, {failed} failed; these are '
      'compile facts, not times; wrote ' + ', '.join(written))
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
