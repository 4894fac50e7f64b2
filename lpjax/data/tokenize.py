"""Tokenize records into (ids, prompt length) pairs; train the small BPE for the default run.

The authors' semantics (DESIGN.md §1): prompt and output are tokenized
together, EOS is appended, the result is cut to the first ``max_len`` tokens,
and the prompt length is the token count of the prompt tokenized alone. With
a long prompt this cuts the response away entirely; ``response_lost`` flags
such examples so later stages can report or fix them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .template import build_prompt

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
_BYTE_ALPHABET = 256


# eq=False: the generated __eq__/__hash__ would compare arrays, which is ambiguous.
@dataclass(frozen=True, eq=False)
class Example:
    """One tokenized record; the response (output + EOS) is ``ids[prompt_len:]``."""

    ids: np.ndarray  # int32, 1-D
    prompt_len: int
    num_truncated: int = 0  # tokens dropped from the end to fit max_len

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len


def truncated_response(ex: Example) -> bool:
    """Whether truncation cut any response token (EOS included)."""
    return ex.num_truncated > 0


def response_lost(ex: Example) -> bool:
    """No response token left: DESIGN's flaw, where ppl is 1.0 at every epoch."""
    return ex.prompt_len >= len(ex.ids)


def encode_all(
    tokenizer: Any, records: list[dict], max_len: int, template: str = "alpaca"
) -> list[Example]:
    """``encode`` for many records, with two batched tokenizer calls."""
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; the response target needs one")
    prompts = [build_prompt(r, template, tokenizer) for r in records]
    if not prompts:
        return []
    # A chat template writes its own special tokens (BOS included, where the
    # model uses one); adding them again would double BOS.
    special = template != "chat"
    prompt_ids = tokenizer(prompts, add_special_tokens=special)["input_ids"]
    # No separator: the output follows "### Response:" directly, as in the authors' code.
    texts = [p + r["output"] for p, r in zip(prompts, records)]
    full_ids = tokenizer(texts, add_special_tokens=special)["input_ids"]
    examples = []
    for prompt, full in zip(prompt_ids, full_ids):
        full = list(full) + [eos]
        ids = np.asarray(full[:max_len], dtype=np.int32)
        examples.append(Example(ids, min(len(prompt), len(ids)), len(full) - len(ids)))
    return examples


def encode(tokenizer: Any, record: dict, max_len: int, template: str = "alpaca") -> Example:
    """Tokenize one record with the authors' semantics (see the module docstring)."""
    return encode_all(tokenizer, [record], max_len, template)[0]


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: str) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``, save it to ``out_dir`` and return it.

    Ids 0, 1, 2 are ``<pad>``, ``<s>`` (BOS, prepended to every sequence as
    Llama does) and ``</s>`` (EOS). Byte-level BPE covers every string, so no
    ``<unk>`` is needed. The saved directory reopens with ``AutoTokenizer``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = [PAD, BOS, EOS]
    if vocab_size < _BYTE_ALPHABET + len(specials):
        raise ValueError(f"vocab_size must be at least {_BYTE_ALPHABET + len(specials)}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
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
    wrapped.save_pretrained(out_dir)
    return wrapped


def load_tokenizer(path: str) -> Any:
    """Open a saved tokenizer directory, never touching the network."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a tokenizer directory")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{path}: tokenizer has no eos token; responses must end with one")
    return tokenizer
