"""The examples' research variants: measured alternatives and yardsticks.

The examples' registry (:data:`examples.common.harness.OPTIMIZERS`) offers the
product's optimizers: Adam, Adafactor, Alada and Alada as the paper's
Algorithm 2 (``alada_paper``). The variants here were measured against them
(``docs/research/safeguard.md``) and are offered only under an example's
research config, which sets ``config.research = True``::

    python -m examples.causal_lm.main \
        --config=examples/causal_lm/configs/research.py \
        --workdir=out/causal_lm_research "--config.optimizers=('alada_gradient','adam_rank_one')"

The harness imports this module only then. No weight decay for any.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

import alada_optax
from benchmarks.research import rank_one_adam


def _alada_gradient(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # The factors fit G^2 (the paper's Section III), with the default bound.
  return alada_optax.alada(learning_rate, b1=0.9, b2=0.9,
                           second_moment='gradient')


def _alada_gradient_b2_085(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # A faster-decaying G^2 fit with a looser bound: b2 0.85 (the paper's is
  # 0.9), step_bound 2 (docs/research/safeguard.md, "A faster-decaying G^2
  # fit").
  return alada_optax.alada(learning_rate, b1=0.9, b2=0.85,
                           second_moment='gradient', step_bound=2.0)


def _adam_rank_one(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # A yardstick, not a memory saver: Adam dividing by the least-squares
  # rank-one fit of its own full second moment (rank_one_adam.py).
  return rank_one_adam.rank_one_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)


def _adam_rank_one_sums(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # The same with Adafactor's fit r c^T / sum(r) of Adam's second moment.
  return rank_one_adam.rank_one_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8,
                                     fit='sums')


def _adam_rank_one_bounded(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  # The least-squares yardstick with Alada's default bound: no entry steps
  # further than 1 x lr.
  return rank_one_adam.rank_one_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8,
                                     step_bound=1.0)


OPTIMIZERS: dict[str, Callable[[optax.ScalarOrSchedule], optax.GradientTransformation]] = {
    'alada_gradient': _alada_gradient,
    'alada_gradient_b2_085': _alada_gradient_b2_085,
    'adam_rank_one': _adam_rank_one,
    'adam_rank_one_sums': _adam_rank_one_sums,
    'adam_rank_one_bounded': _adam_rank_one_bounded,
}
"""Research variant name -> ``factory(learning_rate)``; the names are
:data:`examples.common.harness.RESEARCH_OPTIMIZERS`."""
