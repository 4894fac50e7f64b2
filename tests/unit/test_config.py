"""The typed config: every shipped config validates, and a config that
cannot work is refused with the offending field named."""
import dataclasses
import importlib

import pytest

from lpjax import config
from lpjax.config import Config, ConfigError
from lpjax.validate import finalize, validate


def micro() -> Config:
    return importlib.import_module("configs.lp_app").get_config("micro")


@pytest.mark.parametrize("name", ["lp_app", "lp", "select_only", "paper_opt_alpaca", "real_example", "self_select"])
def test_shipped_configs_are_typed_and_distinct(name):
    cfg = importlib.import_module(f"configs.{name}").get_config()
    assert isinstance(cfg, Config) and isinstance(cfg.probe.train, config.TrainConfig)
    # Sections are separate objects: changing the probe's training leaves the target's alone.
    cfg.probe.train.lr = 0.5
    assert cfg.target.train.lr != 0.5


def test_micro_and_lp_app_validate():
    validate(micro())
    validate(importlib.import_module("configs.lp_app").get_config())


def set_path(cfg, path, value):
    *parents, leaf = path.split(".")
    obj = cfg
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, leaf, value)


@pytest.mark.parametrize("path,value,field,needle", [
    ("data.synthetic.families", ("add", "fly"), "data.synthetic.families", "'fly' is not one of"),
    ("data.synthetic.families", ("add", "add"), "data.synthetic.families", "twice"),
    ("pretrain.template_fraction", 1.5, "pretrain.template_fraction", "[0, 1]"),
    ("select.stratify", "topic", "select.stratify", "not one of"),
    ("select.stratify", "length", "select.stratify", "cluster.method=none"),  # micro clusters by kind
    ("select.length_bins", 0, "select.length_bins", "at least 1"),
    ("select.exclude_hardest", -1.0, "select.exclude_hardest", "[0, 100]"),
    ("select.exclude_hardest", 80.0, "select.exclude_hardest", "leaves no room"),  # micro selects 25 %
    ("select.mix_random", 101.0, "select.mix_random", "[0, 100]"),
    ("select.baselines", ("random", "longish"), "select.baselines", "not one of"),
    ("cluster.field", "", "cluster.field", "needs the name of a record field"),
    ("evaluate.reference_sets", ("sinstruct=/nonexistent.jsonl",), "evaluate.reference_sets[0]", "no such file"),
    ("evaluate.reference_limit", -1, "evaluate.reference_limit", "at least 0"),
    ("data.template", "vicuna", "data.template", "not one of"),
    ("data.truncation", "cut", "data.truncation", "not one of"),
    ("select.metric", "lp_approx", "select.metric", "unknown metric"),
    ("select.percent", -5.0, "select.percent", "(0, 100]"),
    ("select.percent", 150.0, "select.percent", "(0, 100]"),
    ("select.score", "logits", "select.score", "not one of"),
    ("probe.train.remat", "some", "probe.train.remat", "not one of"),
    ("probe.train.lr", 0.0, "probe.train.lr", "(0, 1]"),
    ("probe.train.epochs", 0, "probe.train.epochs", "at least 1"),
    ("probe.compute_dtype", "float16", "probe.compute_dtype", "not one of"),
    ("probe.model", "llama-huge", "probe.model", "neither a preset"),
    ("target.model", "/nonexistent/ckpt", "target.model", "neither a preset"),
    ("data.source", "/nonexistent/data.json", "data.source", "no such file"),
    ("data.test_source", "/nonexistent/test.json", "data.test_source", "no such file"),
    ("cluster.method", "kmeans", "cluster.method", "not one of"),
    ("cluster.file", "/nonexistent/clusters.json", "cluster.file", "does not read it"),
    ("select.scores_from", "files", "select.score_files", "needs a score directory"),
    ("select.score_files", "/x", "select.score_files", "scores_from=probe"),
    ("select.compare", ("/nonexistent/scores",), "select.compare[0]", "no such"),
    ("mesh.shape", (3, 1, 1), "mesh.shape", "devices"),
    ("evaluate.batch_size", 0, "evaluate.batch_size", "at least 1"),
    ("probe.score_token_budget", -2, "probe.score_token_budget", "at least -1"),
    ("probe.score_token_budget", 64, "probe.score_token_budget", "holds no batch"),
    ("pretrain.vocab_size", 100, "pretrain.vocab_size", "at least 259"),
    ("pretrain.train.batch_size", 0, "pretrain.train.batch_size", "at least 1"),
])
def test_bad_values_are_refused_naming_the_field(path, value, field, needle):
    cfg = micro()
    set_path(cfg, path, value)
    with pytest.raises(ConfigError) as err:
        validate(cfg, num_devices=1)
    assert err.value.field == field and needle in err.value.message, str(err.value)


@pytest.mark.parametrize("path,value", [("select.part", "mid"), ("select.baselines", ("random", "clust_rand"))])
def test_cluster_rules_need_clusters(path, value):
    cfg = micro()
    cfg.cluster.method = "none"
    set_path(cfg, path, value)
    with pytest.raises(ConfigError, match="needs clusters") as err:
        validate(cfg)
    assert err.value.field == path


def test_auto_clusters_resolve_to_what_is_installed(monkeypatch):
    from lpjax.selection import embed

    cfg = importlib.import_module("configs.lp_app").get_config()
    assert (cfg.cluster.method, cfg.cluster.field) == ("auto", "kind")
    monkeypatch.setattr(embed, "default_model_dir", lambda: (_ for _ in ()).throw(FileNotFoundError("no")))
    assert finalize(cfg).cluster.method == "field"
    cfg = importlib.import_module("configs.lp_app").get_config()
    monkeypatch.setattr(embed, "default_model_dir", lambda: "/somewhere")
    assert finalize(cfg).cluster.method == "minilm"


def test_batch_sizes_must_split_over_the_mesh():
    cfg = micro()
    cfg.mesh.shape = (-1, 1, 1)
    validate(cfg, num_devices=8)  # 16-row batches over 8 devices
    cfg.target.train.batch_size = 12
    with pytest.raises(ConfigError, match=r"target.train.batch_size: 12 .*data x fsdp = 8"):
        validate(cfg, num_devices=8)
    cfg = micro()
    cfg.probe.train.grad_accum = 3
    with pytest.raises(ConfigError, match="probe.train.batch_size: 16 is not divisible by grad_accum=3"):
        validate(cfg)


def test_evaluation_batches_must_split_over_the_mesh():
    """Held-out evaluation scores and decodes on the run's mesh, as answers do."""
    cfg = micro()
    cfg.mesh.shape = (2, -1, 1)
    cfg.evaluate.batch_size = 12
    validate(cfg, num_devices=4)  # data x fsdp = 2 x 2
    with pytest.raises(ConfigError, match=r"evaluate.batch_size: 12 is not divisible by the mesh's data x fsdp = 16"):
        validate(cfg, num_devices=16)
    cfg.mesh.shape = (1, 1, -1)  # tensor parallelism alone splits no rows
    validate(cfg, num_devices=16)
    cfg.evaluate.enabled = False  # no evaluation, no rule
    cfg.mesh.shape = (-1, 1, 1)
    validate(cfg, num_devices=8)


@pytest.mark.parametrize("changes,error", [
    ({"select.metric": "lp3"}, "probe.train.epochs: .*after epoch 3"),  # the micro probe trains one epoch
    ({"target.enabled": False}, "evaluate.enabled: evaluation needs tuned targets"),
    ({"data.test_size": 0}, "evaluate.enabled: no held-out split"),
    ({"pretrain.enabled": False}, "probe.tokenizer: preset 'llama-micro' has no tokenizer"),
    ({"data.template": "chat"}, "data.template: chat needs a tokenizer with a chat template"),
])
def test_cross_field_rules(changes, error):
    cfg = micro()
    for path, value in changes.items():
        set_path(cfg, path, value)
    with pytest.raises(ConfigError, match=error):
        validate(cfg)


def test_selection_alone_needs_no_target():
    cfg = micro()
    cfg.target.enabled = cfg.evaluate.enabled = False
    validate(cfg)


def test_ifd_switches_on_the_response_alone_pass():
    cfg = micro()
    assert not finalize(cfg).probe.score_response_only
    cfg.select.metric = "ifd1"
    assert finalize(cfg).probe.score_response_only


def test_every_section_is_a_dataclass_without_dual_meaning_fields():
    # Fields that once meant several things are gone (select.clusters,
    # data.tokenizer, select.scores, stages).
    cfg = Config()
    assert not hasattr(cfg.select, "clusters") and not hasattr(cfg.select, "scores")
    assert not hasattr(cfg.data, "tokenizer") and not hasattr(cfg, "stages")
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        assert dataclasses.is_dataclass(value) or isinstance(value, (str, int))
