"""base/<preset>: the pretrained base of a preset model (the probe's, the
target's, or both when they are the same preset).

The embedded default's stand-in for a pretrained checkpoint: a byte-level
BPE and the preset model, trained as a plain language model (every token
after BOS) on the generic synthetic corpus (lpjax/data/corpus.py; a share
pretrain.template_fraction of its documents are generic requests in the
instruction template's shape), saved as a Hugging Face directory that the
probe, target and evaluate stages then open like any checkpoint. Writes
hf/ (model + tokenizer) and ckpt/."""
from __future__ import annotations

import os
import time

import numpy as np
from flax import nnx

from lpjax.data import corpus, synthetic
from lpjax.data.template import PROMPT_INPUT, PROMPT_NO_INPUT
from lpjax.data.tokenize import Example
from lpjax.data.tokenizer import train_bpe
from lpjax.models import hf, registry
from lpjax.stages.common import make_mesh
from lpjax.training.cost import train_flops
from lpjax.training.checkpoint import STORE_FORMAT
from lpjax.training.train import train
from lpjax.workdir import Stage, StageContext


# How often the tokenizer sees the template and the task phrasings: as
# often as common English would be, so the template's words become single
# tokens (with one copy the bare Alpaca template takes ~145 tokens, with
# 200 about 58).
ENGLISH_WEIGHT = 200


def tokenizer_texts(docs: list[str]) -> list[str]:
    # The corpus and the English the instruction data will be written in
    # (the template and the task phrasings); what the model learns comes
    # from the corpus alone.
    english = [PROMPT_INPUT, PROMPT_NO_INPUT] + [i for pair in synthetic.INSTRUCTIONS.values() for i in pair]
    return docs + english * ENGLISH_WEIGHT


def run(ctx: StageContext) -> dict:
    preset = ctx.params["model"]
    cfg, pt = ctx.cfg, ctx.cfg.pretrain
    docs = corpus.documents(pt.num_docs, pt.seed, template_fraction=pt.template_fraction)
    # Whole-word tokens: a word is the same token in the input and at the
    # start of the answer, which the copying families need (data/tokenizer.py).
    tok = train_bpe(tokenizer_texts(docs), pt.vocab_size, os.path.join(ctx.out, "tokenizer"), whole_words=True)
    ids = tok(docs, add_special_tokens=False)["input_ids"]
    examples = [Example(np.asarray([tok.bos_token_id, *x, tok.eos_token_id][: pt.max_len], np.int32), 1)
                for x in ids]
    model = registry.load_model(preset, len(tok), pt.seed)
    t0 = time.time()
    params = train(model, examples, pt.train, os.path.join(ctx.out, "ckpt"), pt.seed, log_metrics=ctx.log_metrics,
                   name=f"base[{preset}]", mesh=make_mesh(cfg.mesh))
    seconds = time.time() - t0
    nnx.update(model, params)
    hf.save_hf(model, os.path.join(ctx.out, "hf"), tok)
    tokens = sum(len(ex.ids) for ex in examples) * pt.train.epochs
    return {"preset": preset, "model": os.path.join(ctx.out, "hf"), "documents": len(docs), "tokens": tokens,
            "flops": train_flops(model, tokens), "seconds": seconds}


STAGE = Stage("base", run, reads=("pretrain",), runtime=("mesh",),
              format=STORE_FORMAT)
