"""Examples: fine-tuning real pretrained models with Adam, Adafactor and Alada."""
