"""Shared by the exactness tests: a noisy quadratic, the two runners, errors.

Each optimizer's test runs the package's transformation and its own float64
NumPy transcription on the same problem and compares the trajectories, step
by step, with :func:`compare_with_reference`. A transcription is a
``reference_step(grads, t) -> directions`` (dicts of float64 arrays): the
step before the learning rate and the decoupled weight decay, which
:func:`run_reference` applies the same way for every optimizer.
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


def run_reference(reference_step, x0, grad_fn, steps, lr, weight_decay=0.0):
  """The float64 loop of every transcription.

  ``x_{t+1} = x_t - lr(t) (d_t + weight_decay x_t)`` with
  ``d_t = reference_step(grad_fn(x_t, t), t)``; ``lr`` is a float or a
  callable of ``t``. Returns the params after each step.
  """
  lr_fn = lr if callable(lr) else (lambda t: lr)
  x = {k: np.array(v, np.float64) for k, v in x0.items()}
  history = []
  for t in range(steps):
    d = reference_step(grad_fn(x, t), t)
    eta = float(lr_fn(t))
    x = {k: x[k] - eta * (d[k] + weight_decay * x[k]) for k in x}
    history.append(x)
  return history


def compare_with_reference(opt, reference_step, x0, grad_fn, steps, lr, *,
                           weight_decay=0.0, tol=1e-10, error=None,
                           all_states=False):
  """Runs the transcription and ``opt`` (float64, under x64) on one problem.

  ``opt`` must apply ``lr`` and ``weight_decay`` as :func:`run_reference`
  does. Asserts, at every one of the ``steps`` steps, that
  ``error(got, want) < tol`` (``error`` defaults to :func:`max_rel_err`; a
  NaN fails). Returns ``(got, want, state)``: both trajectories and the final
  state of ``opt`` (every state with ``all_states``), for further checks.
  """
  error = error or max_rel_err
  want = run_reference(reference_step, x0, grad_fn, steps, lr, weight_decay)
  with jax.enable_x64(True):
    got, state = run_optax(opt, x0, grad_fn, steps, all_states=all_states)
  assert len(got) == len(want) == steps
  for t in range(steps):
    err = error(got[t], want[t])
    assert err < tol, f'step {t}: {error.__name__} {err:.3g} (tol {tol:g})'
  return got, want, state


def max_rel_err(a, b):
  """Max over leaves and entries of |a - b| / |b|."""
  return max(float(np.max(np.abs(a[k] - b[k]) / (np.abs(b[k]) + 1e-300)))
             for k in b)


def max_rel_dev(got, want):
  """Max over leaves of max|got - want| / max|want|."""
  return max(float(np.max(np.abs(got[k] - want[k])) / np.max(np.abs(want[k])))
             for k in want)
