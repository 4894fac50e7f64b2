"""The embedded default as a grid: 3 subset sizes x (LP_app, LP(1), P0) x 3
seeds, each point also tuning the target on a random subset of the same
size and on the full data (27 points).

    python launch/sweep.py --config=configs/lp_app.py --sweep=launch/sweeps/embedded.py

Every point trains the probe for three epochs, so LP_app (P1 after epoch 1
of that run, as in the authors' released subsets), LP(1) and P0 all read
one probe per seed: 3 probe runs serve 27 points. The random subset of a
size and seed is the same for every metric, and the full data is the same
for every size, so each is tuned once per seed.
"""
from launch.axes import product

CONFIG = "configs/lp_app.py"


def sweep() -> list[dict]:
    return product(
        {"probe.train.epochs": [3]},
        {"select.baselines": [("random", "full")]},
        {"seed": [1, 2, 3]},
        {"select.metric": ["lp_app", "lp1", "p0"]},
        {"select.percent": [5.0, 10.0, 25.0]},
    )
