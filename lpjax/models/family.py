"""The model families lpjax runs, in one table keyed by transformers' model_type.

A family ties together a config dataclass (with ``from_hf``), the NNX module
it builds, the checkpoint tensor map (lpjax/models/convert.py) and what a
checkpoint may carry beyond it. lpjax/models/hf.py loads and saves every
family through this table; lpjax/models/registry.py builds probes and targets
from it, and only from the causal families.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from flax import nnx

from lpjax.models import bert, gpt2, llama, opt
from lpjax.errors import UserError
from lpjax.models.convert import Tensor


@dataclasses.dataclass(frozen=True)
class Family:
    config_cls: type
    model_cls: type
    tensor_map: Callable[[Any], dict[str, Tensor]]
    ignored: tuple[str, ...]  # regexes of checkpoint tensors to skip (buffers, unused heads)
    base_prefix: str  # the base model's prefix, absent from checkpoints saved from the base model alone
    causal: bool = True  # a decoder with the CausalLM interface, usable as a probe or target

    def is_ignored(self, name: str, cfg: Any) -> bool:
        # A tied head is the embedding: transformers drops a saved copy too.
        if name == "lm_head.weight" and getattr(cfg, "tie_word_embeddings", False):
            return True
        return any(re.search(p, name) for p in self.ignored)


_LLAMA = Family(llama.LlamaConfig, llama.LlamaForCausalLM, llama.hf_tensor_map, llama.HF_IGNORED, "model.")
FAMILIES: dict[str, Family] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "opt": Family(opt.OPTConfig, opt.OPTForCausalLM, opt.hf_tensor_map, opt.HF_IGNORED, "model."),
    "gpt2": Family(gpt2.GPT2Config, gpt2.GPT2LMHeadModel, gpt2.hf_tensor_map, gpt2.HF_IGNORED, "transformer."),
    "bert": Family(bert.BertConfig, bert.BertEncoder, bert.hf_tensor_map, bert.HF_IGNORED, "bert.", causal=False),
}


class CheckpointError(UserError, ValueError):
    """A checkpoint directory that does not match the model it describes
    (``path: what is wrong``)."""

    def __init__(self, path: str, message: str):
        super().__init__(path, message)


def family_for(hf_config: dict[str, Any], path: str = "config") -> Family:
    """The family of a transformers config.json dict."""
    model_type = hf_config.get("model_type")
    if model_type not in FAMILIES:
        raise CheckpointError(path, f"unsupported model_type {model_type!r}; supported: "
                                    f"{', '.join(FAMILIES)}")
    return FAMILIES[model_type]


def family_of_config(cfg: Any) -> Family:
    """The family of an lpjax config dataclass."""
    for fam in FAMILIES.values():
        if type(cfg) is fam.config_cls:
            return fam
    raise TypeError(f"no model family for config {type(cfg).__name__}")


def family_of_model(model: nnx.Module) -> Family:
    for fam in FAMILIES.values():
        if type(model) is fam.model_cls:
            return fam
    raise TypeError(f"no model family for {type(model).__name__}")


def abstract_module(cfg: Any) -> nnx.Module:
    """The module ``cfg`` describes, as shapes only (nnx.eval_shape): no
    memory for weights and no random init, ready to be filled."""
    model_cls = family_of_config(cfg).model_cls
    # Parameters carry logical axis names; placing them on a mesh is the
    # caller's job (lpjax/sharding.py), so no mesh is needed to build.
    with nnx.use_eager_sharding(False):
        return nnx.eval_shape(lambda: model_cls(cfg, nnx.Rngs(params=0)))
