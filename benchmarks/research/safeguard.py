"""Alada's default step bound against the paper's Algorithm 2, and against Adam.

    python -m benchmarks.research.safeguard               # ~5 min on 2 CPU cores
    python -m benchmarks.research.safeguard --quick       # smoke run: one seed, short
    python -m benchmarks.research.safeguard --candidates  # + bounds 2, 3.16; G^2 with 1, 2, none; G^2, b2 .85 (~13 min)
    python -m benchmarks.research.safeguard --yardsticks  # + the rank-one yardsticks (~+4 min)

Four measurements, each for Adam (``optax.adam``, b2 = 0.999), the default
``alada`` (``step_bound=1``) and the paper's Algorithm 2
(``alada(..., step_bound=None)``):

* **A rare embedding row.** A 100 x 8 table trained on gradients
  ``0.1 N(0, 1) + 0.05`` whose row 3 gets no gradient for ``silent`` steps and
  then comes back on an odd step (the step that refits ``q``, so that ``p`` is
  stale); the largest per-entry update of that row afterwards, in units of the
  learning rate.
* **optax's 2 x 2 matrix_parabola** (its contrib battery's target) at
  lr 3e-3 for 30,000 steps: the final distance to the optimum and the largest
  per-entry step.
* **What the bound costs**: the donated update alone (update + apply) on the
  GPT-2-small-shaped params of :mod:`benchmarks.run`, the default against
  the paper's mode, interleaved rounds after warm-up, medians; each program
  on two copies of the params, whose spread (the same executable, other
  buffers) is the run's noise floor; and the bytes XLA's cost analysis says
  each accesses.
* **Learning-rate sensitivity on a small LM**: the byte-level transformer
  of :mod:`benchmarks.methods` (2 blocks, d = 128), 200 steps of batch 8 x 32
  bytes on the movie-review sentences, held-out loss in nats per byte on an
  11-point grid of quarter-decade steps from 3e-5 to 1e-2, for four batch
  orders (seeds), summarised by :mod:`benchmarks.research.lr_robustness`
  (best and its ties, centred-grid worst, Alada at Adam's best / 3 and / 2); and,
  over the run, the mean per-entry step ``|update| / lr`` and the fraction
  of entries with ``|update| >= lr`` (for the default Alada: where the bound
  acts). ``--yardsticks`` adds Adam dividing by the best rank-one fit of its
  own second moment (:mod:`benchmarks.research.rank_one_adam`: least squares,
  Adafactor's fit, and least squares with Alada's bound of 1): yardsticks
  for what a rank-one second moment does, and each optimizer's centred-grid
  worst against the most robust of them.

Writes ``safeguard.md``, ``safeguard.json`` and ``safeguard.png`` under
``--out`` (default ``out/safeguard``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import alada_optax
from benchmarks import harness
from benchmarks import methods as methods_lib
from benchmarks import models as models_lib
from benchmarks.research import lr_robustness
from benchmarks.research import rank_one_adam

OPTIMIZERS = {
    'adam': lambda learning_rate: optax.adam(learning_rate),
    'alada': lambda learning_rate: alada_optax.alada(learning_rate),
    'alada (paper)': lambda learning_rate: alada_optax.alada(
        learning_rate, step_bound=None),
}
# The looser bounds that were measured against the default's 1 (--candidates).
CANDIDATES = {
    'alada (bound 2)': lambda learning_rate: alada_optax.alada(
        learning_rate, step_bound=2.0),
    'alada (bound 1/sqrt(1-b2))': lambda learning_rate: alada_optax.alada(
        learning_rate, step_bound=10**0.5),
    # Not a bound: the factors fit G^2 (the paper's Section III), bound 1,
    # and the same with the looser bound 2 and with none.
    'alada (G^2)': lambda learning_rate: alada_optax.alada(
        learning_rate, second_moment='gradient'),
    'alada (G^2, bound 2)': lambda learning_rate: alada_optax.alada(
        learning_rate, second_moment='gradient', step_bound=2.0),
    'alada (G^2, no bound)': lambda learning_rate: alada_optax.alada(
        learning_rate, second_moment='gradient', step_bound=None),
    # A faster-decaying G^2 fit: b2 0.85 instead of the paper's 0.9, bound 2
    # (docs/research/safeguard.md, "A faster-decaying G^2 fit").
    'alada (G^2, b2 0.85, bound 2)': lambda learning_rate: alada_optax.alada(
        learning_rate, b2=0.85, second_moment='gradient', step_bound=2.0),
}
# Adam's full state dividing by a rank-one fit of its own second moment:
# yardsticks for rank-one second moments, not memory savers (--yardsticks).
YARDSTICKS = {
    'adam (rank-one fit)': lambda learning_rate: rank_one_adam.rank_one_adam(
        learning_rate),
    'adam (rank-one fit, sums)': lambda learning_rate: (
        rank_one_adam.rank_one_adam(learning_rate, fit='sums')),
    'adam (rank-one fit, bound 1)': lambda learning_rate: (
        rank_one_adam.rank_one_adam(learning_rate, step_bound=1.0)),
}
# Quarter-decade steps (1, 1.7, 3, 5.5, 10): a 5-point grid of half-decade
# steps (factor ~3) centred on any point from 3e-4 to 1e-3 is inside it.
LRS = (3e-5, 5.5e-5, 1e-4, 1.7e-4, 3e-4, 5.5e-4, 1e-3, 1.7e-3, 3e-3, 5.5e-3,
       1e-2)
SEEDS = (7, 8, 9, 10)  # batch orders


def rare_row(make, silent: int, lr: float = 1e-3, rows: int = 100,
             cols: int = 8, row: int = 3, after: int = 50) -> float:
  """Largest |update| / lr of ``row`` once it is back (see the docstring)."""
  rng = np.random.default_rng(0)
  opt = make(lr)
  params = jnp.zeros((rows, cols))
  grads = 0.1 * rng.normal(size=(20 + silent + 1 + after, rows, cols)) + 0.05
  back = 20 + silent + 1 - (20 + silent) % 2
  grads[20:back, row] = 0.0

  def step(state, g):
    updates, state = opt.update(g, state, params)
    return state, jnp.max(jnp.abs(updates[row]))

  _, largest = jax.jit(lambda g: jax.lax.scan(step, opt.init(params), g))(
      jnp.asarray(grads, jnp.float32))
  return float(jnp.max(largest[back:])) / lr


def matrix_parabola(make, lr: float = 3e-3, steps: int = 30_000):
  """(max |x - x*|, largest |update| / lr) on optax's matrix_parabola."""
  final = jnp.array([[3.0, -2.0], [1.0, 4.0]])
  loss = lambda x: jnp.sum((x - final) ** 2)
  opt = make(lr)

  def step(carry, _):
    x, state = carry
    updates, state = opt.update(jax.grad(loss)(x), state, x)
    return (optax.apply_updates(x, updates), state), jnp.max(jnp.abs(updates))

  x0 = jnp.zeros((2, 2))
  (x, _), largest = jax.jit(
      lambda x: jax.lax.scan(step, (x, opt.init(x)), length=steps))(x0)
  return float(jnp.max(jnp.abs(x - final))), float(jnp.max(largest)) / lr


def _bytes(per_param: float | None) -> str:
  return 'n/a' if per_param is None else f'{per_param:.1f}'


def update_cost(quick: bool, rounds: int, log=print, extra=None,
                copies: int = 2) -> dict[str, Any]:
  """Median time and bytes accessed of the update alone, default vs paper
  (and the optimizers of ``extra``, a dict like :data:`CANDIDATES`).

  Each compiled program runs on ``copies`` copies of the params, all timed
  interleaved: an optimizer's median pools its copies, and ``aa_spread`` is
  the largest difference between two copies of one program (the same
  executable on other buffers), the noise floor of the ratios.
  """
  model = (models_lib.gpt2(layers=1, d=64, heads=2, vocab=256, ctx=32, seq=32)
           if quick else models_lib.gpt2())
  makers = {**OPTIMIZERS, **(extra or {})}
  names = ['alada', 'alada (paper)', *(extra or {})]
  opts = {n: makers[n](1e-3) for n in names}
  abstract = jax.eval_shape(model.init, jax.random.key(0))
  programs = {n: harness.compile_update_step(abstract, opts[n]) for n in names}
  params = harness.concrete_params(model)
  runs = {(n, k): f'{n} #{k}' for n in names for k in range(copies)}
  timed = harness.time_programs(
      {key: programs[n] for (n, _), key in runs.items()},
      {key: opts[n] for (n, _), key in runs.items()}, params,
      harness.fake_grads(params), 2, rounds)
  size = sum(x.size for x in jax.tree.leaves(abstract))
  out = {}
  for n in names:
    accessed = harness.bytes_accessed(programs[n].compiled)
    per_copy = [timed[runs[n, k]]['time'] for k in range(copies)]
    t = harness.Timing([s for c in per_copy for s in c.seconds])
    out[n] = {'median_s': t.median, 'low_s': t.low, 'high_s': t.high,
              'copies_median_s': [c.median for c in per_copy],
              'bytes_per_param': None if accessed is None else accessed / size}
    log(f'  update alone, {n}: {t.median * 1e3:,.1f} ms (copies: '
        + ', '.join(f'{c.median * 1e3:,.1f}' for c in per_copy)
        + f'), {_bytes(out[n]["bytes_per_param"])} bytes/param')
  aa = max(max(r['copies_median_s']) / min(r['copies_median_s']) - 1
           for r in out.values())
  return {'model': model.name, 'rounds': rounds, 'copies': copies,
          'aa_spread': aa, 'rows': out}


def lr_sensitivity(quick: bool, optimizers, log=print) -> dict[str, Any]:
  """The LM sweep: every optimizer at every lr of ``LRS`` for every seed."""
  task = methods_lib.task(quick)
  lm, data = task.lm, task.lm_data()
  params = harness.concrete_params(lm)
  stream, heldout = jnp.asarray(data.train), jnp.asarray(data.heldout)
  seeds = SEEDS[:1] if quick else SEEDS
  rows = {}
  for name, make in optimizers.items():
    opt = optax.inject_hyperparams(make, hyperparam_dtype=jnp.float32)(1e-3)
    state0 = jax.eval_shape(opt.init, params)
    start = time.perf_counter()
    compiled = jax.jit(methods_lib.lm_program(
        lm, opt, task.steps, task.warmup, step_stats=True)).lower(
        params, state0, jax.random.key(0), stream, heldout).compile()
    runs = []
    for lr in LRS:
      for seed in seeds:
        state = opt.init(params)
        state.hyperparams['learning_rate'] = jnp.asarray(lr, jnp.float32)
        held, _, mean, at_lr = compiled(params, state, jax.random.key(seed),
                                        stream, heldout)
        held = float(held)
        runs.append({'lr': lr, 'seed': seed,
                     'heldout': held if np.isfinite(held) else None,
                     'mean_step': float(mean), 'at_lr': float(at_lr)})
    rows[name] = runs
    c = _curve(runs)
    log(f'  {name}: ' + ', '.join(
        f'{lr:g}: ' + ('div' if m is None else f'{m:.3f}')
        for lr, m in zip(c.lrs, c.means)) +
        f' ({time.perf_counter() - start:.0f} s)')
  return {'lm_name': lm.name, 'steps': task.steps, 'seeds': list(seeds),
          'unigram': data.unigram, 'lrs': list(LRS), 'rows': rows}


def _curve(runs) -> lr_robustness.Curve:
  """One optimizer's runs as a loss curve (the std. errors are the seeds')."""
  return lr_robustness.curve(((r['lr'], r['heldout']) for r in runs),
                             higher_is_better=False)


def curves(lm: dict[str, Any]) -> dict[str, lr_robustness.Curve]:
  """The LM sweep as :class:`benchmarks.research.lr_robustness.Curve` per optimizer."""
  return {name: _curve(runs) for name, runs in lm['rows'].items()}


def floor(lm_curves: dict[str, lr_robustness.Curve]) -> str | None:
  """The yardstick swept (if any) whose centred-grid worst is the best."""
  cs = {n: c for n, c in lm_curves.items() if n in YARDSTICKS}
  return max(cs, key=lambda n: cs[n].key(cs[n].centred_worst(cs[n].best)[0]),
             default=None)


def markdown(res: dict[str, Any]) -> str:
  lines = ['## A rare embedding row (100 x 8, lr 1e-3): largest per-entry '
           'update after it comes back, x lr', '',
           '| optimizer | ' + ' | '.join(f'{s} silent steps' for s in res['silent'])
           + ' |', '|---|' + '---:|' * len(res['silent'])]
  for name, vals in res['rare_row'].items():
    lines.append(f'| {name} | ' + ' | '.join(f'{v:.3g}' for v in vals) + ' |')
  lines += ['', "## optax's 2 x 2 matrix_parabola, lr 3e-3, 30,000 steps", '',
            '| optimizer | max abs(x - x*) | largest step / lr | converged (3e-2) |',
            '|---|---:|---:|---|']
  for name, (err, largest) in res['parabola'].items():
    lines.append(f'| {name} | {err:.3g} | {largest:.3g} | '
                 f'{"yes" if err < 3e-2 else "no"} |')
  up = res['update']
  base = up['rows']['alada (paper)']['median_s']
  lines += ['', f'## The update alone: {up["model"]} params, median of '
            f'{up["rounds"]} interleaved rounds on each of {up["copies"]} '
            'copies of the params (quartiles)', '',
            '| optimizer | ms | / paper | ms per copy | bytes accessed / param |',
            '|---|---:|---:|---|---:|']
  for name, r in up['rows'].items():
    lines.append(f'| {name} | {r["median_s"] * 1e3:,.1f} ({r["low_s"] * 1e3:,.1f}'
                 f'-{r["high_s"] * 1e3:,.1f}) | {r["median_s"] / base:.3f} | '
                 + ', '.join(f'{c * 1e3:,.1f}' for c in r['copies_median_s'])
                 + f' | {_bytes(r["bytes_per_param"])} |')
  lines += ['', f'Two copies of one program differed by up to '
            f'{100 * up["aa_spread"]:.1f}%: the noise floor of "/ paper".']
  lm = res['lm']
  lm_curves = curves(lm)
  lines += ['', f'## Learning-rate sensitivity: {lm["lm_name"]}, {lm["steps"]} '
            f'steps, held-out nats/byte (mean ± std. error over batch orders '
            f'{lm["seeds"]}; unigram {lm["unigram"]:.3f})', '',
            lr_robustness.markdown(lm_curves, floor=floor(lm_curves),
                                   gap_unit='nats').rstrip('\n'),
            '',
            '| optimizer | mean step / lr | entries stepping >= lr |',
            '|---|---:|---:|']
  for name, runs in lm['rows'].items():
    mean_step = np.mean([r['mean_step'] for r in runs])
    at_lr = np.mean([r['at_lr'] for r in runs])
    lines.append(f'| {name} | {mean_step:.3f} | {100 * at_lr:.2f}% |')
  return '\n'.join(lines) + '\n'


def plot(res: dict[str, Any], path: str) -> None:
  lm = res['lm']
  lr_robustness.plot(curves(lm), path, 'held-out loss (nats/byte)',
                     f'{lm["lm_name"]}, {lm["steps"]} steps',
                     baseline=(lm['unigram'], 'unigram'))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.research.safeguard',
      description="Alada's default step bound vs the paper's Algorithm 2 and "
      'Adam: a rare embedding row, optax\'s matrix_parabola, and a '
      'learning-rate sweep on a small LM.')
  parser.add_argument('--out', default=os.path.join('out', 'safeguard'),
                      help='output folder (default: %(default)s)')
  parser.add_argument('--quick', action='store_true',
                      help='smoke run: tiny LM, one seed, fewer silent steps')
  parser.add_argument('--candidates', action='store_true',
                      help='also sweep the looser bounds 2 and 1/sqrt(1-b2), '
                      "and second_moment='gradient' with the bounds 1, 2 and "
                      'none, and with b2 0.85 and the bound 2, on the LM '
                      '(+8 min)')
  parser.add_argument('--yardsticks', action='store_true',
                      help="also sweep Adam dividing by a rank-one fit of its "
                      'own second moment (three yardsticks for rank-one '
                      'second moments) on the LM (+4 min)')
  args = parser.parse_args(argv)
  start = time.perf_counter()
  silent = (20, 60) if args.quick else (200, 600)
  res: dict[str, Any] = {'silent': list(silent)}
  res['rare_row'] = {n: [rare_row(m, s) for s in silent]
                     for n, m in OPTIMIZERS.items()}
  print('rare row:', res['rare_row'], flush=True)
  res['parabola'] = {n: matrix_parabola(m, steps=3000 if args.quick else 30_000)
                     for n, m in OPTIMIZERS.items()}
  print('matrix_parabola:', res['parabola'], flush=True)
  res['update'] = update_cost(
      args.quick, 3 if args.quick else 31,
      extra={'alada (G^2)': CANDIDATES['alada (G^2)']} if args.candidates
      else None)
  with methods_lib.single_threaded_lapack():
    res['lm'] = lr_sensitivity(
        args.quick, {**OPTIMIZERS, **(CANDIDATES if args.candidates else {}),
                     **(YARDSTICKS if args.yardsticks else {})})
  res['wall_s'] = time.perf_counter() - start
  res['versions'] = {'jax': jax.__version__, 'optax': optax.__version__}
  os.makedirs(args.out, exist_ok=True)
  table = markdown(res)
  paths = [os.path.join(args.out, f) for f in
           ('safeguard.md', 'safeguard.json', 'safeguard.png')]
  with open(paths[0], 'w') as f:
    f.write(table)
  with open(paths[1], 'w') as f:
    json.dump(res, f, indent=1)
  plot(res, paths[2])
  print(table)
  print(f'{res["wall_s"]:.0f} s; wrote {", ".join(paths)}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
