"""A Llama-architecture decoder in Flax NNX: SmolLM2's, or a small one of the same shape.

Pre-norm blocks (RMSNorm), grouped-query attention with rotary position
embeddings, a SwiGLU MLP, tied input/output embeddings: the architecture of
SmolLM2-135M (``llama`` in GGUF), whose weights :mod:`gguf_loader` loads into
:class:`Llama`. The small model pretrained from scratch is the same class with
smaller :class:`LlamaConfig` fields.

Rotary embeddings rotate adjacent pairs ``(x[2i], x[2i+1])`` (the original
RoPE and GGUF's layout: llama.cpp's converter permutes Hugging Face's Q/K
rows from the rotate-half layout into this one).

Linear kernels are ``(in, out)``: a Hugging Face / GGUF weight transposed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Model shape. The defaults are SmolLM2-135M's."""

  vocab_size: int = 49152
  dim: int = 576
  num_layers: int = 30
  num_heads: int = 9
  num_kv_heads: int = 3
  ffn_dim: int = 1536
  rope_theta: float = 100000.0
  norm_eps: float = 1e-5
  # Activations' dtype ('float32' or 'bfloat16'); parameters stay float32.
  dtype: str = 'float32'

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  def __post_init__(self):
    if self.dim % self.num_heads or self.num_heads % self.num_kv_heads:
      raise ValueError(
          f'dim={self.dim}, num_heads={self.num_heads},'
          f' num_kv_heads={self.num_kv_heads}: need dim % num_heads == 0 and'
          ' num_heads % num_kv_heads == 0'
      )
    if self.head_dim % 2:
      raise ValueError(f'head_dim={self.head_dim} must be even for RoPE')


class RMSNorm(nnx.Module):

  def __init__(self, dim: int, eps: float):
    self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.eps = eps

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return (x32 * self.scale[...]).astype(x.dtype)


def rope(x, positions, theta: float):
  """Rotates adjacent pairs of ``x [batch, seq, heads, head_dim]`` by position."""
  half = x.shape[-1] // 2
  freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[:, :, None, None].astype(jnp.float32) * freqs  # [b, s, 1, half]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  x32 = x.astype(jnp.float32).reshape(*x.shape[:-1], half, 2)
  even, odd = x32[..., 0], x32[..., 1]
  out = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
  return out.reshape(x.shape).astype(x.dtype)


def _linear(din: int, dout: int, rngs: nnx.Rngs, dtype) -> nnx.Linear:
  return nnx.Linear(
      din, dout, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=nnx.initializers.normal(0.02), rngs=rngs,
  )


class Attention(nnx.Module):

  def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
    dtype = jnp.dtype(cfg.dtype)
    kv_dim = cfg.num_kv_heads * cfg.head_dim
    self.q = _linear(cfg.dim, cfg.dim, rngs, dtype)
    self.k = _linear(cfg.dim, kv_dim, rngs, dtype)
    self.v = _linear(cfg.dim, kv_dim, rngs, dtype)
    self.o = _linear(cfg.dim, cfg.dim, rngs, dtype)
    self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
    self.head_dim, self.rope_theta = cfg.head_dim, cfg.rope_theta

  def __call__(self, x, positions):
    b, s, _ = x.shape
    q = self.q(x).reshape(b, s, self.num_heads, self.head_dim)
    k = self.k(x).reshape(b, s, self.num_kv_heads, self.head_dim)
    v = self.v(x).reshape(b, s, self.num_kv_heads, self.head_dim)
    q, k = rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta)
    # Grouped-query attention: query head h reads key/value head h // group.
    group = self.num_heads // self.num_kv_heads
    q = q.reshape(b, s, self.num_kv_heads, group, self.head_dim)
    logits = jnp.einsum('bqkgd,bskd->bkgqs', q, k).astype(jnp.float32)
    logits = logits / jnp.sqrt(jnp.float32(self.head_dim))
    causal = jnp.tril(jnp.ones((s, s), bool))
    logits = jnp.where(causal, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum('bkgqs,bskd->bqkgd', weights, v)
    return self.o(out.reshape(b, s, self.num_heads * self.head_dim))


class MLP(nnx.Module):

  def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
    dtype = jnp.dtype(cfg.dtype)
    self.gate = _linear(cfg.dim, cfg.ffn_dim, rngs, dtype)
    self.up = _linear(cfg.dim, cfg.ffn_dim, rngs, dtype)
    self.down = _linear(cfg.ffn_dim, cfg.dim, rngs, dtype)

  def __call__(self, x):
    return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):

  def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
    self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
    self.attn = Attention(cfg, rngs)
    self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
    self.mlp = MLP(cfg, rngs)

  def __call__(self, x, positions):
    x = x + self.attn(self.attn_norm(x), positions)
    return x + self.mlp(self.mlp_norm(x))


class Llama(nnx.Module):
  """``Llama(cfg, rngs)(tokens [batch, seq]) -> logits [batch, seq, vocab]`` (float32)."""

  def __init__(self, cfg: LlamaConfig, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embed = nnx.Embed(
        cfg.vocab_size, cfg.dim, dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.float32, embedding_init=nnx.initializers.normal(0.02),
        rngs=rngs,
    )
    self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
    self.norm = RMSNorm(cfg.dim, cfg.norm_eps)

  def __call__(self, tokens):
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    x = self.embed(tokens)
    for block in self.blocks:
      x = block(x, positions)
    # Tied embeddings: the output projection is the embedding table.
    return self.embed.attend(self.norm(x)).astype(jnp.float32)


def token_nll(model: Llama, rows: jax.Array) -> jax.Array:
  """Next-token negative log-likelihoods ``[batch, seq_len]`` of rows ``[batch, seq_len + 1]``."""
  logits = model(rows[:, :-1])
  logz = jax.nn.logsumexp(logits, axis=-1)
  target = jnp.take_along_axis(logits, rows[:, 1:, None], axis=-1)[..., 0]
  return logz - target


def loss_fn(model: Llama, rows: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy (nats per token) of a packed batch."""
  return token_nll(model, rows).mean()


def count_params(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
