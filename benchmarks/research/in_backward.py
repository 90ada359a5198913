"""Can a JAX train step fold the gradient into the momentum as it is produced?

The paper's PyTorch Alada reaches params + M because the gradients are
accumulated into the momentum's memory. This experiment asks whether a jitted
JAX step gets there, by comparing XLA's compiled peak memory of three donated
train steps with the same math (heavy-ball momentum on every leaf, so that
only the gradient's lifetime differs; Alada's own step behaves the same way,
see ``python -m benchmarks.run``):

* ``plain``: ``jax.grad`` of the loss, then the update of every leaf.
* ``update in backward, per leaf``: every leaf goes through a
  ``jax.custom_vjp`` identity whose backward rule receives the leaf's
  (summed) gradient and returns the *updated* leaf and momentum as the
  "cotangents", so each leaf's update is issued inside the backward pass, the
  moment its gradient exists.
* ``update in backward, per use``: as above, and the tied embedding's two uses
  (token lookup and output logits) are tapped separately, the momentum
  threaded through the two backward rules, so that each partial gradient is
  folded into M as soon as it is produced instead of being summed first.

    python -m benchmarks.research.in_backward   # GPT-2-small-shaped and MLP
    python -m benchmarks.research.in_backward --small   # small shapes (seconds)

It also checks on concrete values that the three steps give the same update.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

from benchmarks import harness
from benchmarks import models as models_lib

B1, LR = 0.9, 1e-3
MiB = 2**20


def _momentum(m, g):
  return B1 * m + (1 - B1) * g


@jax.custom_vjp
def _tap_leaf(x, m):
  return x


def _tap_leaf_fwd(x, m):
  return x, (x, m)


def _tap_leaf_bwd(res, g):
  x, m = res
  m = _momentum(m, g)
  return x - LR * m, m


_tap_leaf.defvjp(_tap_leaf_fwd, _tap_leaf_bwd)


# The momentum threaded between the two uses' backward rules is carried
# divided by (1 - b1), so that the last rule adds the token lookup's gradient
# to it unscaled: XLA then turns "A + scatter(0, ids, dx)" into a scatter-add
# into A in place (scaling the scatter first needs a zero-filled buffer of the
# embedding's size: +147 MiB on GPT-2).


@jax.custom_vjp
def _tap_first_use(x, m):
  """The first use in the forward pass, the last in the backward: finishes."""
  return x, m


def _tap_first_use_bwd(x, cotangents):
  g, m_over = cotangents  # (b1 M + (1 - b1) g_later) / (1 - b1)
  m = (m_over + g) * (1 - B1)
  return x - LR * m, m


_tap_first_use.defvjp(lambda x, m: ((x, m), x), _tap_first_use_bwd)


@jax.custom_vjp
def _tap_last_use(x, m):
  """The last use in the forward pass, the first in the backward: starts."""
  return x


_tap_last_use.defvjp(
    lambda x, m: (x, m),
    lambda m, g: (jnp.zeros_like(g), (B1 / (1 - B1)) * m + g))


class _TwoUses(dict):
  """A params dict whose ``key`` entry yields its first use, then its second."""

  def __init__(self, params, key, uses):
    super().__init__(params)
    self._key, self._uses = key, list(uses)

  def __getitem__(self, k):
    if k == self._key:
      return self._uses.pop(0)
    return dict.__getitem__(self, k)


def plain_step(model):
  def step(params, m, batch):
    grads = jax.grad(model.loss)(params, batch)
    m = jax.tree.map(_momentum, m, grads)
    return jax.tree.map(lambda p, m: p - LR * m, params, m), m
  return step


def in_backward_step(model, tied_key=None):
  """The step with every leaf's update issued in the backward pass."""

  def step(params, m, batch):
    def tapped_loss(params, m):
      tapped = jax.tree.map(_tap_leaf, params, m)
      if tied_key is not None:
        first, threaded = _tap_first_use(params[tied_key], m[tied_key])
        tapped = _TwoUses(tapped, tied_key,
                          [first, _tap_last_use(first, threaded)])
      return model.loss(tapped, batch)
    return jax.grad(tapped_loss, argnums=(0, 1))(params, m)

  return step


def peak(step, model) -> harness.Memory:
  params = jax.eval_shape(model.init, jax.random.key(0))
  batch = jax.eval_shape(model.batch, jax.random.key(1))
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, params, batch).compile()
  return harness.Memory.of(compiled, params, params)


def max_difference(model, steps) -> float:
  params = harness.concrete_params(model)
  batch = harness.concrete_batch(model)
  m = jax.tree.map(lambda x: jnp.full_like(x, 1e-2), params)
  outs = [jax.jit(s)(params, m, batch) for s in steps]
  return max(float(jnp.max(jnp.abs(a - b)))
             for out in outs[1:]
             for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(out)))


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.research.in_backward', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--small', action='store_true',
                      help='small shapes (seconds instead of minutes); also '
                           'checks that the three steps give the same update')
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  if args.small:
    gpt2 = models_lib.gpt2(layers=2, d=256, heads=4, vocab=8192, ctx=256,
                           seq=128)
    mlp = models_lib.mlp(layers=4, width=512)
  else:
    gpt2, mlp = models_lib.gpt2(), models_lib.mlp()
  print('| model | step | compiled peak | x params | temporaries |')
  print('|---|---|---:|---:|---:|')
  for model, tied in ((mlp, None), (gpt2, 'wte')):
    variants = [('plain', plain_step(model)),
                ('update in backward, per leaf', in_backward_step(model))]
    if tied:
      variants.append(('update in backward, per use',
                       in_backward_step(model, tied)))
    for name, step in variants:
      mem = peak(step, model)
      print(f'| {model.name} | {name} | {mem.peak / MiB:,.1f} MiB | '
            f'{mem.peak / mem.params:.3f} | {mem.temporaries / MiB:,.1f} MiB |',
            flush=True)
    if args.small:
      print(f'  same update (max abs difference): '
            f'{max_difference(model, [s for _, s in variants]):.1e}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
