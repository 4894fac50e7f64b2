"""What the probe, target, evaluate and answers stages share: each side's
tokenizer, model and encoding, the tuned target, the mesh."""
from __future__ import annotations

import json
import os
from typing import Any

from flax import nnx

from lpjax import sharding
from lpjax.data import formats, tokenize
from lpjax.data.tokenizer import load_tokenizer
from lpjax.models import registry
from lpjax.training.checkpoint import load_params
from lpjax.workdir import StageResult

# The data settings every model-facing stage encodes records with.
ENCODE = ("data.max_len", "data.template", "data.truncation")


def model_spec(side: Any, base: StageResult | None) -> str:
    """What a side's model is loaded from: its pretrained base (a preset
    after the base stage), else its own spec (a checkpoint or a preset)."""
    return base.summary["model"] if base is not None else side.model


def tokenizer_dir(side: Any, data: StageResult, base: StageResult | None) -> str:
    """A side's tokenizer: its explicit ``tokenizer``, else its checkpoint's
    (or pretrained base's) own, else (a preset) the BPE the data stage trained."""
    if side.tokenizer:
        return side.tokenizer
    if (path := registry.tokenizer_path(model_spec(side, base))) is not None:
        return path
    return os.path.join(data.dir, "tokenizer")


def side_tokenizer(side: Any, data: StageResult, base: StageResult | None):
    return load_tokenizer(tokenizer_dir(side, data, base))


def side_model(side: Any, data: StageResult, base: StageResult | None, seed: int) -> tuple[Any, Any]:
    """(tokenizer, model) of the probe or the target section: its base or
    checkpoint with its weights, or a preset initialized from ``seed``."""
    tok = side_tokenizer(side, data, base)
    return tok, registry.load_model(model_spec(side, base), len(tok), seed, side.compute_dtype)


def tuned_target(side: Any, data: StageResult, base: StageResult | None, target: StageResult,
                 mesh: Any) -> tuple[Any, nnx.GraphDef, Any]:
    """(tokenizer, graphdef, params) of the target a target/<subset> stage
    tuned (``target``: its result; ``side``: the target config section),
    the params read from its params/ straight onto ``mesh`` as
    lpjax/sharding.py's rules place them. Only the model's structure is
    built: the tuned params replace every weight, so the pretrained
    checkpoint is never read. Every reader of a tuned target (evaluate,
    answers) loads it here."""
    tok = side_tokenizer(side, data, base)
    graphdef, like = nnx.split(registry.abstract_model(model_spec(side, base), len(tok), side.compute_dtype))
    params = load_params(os.path.join(target.dir, "params"), like, sharding.param_shardings(like, mesh))
    return tok, graphdef, params


def encode(data_cfg: Any, tok: Any, records: list[dict]) -> list[tokenize.Example]:
    return tokenize.encode_all(tok, records, data_cfg.max_len, data_cfg.template, data_cfg.truncation)


def read_split(data: StageResult, split: str) -> list[dict]:
    return formats.load_records(os.path.join(data.dir, f"{split}.jsonl"), "jsonl")


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def make_mesh(mesh_cfg: Any):
    return sharding.make_mesh(tuple(mesh_cfg.shape))
