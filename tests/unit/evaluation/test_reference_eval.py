"""Judge-free held-out evaluation: response loss by reference length, on the
held-out split and on reference sets (lpjax/evaluation/heldout.py), against
losses computed directly by transformers' PyTorch Llama on a tiny random
checkpoint; length bins on hand numbers; evaluate.generate=False generating
nothing; reference_limit; the evaluate stage's key following the sets' files."""
import json
import math

import numpy as np
import pytest
from flax import nnx

from lpjax.config import Config, EvaluateConfig
from lpjax.data.template import build_prompt
from lpjax.data.tokenize import encode_all
from lpjax.data.tokenizer import train_bpe
from lpjax.errors import DataError
from lpjax.evaluation import heldout
from lpjax.evaluation.heldout import (bin_labels, evaluate_model, evaluate_references, length_bins, loss_by_length,
                                      reference_items)
from lpjax.stages import evaluate as evaluate_stage
from lpjax.workdir import stage_key

WORDS = "the cat sat on a mat and ran to see two dogs play in sun list sort sum add copy reverse upper".split()
MAX_LEN = 512
EDGES = (16, 64, 256)


# ---------------------------------------------------------------- length bins on hand numbers

def test_length_bins_by_hand():
    assert bin_labels() == ["1-16", "17-64", "65-256", "257+"]
    assert bin_labels((2,)) == ["1-2", "3+"] and bin_labels(()) == ["1+"]
    assert length_bins([1, 16, 17, 64, 65, 256, 257, 1000]) == [
        "1-16", "1-16", "17-64", "17-64", "65-256", "65-256", "257+", "257+"]
    assert length_bins(np.array([3.0, 4.0]), (3,)) == ["1-3", "4+"]
    for bad in ((16, 16), (64, 16), (0, 5)):
        with pytest.raises(ValueError, match="increasing"):
            bin_labels(bad)


def test_loss_by_length_by_hand():
    count = np.array([4.0, 16.0, 20.0])
    loss_sum = np.array([4 * 1.0, 16 * 2.0, 20 * 0.5])
    got = loss_by_length(loss_sum, count)
    assert [b["bin"] for b in got] == ["1-16", "17-64", "65-256", "257+"]
    first, second, *empty = got
    assert (first["num"], first["tokens"]) == (2, 20)
    assert first["loss"] == pytest.approx((4 + 32) / 20)  # token-weighted, not the mean of 1.0 and 2.0
    assert first["mean_ppl"] == pytest.approx((math.e + math.e ** 2) / 2)
    assert (second["num"], second["tokens"], second["loss"]) == (1, 20, pytest.approx(0.5))
    assert second["mean_ppl"] == pytest.approx(math.exp(0.5))
    assert empty == [{"bin": "65-256", "num": 0, "tokens": 0, "loss": None, "mean_ppl": None},
                     {"bin": "257+", "num": 0, "tokens": 0, "loss": None, "mean_ppl": None}]
    assert [b["num"] for b in loss_by_length(loss_sum, count, (4, 16))] == [1, 1, 1]


# ---------------------------------------------------------------- a tiny random Llama, in PyTorch and in lpjax

def sentence(rng, n):
    return " ".join(rng.choice(WORDS, n))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    rng = np.random.default_rng(0)
    texts = [build_prompt({"instruction": sentence(rng, 6), "input": ""}) + sentence(rng, 20) for _ in range(50)]
    return train_bpe(texts, 400, str(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def models(tok, tmp_path_factory):
    """(transformers LlamaForCausalLM, lpjax graphdef, params) of one checkpoint."""
    torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
    from transformers import LlamaConfig, LlamaForCausalLM

    from lpjax.models.hf import load_hf
    from tests.unit.models.hf_cases import reference_model, spread_weights

    torch.manual_seed(0)
    ref = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=MAX_LEN, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=False))
    spread_weights(ref, 0)
    path = str(tmp_path_factory.mktemp("llama"))
    ref.save_pretrained(path, safe_serialization=True)
    model, _ = load_hf(path)
    graphdef, params = nnx.split(model)
    return reference_model(path), graphdef, params


def torch_losses(ref, tok, records):
    """Per record (loss sum, token count) of its output + EOS after its Alpaca
    prompt: the prompt tokenized alone gives where the response starts, as
    the authors' code does; one unpadded forward per record."""
    import torch

    sums, counts = [], []
    for r in records:
        prompt = build_prompt({"instruction": r["instruction"], "input": r["input"]}, "alpaca")
        start = len(tok(prompt)["input_ids"])
        ids = tok(prompt + r["output"])["input_ids"] + [tok.eos_token_id]
        assert len(ids) <= MAX_LEN  # nothing cut: the reference is every response token
        with torch.no_grad():
            logits = ref(torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, -1)
        target = torch.tensor(ids[start:])
        sums.append(float(-logp[start - 1: len(ids) - 1].gather(1, target[:, None]).sum()))
        counts.append(len(ids) - start)
    return np.array(sums), np.array(counts)


def check_against_torch(got: dict, loss_sum, count):
    """A set's figures (num, tokens, loss, mean_ppl, by_length) against per-sample torch losses."""
    assert got["num"] == len(count) and got["tokens"] == int(count.sum())
    np.testing.assert_allclose(got["loss"], loss_sum.sum() / count.sum(), rtol=1e-4)
    np.testing.assert_allclose(got["mean_ppl"], np.exp(loss_sum / count).mean(), rtol=1e-4)
    labels = length_bins(count)
    for b in got["by_length"]:
        members = [i for i, label in enumerate(labels) if label == b["bin"]]
        assert b["num"] == len(members) and b["tokens"] == int(count[members].sum())
        if members:
            np.testing.assert_allclose(b["loss"], loss_sum[members].sum() / count[members].sum(), rtol=1e-4)
            np.testing.assert_allclose(b["mean_ppl"], np.exp(loss_sum[members] / count[members]).mean(), rtol=1e-4)
        else:
            assert b["loss"] is None and b["mean_ppl"] is None


# Reference lengths in words, spread over every bin (a word is one or two tokens).
LENGTHS = (2, 5, 12, 25, 40, 90, 150, 300)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """A Self-Instruct-shaped set (some items without a reference, one with
    a blank one) and a Dolly-shaped one, as JSONL files; and the records
    (instruction, input, output) of the items that have references."""
    rng = np.random.default_rng(1)
    tmp = tmp_path_factory.mktemp("sets")
    sinstruct, sinstruct_refs = [], []
    for i, n in enumerate(LENGTHS):
        inp = sentence(rng, 3) if i % 2 else ""
        out = sentence(rng, n)
        sinstruct.append({"id": f"s{i}", "instruction": sentence(rng, 5), "instances": [{"input": inp, "output": out}]})
        sinstruct_refs.append({"instruction": sinstruct[-1]["instruction"], "input": inp, "output": out})
        if i in (1, 4):  # items without a reference answer, and one with a blank one: all left out
            sinstruct.append({"id": f"none{i}", "instruction": sentence(rng, 4), "instances": [{"input": ""}]})
            sinstruct.append({"id": f"blank{i}", "instruction": sentence(rng, 4),
                              "instances": [{"input": "", "output": "  "}]})
    dolly, dolly_refs = [], []
    for n in (3, 20, 70):
        rec = {"instruction": sentence(rng, 4), "context": sentence(rng, 2), "response": sentence(rng, n)}
        dolly.append(rec)
        dolly_refs.append({"instruction": rec["instruction"], "input": rec["context"], "output": rec["response"]})
    paths = {}
    for name, rows in (("sinstruct", sinstruct), ("dolly", dolly)):
        paths[name] = tmp / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs = (f"sinstruct={paths['sinstruct']}",
             f"dolly={paths['dolly']}#prompt=instruction,input=context,reference=response")
    return specs, {"sinstruct": sinstruct_refs, "dolly": dolly_refs}, tmp


def test_reference_sets_match_transformers(tok, models, sets):
    ref, graphdef, params = models
    specs, refs, _ = sets
    got = evaluate_references(graphdef, params, tok, specs, limit=0, template="alpaca", max_len=MAX_LEN,
                              batch_size=4, pad_multiple=64)
    assert list(got) == ["sinstruct", "dolly"]
    for name, records in refs.items():
        loss_sum, count = torch_losses(ref, tok, records)
        check_against_torch(got[name], loss_sum, count)
    # Every bin is exercised by the Self-Instruct-shaped set.
    assert all(b["num"] > 0 for b in got["sinstruct"]["by_length"])
    assert got["sinstruct"]["num"] == len(LENGTHS)


def test_reference_limit_keeps_the_first_items_with_references(tok, models, sets):
    _, graphdef, params = models
    specs, refs, _ = sets
    items = reference_items(specs[0], limit=3)
    assert [i.id for i in items] == ["s0", "s1", "s2"]  # none1/blank1 (no reference) are skipped, not counted
    assert [i.reference for i in items] == [r["output"] for r in refs["sinstruct"][:3]]
    assert len(reference_items(specs[0])) == len(LENGTHS)
    limited = evaluate_references(graphdef, params, tok, specs, limit=3, template="alpaca", max_len=MAX_LEN,
                                  batch_size=4, pad_multiple=64)
    assert limited["sinstruct"]["num"] == 3 and limited["dolly"]["num"] == 3
    assert sum(b["num"] for b in limited["sinstruct"]["by_length"]) == 3


def test_a_set_without_references_is_a_data_error(sets):
    _, _, tmp = sets
    path = tmp / "vicuna.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "text": f"say {i}"}) + "\n" for i in range(3)))
    with pytest.raises(DataError, match="no reference answers") as e:
        reference_items(f"vicuna={path}")
    assert e.value.path == str(path) and "\n" not in str(e.value)


def test_held_out_by_length_matches_transformers_and_generate_false_generates_nothing(tok, models, sets,
                                                                                     monkeypatch):
    ref, graphdef, params = models
    _, refs, _ = sets
    records = refs["sinstruct"] + refs["dolly"]
    examples = encode_all(tok, records, MAX_LEN, "alpaca", "keep_response")

    def refuse(*args, **kwargs):
        raise AssertionError("generate=False must not generate")

    monkeypatch.setattr(heldout, "decode", refuse)
    e = EvaluateConfig(generate=False, batch_size=4, pad_multiple=64)
    got = evaluate_model(graphdef, params, tok, records, examples, [], e)
    assert set(got) == {"num_examples", "loss", "mean_ppl", "by_length"}
    loss_sum, count = torch_losses(ref, tok, records)
    check_against_torch({**got, "num": got["num_examples"], "tokens": int(count.sum())}, loss_sum, count)
    assert [b["bin"] for b in got["by_length"]] == bin_labels(EDGES)


def test_generate_true_keeps_exact_match_and_samples(tok, models, sets):
    _, graphdef, params = models
    _, refs, _ = sets
    records = refs["dolly"]
    examples = encode_all(tok, records, MAX_LEN, "alpaca", "keep_response")
    prompts = [build_prompt(r) for r in records]
    got = evaluate_model(graphdef, params, tok, records, examples, prompts,
                         EvaluateConfig(max_new_tokens=4, batch_size=4, pad_multiple=64))
    assert {"exact_match", "samples", "by_length"} <= set(got) and len(got["samples"]) == len(records)


# ---------------------------------------------------------------- the stage's declaration and key

def key_of(cfg):
    return stage_key(evaluate_stage.STAGE, cfg, {"data": None, "base": None, "target": None}, {"subset": "x"},
                     "evaluate/x")[0]


def test_stage_key_follows_reference_files_and_fields(tmp_path):
    path = tmp_path / "sinstruct.jsonl"
    record = {"id": "1", "instruction": "say cat", "instances": [{"input": "", "output": "cat"}]}
    path.write_text(json.dumps(record) + "\n")
    cfg = Config()
    cfg.evaluate.reference_sets = (f"sinstruct={path}",)
    assert evaluate_stage.STAGE.files(cfg) == [str(path)]
    first = key_of(cfg)
    assert key_of(cfg) == first
    path.write_text(json.dumps({**record, "instances": [{"input": "", "output": "dog"}]}) + "\n")
    changed = key_of(cfg)
    assert changed != first
    for field, value in (("reference_limit", 7), ("generate", False), ("reference_sets", ())):
        cfg2 = Config()
        cfg2.evaluate.reference_sets = cfg.evaluate.reference_sets
        setattr(cfg2.evaluate, field, value)
        assert key_of(cfg2) != changed, field
    # The answers section still cannot change held-out metrics.
    cfg.evaluate.answers.max_new_tokens += 1
    assert key_of(cfg) == changed
