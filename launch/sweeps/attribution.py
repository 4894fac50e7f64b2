"""What the embedded default's result is owed to: LP_app at 10 % with each of
three factors switched, over three seeds (24 points).

    python launch/sweep.py --sweep=launch/sweeps/attribution.py
    python launch/aggregate.py runs/sweeps/attribution

- **selection rule**: the hardest 10 % globally, or per cluster as the paper
  does (MiniLM clusters where the weights are installed, else one cluster
  per task family, `kind`);
- **noise**: 10 % or 1 % of the training answers deliberately wrong;
- **families**: all nine task families, or the seven the embedded target
  learns in its budget (difficulty <= 3; `last_word` and `larger` left out).

Every point also tunes the target on the default baselines (random,
random_tokens and longest of the selection's size, and the full data); a
data setting's probe, full target and baselines of one size are shared by
the points that read them. The prediction written before the first run is
in docs/experiments.md.
"""
from launch.axes import product, zipped

from lpjax.data.synthetic import TASK_FAMILIES

CONFIG = "configs/lp_app.py"
LEARNABLE = tuple(name for name, difficulty in TASK_FAMILIES.items() if difficulty <= 3)


def sweep() -> list[dict]:
    return product(
        {"seed": [1, 2, 3]},
        {"data.synthetic.noise_fraction": [0.1, 0.01]},
        {"data.synthetic.families": [(), LEARNABLE]},
        zipped({"cluster.method": ["none", "auto"], "cluster.field": ["", "kind"]}),
    )
