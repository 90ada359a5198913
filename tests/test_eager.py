"""Outside jit: after its first call, an update compiles nothing."""

import logging

import jax
import jax.numpy as jnp
import pytest

import alada_optax

OPTIMIZERS = {
    'alada': lambda: alada_optax.alada(1e-3),
    'alada_gradient': lambda: alada_optax.alada(1e-3, second_moment='gradient'),
    'came': lambda: alada_optax.came(1e-3),
    'smmf': lambda: alada_optax.smmf(1e-3),
    'adamw_snsm': lambda: alada_optax.adamw_snsm(1e-3, rank=2),
    'adapprox': lambda: alada_optax.adapprox(1e-3),
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
