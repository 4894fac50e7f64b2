"""Validation of the run's configuration (lpjax/config.py holds the dataclasses).

``finalize`` sets what follows from other settings (after the overrides);
``validate`` then checks every enum, range, path, cross-field rule and the
mesh divisibility before any stage runs, and names the offending field in a
``ConfigError``. ``lpjax/preflight.py`` comes next and reads what the named
paths hold. The launcher's order: parse flags, ``finalize``, ``validate``,
``preflight.check``.

Facts that belong to a domain are asked of it, one call each: a preset name
(models/registry.py), a metric's name and the probe epochs it reads
(selection/metrics.py), whether MiniLM is installed (selection/embed.py),
the synthetic task families (data/synthetic.py), a test-set spec
(evaluation/testsets.py), the mesh (sharding.py).
"""
import math
import os
from typing import Any
from urllib.parse import urlparse

from lpjax import sharding
from lpjax.config import (
    BASELINES, CLUSTER_METHODS, DATA_FORMATS, DTYPES, EXPORT_FORMATS, JUDGE_BACKENDS, PARTS, REMAT,
    SCORE_BUDGET_FIXED, SCORE_KINDS, SCORE_SOURCES, STRATIFY, SYNTHETIC, TEMPLATES, TRUNCATIONS, AnswersConfig,
    Config, ConfigError, JudgeConfig, SelectConfig, TrainConfig,
)
from lpjax.data.synthetic import select_families
from lpjax.evaluation.testsets import parse_spec
from lpjax.models import registry
from lpjax.selection import embed, metrics


def finalize(cfg: Config) -> Config:
    """Settings that follow from others (after the overrides): an IFD metric
    switches on the response-alone scoring pass; cluster.method=auto
    resolves to minilm (its weights installed, or cluster.embed_model set)
    or field."""
    try:
        if metrics.needs_response_only(cfg.select.metric):
            cfg.probe.score_response_only = True
    except ValueError:
        pass  # an unknown metric: validate() names it
    if cfg.cluster.method == "auto":
        # Resolved here, not in the cluster stage, so that the stage's key
        # names the method that ran (a store shared by machines with and
        # without MiniLM keeps both).
        cfg.cluster.method = "minilm" if embed.minilm_installed() or cfg.cluster.embed_model else "field"
    return cfg


def _one_of(path: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(path, f"{value!r} is not one of {', '.join(map(str, allowed))}")


def _at_least(path: str, value: float, low: float) -> None:
    if not value >= low:
        raise ConfigError(path, f"must be at least {low:g}, got {value!r}")


def _in_range(path: str, value: float, low: float, high: float, open_low: bool = False) -> None:
    ok = (low < value if open_low else low <= value) and value <= high
    if not ok:
        raise ConfigError(path, f"must be in {'(' if open_low else '['}{low:g}, {high:g}], got {value!r}")


def _exists(path: str, value: str, what: str = "file or directory") -> None:
    if not os.path.exists(value):
        raise ConfigError(path, f"{value}: no such {what}")


def _validate_train(path: str, t: TrainConfig, split: int) -> None:
    for name in ("epochs", "batch_size", "grad_accum", "pad_multiple", "log_every"):
        _at_least(f"{path}.{name}", getattr(t, name), 1)
    _at_least(f"{path}.checkpoint_every", t.checkpoint_every, 0)
    _in_range(f"{path}.lr", t.lr, 0, 1, open_low=True)
    _in_range(f"{path}.warmup_ratio", t.warmup_ratio, 0, 1)
    _at_least(f"{path}.weight_decay", t.weight_decay, 0)
    _in_range(f"{path}.b1", t.b1, 0, 1)
    _in_range(f"{path}.b2", t.b2, 0, 1)
    _at_least(f"{path}.max_grad_norm", t.max_grad_norm, 0)
    _one_of(f"{path}.remat", t.remat, REMAT)
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"{path}.batch_size", f"{t.batch_size} is not divisible by grad_accum={t.grad_accum}")
    if (t.batch_size // t.grad_accum) % split:
        raise ConfigError(f"{path}.batch_size", f"{t.batch_size} (/ grad_accum {t.grad_accum}) is not divisible "
                                                f"by the mesh's data x fsdp = {split}")


def _validate_model(path: str, spec: str, tokenizer: str, preset_tokenizer: bool, template: str) -> None:
    if os.path.isdir(spec):
        if not os.path.isfile(os.path.join(spec, "config.json")):
            raise ConfigError(f"{path}.model", f"{spec}: a directory without config.json, not a checkpoint")
    elif spec not in registry.PRESETS:
        raise ConfigError(f"{path}.model", f"{spec!r} is neither a preset ({', '.join(sorted(registry.PRESETS))}) "
                                           "nor a checkpoint directory")
    if tokenizer:
        _exists(f"{path}.tokenizer", tokenizer, "tokenizer directory")
    elif registry.is_preset(spec):
        if not preset_tokenizer:
            raise ConfigError(f"{path}.tokenizer", f"preset {spec!r} has no tokenizer: set {path}.tokenizer, "
                                                   "pretrain.enabled=True or data.train_tokenizer=True")
        if template == "chat":
            raise ConfigError("data.template", f"chat needs a tokenizer with a chat template; preset {spec!r} "
                                               f"uses the BPE trained on the data, which has none (set {path}.tokenizer)")


def mesh_split(cfg: Config, num_devices: int) -> int:
    """How many ways the mesh splits a batch's rows (data x fsdp)."""
    try:
        shape = sharding.mesh_shape(tuple(cfg.mesh.shape), num_devices)
    except ValueError as e:
        raise ConfigError("mesh.shape", str(e)) from None
    return math.prod(shape[:2])


def validate(cfg: Config, num_devices: int = 1) -> None:
    """Refuse a config that cannot work, before any stage runs: every enum,
    range, path, cross-field rule and the mesh divisibility; raises
    ConfigError naming the first offending field."""
    split = mesh_split(cfg, num_devices)
    d = cfg.data
    if d.source != SYNTHETIC:
        _exists("data.source", d.source)
    if d.test_source:
        _exists("data.test_source", d.test_source)
    _one_of("data.format", d.format, DATA_FORMATS)
    _one_of("data.template", d.template, TEMPLATES)
    _one_of("data.truncation", d.truncation, TRUNCATIONS)
    _at_least("data.limit", d.limit, 0)
    _at_least("data.test_size", d.test_size, 0)
    _at_least("data.max_len", d.max_len, 8)
    _at_least("data.synthetic.num_train", d.synthetic.num_train, 1)
    _in_range("data.synthetic.noise_fraction", d.synthetic.noise_fraction, 0, 1)
    _validate_families(d.synthetic.families)
    if d.train_tokenizer:
        _at_least("data.vocab_size", d.vocab_size, 259)  # the byte alphabet + pad/bos/eos
    pt = cfg.pretrain
    if pt.enabled:
        _at_least("pretrain.num_docs", pt.num_docs, 1)
        _at_least("pretrain.vocab_size", pt.vocab_size, 259)
        _at_least("pretrain.max_len", pt.max_len, 16)
        _in_range("pretrain.template_fraction", pt.template_fraction, 0, 1)
        _validate_train("pretrain.train", pt.train, split)
    preset_tokenizer = pt.enabled or d.train_tokenizer

    s = cfg.select
    try:
        metrics.hard_is_low(s.metric)
    except ValueError as e:
        raise ConfigError("select.metric", str(e)) from None
    _one_of("select.score", s.score, SCORE_KINDS)
    _in_range("select.percent", s.percent, 0, 100, open_low=True)
    for p in s.percents:
        _in_range("select.percents", p, 0, 100, open_low=True)
    _one_of("select.part", s.part, PARTS)
    for b in s.baselines:
        _one_of("select.baselines", b, BASELINES)
    for f in s.export_formats:
        _one_of("select.export_formats", f, EXPORT_FORMATS)
    _one_of("select.scores_from", s.scores_from, SCORE_SOURCES)
    _one_of("select.stratify", s.stratify, STRATIFY)
    _at_least("select.length_bins", s.length_bins, 1)
    _in_range("select.exclude_hardest", s.exclude_hardest, 0, 100)
    if s.exclude_hardest + s.percent > 100:
        raise ConfigError("select.exclude_hardest", f"{s.exclude_hardest:g} % left out leaves no room for "
                                                    f"select.percent={s.percent:g} %")
    _in_range("select.mix_random", s.mix_random, 0, 100)
    for i, other in enumerate(s.compare):
        _exists(f"select.compare[{i}]", other)

    c = cfg.cluster
    _one_of("cluster.method", c.method, CLUSTER_METHODS)
    if c.method == "file":
        if not c.file:
            raise ConfigError("cluster.file", "cluster.method=file needs a file of cluster ids")
        _exists("cluster.file", c.file, "file")
    elif c.file:
        raise ConfigError("cluster.file", f"is set, but cluster.method={c.method!r} does not read it; "
                                          "set cluster.method=file")
    if c.method in ("field", "auto") and not c.field:
        raise ConfigError("cluster.field", f"cluster.method={c.method} needs the name of a record field")
    if c.method == "minilm":
        _at_least("cluster.num_clusters", c.num_clusters, 1)
        if c.embed_model:
            _exists("cluster.embed_model", c.embed_model, "directory")
    if c.method == "none":
        if s.part != "low":
            raise ConfigError("select.part", f"{s.part!r} needs clusters (cluster.method); "
                                             "global selection takes the hard end")
        if "clust_rand" in s.baselines:
            raise ConfigError("select.baselines", "clust_rand needs clusters (cluster.method)")
    elif s.stratify != "none":
        raise ConfigError("select.stratify", f"{s.stratify} groups the pool by length instead of by cluster; "
                                             "set cluster.method=none to use it")

    p = cfg.probe
    if s.scores_from == "files":
        if not s.score_files:
            raise ConfigError("select.score_files", "select.scores_from=files needs a score directory")
        _exists("select.score_files", s.score_files, "directory")
        if metrics.needs_response_only(s.metric):
            raise ConfigError("select.metric", f"{s.metric!r} needs this run's probe (it scores responses alone); "
                                               "score files have no such pass")
    else:
        if s.score_files:
            raise ConfigError("select.score_files", "is set, but select.scores_from=probe; set "
                                                    "select.scores_from=files to select from it")
        _validate_model("probe", p.model, p.tokenizer, preset_tokenizer, d.template)
        _one_of("probe.compute_dtype", p.compute_dtype, DTYPES)
        _validate_train("probe.train", p.train, split)
        _at_least("probe.score_batch_size", p.score_batch_size, 1)
        if p.score_batch_size % split:
            raise ConfigError("probe.score_batch_size", f"{p.score_batch_size} is not divisible by the mesh's "
                                                        f"data x fsdp = {split}")
        _at_least("probe.score_token_budget", p.score_token_budget, SCORE_BUDGET_FIXED)
        if p.score_token_budget > 0 and p.score_token_budget < d.max_len * split:
            raise ConfigError("probe.score_token_budget", f"{p.score_token_budget} holds no batch of {split} "
                                                          f"rows of data.max_len={d.max_len} tokens")
        needed = metrics.epochs_needed(s.metric)
        if p.train.epochs < needed:
            raise ConfigError("probe.train.epochs", f"select.metric={s.metric!r} needs scores after epoch "
                                                    f"{needed}, but the probe trains {p.train.epochs}")

    t, e = cfg.target, cfg.evaluate
    if t.enabled:
        _validate_model("target", t.model, t.tokenizer, preset_tokenizer, d.template)
        _one_of("target.compute_dtype", t.compute_dtype, DTYPES)
        _validate_train("target.train", t.train, split)
    if e.enabled:
        if not t.enabled:
            raise ConfigError("evaluate.enabled", "evaluation needs tuned targets (target.enabled=True)")
        if not d.test_source and d.test_size == 0:
            raise ConfigError("evaluate.enabled", "no held-out split: set data.test_size > 0 or data.test_source")
        for name in ("max_new_tokens", "batch_size", "pad_multiple"):
            _at_least(f"evaluate.{name}", getattr(e, name), 1)
        if e.batch_size % split:  # evaluation scores and decodes on the mesh
            raise ConfigError("evaluate.batch_size", f"{e.batch_size} is not divisible by the mesh's "
                                                     f"data x fsdp = {split}")
        _validate_sets("evaluate.reference_sets", e.reference_sets)
        _at_least("evaluate.reference_limit", e.reference_limit, 0)
    elif e.reference_sets:
        raise ConfigError("evaluate.reference_sets", "reference sets are scored by evaluation "
                                                     "(evaluate.enabled=True)")

    _validate_answers(cfg.evaluate.answers, t.enabled, split)
    _validate_judge(cfg.evaluate.judge, cfg.evaluate.answers, s)

    m = cfg.distributed
    _at_least("distributed.num_processes", m.num_processes, 1)
    _in_range("distributed.process_id", m.process_id, 0, m.num_processes - 1)


def _validate_answers(a: AnswersConfig, target_enabled: bool, split: int) -> None:
    if not a.test_sets:
        return
    if not target_enabled:
        raise ConfigError("evaluate.answers.test_sets", "answers need tuned targets (target.enabled=True)")
    _validate_sets("evaluate.answers.test_sets", a.test_sets)
    for name in ("max_new_tokens", "batch_size", "pad_multiple"):
        _at_least(f"evaluate.answers.{name}", getattr(a, name), 1)
    if a.max_len <= a.max_new_tokens:
        raise ConfigError("evaluate.answers.max_len", f"{a.max_len} leaves no room for a prompt before "
                                                      f"max_new_tokens={a.max_new_tokens}")
    if a.batch_size % split:
        raise ConfigError("evaluate.answers.batch_size", f"{a.batch_size} is not divisible by the mesh's "
                                                         f"data x fsdp = {split}")


def _validate_sets(field_path: str, specs: tuple[str, ...]) -> None:
    names = set()
    for i, spec in enumerate(specs):
        path = f"{field_path}[{i}]"
        try:
            parsed = parse_spec(spec)
        except ValueError as e:
            raise ConfigError(path, str(e)) from None
        if parsed.name in names:
            raise ConfigError(path, f"set name {parsed.name!r} is used twice")
        names.add(parsed.name)
        _exists(path, parsed.path, "file")


def _validate_families(families: tuple[str, ...]) -> None:
    try:
        select_families(families)
    except ValueError as e:
        raise ConfigError("data.synthetic.families", str(e)) from None


def _validate_judge(j: JudgeConfig, a: AnswersConfig, s: SelectConfig) -> None:
    _one_of("evaluate.judge.backend", j.backend, JUDGE_BACKENDS)
    if j.backend == "none":
        return
    if not a.test_sets:
        raise ConfigError("evaluate.judge.backend", "judging needs answers: set evaluate.answers.test_sets")
    if not j.model:
        raise ConfigError("evaluate.judge.model", f"backend {j.backend} needs a model")
    if j.backend == "openai":
        url = urlparse(j.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError("evaluate.judge.base_url", f"{j.base_url!r} is not an http(s) URL "
                                                         "(e.g. http://127.0.0.1:8080/v1)")
        if j.api_key_env and not os.environ.get(j.api_key_env):
            raise ConfigError("evaluate.judge.api_key_env", f"environment variable {j.api_key_env} is not set")
    elif not os.path.isfile(os.path.join(j.model, "config.json")):
        raise ConfigError("evaluate.judge.model", f"{j.model}: not a checkpoint directory (no config.json)")
    for b in j.against:
        if b not in s.baselines:
            raise ConfigError("evaluate.judge.against", f"{b!r} is not among select.baselines {tuple(s.baselines)}")
    _at_least("evaluate.judge.temperature", j.temperature, 0)
    for name in ("max_tokens", "concurrency"):
        _at_least(f"evaluate.judge.{name}", getattr(j, name), 1)
    _at_least("evaluate.judge.max_retries", j.max_retries, 0)
    _at_least("evaluate.judge.bootstrap", j.bootstrap, 0)
    if not j.timeout > 0:
        raise ConfigError("evaluate.judge.timeout", f"must be positive, got {j.timeout!r}")
