"""Fine-tuning the probe and the target: the train loop (train.py) and its
Orbax checkpoints (checkpoint.py)."""
