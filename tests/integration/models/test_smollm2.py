"""SmolLM2-135M (a real 135M Llama) against transformers on Alpaca records.

Slow: needs the converted checkpoint (bench/smollm2_parity.py CACHE_DIR, or
`python ../shared/tools/smollm2_to_hf.py DIR`) in $LPJAX_SMOLLM2_DIR
(default /tmp/smollm2) and ../shared/data/alpaca_52k.json."""
import importlib.util
import os
import tempfile

import pytest

from tests.conftest import REPO, SHARED

CKPT = os.environ.get("LPJAX_SMOLLM2_DIR", os.path.join(tempfile.gettempdir(), "smollm2"))
ALPACA = os.path.join(SHARED, "data", "alpaca_52k.json")
BENCH = os.path.join(REPO, "bench", "smollm2_parity.py")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(os.path.join(CKPT, "config.json")), reason=f"no converted SmolLM2 in {CKPT}")
@pytest.mark.skipif(not os.path.isfile(ALPACA), reason="needs ../shared/data/alpaca_52k.json")
def test_smollm2_alpaca_perplexities_match_transformers():
    spec = importlib.util.spec_from_file_location("smollm2_parity", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.compare(CKPT, ALPACA, num=32, max_len=512, batch_size=8, passes=1)
    assert result["num_examples"] == 32
    assert result["max_rel_diff_ppl"] < 1e-4, result


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isfile(os.path.join(CKPT, "config.json")), reason=f"no converted SmolLM2 in {CKPT}")
def test_smollm2_answers_like_transformers():
    import torch
    from transformers import AutoModelForCausalLM

    from lpjax.data.tokenizer import load_tokenizer
    from lpjax.evaluation.generate import generate
    from lpjax.models.hf import load_hf

    tok = load_tokenizer(CKPT)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    model, _ = load_hf(CKPT)
    got = generate(model, [prompt], 16, tok.eos_token_id, batch_size=1)[0]
    assert "Paris" in tok.decode(got, skip_special_tokens=True)
    ref = AutoModelForCausalLM.from_pretrained(CKPT, local_files_only=True).eval()
    want = ref.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.eos_token_id)[0, len(prompt):].tolist()
    assert got == [t for t in want if t != tok.eos_token_id][: len(got)]
