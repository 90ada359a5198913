"""The research config: lr_sweep.py's budget and grids, with the research variants on offer.

The examples offer the product's optimizers (adam, adafactor, alada,
alada_paper, alada_int8). This config also offers the research variants of
``benchmarks.research.optimizers``, the measured alternatives and yardsticks
of docs/research/safeguard.md, each on lr_sweep.py's grid: alada with
``second_moment='gradient'`` (``alada_gradient``; ``alada_gradient_b2_085``
with b2 0.85 and ``step_bound=2``), and Adam's full state dividing by a
rank-one fit of its own second moment (``adam_rank_one``, least squares;
``adam_rank_one_sums``, Adafactor's fit; ``adam_rank_one_bounded``, least
squares with Alada's bound of 1). Pick them with ``--config.optimizers``::

    python -m examples.text_classification.main \
        --config=examples/text_classification/configs/research.py \
        --workdir=out/text_classification_lr_gradient "--config.optimizers=('alada_gradient','adam_rank_one')"

Run from the repository root (``benchmarks`` is not part of the installed
package).
"""

from benchmarks.research import optimizers as research_optimizers
from examples.text_classification.configs import lr_sweep


def get_config():
  config = lr_sweep.get_config()
  config.research = True  # offer benchmarks.research.optimizers too.
  for name in research_optimizers.OPTIMIZERS:
    config.learning_rates[name] = config.learning_rates.alada  # lr_sweep.py's grid.
  return config
