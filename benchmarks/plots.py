"""PNG plots of the benchmark results (matplotlib, headless)."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

MiB = 2**20
COLORS = {
    'SGD+momentum': '#7f7f7f',
    'Adam': '#d62728',
    'Adafactor': '#ff7f0e',
    'Adafactor+momentum': '#bcbd22',
    'Alada': '#1f77b4',
    'Alada, bf16 M': '#17becf',
    'Alada, 8-bit M': '#9467bd',
}


def _color(name):
  return COLORS.get(name, None)


def memory_plot(results, info, path):
  models = [(k, results[k + '_name']) for k in ('mlp', 'gpt2') if k in results]
  if not models:
    return False
  fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.2),
                           squeeze=False)
  for ax, (key, title) in zip(axes[0], models):
    res = results[key]
    names = list(res)
    x = np.arange(len(names))
    params = res[names[0]]['memory'].params
    peak = [res[n]['memory'].peak / params for n in names]
    state = [res[n]['memory'].state / params for n in names]
    ax.bar(x, peak, color=[_color(n) for n in names], label='compiled peak')
    ax.bar(x, [1.0] * len(names), color='white', alpha=0.35, hatch='//',
           edgecolor='k', linewidth=0, label='params')
    ax.bar(x, state, bottom=1.0, color='none', edgecolor='k', linewidth=1,
           label='optimizer state')
    for xi, v in zip(x, peak):
      ax.text(xi, v + 0.03, f'{v:.2f}x', ha='center', fontsize=8)
    ax.set_xticks(x, names, rotation=25, ha='right', fontsize=8)
    ax.set_ylabel('bytes / param bytes (fp32)')
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc='upper left')
  fig.suptitle(f'Peak memory of the donated train step ({info["device"]})',
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def time_plot(results, info, path):
  sections = [(k, t) for k, t in (('mlp', 'MLP train step'),
                                  ('gpt2', 'GPT-2 train step'),
                                  ('update', 'GPT-2-shaped update alone'))
              if k in results]
  if not sections:
    return False
  names = list(results[sections[0][0]])
  fig, ax = plt.subplots(figsize=(8, 4.2))
  width = 0.8 / len(names)
  for i, n in enumerate(names):
    med, lo, hi = [], [], []
    for key, _ in sections:
      adam = results[key]['Adam']['time'].median
      t = results[key][n]['time']
      med.append(t.median / adam)
      lo.append((t.median - t.low) / adam)
      hi.append((t.high - t.median) / adam)
    xs = np.arange(len(sections)) + (i - (len(names) - 1) / 2) * width
    ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, color=_color(n), label=n)
  ax.axhline(1.0, color='k', linewidth=0.8, linestyle='--')
  ax.set_xticks(np.arange(len(sections)), [t for _, t in sections])
  ax.set_ylabel('median time / Adam (bars: interquartile range)')
  ax.set_title(f'Step time ({info["device"]}, {info["cpu_cores"]} CPU cores)',
               fontsize=10)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def scaling_plot(results, info, path):
  sweep = results.get('sweep')
  if not sweep:
    return False
  widths = sorted(sweep)
  names = list(sweep[widths[0]])
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
  for n in names:
    peak = [sweep[w][n]['memory'].peak / MiB for w in widths]
    time = [sweep[w][n]['time'].median * 1e3 for w in widths]
    ax1.plot(widths, peak, 'o-', color=_color(n), label=n)
    ax2.plot(widths, time, 'o-', color=_color(n), label=n)
  params = [sweep[w][names[0]]['memory'].params / MiB for w in widths]
  ax1.plot(widths, params, 'k:', label='params')
  for ax, label in ((ax1, 'compiled peak (MiB)'),
                    (ax2, 'median train-step time (ms)')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('MLP width d')
    ax.set_ylabel(label)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.grid(True, which='both', alpha=0.3)
  ax1.legend(fontsize=7)
  fig.suptitle(f'{results["sweep_name"]} ({info["device"]})', fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_all(results: dict[str, Any], info: dict[str, Any],
              out: str) -> list[str]:
  """Writes the plots the results have data for; returns their paths."""
  written = []
  for name, plot in (('memory.png', memory_plot), ('time.png', time_plot),
                     ('scaling.png', scaling_plot)):
    path = os.path.join(out, name)
    if plot(results, info, path) is not False:
      written.append(path)
  return written
