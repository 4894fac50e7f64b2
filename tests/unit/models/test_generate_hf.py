"""KV-cache generation against transformers' generate, token for token."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")

from lpjax.evaluation.generate import filter_logits, generate
from lpjax.models.hf import load_hf
from tests.unit.models.hf_cases import VOCAB

MAX_NEW = 12


def hf_greedy(ref, prompts, eos, pad=0):
    """transformers' greedy output per prompt, up to and including EOS: each
    prompt alone, and all together left-padded with an attention mask."""
    alone = []
    for p in prompts:
        out = ref.generate(torch.tensor([p]), max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=eos,
                           pad_token_id=pad)[0, len(p):].tolist()
        alone.append(out[: out.index(eos) + 1] if eos in out else out)
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = ref.generate(ids, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=eos,
                       pad_token_id=pad)[:, width:].tolist()
    batched = [o[: o.index(eos) + 1] if eos in o else o for o in out]
    return alone, batched


@pytest.mark.parametrize("case", ["llama_gqa_untied_bias", "mistral_sliding_window", "opt_post_ln_proj", "gpt2"])
def test_greedy_matches_transformers(case, hf_checkpoint):
    path, ref = hf_checkpoint(case)
    model, _ = load_hf(path)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, VOCAB, n).tolist() for n in (1, 4, 9, 6)]
    # EOS = a token transformers emits mid-way for one prompt, so stopping is exercised.
    free = ref.generate(torch.tensor([prompts[2]]), max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=None,
                        pad_token_id=0)[0, len(prompts[2]):].tolist()
    eos = free[MAX_NEW // 2]
    alone, batched = hf_greedy(ref, prompts, eos)
    assert alone == batched
    assert len(alone[2]) <= MAX_NEW // 2 + 1 and len({t for o in alone for t in o}) > 3
    got = generate(model, prompts, MAX_NEW, eos, batch_size=4, multiple=16, keep_eos=True)
    assert got == alone
    # Equal-length prompts, and a batch holding a single prompt (same compiled shape).
    same = [prompts[3], prompts[3][::-1]]
    assert generate(model, same, MAX_NEW, eos, batch_size=4, multiple=16, keep_eos=True) == hf_greedy(ref, same, eos)[0]
    assert generate(model, [prompts[1]], MAX_NEW, eos, batch_size=4, multiple=16) == [
        [t for t in alone[1] if t != eos]]


def test_sampling_is_seeded_and_top_k_1_is_greedy(hf_checkpoint):
    model, _ = load_hf(hf_checkpoint("gpt2")[0])
    prompts = [[5, 6, 7], [9], [11, 12, 13, 14, 15]]
    greedy = generate(model, prompts, MAX_NEW, None, batch_size=4)
    assert generate(model, prompts, MAX_NEW, None, temperature=0.7, top_k=1, seed=3, batch_size=4) == greedy
    a = generate(model, prompts, MAX_NEW, None, temperature=1.5, top_k=1000, top_p=0.95, seed=1, batch_size=4)
    b = generate(model, prompts, MAX_NEW, None, temperature=1.5, top_k=1000, top_p=0.95, seed=1, batch_size=4)
    c = generate(model, prompts, MAX_NEW, None, temperature=1.5, top_k=1000, top_p=0.95, seed=2, batch_size=4)
    assert a == b and a != c and a != greedy
    assert all(len(x) == MAX_NEW for x in a)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 5, 1.0), (0.5, 0, 0.8), (2.0, 10, 0.3), (1.0, 0, 0.999)])
def test_filter_logits_keeps_what_transformers_keeps(temperature, top_k, top_p):
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    logits = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32) * 3
    want = torch.tensor(logits)
    want = TemperatureLogitsWarper(temperature)(None, want)
    if top_k:
        want = TopKLogitsWarper(top_k)(None, want)
    if top_p < 1:
        want = TopPLogitsWarper(top_p)(None, want)
    want = want.numpy()
    got = np.asarray(filter_logits(logits, temperature, top_k, top_p))
    np.testing.assert_array_equal(np.isfinite(want), got > np.finfo(np.float32).min)
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-6)
