"""Sweep axes, point names and the override flags, parsed back by the same
config_flags parser lpjax.launch uses."""
import pytest

from launch.axes import product, zipped
from launch.plan import point_config
from launch.points import format_value, load_sweep, make_points, point_names


def test_product_and_zip():
    pts = product({"seed": [1, 2]}, zipped({"probe.model": ["a", "b"], "probe.train.lr": [0.1, 0.2]}))
    assert pts == [{"seed": 1, "probe.model": "a", "probe.train.lr": 0.1},
                   {"seed": 1, "probe.model": "b", "probe.train.lr": 0.2},
                   {"seed": 2, "probe.model": "a", "probe.train.lr": 0.1},
                   {"seed": 2, "probe.model": "b", "probe.train.lr": 0.2}]
    assert len(product({"a": [1, 2, 3]}, {"b": [1, 2]}, {"c": [0]})) == 6
    with pytest.raises(ValueError, match="differ in length"):
        zipped({"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="set twice"):
        product({"a": [1]}, {"a": [2]})
    with pytest.raises(ValueError, match="names one field"):
        product({"a": [1], "b": [2]})


def test_names_from_varying_fields_and_ambiguous_last_components():
    names = point_names([{"probe.model": "/m/opt-350m", "target.model": "/m/opt-13b", "seed": 1, "x.y": 5.0},
                         {"probe.model": "/m/opt-1.3b", "target.model": "/m/opt-13b", "seed": 1, "x.y": 5.0},
                         {"probe.model": "/m/opt-1.3b", "target.model": "/m/opt-6.7b", "seed": 1, "x.y": 5.0}])
    assert names == ["probe.model=opt-350m__target.model=opt-13b", "probe.model=opt-1.3b__target.model=opt-13b",
                     "probe.model=opt-1.3b__target.model=opt-6.7b"]
    assert point_names([{"select.percent": 5.0}, {"select.percent": 25.0}]) == ["percent=5", "percent=25"]
    # A long value is cut alone, so points differing only in the seed keep one label for it.
    long = tuple(f"family_{i}" for i in range(9))
    names = point_names([{"seed": s, "data.synthetic.families": f} for s in (1, 2) for f in ((), long)])
    assert names[1].startswith("seed=1__families=family_0+") and names[1].split("__")[1] == names[3].split("__")[1]
    assert len(names[1].split("__")[1]) == len("families=") + 40


@pytest.mark.parametrize("value,text", [(5.0, "5.0"), (3, "3"), (True, "True"), ("lp1", "lp1"),
                                        (("random", "full"), '("random", "full")'), (("random",), '("random",)'), ((), "()"),
                                        ((1, -1, 1), "(1, -1, 1)")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_overrides_reach_the_config_typed(tmp_path):
    over = {"select.percent": 5, "select.baselines": ("random",), "pretrain.enabled": False, "seed": 3,
            "mesh.shape": (1, -1, 1), "probe.model": "llama-micro"}
    (p,) = make_points([over], "configs/lp_app.py:micro", str(tmp_path))
    cfg = point_config(p)
    assert cfg.select.percent == 5.0 and isinstance(cfg.select.percent, float)  # as the launcher parses it
    assert cfg.select.baselines == ("random",) and cfg.pretrain.enabled is False and cfg.seed == 3
    assert tuple(cfg.mesh.shape) == (1, -1, 1)
    assert cfg.workdir == str(tmp_path / "points" / "point") and cfg.store == str(tmp_path / "store")


def test_sweep_file_duplicates_collapse_and_workdir_is_refused(tmp_path):
    f = tmp_path / "s.py"
    f.write_text("from launch.axes import product\nCONFIG = 'c.py'\n"
                 "def sweep():\n    return product({'seed': [1, 2]}) + [{'seed': 1}]\n")
    overrides, config = load_sweep(str(f))
    assert overrides == [{"seed": 1}, {"seed": 2}] and config == "c.py"
    f.write_text("def sweep():\n    return [{'workdir': 'x'}]\n")
    with pytest.raises(ValueError, match="workdir"):
        load_sweep(str(f))
