"""Default settings: 30 steps of a 4-layer stacked model on a 2 x 4 mesh of 8 simulated CPU devices.

Runs in well under a minute on 2 CPU cores. Scale it up with flags, e.g.
``--config.num_steps=200 --config.check`` (also measure the deviation from one
device), or on GPUs ``--config.num_devices=0 --config.mesh_shape="(2,4)"``. Two
processes on one machine, 4 CPU devices each, one 2 x 4 mesh (run both)::

  python -m examples.sharded.main --config.num_devices=4 --config.distributed \
      --config.coordinator_address=127.0.0.1:12355 --config.num_processes=2 \
      --config.process_id=0   # and --config.process_id=1
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Devices and mesh.
  config.mesh_shape = (2, 4)  # (data, model) mesh; its product is the number of devices used.
  config.num_devices = 8  # simulated CPU devices (jax_num_cpu_devices); 0 = leave JAX's default, e.g. on GPUs.
  config.distributed = False  # call jax.distributed.initialize() first (one process per host).
  config.coordinator_address = ''  # distributed: 'host:port' of process 0; '' = auto-detect (TPU pods, SLURM, Open MPI).
  config.num_processes = 0  # distributed, with coordinator_address: how many processes.
  config.process_id = 0  # distributed, with coordinator_address: this process's id.
  # Model: num_layers stacked residual blocks, run by lax.scan.
  config.num_layers = 4  # stacked residual blocks.
  config.width = 64  # model width d; divisible by the mesh axes and by num_heads.
  config.num_heads = 4  # heads of the per-head projection.
  # Training.
  config.num_steps = 30  # training steps.
  config.batch_size = 64  # examples per step (divisible by the data axis).
  config.learning_rate = 3e-3  # Alada's learning rate.
  config.weight_decay = 1e-4  # Alada's decoupled weight decay.
  config.check = False  # also train on one device and print the largest deviation.
  return config
