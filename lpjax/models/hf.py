"""Hugging Face checkpoint directories in and out, without torch.

`load_hf` reads `config.json`, picks the family by `model_type`
(lpjax/models/family.py), builds the module abstractly (no random init) and
streams the safetensors tensors into it one at a time (single file or
sharded with an index), so the host never holds two full copies of the
weights. `save_hf` writes config.json, sharded
safetensors in transformers' names and layouts, and the tokenizer, so that
`transformers.AutoModelForCausalLM.from_pretrained(out_dir)` opens it.

Every mismatch between checkpoint and model is an error that names the
tensor: missing, unexpected (known buffers such as rotary `inv_freq` are
ignored), or of the wrong shape.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from lpjax import atomic
from lpjax.models.family import CheckpointError, abstract_module, family_for, family_of_model

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def is_checkpoint_dir(path: str) -> bool:
    """A directory with a transformers config.json (weights are checked on load)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG))


def read_config(path: str) -> dict[str, Any]:
    file = os.path.join(path, CONFIG)
    if not os.path.isfile(file):
        raise CheckpointError(path, f"no {CONFIG}; not a Hugging Face checkpoint directory")
    try:
        with open(file, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(file, f"not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(file, f"expected a JSON object, got {type(config).__name__}")
    return config


def config_from_hf(hf_config: dict[str, Any], compute_dtype: str = "float32", path: str = "config"):
    """The lpjax config dataclass of a transformers config.json dict (which
    it keeps, for save_hf)."""
    family = family_for(hf_config, path)
    try:
        cfg = family.config_cls.from_hf(hf_config, compute_dtype)
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError) as e:
        # A field missing, of the wrong type or unsupported in the user's config.json.
        what = f"field {e.args[0]!r} is missing" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(os.path.join(path, CONFIG), f"{what}; not a {hf_config.get('model_type')} config "
                                                          "lpjax can build") from None
    return dataclasses.replace(cfg, hf_source=json.dumps(hf_config, sort_keys=True))


def _weight_files(path: str) -> dict[str, str]:
    """Checkpoint tensor name -> safetensors file."""
    from safetensors import safe_open

    index = os.path.join(path, INDEX)
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for file in sorted(set(weight_map.values())):
            if not os.path.isfile(os.path.join(path, file)):
                raise CheckpointError(path, f"{INDEX} names {file}, which is missing")
        return {name: os.path.join(path, file) for name, file in weight_map.items()}
    single = os.path.join(path, SAFETENSORS)
    if os.path.isfile(single):
        try:
            with safe_open(single, framework="numpy") as f:
                return {name: single for name in f.keys()}
        except Exception as e:  # safetensors' own error types: a truncated or corrupt header
            raise CheckpointError(single, f"cannot read safetensors ({type(e).__name__}: {e})") from None
    others = [f for f in os.listdir(path) if f.endswith((".bin", ".pt", ".pth", ".gguf"))]
    hint = f" (found {', '.join(sorted(others))}; re-save with save_pretrained(safe_serialization=True))" if others else ""
    raise CheckpointError(path, f"no {SAFETENSORS} or {INDEX}{hint}")


def _canonical_names(names: list[str], prefix: str) -> dict[str, str]:
    """Checkpoint name -> the name transformers' *ForCausalLM uses.

    Checkpoints saved from the base model (the original GPT-2 and OPT files)
    lack the `transformer.` / `model.` prefix."""
    if not prefix or any(n.startswith(prefix) for n in names):
        return {n: n for n in names}
    return {n: n if n.startswith("lm_head.") else prefix + n for n in names}


def _shape_error(path: str, name: str, got, want) -> CheckpointError:
    return CheckpointError(path, f"tensor {name} has shape {tuple(got)} in the checkpoint, "
                           f"but the model built from {CONFIG} expects {tuple(want)}")


def _list_problems(kind: str, names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return f"{kind}: {shown}"


def check_checkpoint(path: str) -> dict[str, Any]:
    """Check a checkpoint directory without reading a weight: config.json,
    its model_type, the safetensors files, every tensor's name and shape
    (from the safetensors headers). Raises CheckpointError naming what is
    wrong; returns the config.json dict."""
    return _plan(path, "float32")[0]


def _plan(path: str, compute_dtype: str):
    """Everything load_hf needs before it reads data, every mismatch checked."""
    from safetensors import safe_open

    hf_config = read_config(path)
    fam = family_for(hf_config, path)
    cfg = config_from_hf(hf_config, compute_dtype, path)
    graphdef, state = nnx.split(abstract_module(cfg))
    variables = dict(nnx.to_flat_state(state))
    tensor_map = fam.tensor_map(cfg)
    assert set(t.path for t in tensor_map.values()) == set(variables), "internal: tensor map does not cover the model"

    files = _weight_files(path)
    canonical = _canonical_names(list(files), fam.base_prefix)
    present = {canonical[n]: n for n in files}
    missing = [n for n in tensor_map if n not in present]
    unexpected = sorted(n for n in present if n not in tensor_map and not fam.is_ignored(n, cfg))
    problems = []
    if missing:
        problems.append(_list_problems("missing tensors", missing))
    if unexpected:
        problems.append(_list_problems("unexpected tensors", unexpected))
    if problems:
        raise CheckpointError(path, f"does not match its {CONFIG} ({hf_config.get('model_type')}): "
                              + "; ".join(problems))

    by_file: dict[str, list[str]] = {}
    for name in tensor_map:
        by_file.setdefault(files[present[name]], []).append(name)
    # Check every shape before reading any data, so a bad checkpoint fails fast.
    for file, names in by_file.items():
        try:
            with safe_open(file, framework="numpy") as f:
                for name in names:
                    t = tensor_map[name]
                    want = t.transform.hf_shape(t.shape(variables[t.path].get_value().shape))
                    got = tuple(f.get_slice(present[name]).get_shape())
                    if got != want:
                        raise _shape_error(path, name, got, want)
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types for a truncated or corrupt file
            raise CheckpointError(file, f"cannot read safetensors ({type(e).__name__}: {e})") from None
    return hf_config, graphdef, state, variables, tensor_map, present, by_file


def load_hf(path: str, compute_dtype: str = "float32", param_dtype: str = "float32") -> tuple[nnx.Module, dict]:
    """(model, hf_config dict) from a local transformers checkpoint directory.

    Parameters are stored in ``param_dtype`` (fp32 master weights by
    default) whatever dtype the checkpoint holds; activations run in
    ``compute_dtype``."""
    from safetensors import safe_open

    hf_config, graphdef, state, variables, tensor_map, present, by_file = _plan(path, compute_dtype)
    dtype = np.dtype(param_dtype) if param_dtype != "bfloat16" else jnp.bfloat16
    # A stacked layer parameter is gathered on the host from its layers'
    # tensors (which may lie in different shards) and goes to the device
    # once complete, so the host holds at most the incomplete ones.
    pending = collections.Counter(t.path for t in tensor_map.values())
    stacks: dict[tuple, np.ndarray] = {}
    for file, names in sorted(by_file.items()):
        with safe_open(file, framework="numpy") as f:
            for name in names:
                t = tensor_map[name]
                var = variables[t.path]
                shape = var.get_value().shape
                array = t.transform.to_lpjax(f.get_tensor(present[name]), t.shape(shape)).astype(dtype)
                if t.layer is not None:
                    stack = stacks.setdefault(t.path, np.empty(shape, dtype))
                    stack[t.layer] = array
                    array = stack
                pending[t.path] -= 1
                if not pending[t.path]:
                    var.set_value(jnp.asarray(array))
                    stacks.pop(t.path, None)
                del array
    return nnx.merge(graphdef, state), hf_config


def _token_ids(tokenizer) -> dict[str, int]:
    out = {}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            out[key] = int(value)
    return out


def hf_config_for(model: nnx.Module, hf_config: dict | None = None) -> dict[str, Any]:
    """The config.json to save with `model`: the original one (``hf_config``,
    else the one the model was loaded from; checked to describe the same
    architecture) with the vocabulary size and dtype updated, or, for a
    model built from a preset, one generated from its config."""
    cfg = model.cfg
    fam = family_of_model(model)
    if hf_config is None and cfg.hf_source is not None:
        hf_config = json.loads(cfg.hf_source)
    if hf_config is None:
        out = cfg.to_hf()
    else:
        reread = fam.config_cls.from_hf(hf_config, cfg.compute_dtype)
        differ = [f.name for f in dataclasses.fields(cfg)
                  if f.compare and f.name != "vocab_size" and getattr(reread, f.name) != getattr(cfg, f.name)]
        if differ:
            raise ValueError(f"hf_config describes another architecture than the model: fields {differ} differ")
        out = dict(hf_config)
        out["vocab_size"] = cfg.vocab_size
    for key in ("torch_dtype", "quantization_config", "_name_or_path"):
        out.pop(key, None)
    out["dtype"] = "float32"
    return out


def save_hf(model: nnx.Module, out_dir: str, tokenizer: Any = None, hf_config: dict | None = None,
            max_shard_bytes: int = 2 * 1024**3) -> str:
    """Write `model` as a transformers checkpoint directory (fp32 weights).

    ``tokenizer``: a tokenizer object, or the path of a tokenizer directory
    (re-saved with AutoTokenizer). Shards hold at most ``max_shard_bytes``,
    so only one shard's tensors are ever copied out at a time. The directory
    is built aside and swapped in whole (lpjax.atomic), replacing any earlier
    one. Returns out_dir."""
    from safetensors.numpy import save_file

    fam = family_of_model(model)
    config = hf_config_for(model, hf_config)
    if isinstance(tokenizer, (str, os.PathLike)):
        from lpjax.data.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(str(tokenizer))
    if tokenizer is not None:
        for key, value in _token_ids(tokenizer).items():
            config.setdefault(key, value)

    variables = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    tensor_map = fam.tensor_map(model.cfg)
    nbytes = {name: 4 * int(np.prod(t.shape(variables[t.path].get_value().shape))) for name, t in tensor_map.items()}
    shards: list[list[str]] = [[]]
    size = 0
    for name in tensor_map:
        if shards[-1] and size + nbytes[name] > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes[name]
    with atomic.directory(out_dir) as tmp:
        weight_map = {}
        for i, names in enumerate(shards):
            file = SAFETENSORS if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            tensors = {}
            for name in names:
                t = tensor_map[name]
                value = np.asarray(t.part(variables[t.path].get_value()), dtype=np.float32)
                tensors[name] = np.ascontiguousarray(t.transform.to_hf(value))
                weight_map[name] = file
            save_file(tensors, os.path.join(tmp, file), metadata={"format": "pt"})
            del tensors
        # Plain writes: atomic.directory syncs every file before the swap.
        if len(shards) > 1:
            with open(os.path.join(tmp, INDEX), "w") as f:
                json.dump({"metadata": {"total_size": sum(nbytes.values())}, "weight_map": weight_map}, f, indent=2)
        with open(os.path.join(tmp, CONFIG), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return out_dir
