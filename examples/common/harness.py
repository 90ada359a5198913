"""Run Adam, Adafactor and Alada side by side on one fine-tuning task.

Every example in ``examples/`` describes its task as a :class:`Task` (how to
build the pretrained model, the loss, the training batches, the evaluation)
and hands it to :func:`run_grid` with a learning-rate grid per optimizer. Each
``(optimizer, learning rate)`` trial then gets exactly the same budget: the same
fresh copy of the pretrained model, the same batches in the same order, the same
number of steps and the same schedule shape (linear warmup, then linear decay to
0, :func:`make_schedule`). Only the optimizer and its peak learning rate differ.

Usage, the whole API an example needs::

  from examples.common import harness

  task = harness.Task(
      make_model=lambda: MyModel.from_pretrained(...),   # a fresh nnx.Module
      loss_fn=lambda model, batch: ...,                 # scalar mean loss
      train_batch=lambda step: {...},                   # numpy arrays, fixed shapes
      evaluate=lambda model: 0.87,                      # a Python float
      metric_name='accuracy', higher_is_better=True,
      trainable=nnx.Param,                              # which Variables train
  )
  results = harness.run_grid(
      task, {'adam': [1e-4, 3e-4], 'adafactor': [1e-3, 3e-3], 'alada': [1e-4, 3e-4]},
      num_steps=100, warmup_steps=10, eval_every=50)
  harness.write_report(results, task, out_dir)   # table (.md, .json) + 2 PNGs
  print(harness.format_table(results, task))

What is measured, per trial (:class:`TrialResult`):

* ``train_loss``: the loss of every step; ``eval_metric`` at ``eval_steps``
  (every ``eval_every`` steps and after the last); ``final_metric`` is the
  metric after the last step.
* ``opt_state_bytes``: the bytes of the optimizer state, summed over its
  leaves (exact, from the arrays' shapes and dtypes).
* ``peak_memory_bytes``: XLA's compiled memory analysis of the jitted train
  step, ``jax.jit(step).lower(...).compile().memory_analysis()``: the
  reported peak where the backend reports one, else arguments + outputs +
  temporaries - aliased (donated) buffers. It covers params, frozen weights,
  optimizer state, the batch, activations and gradients of one step; it is a
  property of the compiled program, the same on every run.
* ``step_time_s``: the median wall time of a train step, the first (compiling)
  step excluded, the loss fetched to the host each step.

The train step is :func:`make_train_step`: the plain optax pattern on the
``nnx.split`` state of a Flax NNX model, the piece to copy into your own code.
A trial whose loss stops being finite is stopped and reported as diverged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
import types
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import alada_optax


def _adam(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  return optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)


def _adafactor(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # optax's defaults: factored second moment, decay_rate 0.8, no momentum,
  # update clipping at 1.0 and steps relative to each parameter's RMS
  # (multiply_by_parameter_scale=True), so its learning rates are not Adam's.
  return optax.adafactor(learning_rate)


def _alada(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # The paper's recommended b1 = b2 = 0.9.
  return alada_optax.alada(learning_rate, b1=0.9, b2=0.9)


def _alada_paper(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # The paper's Algorithm 2 exactly: no bound on the per-entry step.
  return alada_optax.alada(learning_rate, b1=0.9, b2=0.9, step_bound=None)


def _alada_int8(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # Alada with its first moment in 8 bits (alada_optax.Int8's defaults).
  return alada_optax.alada(learning_rate, b1=0.9, b2=0.9, mu_dtype='int8')


OPTIMIZERS: dict[str, Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]] = {
    'adam': _adam,
    'adafactor': _adafactor,
    'alada': _alada,
    'alada_paper': _alada_paper,
    'alada_int8': _alada_int8,
}
"""The product's optimizers: name -> ``factory(learning_rate)``; no weight
decay for any. What every example offers by default."""

RESEARCH_OPTIMIZERS: tuple[str, ...] = (
    'alada_gradient', 'alada_gradient_b2_085',
    'adam_rank_one', 'adam_rank_one_sums', 'adam_rank_one_bounded')
"""The research variants' names (:mod:`benchmarks.research.optimizers`):
offered only under a research config (``config.research = True``, each
example's ``configs/research.py``), imported only then."""


def optimizers(
    research: bool = False,
) -> dict[str, Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]]:
  """:data:`OPTIMIZERS`, and with ``research`` the research variants too.

  The research variants are imported from :mod:`benchmarks.research` only
  when asked for (run from the repository root, where ``benchmarks`` is).
  """
  if not research:
    return dict(OPTIMIZERS)
  from benchmarks.research import optimizers as research_optimizers  # pylint: disable=g-import-not-at-top
  return {**OPTIMIZERS, **research_optimizers.OPTIMIZERS}


def check_optimizers(names: Sequence[str], research: bool = False,
                     research_config: str = '') -> None:
  """Raises a ValueError naming the first of ``names`` not on offer.

  Args:
    names: optimizer names asked for.
    research: whether the research variants are on offer.
    research_config: the example's research config, named in the error.
  """
  for name in names:
    if name in OPTIMIZERS or (research and name in RESEARCH_OPTIMIZERS):
      continue
    if name in RESEARCH_OPTIMIZERS:
      how = (f'--config={research_config}' if research_config else
             "a config with research=True (each example's configs/research.py)")
      raise ValueError(
          f'optimizer {name!r} is a research variant '
          '(benchmarks.research.optimizers), not one of the optimizers the '
          f'examples offer by default ({", ".join(OPTIMIZERS)}); run it with '
          f'the research config: {how}')
    raise ValueError(
        f'unknown optimizer {name!r}; choose from {", ".join(OPTIMIZERS)}'
        + (f', {", ".join(RESEARCH_OPTIMIZERS)}' if research else
           f' (research variants, with the research config: '
           f'{", ".join(RESEARCH_OPTIMIZERS)})'))


def make_optimizer(
    name: str, learning_rate: optax.ScalarOrSchedule, *, research: bool = False
) -> optax.GradientTransformation:
  """The optimizer called ``name``: one of :data:`OPTIMIZERS`, or with
  ``research`` also of :data:`RESEARCH_OPTIMIZERS`."""
  check_optimizers([name], research)
  return optimizers(research and name in RESEARCH_OPTIMIZERS)[name](learning_rate)


def make_schedule(
    peak_learning_rate: float, num_steps: int, warmup_steps: int
) -> optax.Schedule:
  """Linear warmup from 0 over ``warmup_steps``, then linear decay to 0 at ``num_steps``."""
  if not 0 <= warmup_steps < num_steps:
    raise ValueError(
        f'need 0 <= warmup_steps < num_steps, got {warmup_steps}, {num_steps}'
    )
  decay = optax.linear_schedule(peak_learning_rate, 0.0, num_steps - warmup_steps)
  if warmup_steps == 0:
    return decay
  warmup = optax.linear_schedule(0.0, peak_learning_rate, warmup_steps)
  return optax.join_schedules([warmup, decay], [warmup_steps])


@dataclasses.dataclass(frozen=True)
class Task:
  """What an example supplies to the harness.

  Attributes:
    make_model: returns a fresh model (an ``nnx.Module``) holding the
      pretrained weights; called once per trial so every trial starts from the
      same point (seed any new head inside it).
    loss_fn: ``loss_fn(model, batch) -> scalar`` mean training loss; traced
      under ``jax.jit``.
    train_batch: ``train_batch(step) -> batch``, a pytree of arrays with the
      same shapes at every step (one compilation); must be deterministic in
      ``step`` so that every trial sees the same data.
    evaluate: ``evaluate(model) -> float``, the held-out metric.
    metric_name: the metric's name in the table and plots, e.g. 'accuracy'.
    higher_is_better: whether a larger metric is better (accuracy) or not
      (perplexity); picks each optimizer's best learning rate.
    trainable: an ``nnx`` filter for the Variables that train; the rest of
      the model's state is passed to the step frozen (no gradients, no
      optimizer state).
    name: a title for the table and plots.
  """

  make_model: Callable[[], nnx.Module]
  loss_fn: Callable[[nnx.Module, Any], jax.Array]
  train_batch: Callable[[int], Any]
  evaluate: Callable[[nnx.Module], float]
  metric_name: str
  higher_is_better: bool
  trainable: Any = nnx.Param
  name: str = 'fine-tuning'


@dataclasses.dataclass
class TrialResult:
  """One ``(optimizer, learning_rate)`` run; see the module docstring."""

  optimizer: str
  learning_rate: float
  num_steps: int
  train_loss: list[float]
  eval_steps: list[int]
  eval_metric: list[float]
  final_metric: float
  opt_state_bytes: int
  peak_memory_bytes: int
  step_time_s: float
  wall_time_s: float
  diverged: bool
  trainable_params: int
  step_stats: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def make_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: Callable[[nnx.Module, Any], jax.Array],
    tx: optax.GradientTransformation,
    *,
    step_stats: bool = False,
) -> Callable[..., tuple[Any, ...]]:
  """The jitted step ``(params, opt_state, frozen, batch) -> (params, opt_state, loss)``.

  ``params`` and ``frozen`` come from ``nnx.split(model, trainable, ...)``;
  params and optimizer state are donated, so their buffers are reused.

  With ``step_stats`` the step takes the step's learning rate as a fifth
  argument and also returns :func:`update_stats` of its updates.
  """

  def train_step(params, opt_state, frozen, batch, learning_rate=None):
    def loss_of(p):
      return loss_fn(nnx.merge(graphdef, p, frozen), batch)

    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    if not step_stats:
      return new_params, opt_state, loss
    return new_params, opt_state, loss, update_stats(updates, learning_rate)

  return jax.jit(train_step, donate_argnums=(0, 1))


def update_stats(updates: Any, learning_rate: jax.Array) -> dict[str, jax.Array]:
  """Per-entry step sizes ``|update| / learning_rate`` of one step, summarised.

  'mean' and 'max' over every trained entry; 'at_lr', the fraction of entries
  with ``|update| >= learning_rate`` (for the default Alada: the entries whose
  step its bound sets); 'max_embedding', the max over embedding tables (the
  ``embedding`` params of ``nnx.Embed``; 0 if none).
  """
  leaves = jax.tree_util.tree_leaves_with_path(updates)
  size = sum(x.size for _, x in leaves)
  steps = [(jax.tree_util.keystr(path),
            jnp.abs(x.astype(jnp.float32)) / learning_rate)
           for path, x in leaves]
  largest = lambda xs: jnp.max(jnp.stack([jnp.max(x) for x in xs])) if xs else 0.0
  return {
      'mean': sum(jnp.sum(x) for _, x in steps) / size,
      'max': largest([x for _, x in steps]),
      'at_lr': sum(jnp.sum(x >= 1 - 1e-6) for _, x in steps) / size,
      'max_embedding': largest([x for p, x in steps if "['embedding']" in p]),
  }


def _tree_bytes(tree: Any) -> int:
  return sum(
      math.prod(x.shape) * jnp.dtype(x.dtype).itemsize
      for x in jax.tree.leaves(tree)
      if hasattr(x, 'shape')
  )


def _peak_bytes(compiled) -> int:
  stats = compiled.memory_analysis()
  if stats is None:
    return -1
  peak = getattr(stats, 'peak_memory_in_bytes', 0) or 0
  if peak > 0:
    return int(peak)
  return int(
      stats.argument_size_in_bytes
      + stats.output_size_in_bytes
      + stats.temp_size_in_bytes
      - stats.alias_size_in_bytes
  )


def _progress(total: int, desc: str, enabled: bool):
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

  return tqdm(
      total=total, desc=desc, unit='step', disable=not enabled,
      mininterval=1.0, dynamic_ncols=True, leave=True,
  )


def run_trial(
    task: Task,
    optimizer: str,
    learning_rate: float,
    *,
    num_steps: int,
    warmup_steps: int,
    eval_every: int = 0,
    progress: bool = True,
    research: bool = False,
) -> TrialResult:
  """Fine-tunes a fresh ``task.make_model()`` with one optimizer and peak lr.

  ``research``: also offer the research variants (:func:`make_optimizer`).
  """
  start = time.perf_counter()
  model = task.make_model()
  graphdef, params, frozen = nnx.split(model, task.trainable, ...)
  del model
  schedule = make_schedule(learning_rate, num_steps, warmup_steps)
  tx = make_optimizer(optimizer, schedule, research=research)
  opt_state = tx.init(params)
  step_fn = make_train_step(graphdef, task.loss_fn, tx, step_stats=True)
  compiled = step_fn.lower(params, opt_state, frozen, task.train_batch(0),
                           jnp.float32(learning_rate)).compile()
  stats = {}

  losses, eval_steps, eval_metric, step_times = [], [], [], []
  diverged = False

  def evaluate(step):
    eval_steps.append(step)
    eval_metric.append(float(task.evaluate(nnx.merge(graphdef, params, frozen))))
    return eval_metric[-1]

  bar = _progress(num_steps, f'{optimizer} lr={learning_rate:g}', progress)
  postfix = {}
  for step in range(num_steps):
    batch = task.train_batch(step)
    t0 = time.perf_counter()
    # The step's lr (the schedule at the count before this update); the
    # step statistics of step 0 of a warmup (lr 0) are not recorded.
    lr_now = float(schedule(step))
    params, opt_state, loss, step_stat = compiled(
        params, opt_state, frozen, batch, jnp.float32(lr_now or 1.0))
    loss = float(loss)
    step_times.append(time.perf_counter() - t0)
    if lr_now > 0:
      for key, value in step_stat.items():
        stats.setdefault(key, []).append(float(value))
    losses.append(loss)
    if not math.isfinite(loss):
      diverged = True
      bar.close()
      break
    postfix['loss'] = f'{loss:.4f}'
    if eval_every and (step + 1) % eval_every == 0 and step + 1 < num_steps:
      postfix[task.metric_name] = f'{evaluate(step + 1):.4f}'
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)
  if not diverged:
    final = evaluate(num_steps)
    bar.set_postfix({**postfix, task.metric_name: f'{final:.4f}'})
    bar.close()

  return TrialResult(
      optimizer=optimizer,
      learning_rate=float(learning_rate),
      num_steps=num_steps,
      train_loss=losses,
      eval_steps=eval_steps,
      eval_metric=eval_metric,
      final_metric=float('nan') if diverged else eval_metric[-1],
      opt_state_bytes=_tree_bytes(opt_state),
      peak_memory_bytes=_peak_bytes(compiled),
      step_time_s=statistics.median(step_times[1:] or step_times),
      wall_time_s=time.perf_counter() - start,
      diverged=diverged,
      trainable_params=sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
      step_stats=stats,
  )


def run_grid(
    task: Task,
    grid: Mapping[str, Sequence[float]],
    *,
    num_steps: int,
    warmup_steps: int,
    eval_every: int = 0,
    progress: bool = True,
    research: bool = False,
) -> list[TrialResult]:
  """:func:`run_trial` for every optimizer and each of its learning rates.

  Args:
    task: the task.
    grid: optimizer name -> peak learning rates to try. Give every optimizer
      the same number of learning rates for an even comparison.
    num_steps: training steps per trial.
    warmup_steps: linear warmup steps of the schedule.
    eval_every: also evaluate every this many steps (0: only at the end).
    progress: show a tqdm progress bar per trial.
    research: also offer the research variants (:data:`RESEARCH_OPTIMIZERS`).

  Returns:
    One :class:`TrialResult` per trial, in grid order.
  """
  check_optimizers(list(grid), research)
  return [
      run_trial(
          task, name, lr, num_steps=num_steps, warmup_steps=warmup_steps,
          eval_every=eval_every, progress=progress, research=research,
      )
      for name, lrs in grid.items()
      for lr in lrs
  ]


def best_per_optimizer(
    results: Sequence[TrialResult], higher_is_better: bool
) -> dict[str, TrialResult]:
  """Each optimizer's trial with the best final metric (diverged ones last)."""
  sign = 1.0 if higher_is_better else -1.0
  best = {}
  for r in results:
    score = -math.inf if r.diverged else sign * r.final_metric
    if r.optimizer not in best or score > best[r.optimizer][0]:
      best[r.optimizer] = (score, r)
  return {name: r for name, (_, r) in best.items()}


def _mib(n: int) -> str:
  return f'{n / 2**20:,.1f}'


def format_table(results: Sequence[TrialResult], task: Task) -> str:
  """A Markdown table of all trials, each optimizer's best marked with '*'."""
  best = best_per_optimizer(results, task.higher_is_better)
  lines = [
      f'| optimizer | peak lr | {task.metric_name} | final train loss'
      ' | optimizer state (MiB) | train-step peak (MiB, XLA)'
      ' | step time (ms, median) | trial wall (s)'
      ' | mean step / lr | largest step / lr | entries stepping >= lr |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in results:
    mark = ' *' if best[r.optimizer] is r else ''
    metric = 'diverged' if r.diverged else f'{r.final_metric:.4f}{mark}'
    tail = r.train_loss[-max(1, len(r.train_loss) // 10):]
    summary = summarize_step_stats(r)
    lines.append(
        f'| {r.optimizer} | {r.learning_rate:g} | {metric}'
        f' | {statistics.fmean(tail):.4f}'
        f' | {_mib(r.opt_state_bytes)} | {_mib(r.peak_memory_bytes)}'
        f' | {1e3 * r.step_time_s:,.0f} | {r.wall_time_s:,.0f}'
        f' | {summary["mean"]:.3f} | {summary["max"]:.3g}'
        f' | {100 * summary["at_lr"]:.2f}% |'
    )
  return '\n'.join(lines)


def summarize_step_stats(result: TrialResult) -> dict[str, float]:
  """A trial's :func:`update_stats` over its steps: the mean of 'mean' and
  'at_lr', the max of 'max' and 'max_embedding' (nan before any step)."""
  stats = result.step_stats
  if not stats or not stats.get('mean'):
    return dict.fromkeys(('mean', 'max', 'at_lr', 'max_embedding'), math.nan)
  return {'mean': statistics.fmean(stats['mean']), 'max': max(stats['max']),
          'at_lr': statistics.fmean(stats['at_lr']),
          'max_embedding': max(stats['max_embedding'])}


def _smooth(values: Sequence[float], span: int) -> np.ndarray:
  """Exponential moving average, bias-corrected, for readable loss curves."""
  alpha = 2.0 / (span + 1.0)
  out, avg, weight = [], 0.0, 0.0
  for v in values:
    avg = (1 - alpha) * avg + alpha * v
    weight = (1 - alpha) * weight + alpha
    out.append(avg / weight)
  return np.asarray(out)


def _save_figure(fig, out_dir: str, name: str) -> str:
  """Lays out ``fig``, writes it to ``out_dir/name`` and closes it; the path."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig.tight_layout()
  path = os.path.join(out_dir, name)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_results(
    results: Sequence[TrialResult], task: Task, out_dir: str
) -> tuple[str, str, str]:
  """Writes ``loss_curves.png``, ``memory.png`` and ``lr_sensitivity.png`` under
  ``out_dir``; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(out_dir, exist_ok=True)
  names = list(dict.fromkeys(r.optimizer for r in results))
  colors = {n: f'C{i}' for i, n in enumerate(names)}
  best = best_per_optimizer(results, task.higher_is_better)

  fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(12, 4.5))
  for r in results:
    is_best = best[r.optimizer] is r
    style = dict(color=colors[r.optimizer], lw=2.0 if is_best else 1.0,
                 alpha=1.0 if is_best else 0.45, ls='-' if is_best else '--')
    label = f'{r.optimizer} lr={r.learning_rate:g}' + (' (best)' if is_best else '')
    span = max(1, r.num_steps // 10)
    steps = np.arange(1, len(r.train_loss) + 1)
    finite = np.isfinite(r.train_loss)
    ax_loss.plot(steps[finite], _smooth(np.asarray(r.train_loss)[finite], span),
                 label=label, **style)
    if r.eval_steps:
      ax_metric.plot(r.eval_steps, r.eval_metric, marker='o', label=label, **style)
  ax_loss.set(xlabel='step', ylabel='train loss (EMA)', title=f'{task.name}: training loss')
  ax_metric.set(xlabel='step', ylabel=task.metric_name,
                title=f'{task.name}: held-out {task.metric_name}')
  for ax in (ax_loss, ax_metric):
    ax.grid(alpha=0.3)
  ax_loss.legend(fontsize=7)
  loss_path = _save_figure(fig, out_dir, 'loss_curves.png')

  fig, ax = plt.subplots(figsize=(7, 4))
  x = np.arange(len(names))
  state = [best[n].opt_state_bytes / 2**20 for n in names]
  peak = [best[n].peak_memory_bytes / 2**20 for n in names]
  bars1 = ax.bar(x - 0.2, state, 0.4, label='optimizer state')
  bars2 = ax.bar(x + 0.2, peak, 0.4, label='train-step peak (XLA memory analysis)')
  ax.bar_label(bars1, fmt='%.1f', fontsize=8)
  ax.bar_label(bars2, fmt='%.1f', fontsize=8)
  ax.set_xticks(x, names)
  ax.set(ylabel='MiB', title=f'{task.name}: memory')
  ax.legend(fontsize=8)
  ax.grid(axis='y', alpha=0.3)
  mem_path = _save_figure(fig, out_dir, 'memory.png')

  # The final metric against the peak learning rate, one line per optimizer
  # (diverged trials left out).
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for n in names:
    trials = sorted((r for r in results if r.optimizer == n and not r.diverged),
                    key=lambda r: r.learning_rate)
    ax.plot([r.learning_rate for r in trials], [r.final_metric for r in trials],
            marker='o', color=colors[n], label=n,
            ls='--' if n.endswith('_paper') else '-')
  ax.set(xscale='log', xlabel='peak learning rate',
         ylabel=f'held-out {task.metric_name}',
         title=f'{task.name}: learning-rate sensitivity')
  if not task.higher_is_better:  # perplexities span orders of magnitude
    ax.set_yscale('log')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  lr_path = _save_figure(fig, out_dir, 'lr_sensitivity.png')
  return loss_path, mem_path, lr_path


def write_report(
    results: Sequence[TrialResult],
    task: Task,
    out_dir: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
  """Writes ``results.json``, ``results.md`` and the three PNGs under ``out_dir``.

  Args:
    results: the trials.
    task: the task they ran.
    out_dir: the folder (created).
    extra: JSON-serialisable facts to record beside the results (the config,
      the total wall time, the device).

  Returns:
    Paths by kind: 'json', 'table', 'loss_plot', 'memory_plot', 'lr_plot'.
  """
  os.makedirs(out_dir, exist_ok=True)
  loss_path, mem_path, lr_path = plot_results(results, task, out_dir)
  json_path = os.path.join(out_dir, 'results.json')
  with open(json_path, 'w') as f:
    json.dump({'task': task.name, 'metric': task.metric_name,
               'higher_is_better': task.higher_is_better,
               'extra': dict(extra or {}),
               'trials': [dataclasses.asdict(r) for r in results]}, f, indent=1)
  table_path = os.path.join(out_dir, 'results.md')
  with open(table_path, 'w') as f:
    f.write(format_table(results, task) + '\n')
  return {'json': json_path, 'table': table_path,
          'loss_plot': loss_path, 'memory_plot': mem_path, 'lr_plot': lr_path}


def read_report(path: str) -> tuple[list[TrialResult], Any, dict[str, Any]]:
  """``(results, task, extra)`` of a ``results.json`` that :func:`write_report`
  wrote; ``task`` carries what :func:`format_table` reads of a :class:`Task`
  (``metric_name``, ``higher_is_better``, ``name``)."""
  with open(path, encoding='utf-8') as f:
    report = json.load(f)
  task = types.SimpleNamespace(name=report['task'],
                               metric_name=report['metric'],
                               higher_is_better=report['higher_is_better'])
  return ([TrialResult(**t) for t in report['trials']], task,
          report['extra'])


def machine() -> dict[str, Any]:
  """The CPU, the cores this process may use and the versions it runs."""
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  return {'cpu': cpu, 'cpu_cores': len(os.sched_getaffinity(0)),
          'python': platform.python_version(), 'jax': jax.__version__,
          'jaxlib': jaxlib.__version__, 'flax': flax.__version__,
          'optax': optax.__version__}


def command() -> str:
  """The command line this process was started with, as ``python -m ...``."""
  spec = getattr(sys.modules.get('__main__'), '__spec__', None)
  start = ['python', '-m', spec.name] if spec else ['python', sys.argv[0]]
  return shlex.join(start + sys.argv[1:])


def learning_rate_grid(
    config, research_config: str = ''
) -> tuple[dict[str, tuple[float, ...]], int]:
  """``config.learning_rates`` of ``config.optimizers``, and the count each.

  Args:
    config: the example's config; ``config.research`` (default False) offers
      the research variants too.
    research_config: the example's research config, named in the error when
      a research variant is asked for without it.

  Raises:
    ValueError: an optimizer is not on offer (a research variant without the
      research config), or the optimizers do not all get the same number of
      rates (an uneven comparison).
  """
  check_optimizers(config.optimizers, config.get('research', False),
                   research_config)
  grid = {name: tuple(config.learning_rates[name]) for name in config.optimizers}
  sizes = {len(lrs) for lrs in grid.values()}
  if len(sizes) != 1:
    raise ValueError(
        f'give every optimizer the same number of learning rates, got {grid}')
  return grid, sizes.pop()


def run_and_report(task: Task, grid, config, workdir: str, *, start: float,
                   extra: Mapping[str, Any], metric_format: str,
                   headline: str = '') -> dict[str, Any]:
  """The examples' common tail: :func:`run_grid` with ``config``'s budget,
  :func:`write_report` under ``workdir``, then the table and a summary printed.

  Returns 'results', 'table', 'paths' and 'wall_time_s' (since ``start``).
  """
  results = run_grid(
      task, grid, num_steps=config.num_steps,
      warmup_steps=int(config.warmup_fraction * config.num_steps),
      eval_every=config.eval_every, progress=config.progress,
      research=config.get('research', False),
  )
  wall = time.perf_counter() - start
  table = format_table(results, task)
  paths = write_report(results, task, workdir, extra={
      'command': command(), 'machine': machine(),
      'config': config.to_dict(), 'wall_time_s': wall,
      'device': str(jax.devices()[0]),
      'cpu_cores': len(os.sched_getaffinity(0)),
      'platform': platform.platform(),
      'trainable_params': results[0].trainable_params, **extra,
  })
  print(table)
  best = best_per_optimizer(results, task.higher_is_better)
  print(headline + 'best per optimizer: ' + ', '.join(
      f'{n} {r.final_metric:{metric_format}} (lr {r.learning_rate:g})'
      for n, r in best.items()))
  print(f'total wall time {wall:.0f} s on {jax.devices()[0].platform};'
        f' wrote {", ".join(paths.values())}')
  return {'results': results, 'table': table, 'paths': paths,
          'wall_time_s': wall}
