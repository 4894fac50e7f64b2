"""A 3-point sweep on the micro config for tests: two seeds' probes serve
three points. No pretraining (the presets start from random weights), one
target epoch, no baselines: seconds per point."""
from launch.axes import product

CONFIG = "configs/lp_app.py:micro"


def sweep() -> list[dict]:
    common = product({"pretrain.enabled": [False]}, {"data.train_tokenizer": [True]},
                     {"target.train.epochs": [1]}, {"select.baselines": [()]})
    return (product(common, {"seed": [1]}, {"select.percent": [25.0, 50.0]})
            + product(common, {"seed": [2]}, {"select.percent": [25.0]}))
