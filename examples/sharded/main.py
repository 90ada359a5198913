r"""Alada on a device mesh: FSDP x tensor parallel, scan over stacked layers.

  python -m examples.sharded.main                  # 8 simulated CPU devices
  python -m examples.sharded.main --config.num_steps=200 --config.check

Override any field of configs/default.py with ``--config.FIELD=VALUE``, e.g.
``--config.mesh_shape="(4,2)" --config.width=128``; ``--config.check`` also
trains on one device and prints the largest deviation. What it trains and
prints: see train.py; the figures go to ``--workdir`` (default
out/sharded)/results.json. Synthetic data, nothing downloaded.

Without an accelerator it asks JAX for ``config.num_devices`` CPU devices
(default 8). On a real multi-host cluster pass ``--config.distributed`` (it
calls ``jax.distributed.initialize()`` first) and give the mesh the global
device count.
"""

import os

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from ml_collections import config_flags

from examples.common import cli
from examples.sharded import train
from examples.sharded.configs import default as default_config

cli.quiet_backend_probe()

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', 'out/sharded',
                    'Where results.json (every figure printed) goes.')
config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'configs', 'default.py'),
    cli.config_help(default_config.get_config(),
                    'examples/sharded/configs/default.py'),
    lock_config=True,
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  train.start_devices(FLAGS.config)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
