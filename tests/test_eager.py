"""Outside jit: after its first call, an update compiles nothing."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import alada_optax

OPTIMIZERS = {
    'alada': lambda: alada_optax.alada(1e-3),
    'alada_gradient': lambda: alada_optax.alada(1e-3, second_moment='gradient'),
    'came': lambda: alada_optax.came(1e-3),
    'smmf': lambda: alada_optax.smmf(1e-3),
    'adamw_snsm': lambda: alada_optax.adamw_snsm(1e-3, rank=2),
    'adapprox': lambda: alada_optax.adapprox(1e-3),
    # inject_hyperparams builds the transformation anew on every update.
    'alada_injected': lambda: optax.inject_hyperparams(alada_optax.alada)(
        learning_rate=1e-3, b2=0.8),
    'adamw_snsm_injected': lambda: optax.inject_hyperparams(
        alada_optax.adamw_snsm, static_args=('rank',))(
            learning_rate=1e-3, rank=2),
}


class _Compiles(logging.Handler):

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    if record.getMessage().startswith('Compiling'):
      self.messages.append(record.getMessage()[:120])


@pytest.mark.parametrize('name', sorted(OPTIMIZERS))
def test_an_eager_update_compiles_once(name):
  opt = OPTIMIZERS[name]()
  params = {'w': jnp.ones((6, 4)), 'b': jnp.ones(4)}
  grads = jax.tree.map(lambda x: 0.1 * x, params)
  state = opt.init(params)
  for _ in range(2):  # an even and an odd step
    _, state = opt.update(grads, state, params)
  handler = _Compiles()
  logger = logging.getLogger('jax')
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      for _ in range(2):
        updates, state = opt.update(grads, state, params)
      jax.block_until_ready(updates)
  finally:
    logger.removeHandler(handler)
  assert not handler.messages, handler.messages


def test_eager_updates_with_other_hyperparameters_are_their_own():
  """Compiled steps are shared by equal hyperparameters only."""
  params = {'w': jnp.arange(24.0).reshape(6, 4) / 24, 'b': jnp.ones(4)}
  grads = jax.tree.map(lambda x: jnp.cos(x) * 0.1, params)

  def run(opt, update):
    state = opt.init(params)
    for _ in range(3):
      updates, state = update(grads, state, params)
    return updates

  for kwargs in ({'b2': 0.9}, {'b2': 0.5}, {'b1': 0.5}, {'eps': 1e-3},
                 {'step_bound': None}, {'step_bound': 0.5},
                 {'second_moment': 'gradient'}):
    opt = alada_optax.alada(1e-3, **kwargs)
    eager, jitted = run(opt, opt.update), run(opt, jax.jit(opt.update))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 eager, jitted)
  default = run(alada_optax.alada(1e-3), alada_optax.alada(1e-3).update)
  other = run(alada_optax.alada(1e-3, b2=0.5),
              alada_optax.alada(1e-3, b2=0.5).update)
  assert not np.allclose(default['w'], other['w'])
