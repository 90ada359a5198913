"""The models the benchmarks train: a deep tanh MLP and a GPT-2-small-shaped
transformer, as plain JAX functions of a params pytree.

Both are written the ordinary way (``jax.grad`` of a loss, no remat, no
custom backward), so the figures are what a user of optax gets.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Model:
  """A params initialiser, a loss and a batch maker for one benchmark model."""

  name: str
  init: Callable[[jax.Array], Any]
  loss: Callable[[Any, Any], jax.Array]
  batch: Callable[[jax.Array], Any]
  config: dict[str, int] = dataclasses.field(default_factory=dict)


# -- deep MLP -----------------------------------------------------------------

def mlp(layers: int = 8, width: int = 2048, batch: int = 8) -> Model:
  """``layers`` tanh layers of ``width x width``, squared error to a target."""

  def init(key):
    keys = jax.random.split(key, layers)
    return [{'w': jax.random.normal(k, (width, width)) / math.sqrt(width),
             'b': jnp.zeros((width,))} for k in keys]

  def loss(params, batch_):
    x, y = batch_
    h = x
    for layer in params:
      h = jnp.tanh(h @ layer['w'] + layer['b'])
    return jnp.mean((h - y) ** 2)

  def make_batch(key):
    kx, ky = jax.random.split(key)
    return (jax.random.normal(kx, (batch, width)),
            jax.random.normal(ky, (batch, width)))

  return Model(f'MLP {layers}x{width}x{width}, batch {batch}', init, loss,
               make_batch, dict(layers=layers, width=width, batch=batch))


# -- GPT-2-small-shaped transformer --------------------------------------------

def gpt2(layers: int = 12, d: int = 768, heads: int = 12, vocab: int = 50257,
         ctx: int = 1024, batch: int = 1, seq: int = 256,
         compute_dtype: Any = None) -> Model:
  """Pre-LN GPT-2 with a tied embedding; next-token cross-entropy.

  ``seq`` tokens per sequence (at most ``ctx``, the position table's length).
  Params are fp32. With ``compute_dtype`` (e.g. ``jnp.bfloat16``) the loss
  casts them to it and computes the activations in it (mixed precision: the
  gradients and params stay fp32), keeping the layer-norm statistics and the
  final log-softmax in fp32; ``None`` computes everything in fp32.
  """
  if seq > ctx:
    raise ValueError(f'seq {seq} > ctx {ctx}: no position embedding for it')

  def init(key):
    k_wte, k_wpe, *k_blocks = jax.random.split(key, 2 + layers)
    normal = lambda k, s, std=0.02: std * jax.random.normal(k, s)
    blocks = []
    for kb in k_blocks:
      k1, k2, k3, k4 = jax.random.split(kb, 4)
      out_std = 0.02 / math.sqrt(2 * layers)
      blocks.append({
          'ln1': {'scale': jnp.ones((d,)), 'bias': jnp.zeros((d,))},
          'attn_qkv': {'kernel': normal(k1, (d, 3 * d)),
                       'bias': jnp.zeros((3 * d,))},
          'attn_out': {'kernel': normal(k2, (d, d), out_std),
                       'bias': jnp.zeros((d,))},
          'ln2': {'scale': jnp.ones((d,)), 'bias': jnp.zeros((d,))},
          'mlp_in': {'kernel': normal(k3, (d, 4 * d)),
                     'bias': jnp.zeros((4 * d,))},
          'mlp_out': {'kernel': normal(k4, (4 * d, d), out_std),
                      'bias': jnp.zeros((d,))},
      })
    return {'wte': normal(k_wte, (vocab, d)), 'wpe': normal(k_wpe, (ctx, d), 0.01),
            'blocks': blocks,
            'ln_f': {'scale': jnp.ones((d,)), 'bias': jnp.zeros((d,))}}

  def layer_norm(p, x):
    dtype, x = x.dtype, x.astype(jnp.float32)  # no-ops in fp32
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * p['scale'] + p['bias']
    return y.astype(dtype)

  def attention(p, x):
    b, s, _ = x.shape
    qkv = x @ p['attn_qkv']['kernel'] + p['attn_qkv']['bias']
    q, k, v = jnp.split(qkv.reshape(b, s, 3, heads, d // heads), 3, axis=2)
    q, k, v = (a[:, :, 0] for a in (q, k, v))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(d // heads)
    mask = jnp.tril(jnp.ones((s, s), bool))
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    w = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum('bhqk,bkhd->bqhd', w, v).reshape(b, s, d)
    return out @ p['attn_out']['kernel'] + p['attn_out']['bias']

  def mlp_block(p, x):
    h = jax.nn.gelu(x @ p['mlp_in']['kernel'] + p['mlp_in']['bias'])
    return h @ p['mlp_out']['kernel'] + p['mlp_out']['bias']

  def loss(params, tokens):
    if compute_dtype is not None:
      params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    s = inputs.shape[1]
    x = params['wte'][inputs] + params['wpe'][:s]
    for blk in params['blocks']:
      x = x + attention(blk, layer_norm(blk['ln1'], x))
      x = x + mlp_block(blk, layer_norm(blk['ln2'], x))
    x = layer_norm(params['ln_f'], x)
    logits = x @ params['wte'].T
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, targets[..., None], -1))

  def make_batch(key):
    return jax.random.randint(key, (batch, seq + 1), 0, vocab)

  body = (f'{layers} blocks' if layers else
          'no blocks: embeddings, final norm, tied readout')
  precision = ('' if compute_dtype is None else
               f', {jnp.dtype(compute_dtype).name} activations')
  return Model(f'GPT-2-small-shaped ({body}, d={d}, vocab {vocab}, '
               f'tied), batch {batch}x{seq}{precision}', init, loss, make_batch,
               dict(layers=layers, d=d, heads=heads, vocab=vocab, ctx=ctx,
                    batch=batch, seq=seq))
