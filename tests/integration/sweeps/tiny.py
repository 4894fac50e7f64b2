"""A 3-point sweep on the micro config for tests: two seeds' probes serve
three points. No pretraining (the presets start from random weights), a
smaller pool, one target epoch with checkpoints every 2 steps, no
baselines: seconds per point."""
from launch.axes import product

CONFIG = "configs/lp_app.py:micro"


def sweep() -> list[dict]:
    common = product({"pretrain.enabled": [False]}, {"data.train_tokenizer": [True]},
                     {"data.synthetic.num_train": [160]}, {"data.test_size": [16]},
                     {"target.train.epochs": [1]}, {"target.train.checkpoint_every": [2]},
                     {"select.baselines": [()]},
                     # A fixed scoring budget: the measured one (the default)
                     # follows the machine's speed at the moment, and the
                     # tests compare two sweeps bit for bit.
                     {"probe.score_token_budget": [512]})
    return (product(common, {"seed": [1]}, {"select.percent": [25.0, 50.0]})
            + product(common, {"seed": [2]}, {"select.percent": [25.0]}))
