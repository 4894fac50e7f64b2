"""Fixing the target's learning rate for launch/sweeps/self_select.py, once,
before it runs: seed 1, 10 %, three rates; the rate whose `random` target
has the lowest Alpaca held-out loss is frozen in configs/self_select.py.
The LP_app targets tuned here are reported, and play no part in the choice
(docs/experiments.md, "Fixing the hyperparameters").

    python launch/sweep.py --sweep=launch/sweeps/self_select_lr.py
    python launch/aggregate.py runs/sweeps/self_select_lr
"""
from launch.axes import product

CONFIG = "configs/self_select.py"


def sweep() -> list[dict]:
    return product({"seed": [1]}, {"select.percent": [10.0]}, {"select.baselines": [("random",)]},
                   {"target.train.lr": [2e-5, 1e-4, 3e-4]})
