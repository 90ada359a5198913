"""Smoke tests of examples/causal_lm on the real corpora and the real SmolLM2 GGUF.

Small budgets (a tiny model, a few steps), real loading code and real data.
Where a package or corpus is missing the tests skip, except in CI
(tests/ci.py), where they fail: CI must install them (see
examples/causal_lm/input_pipeline.py and gguf_loader.py for the commands).
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

from tests import ci


def _missing(what: str, how: str):
  ci.skip_or_fail(f'{what} is missing: {how}', allow_module_level=True)


def _require_modules(*names: str) -> None:
  for name in names:
    if importlib.util.find_spec(name) is None:
      _missing(f'the Python package {name!r}', f'pip install {name}')


_require_modules('flax', 'ml_collections', 'tokenizers', 'tqdm', 'matplotlib')

from examples.causal_lm import input_pipeline  # pylint: disable=g-import-not-at-top


def _austen_path() -> str:
  try:
    return input_pipeline.locate_austen()
  except FileNotFoundError as e:
    _missing('the Jane Austen corpus', str(e))


def _austen() -> list[str]:
  novels = input_pipeline.read_austen(_austen_path())
  return [p for name in input_pipeline.AUSTEN_NOVELS for p in novels[name]]


def _snippets() -> list[str]:
  try:
    return input_pipeline.movie_snippets()
  except FileNotFoundError as e:
    _missing('the movie-review corpus', str(e))


def test_austen_deb_is_read_without_r():
  novels = input_pipeline.read_austen(_austen_path())
  assert list(novels) == list(input_pipeline.AUSTEN_NOVELS)
  words = sum(len(p.split()) for ps in novels.values() for p in ps)
  assert words == 717_537
  opening = ('It is a truth universally acknowledged, that a single man in'
             ' possession of a good fortune, must be in want of a wife.')
  assert opening in novels['prideprejudice']
  assert novels['emma'][:3] == ['EMMA', 'By Jane Austen', 'VOLUME I']


def test_pack_predicts_every_token_once():
  docs = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
  packed = input_pipeline.pack(docs, seq_len=4, eot_id=0)
  # stream: 0 5 6 7 0 8 9 0 10 11 12 13 (12 tokens) -> (12 - 1) // 4 = 2 rows
  np.testing.assert_array_equal(packed.tokens, [[0, 5, 6, 7, 0], [0, 8, 9, 0, 10]])
  assert packed.num_tokens == 8
  targets = packed.tokens[:, 1:].ravel()
  np.testing.assert_array_equal(targets, [5, 6, 7, 0, 8, 9, 0, 10])


def test_documents_split_disjointly_and_batches_are_deterministic():
  docs = [f'sentence {i}' for i in range(50)]
  train, heldout = input_pipeline.split_documents(docs, 10, seed=0)
  assert len(heldout) == 10 and len(train) == 40
  assert not set(train) & set(heldout)
  data = input_pipeline.LMData(
      input_pipeline.PackedText(np.arange(7 * 5).reshape(7, 5), 7), None, 2, 0)
  np.testing.assert_array_equal(data.train_batch(4), data.train_batch(4))
  epoch = np.concatenate([data.train_batch(s) for s in range(3)])
  assert len({tuple(r) for r in epoch}) == 6  # no row twice in an epoch


def _tiny_config(workdir_model='small'):
  from examples.causal_lm.configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.model = workdir_model
  config.small.update(dict(vocab_size=384, dim=32, num_layers=1, num_heads=2,
                           num_kv_heads=1, ffn_dim=64))
  config.pretrain.update(dict(num_steps=40, batch_size=8, learning_rate=1e-2,
                              num_heldout_docs=20, max_train_docs=600))
  config.seq_len = 32
  config.batch_size = 8
  config.num_heldout_docs = 50
  config.max_train_docs = 400
  config.max_heldout_rows = 16
  config.eval_batch_size = 16
  config.num_steps = 8
  config.eval_every = 4
  config.learning_rates = {'adam': (3e-3,), 'adafactor': (3e-2,), 'alada': (3e-3,)}
  config.progress = False
  config.download = False
  return config


def test_small_pipeline_end_to_end(tmp_path):
  _austen(), _snippets()
  from examples.causal_lm import train  # pylint: disable=g-import-not-at-top

  config = _tiny_config()
  out = train.train_and_evaluate(config, str(tmp_path))
  results = out['results']
  assert [r.optimizer for r in results] == ['adam', 'adafactor', 'alada']
  for r in results:
    assert not r.diverged and len(r.train_loss) == 8
    assert r.eval_steps == [4, 8]
    assert math.isfinite(r.final_metric) and r.peak_memory_bytes > 0
  # Fine-tuning on the reviews lowers the held-out review perplexity.
  assert min(r.final_metric for r in results) < out['start_perplexity']
  # Optimizer state: Adam two copies of the params, Alada about one. (optax's
  # Adafactor factors only dims >= 128: this tiny model's are not, so it
  # keeps full second moments here; the default model's are factored.)
  state = {r.optimizer: r.opt_state_bytes for r in results}
  params = 4 * results[0].trainable_params
  assert state['adam'] >= 2 * params
  assert params <= state['alada'] < 1.3 * params
  for key in ('json', 'table', 'loss_plot', 'memory_plot', 'lr_plot'):
    assert os.path.getsize(out['paths'][key]) > 0
  assert not out['info']['reused']
  # A second run with the same pretraining fields reuses the cached model.
  _, state2, _, info = train.pretrain_small(config, str(tmp_path))
  assert info['reused']
  assert info['heldout_perplexity'] == out['info']['heldout_perplexity']


@pytest.fixture(scope='module')
def smollm2():
  _require_modules('gguf')
  from examples.causal_lm import gguf_loader  # pylint: disable=g-import-not-at-top

  try:
    gguf_loader.locate_gguf()
  except FileNotFoundError as e:
    _missing('SmolLM2-135M', str(e))
  return gguf_loader.load_smollm2()


def test_smollm2_gguf_loads_with_its_tokenizer(smollm2):
  from examples.causal_lm import model as model_lib  # pylint: disable=g-import-not-at-top

  model, tokenizer = smollm2
  cfg = model.cfg
  assert (cfg.num_layers, cfg.dim, cfg.num_heads, cfg.num_kv_heads, cfg.ffn_dim,
          cfg.vocab_size, cfg.rope_theta) == (30, 576, 9, 3, 1536, 49152, 1e5)
  assert model_lib.count_params(model) == 134_515_008
  text = "It's 2024: the film's 3 leads (and its score) are great!"
  encoding = tokenizer.encode(text)
  assert tokenizer.decode(encoding.ids) == text
  assert encoding.tokens[:4] == ['It', "'s", 'Ġ', '2']  # digits one by one
  assert tokenizer.token_to_id('<|endoftext|>') == 0
  assert tokenizer.encode('<|im_start|>user').ids[0] == 1  # a special token


def test_smollm2_perplexity_on_austen_is_sane(smollm2):
  from examples.causal_lm import train  # pylint: disable=g-import-not-at-top

  model, tokenizer = smollm2
  paragraphs = _austen()
  _, heldout = input_pipeline.split_documents(paragraphs, 40, seed=0)
  text = input_pipeline.pack(train.encoder(tokenizer)(heldout), 64, 0)
  text = input_pipeline.PackedText(text.tokens[:8], text.num_documents)
  ppl = train.perplexity(model, text, batch_size=8)
  # 66.6 was seen here; a broken load (rotate-half RoPE, untransposed
  # kernels, a wrong tokenizer) gives hundreds to tens of thousands.
  print(f"SmolLM2-135M perplexity on {text.num_tokens} held-out Austen tokens: {ppl:.2f}")
  assert 10 < ppl < 120, ppl
