"""The lab: research sweeps, candidates and yardsticks, not the product.

What is here produced the evidence in ``docs/research/`` and is kept so that
those measurements can be rerun; nothing in ``alada_optax`` or in the product
suite depends on it:

* :mod:`benchmarks.research.safeguard`: Alada's default step bound against the
  paper's Algorithm 2 and Adam, and the candidates measured against it
  (``python -m benchmarks.research.safeguard``).
* :mod:`benchmarks.research.lr_robustness`: learning-rate sensitivity summaries
  of sweeps (``python -m benchmarks.research.lr_robustness``).
* :mod:`benchmarks.research.in_backward`: whether a JAX train step can fold the
  gradient into the momentum inside the backward pass
  (``python -m benchmarks.research.in_backward``).
* :mod:`benchmarks.research.rank_one_adam`: Adam dividing by a rank-one fit of
  its own second moment, a yardstick (Adam's full state, not a memory saver).
* :mod:`benchmarks.research.optimizers`: the research variants the examples
  offer only under their research config (``configs/research.py``).

The product suite is :mod:`benchmarks.run`, :mod:`benchmarks.state_bytes`,
:mod:`benchmarks.collectives`, :mod:`benchmarks.gpu` and
:mod:`benchmarks.accelerators`.
"""
