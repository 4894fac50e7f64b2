"""The paper's Llama-2 grid on Dolly (arXiv 2402.10430; ../shared/DESIGN.md),
for an accelerator cluster. There is no Dolly config: this sweep takes
configs/paper_opt_alpaca.py (the authors' hyperparameters, MiniLM clusters,
clust_rand/random/full baselines) and points it at Dolly and Llama-2:

- sizes 1, 3, 5, 10, 25, 33 % x metrics LP(1), LP_app, P0, IFD x 3 seeds,
  Llama-2-7B probe, Llama-2-13B target;
- hard / mid / easy thirds (select.part at 33 %) of LP(1) and LP_app;
- probe size x target size: Llama-2-7B and -13B probes x Llama-2-7B and
  -13B targets, LP_app at 10 %, seed 42.

Dolly is the set where 544 prompts reach 512 tokens: the config keeps their
responses (data.truncation=keep_response); add a data.truncation axis with
"official" to see the authors' cut. As in paper_opt_alpaca.py: a 500-record
held-out split for the aggregate report, and probes that also score
responses alone, so every metric of a (probe, seed) shares one probe run.
Checkpoints from $LPJAX_MODELS/<name>, data from $LPJAX_DATA/databricks-dolly-15k.jsonl.

    python launch/sweep.py --sweep=launch/sweeps/paper_llama2_dolly.py --dry-run
"""
import os

from launch.axes import product
from launch.sweeps.paper_common import DATA, metric_grids, model

CONFIG = "configs/paper_opt_alpaca.py"


def sweep() -> list[dict]:
    common = product({"data.source": [os.path.join(DATA, "databricks-dolly-15k.jsonl")]},
                     {"data.format": ["dolly"]}, {"data.test_size": [500]}, {"evaluate.enabled": [True]},
                     {"probe.score_response_only": [True]}, {"mesh.shape": [(1, -1, 1)]})
    sizes = product(common, {"probe.model": [model("llama-2-7b"), model("llama-2-13b")]},
                    {"target.model": [model("llama-2-7b"), model("llama-2-13b")]},
                    {"seed": [42]}, {"select.metric": ["lp_app"]}, {"select.percent": [10.0]},
                    {"select.part": ["low"]})
    return metric_grids(common, "llama-2-7b", "llama-2-13b") + sizes
