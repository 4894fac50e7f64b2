"""SmolLM2-135M-Instruct selecting its own tuning data (configs/self_select.py):
LP_app per MiniLM cluster at 5, 10 and 25 % of a 256-record Alpaca pool
against random, random_tokens and longest of the same size, 2 seeds
(6 points, 2 probe runs, 24 tuned targets).

    python launch/sweep.py --sweep=launch/sweeps/self_select.py
    python launch/aggregate.py runs/sweeps/self_select

On a GPU or TPU, the paper's sizes (all of Alpaca-52K, 3 epochs, batch 128):

    python launch/sweep.py --sweep=launch/sweeps/self_select.py --config=configs/self_select.py:paper \\
      --runs=runs/sweeps/self_select_paper

The points of one seed share its probe and clusters; the prediction
written before the first run, and the results, are in docs/experiments.md.
"""
from launch.axes import product

CONFIG = "configs/self_select.py"


def sweep() -> list[dict]:
    return product({"seed": [1, 2]}, {"select.percent": [5.0, 10.0, 25.0]})
