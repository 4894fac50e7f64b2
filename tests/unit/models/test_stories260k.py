"""A real pretrained checkpoint: the 260K-parameter TinyStories Llama."""
import os

import pytest

from lpjax.data.tokenizer import load_tokenizer
from lpjax.evaluation.generate import generate
from lpjax.models.hf import load_hf
from lpjax.models.registry import tokenizer_path
from tests.conftest import SHARED

STORIES = os.path.join(SHARED, "models", "stories260k")


@pytest.mark.skipif(not os.path.isdir(STORIES), reason="needs ../shared/models/stories260k")
def test_greedy_from_bos_tells_the_story_transformers_tells():
    torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
    from transformers import AutoModelForCausalLM

    model, hf_config = load_hf(STORIES)
    tok = load_tokenizer(tokenizer_path(STORIES))
    bos = hf_config["bos_token_id"]
    got = generate(model, [[bos]], 40, tok.eos_token_id, batch_size=1, keep_eos=True)[0]
    text = tok.decode(got, skip_special_tokens=True)
    assert text.startswith("Once upon a time, there was a little girl named Lily"), text
    ref = AutoModelForCausalLM.from_pretrained(STORIES, local_files_only=True).eval()
    want = ref.generate(torch.tensor([[bos]]), max_new_tokens=40, do_sample=False, eos_token_id=tok.eos_token_id,
                        pad_token_id=0)[0, 1:].tolist()
    assert got == want
