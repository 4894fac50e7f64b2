import jax
import numpy as np
from flax import nnx

from lpjax.evaluation.generate import decode
from tests.helpers import tiny_model


def naive_greedy(model, prompt, max_new, eos, buffer=32):
    """One prompt, one token at a time. The sequence sits at the start of a
    fixed buffer so one compiled forward serves every step; that the junk
    after it changes nothing is test_model's causality test."""
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    seq = list(prompt)
    out = []
    for _ in range(max_new):
        tokens = np.zeros((1, buffer), np.int32)
        tokens[0, : len(seq)] = seq
        nxt = int(np.argmax(np.asarray(forward(params, tokens))[0, len(seq) - 1]))
        if nxt == eos:
            break
        out.append(nxt)
        seq.append(nxt)
    return out


def test_batched_greedy_matches_one_at_a_time_full_recompute():
    vocab = 23
    model = tiny_model(vocab, seed=3)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, vocab, int(n)).tolist() for n in (1, 5, 9, 3, 12)]
    # Make EOS a token the model really emits, so stopping is exercised.
    eos = naive_greedy(model, prompts[1], 4, -1)[3]
    graphdef, params = nnx.split(model)
    got = decode(graphdef, params, prompts, 10, eos, batch_size=4, multiple=8)
    want = [naive_greedy(model, p, 10, eos) for p in prompts]
    assert got == want
    assert any(len(w) > 0 for w in want)
    assert any(len(w) < 10 for w in want)  # some row stopped at EOS
