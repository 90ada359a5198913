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
  # Not swept by default: alada(..., second_moment='gradient'), and the
  # rank-one yardsticks (Adam's full state), e.g.
  # "--config.optimizers=('alada_gradient','adam_rank_one')" (docs/safeguard.md).
  config.learning_rates.alada_gradient = grid
  config.learning_rates.alada_gradient_b2_085 = grid
  config.learning_rates.adam_rank_one = grid
  config.learning_rates.adam_rank_one_sums = grid
  config.learning_rates.adam_rank_one_bounded = grid
  return config
