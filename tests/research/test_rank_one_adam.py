"""The rank-one-Adam yardstick (benchmarks/research/rank_one_adam.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from benchmarks.research import rank_one_adam


def _positive(shape, seed):
  rng = np.random.default_rng(seed)
  return (rng.gamma(0.5, size=shape) * rng.lognormal(size=shape[:-1] + (1,))
          ).astype(np.float32)


def test_least_squares_fit_is_the_top_singular_pair():
  v = _positive((3, 7, 5), 0)  # a batch of three matrices
  got = np.asarray(rank_one_adam.best_rank_one(jnp.asarray(v)))
  for k in range(3):
    u, s, wt = np.linalg.svd(v[k].astype(np.float64))
    want = s[0] * np.outer(u[:, 0], wt[0])
    np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-6 * s[0])
    # and no other rank-one matrix is closer (a perturbed one is not)
    assert np.linalg.norm(v[k] - got[k]) < np.linalg.norm(v[k] - 1.01 * got[k])


def test_sums_fit_is_adafactors():
  v = _positive((6, 4), 1).astype(np.float64)
  got = np.asarray(rank_one_adam.best_rank_one(jnp.asarray(v, jnp.float32),
                                               'sums'))
  want = np.outer(v.sum(1), v.sum(0)) / v.sum()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  zero = rank_one_adam.best_rank_one(jnp.zeros((3, 2)), 'sums')
  assert np.all(np.asarray(zero) == 0)


@pytest.mark.parametrize('fit', rank_one_adam.FITS)
def test_is_adam_where_the_second_moment_is_rank_one(fit):
  # Gradients a_t b^T (a matrix whose nu is exactly rank one) and a vector:
  # every step equals optax.adam's.
  rng = np.random.default_rng(2)
  b = jnp.asarray(rng.normal(size=(1, 5)), jnp.float32)
  params = {'w': jnp.zeros((4, 5)), 'b': jnp.zeros(3), 'none': None}
  ours, adam = rank_one_adam.rank_one_adam(1e-2, fit=fit), optax.adam(1e-2)
  s, sa = ours.init(params), adam.init(params)
  for t in range(4):
    a = jnp.asarray(rng.normal(size=(4, 1)), jnp.float32) * (t + 1)
    g = {'w': a * b, 'b': jnp.asarray(rng.normal(size=3), jnp.float32),
         'none': None}
    u, s = ours.update(g, s)
    ua, sa = adam.update(g, sa)
    assert u['none'] is None
    for k in ('w', 'b'):
      np.testing.assert_allclose(u[k], ua[k], rtol=2e-4, atol=1e-7)


def test_differs_from_adam_where_it_is_not():
  g = {'w': jnp.asarray(np.random.default_rng(3).normal(size=(6, 4)),
                        jnp.float32)}
  ours, adam = rank_one_adam.rank_one_adam(1.0), optax.adam(1.0)
  u, _ = ours.update(g, ours.init(g))
  ua, _ = adam.update(g, adam.init(g))
  # Adam's first step is -sign(g); the rank-one one is not.
  np.testing.assert_allclose(jnp.abs(ua['w']), 1, rtol=1e-5)
  assert float(jnp.std(jnp.abs(u['w']))) > 0.1


def test_bad_fit_names_the_argument():
  with pytest.raises(ValueError, match='fit'):
    rank_one_adam.scale_by_rank_one_adam(fit='svd')


def test_step_bound_clips_each_entry():
  g = {'w': jnp.asarray(np.random.default_rng(4).normal(size=(6, 4)),
                        jnp.float32)}
  free = rank_one_adam.rank_one_adam(1.0)
  bounded = rank_one_adam.rank_one_adam(1.0, step_bound=0.5)
  u, _ = free.update(g, free.init(g))
  ub, _ = bounded.update(g, bounded.init(g))
  assert float(jnp.max(jnp.abs(u['w']))) > 0.5
  np.testing.assert_array_equal(ub['w'], jnp.clip(u['w'], -0.5, 0.5))
