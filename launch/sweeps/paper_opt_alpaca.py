"""The paper's OPT grid on Alpaca-52K (arXiv 2402.10430; ../shared/DESIGN.md),
for an accelerator cluster, on configs/paper_opt_alpaca.py (MiniLM clusters,
per-cluster selection, the authors' hyperparameters):

- sizes 1, 3, 5, 10, 25, 33 % x metrics LP(1), LP_app, P0, IFD x 3 seeds,
  OPT-350M probe, OPT-13B target; each point also tunes clust_rand, random
  and full (the config's baselines);
- hard / mid / easy thirds (select.part low/mid/high at 33 %) of LP(1) and LP_app;
- probe size x target size: OPT-350M ... 13B probes x OPT-1.3B/6.7B/13B
  targets, LP_app at 10 %, seed 42.

Departures from configs/paper_opt_alpaca.py, for the report: a 500-record
held-out split (data.test_size) so that every target has a held-out quality
for launch/aggregate.py (add evaluate.answers.test_sets and a judge for the
paper's pairwise evaluation), and every probe also scores responses alone
(probe.score_response_only), so LP, LP_app, P0 and IFD share one probe run
per (probe, seed).

Checkpoints are read from $LPJAX_MODELS/<name> (default checkpoints/) and the
data from $LPJAX_DATA/alpaca_data.json (default data/):

    python launch/sweep.py --sweep=launch/sweeps/paper_opt_alpaca.py --dry-run
    python launch/sweep.py --sweep=launch/sweeps/paper_opt_alpaca.py --executor=slurm \\
      --slurm-partition=gpu --slurm-gpus-per-node=8 --slurm-nodes=2 --slurm-parallelism=4

Every point shards FSDP-style over all its devices (mesh.shape (1, -1, 1)).
"""
import os

from launch.axes import product
from launch.sweeps.paper_common import DATA, metric_grids, model

CONFIG = "configs/paper_opt_alpaca.py"


def sweep() -> list[dict]:
    common = product({"data.source": [os.path.join(DATA, "alpaca_data.json")]}, {"data.test_size": [500]},
                     {"evaluate.enabled": [True]}, {"probe.score_response_only": [True]},
                     {"mesh.shape": [(1, -1, 1)]})
    sizes = product(common, {"probe.model": [model(m) for m in ("opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b",
                                                                "opt-13b")]},
                    {"target.model": [model(m) for m in ("opt-1.3b", "opt-6.7b", "opt-13b")]},
                    {"seed": [42]}, {"select.metric": ["lp_app"]}, {"select.percent": [10.0]},
                    {"select.part": ["low"]})
    return metric_grids(common, "opt-350m", "opt-13b") + sizes
