"""Model specs and construction: one place that turns a name into a probe or
target model.

A model spec is either a preset name (the embedded tiny models) or a local
Hugging Face checkpoint directory (config.json + safetensors) of a causal
family in lpjax/models/family.py: Llama/Mistral, OPT or GPT-2. The BERT
family is an encoder (sentence embeddings) and is refused here.
"""
from __future__ import annotations

import os

from flax import nnx

from lpjax.models import hf
from lpjax.models.family import FAMILIES, CheckpointError, abstract_module, family_for, family_of_config
from lpjax.models.gpt2 import GPT2Config
from lpjax.models.llama import LlamaConfig
from lpjax.models.opt import OPTConfig

# Sizes for the embedded default: the probe is ~4x smaller than the target, as
# OPT-350M is to the paper's larger targets (both small enough for a CPU).
PRESETS: dict[str, dict] = {
    "llama-micro": dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
    "llama-tiny-probe": dict(hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4, num_kv_heads=2),
    "llama-tiny-target": dict(hidden_size=128, intermediate_size=352, num_layers=4, num_heads=4, num_kv_heads=2),
}

ModelConfig = LlamaConfig | OPTConfig | GPT2Config


def is_checkpoint(spec: str) -> bool:
    return hf.is_checkpoint_dir(spec)


def is_preset(spec: str) -> bool:
    """A model spec that names a preset, not a checkpoint directory."""
    return spec in PRESETS and not os.path.isdir(spec)


def _not_causal(where: str, what: str) -> CheckpointError:
    causal = ", ".join(name for name, fam in FAMILIES.items() if fam.causal)
    return CheckpointError(where, f"{what} is an encoder, not a causal language model; a probe or target must be one "
                                  f"of: {causal}")


def model_config(spec: str, vocab_size: int | None = None, compute_dtype: str = "float32") -> ModelConfig:
    """The config of a preset (sized to ``vocab_size``) or of a checkpoint
    directory (its own vocabulary, which must hold ``vocab_size`` tokens)."""
    if is_checkpoint(spec):
        hf_config = hf.read_config(spec)
        if not family_for(hf_config, spec).causal:
            raise _not_causal(spec, f"model_type {hf_config['model_type']!r}")
        cfg = hf.config_from_hf(hf_config, compute_dtype, spec)
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
        raise CheckpointError(spec, f"the tokenizer has {tokenizer_vocab} tokens but the model's embedding only "
                                    f"{model_vocab} rows; use the checkpoint's own tokenizer")


def build_model(cfg: ModelConfig, seed: int) -> nnx.Module:
    """A randomly initialized model of any causal family."""
    fam = family_of_config(cfg)
    if not fam.causal:
        raise ValueError(f"{type(cfg).__name__} is an encoder, not a causal language model")
    # Parameters carry logical axis names; placing them on a mesh is the
    # caller's job (lpjax/sharding.py), so no mesh is needed to build.
    with nnx.use_eager_sharding(False):
        return fam.model_cls(cfg, nnx.Rngs(params=seed))


def load_model(spec: str, vocab_size: int | None = None, seed: int = 0, compute_dtype: str = "float32") -> nnx.Module:
    """A preset, randomly initialized from ``seed``, or a checkpoint
    directory with its pretrained weights (``seed`` unused)."""
    cfg = model_config(spec, vocab_size, compute_dtype)
    if is_checkpoint(spec):
        return hf.load_hf(spec, compute_dtype=compute_dtype)[0]
    return build_model(cfg, seed)


def abstract_model(spec: str, vocab_size: int | None = None, compute_dtype: str = "float32") -> nnx.Module:
    """The structure ``load_model`` would return, as shapes only: built from
    the preset or the checkpoint's config.json, reading no weights and
    running no random init. For a caller about to restore tuned parameters
    (Orbax) into it, so a 13B checkpoint is not streamed from disk first."""
    return abstract_module(model_config(spec, vocab_size, compute_dtype))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


def tokenizer_path(spec: str) -> str | None:
    """The tokenizer directory that goes with a model spec: the checkpoint
    directory itself, or None for a preset (its tokenizer comes from the data)."""
    if not is_checkpoint(spec):
        return None
    if not any(os.path.isfile(os.path.join(spec, f)) for f in TOKENIZER_FILES):
        raise CheckpointError(spec, f"checkpoint directory has no tokenizer ({', '.join(TOKENIZER_FILES)}); "
                                    "add one or set <side>.tokenizer")
    return spec
