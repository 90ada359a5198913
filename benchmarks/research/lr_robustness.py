"""How forgiving each optimizer is about its learning rate, with the noise.

    python -m benchmarks.research.lr_robustness out/causal_lm_lr_sweep/results.json \
        out/causal_lm_lr_half/results.json     # any number of the examples'
                                               # results.json, merged

Reads learning-rate sweeps (the examples' ``results.json``, or the benchmark
LM's rows from :mod:`benchmarks.research.safeguard`) measured on a grid of
quarter-decade steps (1, 1.7, 3, 5.5, 10, ...) and answers, for every
optimizer against a reference (Adam):

* **Best**: the best mean over seeds and its standard error; which other
  learning rates are *tied* with it (within two combined standard errors);
  whether the best is within noise of the reference's best.
* **Centred grid**: the worst point of the 5-point grid of half-decade steps
  (factor ~3.16) centred on the best, i.e. best / 10 ... best x 10; and, as
  the best itself is an estimate, the range of that worst over the tied
  centres whose grids were measured whole (a grid that leaves the measured
  range gives the worst of its measured points, as an upper bound, and
  says so).
* **Mapping**: the optimizer at the reference's best learning rate times a
  factor (the documented ``alada`` starting point), against the reference's
  best.
* **Gaps**: how much worse each centred-grid worst is than the reference's
  and, given ``floor`` (``--floor``), than the floor's: in accuracy points,
  or nats (the log ratio of perplexities, the difference of losses in
  nats). The floor is a yardstick for a kind of optimizer, e.g. Adam with
  an exact rank-one second moment (``benchmarks/research/rank_one_adam.py``)
  for Alada.

The standard error of one run is taken from its seeds; a task with one seed
per point has none unless given: for accuracy, the binomial error of the
test set (``sqrt(a (1 - a) / n)``), for losses, 0 (ties are then exact).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

HALF_DECADE = 10**0.5
# Grid points match a wanted learning rate within this factor: the grid's
# 1.7 and 5.5 stand for 10^0.25 = 1.78 and 10^0.75 = 5.62.
MATCH = 1.12


@dataclasses.dataclass(frozen=True)
class Curve:
  """One optimizer's sweep: per learning rate, the mean and its std. error."""

  lrs: tuple[float, ...]  # increasing
  means: tuple[float | None, ...]  # None: diverged (worst possible)
  ses: tuple[float, ...]
  higher_is_better: bool

  def key(self, value: float | None) -> tuple[bool, float]:
    """Sort key, larger is better; a diverged run (None) is the worst."""
    if value is None:
      return False, 0.0
    return True, value if self.higher_is_better else -value

  def better(self, a: float | None, b: float | None) -> bool:
    return self.key(a) > self.key(b)

  def at(self, lr: float) -> int | None:
    """Index of the grid point within ``MATCH`` of ``lr``, if any."""
    for i, x in enumerate(self.lrs):
      if max(x / lr, lr / x) <= MATCH:
        return i
    return None

  @property
  def best(self) -> int:
    best = 0
    for i, m in enumerate(self.means):
      if self.better(m, self.means[best]):
        best = i
    return best

  def ties(self) -> list[int]:
    """The points whose mean is within two combined std. errors of the best."""
    b = self.best
    return [i for i, m in enumerate(self.means) if m is not None and
            abs(m - self.means[b]) <= 2 * math.hypot(self.ses[i], self.ses[b])]

  def centred_worst(self, centre: int, half_width: int = 2):
    """(worst value, its lr, points not measured) on the grid
    ``lrs[centre] x 10^(k/2)``, |k| <= half_width. With points missing the
    worst is over the measured ones: the grid's worst is at most that."""
    worst, missing = None, 0
    for k in range(-half_width, half_width + 1):
      i = self.at(self.lrs[centre] * HALF_DECADE**k)
      if i is None:
        missing += 1
      elif worst is None or self.better(self.means[worst], self.means[i]):
        worst = i
    return self.means[worst], self.lrs[worst], missing


def curve(runs: Iterable[tuple[float, float | None]], higher_is_better: bool,
          se_of_one=None) -> Curve:
  """A :class:`Curve` from ``(lr, value)`` pairs, ``value`` None if diverged.

  ``se_of_one(value)`` is the standard error of a single run, used where a
  learning rate has one run (with several, the seeds' spread is used).
  """
  by_lr: dict[float, list[float | None]] = {}
  for lr, value in runs:
    by_lr.setdefault(float(lr), []).append(value)
  lrs = tuple(sorted(by_lr))
  means, ses = [], []
  for lr in lrs:
    xs = by_lr[lr]
    if any(x is None or not math.isfinite(x) for x in xs):
      means.append(None)
      ses.append(0.0)
    elif len(xs) > 1:
      means.append(float(np.mean(xs)))
      ses.append(float(np.std(xs, ddof=1) / math.sqrt(len(xs))))
    else:
      means.append(float(xs[0]))
      ses.append(float(se_of_one(xs[0])) if se_of_one else 0.0)
  return Curve(lrs, tuple(means), tuple(ses), higher_is_better)


def _fmt(x: float | None, digits: int) -> str:
  return 'diverged' if x is None else f'{x:.{digits}f}'


# gap unit -> its label: accuracy points (x100); the log ratio (nats, for
# perplexities); the difference of values already in nats (losses); or a
# plain difference.
GAP_UNITS = {'points': 'pts', 'log': 'nats', 'nats': 'nats', 'difference': ''}


def gap(c: Curve, value: float | None, other: float | None,
        unit: str = 'difference') -> float:
  """How much worse ``value`` is than ``other`` (negative: better), in a
  unit of :data:`GAP_UNITS`; inf where only ``value`` diverged."""
  if value is None or other is None:
    return 0.0 if value is other else math.inf if value is None else -math.inf
  if unit == 'log':
    d = math.log(value / other)
  else:
    d = (value - other) * (100 if unit == 'points' else 1)
  return -d if c.higher_is_better else d


def summary(curves: dict[str, Curve], reference: str = 'adam',
            mapping: Sequence[float] = (1 / 3, 1 / 2),
            floor: str | None = None,
            unit: str = 'difference') -> dict[str, Any]:
  """Every figure of the module docstring, per optimizer, as plain data."""
  if unit not in GAP_UNITS:
    raise ValueError(f'unit must be one of {sorted(GAP_UNITS)}, got {unit!r}')
  for name in (reference, floor):
    if name is not None and name not in curves:
      raise ValueError(f'{name!r} is not among the curves {sorted(curves)}')
  ref = curves[reference]
  rb = ref.best
  against = {n: curves[n].centred_worst(curves[n].best)[0]
             for n in (reference, floor) if n is not None}
  out = {}
  for name, c in curves.items():
    b = c.best
    centred_worst = c.centred_worst(b)
    ties = c.ties()
    worsts = [c.centred_worst(i) for i in ties]
    # The worst of each tied centre's grid, where the whole grid was measured.
    measured = [w for w in worsts if not w[2]]
    diff = (None if c.means[b] is None or ref.means[rb] is None
            else c.means[b] - ref.means[rb])
    noise = 2 * math.hypot(c.ses[b], ref.ses[rb])
    row = {
        'best': c.means[b], 'best_se': c.ses[b], 'best_lr': c.lrs[b],
        'tied_lrs': [c.lrs[i] for i in ties],
        'best_minus_reference': diff,
        # 'better', 'within noise' (two combined std. errors) or 'worse'.
        'best_vs_reference': (
            None if diff is None else
            'within noise' if abs(diff) <= noise else
            'better' if c.better(c.means[b], ref.means[rb]) else 'worse'),
        'centred_worst': centred_worst,
        'centred_worst_over_ties': (
            None if not measured else
            [min((w[0] for w in measured), key=c.key),
             max((w[0] for w in measured), key=c.key)]),
        'ties_outside_grid': sum(bool(w[2]) for w in worsts),
        # How much worse the centred-grid worst is than the reference's and
        # the floor's (in ``unit``).
        'centred_worst_gap': {n: gap(c, centred_worst[0], w, unit)
                              for n, w in against.items()},
        'mapping': {},
    }
    for f in mapping:
      i = c.at(ref.lrs[rb] * f)
      row['mapping'][f'{f:.3g}'] = (
          None if i is None else {'lr': c.lrs[i], 'value': c.means[i],
                                  'se': c.ses[i]})
    out[name] = row
  return out


def markdown(curves: dict[str, Curve], reference: str = 'adam',
             digits: int = 3, unit: str = '', floor: str | None = None,
             gap_unit: str = 'difference') -> str:
  """The sweep (mean, and std. error where there is one) and the summary;
  with ``floor``, a column of the centred-grid worsts' gaps to the reference's
  and the floor's."""
  lrs = sorted({lr for c in curves.values() for lr in c.lrs})
  lines = ['| optimizer | ' + ' | '.join(f'{lr:g}' for lr in lrs) + ' |',
           '|---|' + '---:|' * len(lrs)]
  for name, c in curves.items():
    cells = []
    for lr in lrs:
      i = c.lrs.index(lr) if lr in c.lrs else None
      if i is None:
        cells.append('')
        continue
      cell = _fmt(c.means[i], digits)
      if c.ses[i] and c.means[i] is not None:
        cell += f' ±{c.ses[i]:.{digits}f}'
      cells.append(f'**{cell}**' if i == c.best else cell)
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  s = summary(curves, reference, floor=floor, unit=gap_unit)
  label = f' ({GAP_UNITS[gap_unit]})' if GAP_UNITS[gap_unit] else ''
  gap_head = f' worse than {reference} / {floor} by{label} |' if floor else ''
  lines += ['', f'| optimizer | best{unit} (lr) | tied with it | best vs '
            f'{reference} | centred-grid worst |{gap_head} over tied centres | '
            f"at {reference}'s best / 3 | / 2 |",
            '|---|---|---|---|---|' + ('---:|' if floor else '')
            + '---|---:|---:|']
  for name, r in s.items():
    cw = r['centred_worst']
    over = r['centred_worst_over_ties']
    over_cell = ('-' if over is None else
                 f'{_fmt(over[0], digits)} ... {_fmt(over[1], digits)}')
    if r['ties_outside_grid']:
      over_cell += (f' (and {r["ties_outside_grid"]} centre(s) whose grid '
                    'was not all measured)')
    cw_cell = f'{_fmt(cw[0], digits)} ({cw[1]:g})'
    if cw[2]:
      cw_cell = f'<= {cw_cell}, {cw[2]} point(s) not measured'
    best_cell = _fmt(r['best'], digits)
    if r['best_se']:
      best_cell += f' ±{r["best_se"]:.{digits}f}'
    diff = r['best_minus_reference']
    maps = [('-' if m is None else f'{_fmt(m["value"], digits)} ({m["lr"]:g})')
            for m in r['mapping'].values()]
    lines.append(
        f'| {name} | {best_cell} ({r["best_lr"]:g}) | '
        f'{", ".join(f"{x:g}" for x in r["tied_lrs"])} | '
        + ('-' if name == reference or diff is None else
           f'{diff:+.{digits}f} ({r["best_vs_reference"]})')
        + f' | {cw_cell} | '
        + (' / '.join(f'{round(g, 2) + 0.0:+.2f}' for g in
                      r['centred_worst_gap'].values()) + ' | ' if floor else '')
        + f'{over_cell} | ' + ' | '.join(maps) + ' |')
  return '\n'.join(lines) + '\n'


def from_results(paths: Sequence[str]) -> tuple[dict[str, Curve], str]:
  """Curves from the examples' ``results.json`` files (trials merged)."""
  trials, metric, n_test = [], None, None
  for path in paths:
    with open(path, encoding='utf-8') as f:
      res = json.load(f)
    metric = metric or res['metric']
    n_test = n_test or res['extra'].get('test_sentences')
    trials += res['trials']
  higher = metric == 'accuracy'
  se_of_one = None
  if higher and n_test:
    se_of_one = lambda a: math.sqrt(a * (1 - a) / n_test)
  names = list(dict.fromkeys(t['optimizer'] for t in trials))
  curves = {n: curve(((t['learning_rate'],
                       None if t['diverged'] else t['final_metric'])
                      for t in trials if t['optimizer'] == n), higher,
                     se_of_one)
            for n in names}
  return curves, metric


def plot(curves: dict[str, Curve], path: str, ylabel: str, title: str,
         log_y: bool = False, baseline: tuple[float, str] | None = None):
  """The curves with their std. errors against the learning rate (log);
  ``baseline``: a (value, label) drawn as a horizontal line."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name, c in curves.items():
    ax.errorbar(c.lrs, [np.nan if m is None else m for m in c.means],
                yerr=c.ses, marker='o', ms=4, capsize=2, label=name,
                ls='--' if 'paper' in name else
                ':' if 'rank' in name else '-')
  if baseline is not None:
    ax.axhline(baseline[0], color='grey', lw=0.8, ls=':', label=baseline[1])
  ax.set(xscale='log', yscale='log' if log_y else 'linear',
         xlabel='peak learning rate', ylabel=ylabel)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.research.lr_robustness',
      description='Best, ties, centred-grid worst and the lr mapping of '
      'learning-rate sweeps (the examples\' results.json files, merged).')
  parser.add_argument('results', nargs='+', help='results.json files')
  parser.add_argument('--reference', default='adam')
  parser.add_argument('--skip', nargs='*', default=['adafactor'],
                      help='optimizers left out (default: %(default)s, '
                      'which is swept on its own scale)')
  parser.add_argument('--floor', help='an optimizer whose centred-grid worst '
                      'the others are also measured against (e.g. '
                      'adam_rank_one, the rank-one yardstick)')
  parser.add_argument('--plot', help='also write the curves to this .png')
  parser.add_argument('--title', default='', help="the plot's title")
  args = parser.parse_args(argv)
  curves, metric = from_results(args.results)
  curves = {n: c for n, c in curves.items() if n not in args.skip}
  print(f'{metric}:\n')
  print(markdown(curves, args.reference, 3 if metric == 'accuracy' else 2,
                 floor=args.floor, gap_unit={'accuracy': 'points',
                                             'perplexity': 'log'}.get(
                                                 metric, 'difference')))
  if args.plot:
    plot(curves, args.plot, f'held-out {metric}', args.title,
         log_y=metric == 'perplexity')
    print(f'wrote {args.plot}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
