"""What the paper's sweeps share: where checkpoints and data are, the seeds
and the subset sizes of the paper's grids, and the two grids every paper
sweep runs for its main probe and target."""
import os

from launch.axes import product

MODELS = os.environ.get("LPJAX_MODELS", "checkpoints")
DATA = os.environ.get("LPJAX_DATA", "data")
SEEDS = [42, 43, 44]
SIZES = [1.0, 3.0, 5.0, 10.0, 25.0, 33.0]


def model(name: str) -> str:
    return os.path.join(MODELS, name)


def metric_grids(common: list[dict], probe: str, target: str) -> list[dict]:
    """The paper's main grid (sizes x LP(1), LP_app, P0, IFD x seeds, the
    hardest part) then its chunk grid (hard / mid / easy thirds of LP(1) and
    LP_app at 33 % x seeds), for one probe and one target."""
    models = (common, {"probe.model": [model(probe)]}, {"target.model": [model(target)]}, {"seed": SEEDS})
    main = product(*models, {"select.metric": ["lp1", "lp_app", "p0", "ifd"]}, {"select.percent": SIZES},
                   {"select.part": ["low"]})
    chunks = product(*models, {"select.metric": ["lp1", "lp_app"]}, {"select.percent": [33.0]},
                     {"select.part": ["low", "mid", "high"]})
    return main + chunks
