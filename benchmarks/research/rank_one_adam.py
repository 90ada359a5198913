"""Adam dividing by the best rank-one fit of its own second moment: a yardstick.

:func:`rank_one_adam` keeps Adam's full first and second moments, so it saves
no memory at all, and divides each matrix's momentum by the rank-one matrix
closest to Adam's bias-corrected second moment, over the matrix view Alada
uses (eq. (12)). It has none of Alada's approximations: no fitting lag, no
stale factor, no ``M~^2`` target, the fit recomputed exactly at every step.
``docs/research/safeguard.md`` uses it as a yardstick in the learning-rate
robustness check: where it falls off as fast as Alada above its best learning
rate, the rank-one preconditioner, not Alada's way of fitting it, is what
falls off.
It is not an upper bound on every rank-one method (a bound on the step, or
another decay rate, changes how one falls off).

Vectors are ``1 x n`` matrices, which a rank-one matrix fits exactly: there
it is Adam, as Alada's fit can be exact there too.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from alada_optax import matricize

FITS = ('least_squares', 'sums')


def _check_fit(fit: str) -> None:
  if fit not in FITS:
    raise ValueError(f'fit must be one of {FITS}, got {fit!r}')


class ScaleByRankOneAdamState(NamedTuple):
  """Adam's state: the step count and the full first and second moments."""

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def best_rank_one(v: jax.Array, fit: str = 'least_squares',
                  iterations: int = 30) -> jax.Array:
  """The rank-one fit of each ``... x m x n`` non-negative matrix ``v``.

  ``'least_squares'``: the closest rank-one matrix in the Frobenius norm, the
  fit Alada's alternating least squares tracks (its top singular pair, by
  power iteration from the all-ones vector, which for a non-negative matrix
  is not orthogonal to the top singular vector). ``'sums'``: Adafactor's
  ``r c^T / sum(r)`` from the row sums ``r`` and column sums ``c`` (the
  I-divergence optimum).
  """
  _check_fit(fit)
  if fit == 'sums':
    r = jnp.sum(v, axis=-1, keepdims=True)
    c = jnp.sum(v, axis=-2, keepdims=True)
    total = jnp.sum(r, axis=-2, keepdims=True)
    return jnp.where(total > 0, r * c / jnp.where(total > 0, total, 1), 0)
  vt = jnp.swapaxes(v, -1, -2)

  def power_step(_, x):
    x = vt @ (v @ x)
    norm = jnp.linalg.norm(x, axis=-2, keepdims=True)
    return x / jnp.where(norm > 0, norm, 1)

  n = v.shape[-1]
  x = jax.lax.fori_loop(0, iterations, power_step,
                        jnp.full(v.shape[:-2] + (n, 1), n**-0.5, v.dtype))
  return (v @ x) * jnp.swapaxes(x, -1, -2)  # (s u) v^T


def scale_by_rank_one_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    fit: str = 'least_squares',
    iterations: int = 30,
    step_bound: float | None = None,
) -> optax.GradientTransformation:
  """Adam's step with ``nu_hat`` replaced by :func:`best_rank_one` of it;
  with ``step_bound``, each entry's step clipped to it as Alada's default is."""
  _check_fit(fit)

  def init_fn(params):
    return ScaleByRankOneAdamState(
        count=jnp.zeros([], jnp.int32), mu=optax.tree.zeros_like(params),
        nu=optax.tree.zeros_like(params))

  def preconditioner(nu_hat):
    if nu_hat.ndim < 2:
      return nu_hat
    plan = matricize.plan_for(nu_hat.shape)
    return plan.from_matrix(
        best_rank_one(plan.to_matrix(nu_hat), fit, iterations))

  def direction(m, v):
    d = m / (jnp.sqrt(jnp.maximum(preconditioner(v), 0)) + eps)
    return d if step_bound is None else jnp.clip(d, -step_bound, step_bound)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count_inc = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count_inc)
    nu_hat = optax.tree.bias_correction(nu, b2, count_inc)
    updates = jax.tree.map(
        lambda m, v: None if m is None else direction(m, v),
        mu_hat, nu_hat, is_leaf=lambda x: x is None)
    return updates, ScaleByRankOneAdamState(count=count_inc, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def rank_one_adam(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    fit: str = 'least_squares',
    step_bound: float | None = None,
) -> optax.GradientTransformation:
  """:func:`scale_by_rank_one_adam` scaled by ``-learning_rate``."""
  return optax.chain(
      scale_by_rank_one_adam(b1, b2, eps, fit, step_bound=step_bound),
      optax.scale_by_learning_rate(learning_rate))
