"""The learning-rate sensitivity sweep: default.py's budget, 6-point grids.

    python -m examples.causal_lm.main \
        --config=examples/causal_lm/configs/lr_sweep.py \
        --workdir=out/causal_lm_lr_sweep

Adam, Alada (default ``step_bound=1``) and Alada as the paper's Algorithm 2
(``step_bound=None``) on one grid, a factor ~3 apart, wide enough for a
5-point grid centred on each one's best; Adafactor on its own scale (its
steps are relative to each parameter's RMS).
"""

from examples.causal_lm.configs import default


def get_config():
  config = default.get_config()
  config.optimizers = ('adam', 'adafactor', 'alada', 'alada_paper')
  grid = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
  config.learning_rates.adam = grid
  config.learning_rates.adafactor = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
  config.learning_rates.alada = grid
  config.learning_rates.alada_paper = grid
  config.learning_rates.alada_int8 = grid  # offered, not run by default
  # The research variants (alada with second_moment='gradient', the rank-one
  # yardsticks) on this grid: configs/research.py.
  return config
