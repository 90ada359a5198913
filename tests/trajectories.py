"""Shared by the exactness tests: a noisy quadratic, an optax runner, errors.

Each optimizer's test runs the package's transformation and its own float64
NumPy transcription on the same problem and compares the trajectories.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def quadratic_problem(shapes, seed=0, steps=64, curvature=False):
  """Noisy quadratic: g = c (x - target) + noise_t (numpy, float64).

  ``c`` is 0.5, or with ``curvature`` a random positive per-entry curvature
  (exp of a normal), so that gradients are far from rank one.
  Returns ``(x0, grad_fn)`` with ``grad_fn(x, t)`` for ``t < steps``.
  """
  rng = np.random.default_rng(seed)
  target = {k: rng.normal(size=s) for k, s in shapes.items()}
  x0 = {k: rng.normal(size=s) for k, s in shapes.items()}
  if curvature:
    curv = {k: np.exp(rng.normal(size=s)) for k, s in shapes.items()}
  else:
    curv = {k: 0.5 for k in shapes}
  noise = [{k: 0.3 * rng.normal(size=s) for k, s in shapes.items()}
           for _ in range(steps)]

  def grad_fn(x, t):
    return {k: curv[k] * (x[k] - target[k]) + noise[t][k] for k in x}

  return x0, grad_fn


def run_optax(opt, x0, grad_fn, steps, dtype=jnp.float64, all_states=False):
  """Runs an optax optimizer with gradients computed by numpy from params.

  Returns the params after each step and the final state (every state with
  ``all_states``).
  """
  params = {k: jnp.asarray(v, dtype) for k, v in x0.items()}
  state = opt.init(params)

  @jax.jit
  def apply(grads, state, params):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  history, states = [], []
  for t in range(steps):
    grads = grad_fn({k: np.asarray(v) for k, v in params.items()}, t)
    grads = {k: jnp.asarray(v, dtype) for k, v in grads.items()}
    params, state = apply(grads, state, params)
    history.append({k: np.asarray(v) for k, v in params.items()})
    states.append(state)
  return history, (states if all_states else state)


def max_rel_err(a, b):
  """Max over leaves and entries of |a - b| / |b|."""
  return max(float(np.max(np.abs(a[k] - b[k]) / (np.abs(b[k]) + 1e-300)))
             for k in b)


def max_rel_dev(got, want):
  """Max over leaves of max|got - want| / max|want|."""
  return max(float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k])))
             for k in want)
