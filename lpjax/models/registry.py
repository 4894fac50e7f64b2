"""Model presets and construction: one place that turns a name into a module.

A model spec is a preset name (the embedded tiny models). Checkpoint
directories (Hugging Face config.json) plug in here later.
"""
from __future__ import annotations

from flax import nnx

from lpjax.models.llama import LlamaConfig, LlamaForCausalLM

# Sizes for the embedded default: the probe is ~4x smaller than the target, as
# OPT-350M is to the paper's larger targets (both small enough for a CPU).
PRESETS: dict[str, dict] = {
    "llama-micro": dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1),
    "llama-tiny-probe": dict(hidden_size=64, intermediate_size=176, num_layers=2, num_heads=4, num_kv_heads=2),
    "llama-tiny-target": dict(hidden_size=128, intermediate_size=352, num_layers=4, num_heads=4, num_kv_heads=2),
}


def model_config(spec: str, vocab_size: int, compute_dtype: str = "float32") -> LlamaConfig:
    if spec not in PRESETS:
        raise ValueError(f"unknown model {spec!r}; presets: {', '.join(sorted(PRESETS))}")
    return LlamaConfig(vocab_size=vocab_size, compute_dtype=compute_dtype, **PRESETS[spec])


def build_model(cfg: LlamaConfig, seed: int) -> LlamaForCausalLM:
    # Parameters carry logical axis names; placing them on a mesh is the
    # caller's job (lpjax/sharding.py), so no mesh is needed to build.
    with nnx.use_eager_sharding(False):
        return LlamaForCausalLM(cfg, nnx.Rngs(params=seed))
