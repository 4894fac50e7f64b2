"""The base stage: preset models are pretrained on the synthetic corpus and
saved as Hugging Face checkpoints, and the probe starts from that base.
Checked with transformers' PyTorch model on the exported directory."""
import os

import numpy as np
import pytest
from absl import logging

from configs.lp_app import get_config
from lpjax import pipeline
from lpjax.data import corpus
from lpjax.data.formats import load_records
from lpjax.data.template import build_prompt
from lpjax.scoring.store import ScoreStore
from lpjax.validate import finalize, validate

torch = pytest.importorskip("torch")


def response_ppl(model, tok, records):
    out = []
    for r in records:
        prompt = build_prompt(r)
        prompt_len = len(tok(prompt)["input_ids"])
        ids = tok(prompt + r["output"])["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        nll = [-logp[t - 1, ids[t]].item() for t in range(prompt_len, len(ids))]
        out.append(np.exp(np.mean(nll)))
    return np.array(out)


def corpus_nll(model, tok, docs):
    total, count = 0.0, 0
    for d in docs:
        ids = [tok.bos_token_id] + tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        total -= sum(logp[t - 1, ids[t]].item() for t in range(1, len(ids)))
        count += len(ids) - 1
    return total / count


def test_probe_starts_from_the_pretrained_base(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logging.set_verbosity(logging.WARNING)
    cfg = get_config("micro")
    cfg.workdir = str(tmp_path / "w")
    cfg.target.enabled = cfg.evaluate.enabled = False
    # No prompt shortened (the micro BPE spends many tokens per word), so the
    # reference can score each record's whole prompt.
    cfg.data.max_len = 256
    validate(finalize(cfg))
    stages = pipeline.run(cfg)["stages"]
    base_dir = stages["base/llama-micro"].summary["model"]
    tok = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()

    records = load_records(os.path.join(cfg.workdir, "data", "train.jsonl"))[:6]
    p0 = ScoreStore.open(os.path.join(cfg.workdir, "probe", "scores")).read("ppl")[0, :6]
    np.testing.assert_allclose(p0, response_ppl(base, tok, records), rtol=2e-4)

    # Pretraining taught it the corpus: held-out documents (another seed) are
    # likelier under the base than under the same model freshly initialized.
    docs = corpus.documents(8, seed=cfg.pretrain.seed + 1)
    fresh = AutoModelForCausalLM.from_config(base.config).eval()
    assert corpus_nll(base, tok, docs) < corpus_nll(fresh, tok, docs) - 0.3
