"""Fine-tune a causal language model with Adam, Adafactor and Alada: see main.py."""
