"""IFD through the pipeline: the probe scores every response alone too, and
the select stage ranks by PPL(response | prompt) / PPL(response alone)."""
import json
import os

import numpy as np
from absl import logging

from configs.lp_app import get_config
from lpjax import pipeline
from lpjax.data import tokenize
from lpjax.data.formats import load_records
from lpjax.data.tokenizer import load_tokenizer
from lpjax.models import registry
from lpjax.validate import finalize, validate


def reference_ppl(model, sequences: list[list[int]], first_scored: list[int]) -> np.ndarray:
    """exp(mean NLL) of tokens first_scored.. of each sequence, from the
    model's full logits and a numpy log-softmax (no chunking, no batching plan)."""
    width = max(len(s) for s in sequences)
    tokens = np.zeros((len(sequences), width), np.int32)
    for row, s in enumerate(sequences):
        tokens[row, : len(s)] = s
    logits = np.asarray(model(tokens), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    out = []
    for row, (s, start) in enumerate(zip(sequences, first_scored)):
        nll = [-logp[row, t - 1, s[t]] for t in range(max(start, 1), len(s))]
        out.append(np.exp(np.mean(nll)) if nll else 1.0)
    return np.array(out)


def test_ifd_selects_by_ppl_with_prompt_over_ppl_alone(tmp_path):
    logging.set_verbosity(logging.WARNING)
    cfg = get_config("micro")
    cfg.workdir = str(tmp_path / "w")
    cfg.select.metric = "ifd"  # row 0: the untuned probe, i.e. its pretrained base
    cfg.target.enabled = cfg.evaluate.enabled = False
    cfg.cluster.method = "none"  # the global rule: the expectation below is a plain top-k
    validate(finalize(cfg))
    w = pipeline.run(cfg)["workdir"]
    path = lambda *parts: os.path.join(w, *parts)
    records = load_records(path("data", "train.jsonl"))
    # The probe before training is its pretrained base.
    tok = load_tokenizer(path("base", cfg.probe.model, "hf"))
    model = registry.load_model(path("base", cfg.probe.model, "hf"))

    templated = tokenize.encode_all(tok, records, cfg.data.max_len, cfg.data.template, cfg.data.truncation)
    with_prompt = reference_ppl(model, [list(ex.ids) for ex in templated], [ex.prompt_len for ex in templated])
    # The response alone: BOS (when the tokenizer has one) + output + EOS, scored after BOS.
    head = [] if tok.bos_token_id is None else [tok.bos_token_id]
    alone_ids = [(head + tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
                 [: cfg.data.max_len] for r in records]
    alone = reference_ppl(model, alone_ids, [len(head)] * len(records))

    with open(path("select", "metric.json")) as f:
        metric = np.array(json.load(f)["values"])
    np.testing.assert_allclose(metric, with_prompt / alone, rtol=2e-4)
    # High IFD is hard: the "ifd" subset is the top percent of the metric.
    chosen = json.load(open(path("select", "indices_ifd.json")))
    k = round(cfg.select.percent / 100 * len(records))
    assert sorted(chosen) == sorted(np.argsort(-metric, kind="stable")[:k].tolist())
    assert os.path.isdir(path("probe", "scores_response_only"))
