import jax.numpy as jnp
import numpy as np

from tests.helpers import tiny_model


def test_causal_future_tokens_do_not_change_past_logits():
    model = tiny_model(31, seed=1)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 31, (2, 20)).astype(np.int32)
    b = a.copy()
    b[:, 12:] = rng.integers(0, 31, (2, 8))
    la, lb = np.asarray(model(jnp.asarray(a))), np.asarray(model(jnp.asarray(b)))
    np.testing.assert_allclose(la[:, :12], lb[:, :12], rtol=1e-5, atol=1e-6)
    assert np.abs(la[:, 12:] - lb[:, 12:]).max() > 1e-3


def test_gqa_equals_attention_with_repeated_kv_heads():
    """GQA with 2 kv heads must equal full multi-head attention whose k/v
    projections repeat each kv head for its query group."""
    gqa = tiny_model(31, seed=2, num_heads=4, num_kv_heads=2)
    mha = tiny_model(31, seed=2, num_heads=4, num_kv_heads=4)
    d = 32 // 4
    layer_g, layer_m = gqa.layers, mha.layers  # stacked: a leading layer axis
    for name in ("q_proj", "o_proj"):
        getattr(layer_m.self_attn, name).kernel[...] = getattr(layer_g.self_attn, name).kernel[...]
    for name in ("k_proj", "v_proj"):
        k = getattr(layer_g.self_attn, name).kernel[...]
        k = k.reshape(k.shape[0], 32, 2, 1, d)
        getattr(layer_m.self_attn, name).kernel[...] = jnp.repeat(k, 2, axis=3).reshape(k.shape[0], 32, 4 * d)
    for part in ("gate_proj", "up_proj", "down_proj"):
        getattr(layer_m.mlp, part).kernel[...] = getattr(layer_g.mlp, part).kernel[...]
    layer_m.input_layernorm.weight[...] = layer_g.input_layernorm.weight[...]
    layer_m.post_attention_layernorm.weight[...] = layer_g.post_attention_layernorm.weight[...]
    mha.embed_tokens[...] = gqa.embed_tokens[...]
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 31, (2, 9)), jnp.int32)
    np.testing.assert_allclose(np.asarray(gqa(tokens)), np.asarray(mha(tokens)), rtol=1e-5, atol=1e-5)
