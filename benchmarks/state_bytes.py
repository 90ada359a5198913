"""Optimizer-state bytes of Alada, Adam and Adafactor for real model shapes.

The states are built by the optimizers' own ``init`` under ``jax.eval_shape``
(nothing is allocated), so the figures are exactly what a user gets.

    python -m benchmarks.state_bytes            # prints the two tables
    python -m benchmarks.state_bytes --publish  # maintainers: also records them

``--publish`` writes every figure, with the versions, to the committed
``benchmarks/results/state_bytes.json`` that the docs' tables are generated
from (``python -m benchmarks.figures``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import optax

import alada_optax
from benchmarks.harness import tree_bytes


def gpt2_small(vocab=50257, d=768, layers=12, ctx=1024):
  block = {
      'ln1': {'scale': (d,), 'bias': (d,)},
      'attn_qkv': {'kernel': (d, 3 * d), 'bias': (3 * d,)},
      'attn_out': {'kernel': (d, d), 'bias': (d,)},
      'ln2': {'scale': (d,), 'bias': (d,)},
      'mlp_in': {'kernel': (d, 4 * d), 'bias': (4 * d,)},
      'mlp_out': {'kernel': (4 * d, d), 'bias': (d,)},
  }
  return {'wte': (vocab, d), 'wpe': (ctx, d),
          'blocks': [block] * layers, 'ln_f': {'scale': (d,), 'bias': (d,)}}


def bert_base(vocab=30522, d=768, layers=12, ffn=3072):
  layer = {
      'q': (d, d), 'k': (d, d), 'v': (d, d), 'o': (d, d),
      'qkvo_bias': [(d,)] * 4, 'ln': [(d,)] * 4,
      'ffn_in': (d, ffn), 'ffn_in_b': (ffn,), 'ffn_out': (ffn, d),
      'ffn_out_b': (d,),
  }
  return {'word': (vocab, d), 'pos': (512, d), 'type': (2, d),
          'layers': [layer] * layers, 'pooler': (d, d)}


def resnet50_convs():
  """The conv kernels (HWIO) of ResNet-50's bottleneck stages and the head."""
  shapes = [(7, 7, 3, 64)]
  cin = 64
  for width, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
    for _ in range(blocks):
      shapes += [(1, 1, cin, width), (3, 3, width, width),
                 (1, 1, width, 4 * width)]
      cin = 4 * width
  return {'convs': shapes, 'fc': (2048, 1000), 'fc_b': (1000,)}


def llama_7b_layer(d=4096, ffn=11008):
  return {'q': (d, d), 'k': (d, d), 'v': (d, d), 'o': (d, d),
          'gate': (d, ffn), 'up': (d, ffn), 'down': (ffn, d),
          'norms': [(d,), (d,)]}


MODELS = {
    'GPT-2 small': gpt2_small,
    'BERT-base': bert_base,
    'ResNet-50 (convs+fc)': resnet50_convs,
    'LLaMA-7B (one layer)': llama_7b_layer,
}

OPTIMIZERS = {
    'Adam': optax.adam(1e-3),
    'Adafactor (no momentum)': optax.adafactor(1e-3),
    'Alada': alada_optax.alada(1e-3),
    'Alada, bf16 momentum': alada_optax.alada(1e-3, mu_dtype=jnp.bfloat16),
    'Alada, 8-bit momentum': alada_optax.alada(1e-3, mu_dtype='int8'),
}


def as_params(shapes, dtype=jnp.float32):
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, dtype), shapes,
                      is_leaf=lambda x: isinstance(x, tuple) and all(
                          isinstance(k, int) for k in x))


def state_bytes(opt, params) -> int:
  return tree_bytes(jax.eval_shape(opt.init, params))


def table(figures: dict) -> str:
  """The models' table of :func:`measure`'s figures: MiB, and x the params'."""
  names = list(next(iter(figures['models'].values()))['state'])
  rows = ['| model | params (fp32) | ' + ' | '.join(names) + ' |',
          '|---|---:|' + '---:|' * len(names)]
  for name, model in figures['models'].items():
    pbytes = model['params']
    cells = [f'{b / 2**20:,.1f} MiB ({b / pbytes:.3f}x)'
             for b in model['state'].values()]
    rows.append(f'| {name} | {pbytes / 2**20:,.1f} MiB | ' + ' | '.join(cells)
                + ' |')
  return '\n'.join(rows)


PUBLISHED = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         'results', 'state_bytes.json')


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m benchmarks.state_bytes', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='Models: ' + ', '.join(MODELS) + '. Prints two markdown tables '
             '(MiB and the ratio to the params\' bytes; then the bytes per '
             'parameter of every method of the package); writes nothing '
             'unless --publish.')
  parser.add_argument(
      '--publish', action='store_true',
      help='maintainers: also write every figure, with the versions, to the '
           'committed benchmarks/results/state_bytes.json that the README\'s '
           'tables are generated from (python -m benchmarks.figures)')
  return parser


# Every method of the package at its defaults (the README's "Related methods").
METHODS = {
    '`alada`': lambda: alada_optax.alada(1e-3),
    "`alada`, `mu_dtype='int8'`": lambda: alada_optax.alada(
        1e-3, mu_dtype='int8'),
    '`smmf` (1-bit packed signs)': lambda: alada_optax.smmf(1e-3),
    '`came`': lambda: alada_optax.came(1e-3),
    '`adamw_snsm` (rank 128)': lambda: alada_optax.adamw_snsm(1e-3),
    '`adapprox` (max rank 32)': lambda: alada_optax.adapprox(1e-3),
}


METHOD_SHAPES = {'1024x1024': {'w': (1024, 1024)}, 'GPT-2 small': gpt2_small()}


def measure() -> dict:
  """Every figure of both tables: the bytes of the params and of each state."""
  models = {}
  for name, make in MODELS.items():
    params = as_params(make())
    models[name] = {'params': tree_bytes(params),
                    'state': {o: state_bytes(opt, params)
                              for o, opt in OPTIMIZERS.items()}}
  trees = {k: as_params(v) for k, v in METHOD_SHAPES.items()}
  return {
      'models': models,
      'method_params': {k: sum(x.size for x in jax.tree.leaves(t))
                        for k, t in trees.items()},
      'methods': {name: {k: state_bytes(make(), t) for k, t in trees.items()}
                  for name, make in METHODS.items()},
  }


def methods_table(figures: dict) -> str:
  """Bytes of optimizer state per fp32 parameter (Adam: 8)."""
  shapes = figures['method_params']
  rows = ['| optimizer | ' + ' | '.join(shapes) + ' |',
          '|---|' + '---:|' * len(shapes)]
  for name, state in figures['methods'].items():
    cells = [f'{state[k] / n:.3f}' for k, n in shapes.items()]
    rows.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  figures = measure()
  print(table(figures))
  print('\nBytes of optimizer state per fp32 parameter (Adam: 8):\n')
  print(methods_table(figures))
  if args.publish:
    from benchmarks import run  # pylint: disable=g-import-not-at-top
    info = run.machine()
    figures = {'command': 'python -m benchmarks.state_bytes --publish',
               'machine': {k: info[k] for k in (
                   'python', 'jax', 'jaxlib', 'optax', 'date')},
               **figures}
    with open(PUBLISHED, 'w', encoding='utf-8') as f:
      json.dump(figures, f, indent=1)
      f.write('\n')
    print(f'\nwrote {PUBLISHED}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
