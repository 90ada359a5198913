"""Fine-tunes MiniLM-L6 on sentence polarity with Adam, Adafactor and Alada.

The comparison itself (same budget per trial, progress bars, the table, the
plots) is :mod:`examples.common.harness`; this file defines the task: the
model (:mod:`model`), the data (:mod:`input_pipeline`), the loss and the
held-out accuracy. The train step, the part to copy into your own Flax NNX
code, is :func:`examples.common.harness.make_train_step`::

  graphdef, params, frozen = nnx.split(model, trainable, ...)
  tx = alada_optax.alada(learning_rate, b1=0.9, b2=0.9)
  opt_state = tx.init(params)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def train_step(params, opt_state, frozen, batch):
    def loss_of(p):
      return loss_fn(nnx.merge(graphdef, p, frozen), batch)
    loss, grads = jax.value_and_grad(loss_of)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from examples.common import harness
from examples.text_classification import input_pipeline
from examples.text_classification import model as model_lib

NUM_CLASSES = 2
# The config that also offers the research variants (harness.RESEARCH_OPTIMIZERS).
RESEARCH_CONFIG = 'examples/text_classification/configs/research.py'


def loss_fn(model: model_lib.Classifier, batch: dict[str, Any]) -> jax.Array:
  logits = model(batch['ids'], batch['mask'])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels']).mean()


@nnx.jit
def _predict(model: model_lib.Classifier, ids: jax.Array, mask: jax.Array) -> jax.Array:
  return model(ids, mask).argmax(-1)


def accuracy(model: model_lib.Classifier, split: input_pipeline.Split, batch_size: int) -> float:
  """Held-out accuracy; the last partial batch is padded (to one compiled shape) and ignored."""
  correct = 0
  for start in range(0, len(split), batch_size):
    ids = split.ids[start:start + batch_size]
    mask = split.mask[start:start + batch_size]
    n = len(ids)
    if n < batch_size:
      ids = np.pad(ids, ((0, batch_size - n), (0, 0)))
      mask = np.pad(mask, ((0, batch_size - n), (0, 0)))
    predicted = np.asarray(_predict(model, ids, mask))[:n]
    correct += int((predicted == split.labels[start:start + n]).sum())
  return correct / len(split)


def trainable_filter(config: ml_collections.ConfigDict):
  """Every nnx.Param, less the token-embedding table if the config freezes it."""
  if config.freeze_word_embeddings:
    return nnx.All(nnx.Param, nnx.Not(nnx.PathContains('word')))
  return nnx.Param


def make_task(config: ml_collections.ConfigDict) -> tuple[harness.Task, input_pipeline.Data]:
  """The harness task (and its data) described by ``config``."""
  encoder_def, encoder_state = nnx.split(model_lib.load_encoder(num_layers=config.num_layers))
  tokenizer = model_lib.load_tokenizer(config.max_length)
  data = input_pipeline.load(
      tokenizer, batch_size=config.batch_size, num_test=config.num_test,
      num_train=config.num_train, seed=config.seed,
      cache_dir=config.data_dir or None, download=config.download,
  )

  def make_model() -> model_lib.Classifier:
    # A fresh copy of the pretrained weights (the train step donates its
    # params) and the same seeded head for every trial.
    encoder = nnx.merge(encoder_def, jax.tree.map(jnp.copy, encoder_state))
    return model_lib.Classifier(encoder, NUM_CLASSES, nnx.Rngs(config.seed))

  task = harness.Task(
      make_model=make_model,
      loss_fn=loss_fn,
      train_batch=data.train_batch,
      evaluate=lambda m: accuracy(m, data.test, config.eval_batch_size),
      metric_name='accuracy',
      higher_is_better=True,
      trainable=trainable_filter(config),
      name='MiniLM-L6 sentence polarity',
  )
  return task, data


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs the grid, prints the table, writes the report under ``workdir``.

  Returns:
    'results' (the TrialResults), 'table' (Markdown), 'paths' (the files
    written) and 'wall_time_s'.
  """
  start = time.perf_counter()
  grid, per_optimizer = harness.learning_rate_grid(config, RESEARCH_CONFIG)
  task, data = make_task(config)
  print(f'{len(data.train)} training / {len(data.test)} held-out sentences;'
        f' {len(grid)} optimizers x {per_optimizer} learning rates x {config.num_steps} steps'
        f' of batch {config.batch_size} x {config.max_length} tokens', flush=True)
  return harness.run_and_report(
      task, grid, config, workdir, start=start, metric_format='.4f',
      extra={'train_sentences': len(data.train), 'test_sentences': len(data.test)})
