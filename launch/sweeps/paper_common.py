"""What the paper's sweeps share: where checkpoints and data are, the seeds
and the subset sizes of the paper's grids."""
import os

MODELS = os.environ.get("LPJAX_MODELS", "checkpoints")
DATA = os.environ.get("LPJAX_DATA", "data")
SEEDS = [42, 43, 44]
SIZES = [1.0, 3.0, 5.0, 10.0, 25.0, 33.0]


def model(name: str) -> str:
    return os.path.join(MODELS, name)
