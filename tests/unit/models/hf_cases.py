"""Tiny random transformers checkpoints, one per family and quirk, for parity tests.

Each case builds a PyTorch model from a tiny config (seeded), spreads its
weights wider than the default init so that outputs and generations are
not degenerate, and saves it with `save_pretrained` (safetensors). Some
cases then rewrite config.json in an older style (rope_theta/rope_scaling)
that transformers still reads; the reference model is always reloaded from
the directory, so both sides read the same file.
"""
from __future__ import annotations

import json
import os

import numpy as np

VOCAB = 96


def _llama(**kw):
    from transformers import LlamaConfig

    base = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    base.update(kw)
    return LlamaConfig(**base)


def _mistral(**kw):
    from transformers import MistralConfig

    return MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, **kw)


def _opt(**kw):
    from transformers import OPTConfig

    return OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=64, **kw)


def _gpt2(**kw):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
                      eos_token_id=2, **kw)


def _old_style_linear_rope(cfg: dict) -> dict:
    """transformers 4's keys: rope_theta at top level and rope_scaling {type, factor}."""
    cfg.pop("rope_parameters", None)
    cfg["rope_theta"] = 500.0
    cfg["rope_scaling"] = {"type": "linear", "factor": 2.0}
    return cfg


# name -> (config factory, config.json rewrite or None)
CASES = {
    # GQA (2 kv heads for 4 query heads), untied head, biases on attention and MLP.
    "llama_gqa_untied_bias": (lambda: _llama(tie_word_embeddings=False, attention_bias=True, mlp_bias=True), None),
    # Tied head, explicit head_dim != hidden/heads, old-style rope_scaling linear.
    "llama_tied_linear_rope": (lambda: _llama(tie_word_embeddings=True, head_dim=16), _old_style_linear_rope),
    # transformers 5 rope_parameters with Llama 3.1 frequency bands, MQA.
    "llama3_rope_parameters": (lambda: _llama(num_key_value_heads=1, rope_parameters={
        "rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8}), None),
    "mistral_sliding_window": (lambda: _mistral(sliding_window=4), None),
    "opt_pre_ln": (lambda: _opt(), None),
    # OPT-350M's shape: post-LN and a narrower word embedding projected in and out.
    "opt_post_ln_proj": (lambda: _opt(do_layer_norm_before=False, word_embed_proj_dim=16), None),
    "gpt2": (lambda: _gpt2(), None),
}

FAMILY_CASES = ["llama_gqa_untied_bias", "opt_post_ln_proj", "gpt2"]


def spread_weights(model, seed: int = 0) -> None:
    """Matrices ~ N(0, 0.15^2), norm scales ~ 1 + N(0, 0.1^2), biases ~ N(0, 0.1^2)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() >= 2:
                p.copy_(0.15 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(1.0 + 0.1 * noise)


def make_checkpoint(name: str, out_dir: str, seed: int = 0, **save_kwargs):
    """Save case `name` to out_dir; returns the transformers reference model, reloaded from out_dir."""
    import torch
    from transformers import AutoModelForCausalLM

    factory, rewrite = CASES_ALL[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(factory())
    spread_weights(model, seed)
    model.save_pretrained(out_dir, safe_serialization=True, **save_kwargs)
    if rewrite is not None:
        path = os.path.join(out_dir, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        with open(path, "w") as f:
            json.dump(rewrite(cfg), f, indent=2)
    return reference_model(out_dir)


def reference_model(path: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()


def torch_logits(model, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    import torch

    with torch.no_grad():
        kwargs = {} if mask is None else {"attention_mask": torch.as_tensor(mask)}
        return model(torch.as_tensor(ids, dtype=torch.long), **kwargs).logits.float().numpy()


def torch_response_loss(model, examples) -> np.ndarray:
    """Mean response-token cross-entropy per example, computed by the
    reference model on one right-padded batch with an attention mask."""
    n = max(len(ex.ids) for ex in examples)
    ids = np.zeros((len(examples), n), np.int64)
    mask = np.zeros((len(examples), n), np.int64)
    for i, ex in enumerate(examples):
        ids[i, : len(ex.ids)] = ex.ids
        mask[i, : len(ex.ids)] = 1
    logits = torch_logits(model, ids, mask).astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    out = []
    for i, ex in enumerate(examples):
        losses = [-logp[i, t - 1, ex.ids[t]] for t in range(max(ex.prompt_len, 1), len(ex.ids))]
        out.append(np.mean(losses) if losses else 0.0)
    return np.array(out)


# Dynamic NTK rope depends on the longest position of each call, so it is
# compared on single unpadded forwards only (tests/models/test_hf_parity.py).
EXTRA_CASES = {
    "llama_dynamic_rope": (lambda: _llama(max_position_embeddings=8, rope_parameters={
        "rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}), None),
    # OPT flags no released model uses, checked by the save/reload round trip.
    "opt_no_bias_no_affine": (lambda: _opt(enable_bias=False, layer_norm_elementwise_affine=False), None),
}
CASES_ALL = {**CASES, **EXTRA_CASES}


def lpjax_logits(model, ids: np.ndarray) -> np.ndarray:
    """The model's logits through one jitted call (faster than eager on tiny models)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, params = nnx.split(model)
    return np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, jnp.asarray(ids, jnp.int32)))
