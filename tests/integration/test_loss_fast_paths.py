"""The loss kernel's fast paths (response-only head, shared prefixes,
token-budget batches) on every model family, through the batch planner:
the same per-example sums and gradients as the plain path, and the memory
bound of the compiled loss. Slower than a unit test: each path compiles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lpjax.data.batching import collate, collate_plan, find_prefixes, plan_token_budget
from lpjax.data.tokenize import Example
from lpjax.loss import example_loss, loss_temp_bound, mean_loss, prefix_kv
from lpjax.models.gpt2 import GPT2Config
from lpjax.models.opt import OPTConfig
from lpjax.models.registry import build_model
from tests.helpers import tiny_model
from tests.unit.test_loss import numpy_response_loss


def prefixed_examples(n: int, vocab: int, seed: int = 0) -> list[Example]:
    """Random examples, most starting with one of two preambles (as the
    Alpaca template's two forms), a few with none or no response token."""
    rng = np.random.default_rng(seed)
    preambles = [rng.integers(3, vocab, 9), np.concatenate([rng.integers(3, vocab, 3), rng.integers(3, vocab, 10)])]
    preambles[1][:2] = preambles[0][:2]  # the two forms share their first tokens
    out = []
    for i in range(n):
        body = rng.integers(3, vocab, int(rng.integers(2, 40)))
        pre = preambles[i % 2] if i % 5 else np.zeros(0, np.int64)
        ids = np.concatenate([pre, body]).astype(np.int32)
        prompt = len(pre) + int(rng.integers(1, len(body) + 1))  # includes prompts with no response token
        out.append(Example(ids=ids, prompt_len=prompt))
    return out


def score_plan(graphdef, params, examples, prefixes, budget=256, precompute=False):
    fn = jax.jit(lambda p, b: example_loss(nnx.merge(graphdef, p), b))
    kv = None
    if precompute:  # the prefixes' keys/values once for all batches
        kv = jax.jit(lambda p, t: prefix_kv(nnx.merge(graphdef, p), t))(params, prefixes.tokens)
    loss_sum, count = np.zeros(len(examples)), np.zeros(len(examples))
    # Few shapes (each compiles): two buckets, two resp_pos lengths.
    plan = plan_token_budget(examples, budget, buckets=(32, 64), prefixes=prefixes, resp_fractions=(0.5, 1.0))
    for b in plan:
        batch = collate_plan(examples, b, prefixes)
        index = batch.pop("index")
        if kv is not None:
            batch["prefix_kv"] = kv
        s, c = fn(params, batch)
        keep = index >= 0
        loss_sum[index[keep]], count[index[keep]] = np.asarray(s)[keep], np.asarray(c)[keep]
    return loss_sum, count


FAMILIES = {
    "llama": lambda vocab: tiny_model(vocab),
    "opt": lambda vocab: build_model(OPTConfig(vocab_size=vocab, hidden_size=32, ffn_dim=48, num_layers=2,
                                               num_heads=4, max_position_embeddings=64), 0),
    "gpt2": lambda vocab: build_model(GPT2Config(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=4,
                                                 max_position_embeddings=64), 0),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("use_prefixes", [False, True, "precomputed"])
def test_token_budget_resp_pos_and_prefix_match_numpy_reference(family, use_prefixes):
    vocab = 61
    model = FAMILIES[family](vocab)
    examples = prefixed_examples(23, vocab, seed=3)
    graphdef, params = nnx.split(model)
    # Reference: full logits of every example in one right-padded call
    # (causal: padding changes no real position), reduced in numpy.
    padded = np.zeros((len(examples), 64), np.int32)
    for i, ex in enumerate(examples):
        padded[i, : len(ex.ids)] = ex.ids
    logits = np.asarray(nnx.merge(graphdef, params)(jnp.asarray(padded)))
    want = np.array([numpy_response_loss(logits[i, : len(ex.ids)], ex.ids, ex.prompt_len)
                     for i, ex in enumerate(examples)])
    prefixes = find_prefixes(examples, min_len=4, min_count=3) if use_prefixes else None
    if use_prefixes:
        assert prefixes.num == 2
    loss_sum, count = score_plan(graphdef, params, examples, prefixes, precompute=use_prefixes == "precomputed")
    np.testing.assert_allclose(mean_loss(loss_sum, count), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(count, [max(len(ex.ids) - max(ex.prompt_len, 1), 0) for ex in examples])


def test_prefix_table_without_prefixes_changes_nothing():
    vocab = 61
    examples = prefixed_examples(6, vocab, seed=5)[:1] + [Example(np.arange(3, 20, dtype=np.int32), 5)]
    graphdef, params = nnx.split(tiny_model(vocab))
    none = find_prefixes(examples)
    assert none.num == 0
    fn = jax.jit(lambda p, b: example_loss(nnx.merge(graphdef, p), b))
    a = fn(params, collate(examples, [0, 1], 2, 64))
    b = fn(params, collate(examples, [0, 1], 2, 64, resp_len=32, prefixes=none))
    np.testing.assert_allclose(np.asarray(b[0]), np.asarray(a[0]), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(b[1]), np.asarray(a[1]))


def test_fast_paths_give_the_plain_gradients():
    """Training through resp_pos and a prefix: the same loss and gradients."""
    vocab = 61
    examples = prefixed_examples(8, vocab, seed=4)
    graphdef, params = nnx.split(tiny_model(vocab))
    prefixes = find_prefixes(examples, min_len=4, min_count=2)
    assert prefixes.num >= 1

    def mean(p, batch):
        s, c = example_loss(nnx.merge(graphdef, p), batch)
        return jnp.sum(s) / jnp.sum(c)

    grad = jax.jit(jax.value_and_grad(mean))
    idx = list(range(len(examples)))
    plain = collate(examples, idx, len(idx), 64)
    fast = collate(examples, idx, len(idx), 64, resp_len=48, prefixes=prefixes)
    (l0, g0), (l1, g1) = grad(params, plain), grad(params, fast)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-3, atol=1e-6)


def _temp_bytes(fn, *args) -> int:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("train", [False, True])
def test_loss_never_materializes_full_logits(train):
    """Memory bound: [8, T] batches with a 50K vocabulary. Full fp32 logits
    would be 8 x 512 x 50000 x 4 = 819 MB at T = 512. All temporaries of the
    compiled loss together stay under 1/4 of that (1/2 with gradients), so
    no such tensor exists; what the loss needs beyond the model's own
    forward (hidden states summed; it has the T^2 attention scores) stays
    within loss_temp_bound, a few copies of one chunk's logits (51 MB here),
    and does not grow with T (at T = 1024 full logits double)."""
    b, vocab, hidden = 8, 50_000, 32
    graphdef, params = nnx.split(tiny_model(vocab, hidden_size=hidden, intermediate_size=48))

    def loss(p, batch):
        s, c = example_loss(nnx.merge(graphdef, p), batch)
        return jnp.sum(s) / jnp.sum(c)

    def model_only(p, batch):
        return jnp.mean(nnx.merge(graphdef, p).hidden_states(batch["tokens"]))

    extra = []
    for t in (512, 1024):
        batch = {"tokens": jnp.zeros((b, t), jnp.int32), "targets": jnp.zeros((b, t), jnp.int32),
                 "loss_mask": jnp.ones((b, t), jnp.float32)}
        wrap = jax.grad if train else (lambda f: f)
        full_logits = b * t * vocab * 4
        total = _temp_bytes(wrap(loss), params, batch)
        if t == 512:  # at 1024 the model's own T^2 attention buffers dominate
            assert total < full_logits / (2 if train else 4), total
        temp = total - _temp_bytes(wrap(model_only), params, batch)
        bound = loss_temp_bound(b, t, hidden, vocab, grad=train)
        assert temp <= bound, (t, temp, bound)
        assert bound < full_logits / (2 if train else 4)
        extra.append(temp)
    assert extra[1] < 1.1 * extra[0] + 4 * b * 512 * (hidden + 2) * 4, extra
