"""Default hyperparameters: the whole comparison in under 10 minutes on 2 CPU cores.

Every optimizer gets the same budget: the same pretrained starting point, the
same batches in the same order, ``num_steps`` steps of warmup + linear decay,
and a learning-rate grid of the same size (tuned per optimizer, as the paper
does: Adafactor's optax default steps are relative to each parameter's scale,
so its grid is on another scale than Adam's and Alada's).

Scale it up on a GPU with flags, e.g.
``--config.num_steps=1000 --config.batch_size=32 --config.max_length=64
--config.freeze_word_embeddings=False --config.num_test=2000``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Data: movie-review sentence polarity (see input_pipeline.py).
  config.max_length = 40  # tokens per sentence incl. [CLS]/[SEP]; 12% of sentences are longer and get cut.
  config.batch_size = 16  # training sentences per step.
  config.num_test = 1000  # held-out sentences for the accuracy (a seeded shuffle's first ones).
  config.num_train = 0  # training sentences after them; 0 = all the rest (9,568).
  config.eval_batch_size = 200  # sentences per forward pass when evaluating.
  config.data_dir = ''  # where the vaderSentiment sdist is cached; '' = $ALADA_EXAMPLES_DATA or ~/.cache/alada_optax/examples.
  config.download = True  # pip-download the sdist into data_dir when it is missing (PyPI, not a dataset hub).
  # Model: all-MiniLM-L6-v2 (6 layers, d=384) + mean pooling + a linear head.
  config.num_layers = 6  # pretrained layers kept (the first ones); fewer = a smaller, faster model.
  config.freeze_word_embeddings = True  # keep the 30,522 x 384 token table fixed (half of all weights).
  # Budget, identical for every optimizer.
  config.num_steps = 100  # training steps per (optimizer, learning rate) trial.
  config.warmup_fraction = 0.1  # linear warmup over this fraction of the steps, then linear decay to 0.
  config.eval_every = 50  # also evaluate every this many steps (0 = only at the end).
  config.seed = 0  # data split, batch order and head initialisation.
  # Learning-rate grids: same length for every optimizer.
  config.optimizers = ('adam', 'adafactor', 'alada')
  config.learning_rates = ml_collections.ConfigDict({
      'adam': (3e-5, 1e-4),
      'adafactor': (1e-3, 3e-3),  # relative to each parameter's RMS (optax default).
      'alada': (3e-5, 1e-4),  # Adam's grid: either side of the README's rule, half of Adam's best.
      'alada_paper': (3e-5, 1e-4),  # step_bound=None: the paper's Algorithm 2.
      'alada_int8': (3e-5, 1e-4),  # mu_dtype='int8': M in 8 bits.
  })
  # Also offer the research variants (benchmarks.research.optimizers); set by
  # configs/research.py, which also gives them grids.
  config.research = False
  config.progress = True  # tqdm progress bars.
  return config
