import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lpjax.loss import chunked_cross_entropy, mean_loss, perplexity
from lpjax.scoring.score import make_score_fn, score_examples
from tests.helpers import random_examples, tiny_model


def numpy_response_loss(logits: np.ndarray, ids: np.ndarray, prompt_len: int) -> float:
    """Mean cross-entropy over response tokens ids[prompt_len:], in float64."""
    logits = logits.astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    losses = [-logp[t - 1, ids[t]] for t in range(max(prompt_len, 1), len(ids))]
    return float(np.mean(losses)) if losses else 0.0


def test_chunked_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    b, t, h, v = 3, 37, 8, 101  # 37 is not a multiple of the chunk
    hidden = rng.normal(size=(b, t, h)).astype(np.float32)
    head = rng.normal(size=(h, v)).astype(np.float32)
    targets = rng.integers(0, v, (b, t)).astype(np.int32)
    mask = (rng.random((b, t)) < 0.6).astype(np.float32)
    s, c = chunked_cross_entropy(jnp.asarray(hidden), jnp.asarray(head), jnp.asarray(targets), jnp.asarray(mask), chunk=8)
    logits = hidden.astype(np.float64) @ head.astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    tok = lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(s), (tok * mask).sum(-1), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(c), mask.sum(-1))


@pytest.fixture(scope="module")
def scored_reference():
    vocab = 61
    model = tiny_model(vocab)
    examples = random_examples(13, vocab, seed=1)
    graphdef, params = nnx.split(model)
    forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    # Reference: the model on each unpadded sequence alone, reduced in numpy.
    want = [numpy_response_loss(np.asarray(forward(params, jnp.asarray(ex.ids)[None]))[0], ex.ids, ex.prompt_len)
            for ex in examples]
    return graphdef, params, examples, np.array(want)


@pytest.mark.parametrize("batch_size,multiple", [(2, 8), (4, 16), (7, 32)])
def test_per_example_loss_matches_numpy_reference(scored_reference, batch_size, multiple):
    """Padding and length bucketing change nothing."""
    graphdef, params, examples, want = scored_reference
    loss_sum, count = score_examples(make_score_fn(graphdef), params, examples, batch_size, multiple)
    np.testing.assert_allclose(mean_loss(loss_sum, count), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(count, [max(len(ex.ids) - max(ex.prompt_len, 1), 0) for ex in examples])
    assert (count == 0).any()  # the no-response case is covered


def test_no_response_token_gives_ppl_one():
    ppl = perplexity(np.array([0.0, 2.0]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(ppl, [1.0, np.exp(2.0)])


def test_bf16_compute_keeps_fp32_loss_close():
    vocab = 61
    examples = random_examples(6, vocab, seed=2)
    results = []
    for dtype in ("float32", "bfloat16"):
        graphdef, params = nnx.split(tiny_model(vocab, compute_dtype=dtype))
        s, c = score_examples(make_score_fn(graphdef), params, examples, 4, 16)
        assert s.dtype == np.float64 and np.all(np.isfinite(s))
        results.append(mean_loss(s, c))
    np.testing.assert_allclose(results[0], results[1], rtol=2e-2)


def _numpy_ce_and_grads(hidden, head, targets, mask, weights):
    """sum_b w_b sum_t mask x CE, and its gradients in hidden, head, mask and
    weights, by hand in float64: dlogits = (softmax - onehot) x mask x w."""
    h64, w64 = hidden.astype(np.float64), head.astype(np.float64)
    logits = h64 @ w64
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    tok = lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    coef = mask * weights[:, None]
    dlogits = np.exp(logits - lse[..., None])
    np.put_along_axis(dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1, -1)
    dlogits *= coef[..., None]
    return ((tok * coef).sum(), dlogits @ w64.T, np.einsum("bth,btv->hv", h64, dlogits), tok * weights[:, None],
            (tok * mask).sum(-1))


@pytest.mark.parametrize("chunk", [8, None])
def test_weighted_cross_entropy_value_and_gradients_match_numpy(chunk):
    """The training loss computes its gradients in the forward pass (one LM
    head matmul less): value and every gradient equal the hand-derived ones."""
    from lpjax.loss import weighted_cross_entropy

    rng = np.random.default_rng(3)
    b, t, h, v = 3, 37, 8, 101
    hidden = rng.normal(size=(b, t, h)).astype(np.float32)
    head = rng.normal(size=(h, v)).astype(np.float32)
    targets = rng.integers(0, v, (b, t)).astype(np.int32)
    mask = (rng.random((b, t)) < 0.6).astype(np.float32)
    weights = rng.random(b).astype(np.float32)
    value, grads = jax.value_and_grad(
        lambda hd, hw, m, w: 2.0 * weighted_cross_entropy(hd, hw, jnp.asarray(targets), m, w, chunk),
        argnums=(0, 1, 2, 3))(*map(jnp.asarray, (hidden, head, mask, weights)))
    want = _numpy_ce_and_grads(hidden, head, targets, mask, weights)
    np.testing.assert_allclose(float(value), 2 * want[0], rtol=1e-5)
    for got, ref in zip(grads, want[1:]):  # the outer factor 2 reaches every gradient
        np.testing.assert_allclose(np.asarray(got), 2 * ref, rtol=1e-4, atol=1e-6)
