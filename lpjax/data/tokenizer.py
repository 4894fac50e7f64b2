"""Tokenizers: the one offline loader for every tokenizer or checkpoint
directory, and the small byte-level BPE trained for the default run."""
from __future__ import annotations

import functools
import json
import os
from typing import Any

from lpjax import atomic
from lpjax.errors import UserError

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


class TokenizerError(UserError, ValueError):
    """A tokenizer directory that cannot be used: ``path: what is wrong``."""
_BYTE_ALPHABET = 256


def _read_json(directory: str, name: str) -> dict[str, Any]:
    with open(os.path.join(directory, name)) as f:
        return json.load(f)


def _kwargs(path: str) -> dict[str, Any]:
    """Extra AutoTokenizer arguments a directory needs.

    A SentencePiece-only Llama directory (tokenizer.model, no tokenizer.json)
    is converted by transformers 5 without the BOS token Llama prepends,
    unless its tokenizer_config.json says add_bos_token: restore it. A bare
    tokenizer directory (no config.json) with a tokenizer.model is taken as
    Llama's, the usual source of such files."""
    has = lambda name: os.path.isfile(os.path.join(path, name))
    if has("tokenizer.json") or not has("tokenizer.model"):
        return {}
    model_type = _read_json(path, "config.json").get("model_type") if has("config.json") else "llama"
    tok_cfg = _read_json(path, "tokenizer_config.json") if has("tokenizer_config.json") else {}
    if model_type in ("llama", "mistral") and "add_bos_token" not in tok_cfg:
        return {"add_bos_token": True}
    return {}


def load_tokenizer(path: str) -> Any:
    """AutoTokenizer for a tokenizer or checkpoint directory, never touching the network.

    Loaded once per process and directory contents (a run asks for the same
    tokenizer in most of its stages; loading one takes a third of a second):
    callers must not modify it."""
    if not os.path.isdir(path):
        raise TokenizerError(path, "not a tokenizer directory (no such directory)")
    stamp = tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(path) if e.is_file()))
    return _load_tokenizer(os.path.abspath(path), stamp)


@functools.lru_cache(maxsize=8)
def _load_tokenizer(path: str, stamp: tuple) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **_kwargs(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        # transformers reports a missing or corrupt file in many ways; each is the directory's problem.
        text = " ".join(str(e).split())
        raise TokenizerError(path, f"cannot load a tokenizer ({type(e).__name__}: {text[:300]})") from None
    if tokenizer.eos_token_id is None:
        raise TokenizerError(path, "tokenizer has no eos token; responses must end with one")
    return tokenizer


def train_bpe(texts: list[str], vocab_size: int, out_dir: str, whole_words: bool = False) -> Any:
    """Train a byte-level BPE on ``texts``, save it to ``out_dir`` (whole or
    not at all, replacing what was there) and return it.

    Ids 0, 1, 2 are ``<pad>``, ``<s>`` (BOS, prepended to every sequence as
    Llama does) and ``</s>`` (EOS). Byte-level BPE covers every string, so no
    ``<unk>`` is needed. The saved directory reopens with ``load_tokenizer``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS]
    if vocab_size < _BYTE_ALPHABET + len(specials):
        raise ValueError(f"vocab_size must be at least {_BYTE_ALPHABET + len(specials)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if whole_words:
        # Whitespace and punctuation runs are tokens of their own, so a word
        # is one and the same token wherever it stands: after a space in the
        # input and right after "### Response:" in the answer. GPT-2's rule
        # makes them two tokens (" sun" and "sun"), and a tiny model cannot
        # learn that they are one word in minutes.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"\s+|[^\w\s]+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        # The full byte alphabet, so text unseen in training still encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    with atomic.directory(out_dir) as tmp:
        wrapped.save_pretrained(tmp)
    return wrapped
