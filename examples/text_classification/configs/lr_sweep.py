"""The learning-rate sensitivity sweep: default.py's budget, 5-point grids.

    python -m examples.text_classification.main \
        --config=examples/text_classification/configs/lr_sweep.py \
        --workdir=out/text_classification_lr_sweep

Adam, Alada (default ``step_bound=1``) and Alada as the paper's Algorithm 2
(``step_bound=None``) on one grid, a factor ~3 apart, that covers Adam's best
and Alada's documented starting rate (half of Adam's best: the half-steps
between these points are in docs/research/safeguard.md); Adafactor on its
own scale (its steps are relative to each parameter's RMS).
"""

from examples.text_classification.configs import default


def get_config():
  config = default.get_config()
  config.optimizers = ('adam', 'adafactor', 'alada', 'alada_paper')
  grid = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
  config.learning_rates.adam = grid
  config.learning_rates.adafactor = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
  config.learning_rates.alada = grid
  config.learning_rates.alada_paper = grid
  config.learning_rates.alada_int8 = grid  # offered, not run by default
  # The research variants (alada with second_moment='gradient', the rank-one
  # yardsticks) on this grid: configs/research.py.
  return config
