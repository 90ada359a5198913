"""Fine-tune a pretrained MiniLM-L6 encoder on sentence polarity: Adam, Adafactor, Alada."""
