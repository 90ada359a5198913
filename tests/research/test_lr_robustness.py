"""benchmarks.research.lr_robustness: ties, centred grids and the lr mapping."""

import json
import math

import pytest

from benchmarks.research import lr_robustness

GRID = (3e-5, 5.5e-5, 1e-4, 1.7e-4, 3e-4, 5.5e-4, 1e-3, 1.7e-3, 3e-3, 5.5e-3,
        1e-2)


def _loss_curve(values, seeds=None):
  runs = []
  for lr, v in zip(GRID, values):
    for s in (seeds or [0.0]):
      runs.append((lr, None if v is None else v + s))
  return lr_robustness.curve(runs, higher_is_better=False)


def test_curve_means_and_seed_errors():
  c = _loss_curve([3.0] * 11, seeds=[-0.1, 0.1])
  assert c.lrs == GRID
  assert c.means[0] == pytest.approx(3.0)
  # std (ddof 1) of (-0.1, 0.1) is 0.1414, over sqrt(2) seeds.
  assert c.ses[0] == pytest.approx(0.1)


def test_ties_and_centred_worst():
  values = [5.0, 4.5, 4.0, 3.5, 3.0, 2.6, 2.62, 3.0, 3.1, 3.2, 3.3]
  c = _loss_curve(values, seeds=[-0.02, 0.02])
  assert c.lrs[c.best] == 5.5e-4
  assert [c.lrs[i] for i in c.ties()] == [5.5e-4, 1e-3]
  # Centred on 5.5e-4: 5.5e-5, 1.7e-4, 5.5e-4, 1.7e-3, 5.5e-3.
  assert c.centred_worst(c.best) == (pytest.approx(4.5), 5.5e-5, 0)
  # Centred on 1e-3: 1e-4 ... 1e-2.
  assert c.centred_worst(c.lrs.index(1e-3)) == (pytest.approx(4.0), 1e-4, 0)
  # Centred on 3e-3 the grid needs 3e-2, which was not measured: the worst
  # is over the other four.
  assert c.centred_worst(c.lrs.index(3e-3)) == (pytest.approx(3.3), 1e-2, 1)


def test_diverged_points_are_the_worst():
  values = [5.0, 4.5, 4.0, 3.5, 3.0, 2.6, 2.7, 3.0, None, 3.2, 3.3]
  c = _loss_curve(values)
  assert c.means[8] is None
  assert c.centred_worst(c.lrs.index(1e-3)) == (None, 3e-3, 0)


def test_summary_best_mapping_and_verdicts():
  adam = _loss_curve([4.0, 3.8, 3.5, 3.1, 2.8, 2.63, 2.60, 2.97, 2.96, 3.0,
                      3.05], seeds=[-0.02, 0.02])
  alada = _loss_curve([4.0, 3.9, 3.6, 3.1, 2.73, 2.55, 2.79, 2.98, 2.87, 3.0,
                       3.04], seeds=[-0.001, 0.001])
  worse = _loss_curve([4.0, 3.9, 3.6, 3.1, 2.9, 2.8, 2.9, 2.98, 2.87, 3.0,
                       3.04], seeds=[-0.001, 0.001])
  s = lr_robustness.summary({'adam': adam, 'alada': alada, 'worse': worse})
  assert s['alada']['best_vs_reference'] == 'better'
  assert s['worse']['best_vs_reference'] == 'worse'
  # Better, but by less than two combined std. errors: within noise.
  close = _loss_curve([4.0, 3.8, 3.5, 3.1, 2.8, 2.63, 2.59, 2.97, 2.96, 3.0,
                       3.05], seeds=[-0.001, 0.001])
  assert lr_robustness.summary({'adam': adam, 'close': close})['close'][
      'best_vs_reference'] == 'within noise'
  assert s['adam']['best_lr'] == 1e-3
  # Adam's 5.5e-4 is within two combined std. errors of its 1e-3.
  assert s['adam']['tied_lrs'] == [5.5e-4, 1e-3]
  # Worst first: the worst of the two grids, then the other.
  assert s['adam']['centred_worst_over_ties'] == [pytest.approx(3.8),
                                                  pytest.approx(3.5)]
  # Adam's best / 3 and / 2 land on the grid's 3e-4 and 5.5e-4.
  assert s['alada']['mapping']['0.333']['lr'] == 3e-4
  assert s['alada']['mapping']['0.5']['lr'] == 5.5e-4
  table = lr_robustness.markdown({'adam': adam, 'alada': alada})
  assert '**2.550 ±0.001**' in table and '(better)' in table
  # A grid that leaves the measured range says so.
  wide = lr_robustness.curve([(1e-3, 2.6), (3e-3, 2.9), (1e-2, 3.2)], False)
  r = lr_robustness.summary({'adam': wide})['adam']
  assert r['centred_worst'] == (pytest.approx(3.2), 1e-2, 2)
  assert r['centred_worst_over_ties'] is None and r['ties_outside_grid'] == 1
  assert '<= 3.200 (0.01), 2 point(s) not measured' in lr_robustness.markdown(
      {'adam': wide})


def test_from_results_merges_files_with_binomial_errors(tmp_path, capsys):
  def write(name, trials):
    path = tmp_path / name
    path.write_text(json.dumps({
        'metric': 'accuracy', 'extra': {'test_sentences': 1000},
        'trials': [{'optimizer': o, 'learning_rate': lr, 'final_metric': a,
                    'diverged': False} for o, lr, a in trials]}))
    return str(path)

  a = write('a.json', [('adam', 1e-4, 0.8), ('adafactor', 1e-3, 0.8)])
  b = write('b.json', [('adam', 3e-4, 0.5)])
  curves, metric = lr_robustness.from_results([a, b])
  assert metric == 'accuracy' and set(curves) == {'adam', 'adafactor'}
  adam = curves['adam']
  assert adam.lrs == (1e-4, 3e-4) and adam.higher_is_better
  assert adam.ses[0] == pytest.approx(math.sqrt(0.8 * 0.2 / 1000))
  png = tmp_path / 'sweep.png'
  assert lr_robustness.main([a, b, '--plot', str(png)]) == 0
  out = capsys.readouterr().out
  assert 'adafactor' not in out and '**0.800 ±0.013**' in out
  assert png.stat().st_size > 0


def test_gaps_to_the_reference_and_the_floor():
  adam = _loss_curve([4.0, 3.8, 3.5, 3.1, 2.8, 2.63, 2.60, 2.97, 2.96, 3.0,
                      3.05])
  floor = _loss_curve([4.0, 3.8, 3.6, 3.1, 2.8, 2.63, 2.60, 2.97, 2.96, 3.0,
                       3.4])
  alada = _loss_curve([4.0, 3.8, 3.5, 3.1, 2.8, 2.63, 2.60, 2.97, 2.96, 3.0,
                       3.5])
  curves = {'adam': adam, 'floor': floor, 'alada': alada}
  s = lr_robustness.summary(curves, floor='floor')
  # Centred on 1e-3: worsts 3.5 (adam, at 1e-4), 3.6 (floor), 3.5 (alada, at
  # 1e-2).
  assert s['alada']['centred_worst_gap'] == {
      'adam': pytest.approx(0.0), 'floor': pytest.approx(-0.1)}
  assert s['floor']['centred_worst_gap']['adam'] == pytest.approx(0.1)
  log = lr_robustness.summary(curves, floor='floor', unit='log')
  assert log['floor']['centred_worst_gap']['adam'] == pytest.approx(
      math.log(3.6 / 3.5))
  table = lr_robustness.markdown(curves, floor='floor')
  assert 'worse than adam / floor by |' in table and '| +0.10 / +0.00 |' in table
  assert 'worse than adam / floor by (nats) |' in lr_robustness.markdown(
      curves, floor='floor', gap_unit='nats')
  # Accuracy: lower is worse, in points.
  acc = {n: lr_robustness.curve([(1e-4, a), (3e-4, b)], True)
         for n, (a, b) in {'adam': (0.8, 0.66), 'x': (0.8, 0.62)}.items()}
  r = lr_robustness.summary(acc, unit='points')['x']
  assert r['centred_worst_gap']['adam'] == pytest.approx(4.0)
  with pytest.raises(ValueError, match='floor'):
    lr_robustness.summary(curves, floor='floor ')
  with pytest.raises(ValueError, match='unit'):
    lr_robustness.summary(curves, unit='bits')
