"""Model specs and construction: one place that turns a name into a module.

A model spec is either a preset name (the embedded tiny models) or a local
Hugging Face checkpoint directory (config.json + safetensors; Llama/Mistral,
OPT or GPT-2, see lpjax/models/hf.py).
"""
from __future__ import annotations

import json
import os
from typing import Any

from flax import nnx

from lpjax.models import hf
from lpjax.models.gpt2 import GPT2Config, GPT2LMHeadModel
from lpjax.models.llama import LlamaConfig, LlamaForCausalLM
from lpjax.models.opt import OPTConfig, OPTForCausalLM

# Sizes for the embedded default: the probe is ~4x smaller than the target, as
# OPT-350M is to the paper's larger targets (both small enough for a CPU).
PRESETS: dict[str, dict] = {
    "llama-micro": dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
    "llama-tiny-probe": dict(hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4, num_kv_heads=2),
    "llama-tiny-target": dict(hidden_size=128, intermediate_size=352, num_layers=4, num_heads=4, num_kv_heads=2),
}

MODEL_CLASSES: dict[type, type] = {
    LlamaConfig: LlamaForCausalLM,
    OPTConfig: OPTForCausalLM,
    GPT2Config: GPT2LMHeadModel,
}

ModelConfig = LlamaConfig | OPTConfig | GPT2Config


def is_checkpoint(spec: str) -> bool:
    return hf.is_checkpoint_dir(spec)


def model_config(spec: str, vocab_size: int | None = None, compute_dtype: str = "float32") -> ModelConfig:
    """The config of a preset (sized to ``vocab_size``) or of a checkpoint
    directory (its own vocabulary, which must hold ``vocab_size`` tokens)."""
    if is_checkpoint(spec):
        cfg = hf.config_from_hf(hf.read_config(spec), compute_dtype, spec)
        check_vocab(spec, cfg.vocab_size, vocab_size)
        return cfg
    if spec not in PRESETS:
        hint = " (a directory without config.json)" if os.path.isdir(spec) else ""
        raise ValueError(f"unknown model {spec!r}{hint}; presets: {', '.join(sorted(PRESETS))}, "
                         "or a Hugging Face checkpoint directory")
    if vocab_size is None:
        raise ValueError(f"preset {spec!r} needs a vocab_size (the tokenizer's length)")
    return LlamaConfig(vocab_size=vocab_size, compute_dtype=compute_dtype, **PRESETS[spec])


def check_vocab(spec: str, model_vocab: int, tokenizer_vocab: int | None) -> None:
    # Checkpoints often have more embedding rows than tokens (OPT: 50272 for
    # 50265 tokens, padded for speed); fewer would index out of the table.
    if tokenizer_vocab is not None and tokenizer_vocab > model_vocab:
        raise ValueError(f"{spec}: the tokenizer has {tokenizer_vocab} tokens but the model's embedding only "
                         f"{model_vocab} rows")


def build_model(cfg: ModelConfig, seed: int) -> nnx.Module:
    """A randomly initialized model of any family."""
    # Parameters carry logical axis names; placing them on a mesh is the
    # caller's job (lpjax/sharding.py), so no mesh is needed to build.
    with nnx.use_eager_sharding(False):
        return MODEL_CLASSES[type(cfg)](cfg, nnx.Rngs(params=seed))


def load_model(spec: str, vocab_size: int | None = None, seed: int = 0, compute_dtype: str = "float32") -> nnx.Module:
    """A preset, randomly initialized from ``seed``, or a checkpoint
    directory with its pretrained weights (``seed`` unused)."""
    if is_checkpoint(spec):
        model, _ = hf.load_hf(spec, compute_dtype=compute_dtype)
        check_vocab(spec, model.cfg.vocab_size, vocab_size)
        return model
    return build_model(model_config(spec, vocab_size, compute_dtype), seed)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def tokenizer_path(spec: str) -> str | None:
    """The tokenizer directory that goes with a model spec: the checkpoint
    directory itself, or None for a preset (its tokenizer comes from the data)."""
    if not is_checkpoint(spec):
        return None
    if not any(os.path.isfile(os.path.join(spec, f)) for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{spec}: checkpoint directory has no tokenizer ({', '.join(TOKENIZER_FILES)})")
    return spec


def tokenizer_kwargs(path: str) -> dict[str, Any]:
    """Extra AutoTokenizer arguments a directory needs.

    A SentencePiece-only Llama directory (tokenizer.model, no tokenizer.json)
    is converted by transformers 5 without the BOS token Llama prepends,
    unless its tokenizer_config.json says add_bos_token: restore it."""
    if os.path.isfile(os.path.join(path, "tokenizer.json")) or not os.path.isfile(os.path.join(path, "tokenizer.model")):
        return {}
    config_file = os.path.join(path, "tokenizer_config.json")
    tok_cfg = {}
    if os.path.isfile(config_file):
        with open(config_file) as f:
            tok_cfg = json.load(f)
    model_type = hf.read_config(path).get("model_type") if hf.is_checkpoint_dir(path) else "llama"
    if "add_bos_token" not in tok_cfg and model_type in ("llama", "mistral"):
        return {"add_bos_token": True}
    return {}


def load_tokenizer(path: str):
    """AutoTokenizer for a tokenizer or checkpoint directory, offline."""
    from transformers import AutoTokenizer

    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a tokenizer directory")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **tokenizer_kwargs(path))
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{path}: tokenizer has no eos token; responses must end with one")
    return tokenizer
