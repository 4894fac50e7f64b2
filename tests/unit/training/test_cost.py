"""FLOP accounting against parameter counts worked out by hand."""
from lpjax.models.llama import LlamaConfig
from lpjax.models.registry import build_model
from lpjax.training.cost import forward_flops, matmul_params, train_flops


def hand_count(v, h, i, layers, heads, kv, tied):
    d = h // heads
    attention = h * heads * d + 2 * h * kv * d + heads * d * h
    mlp = 3 * h * i
    norms = 2 * h
    head = v * h  # the LM head; a tied one is the embedding table itself
    return layers * (attention + mlp + norms) + h + head


def test_matmul_parameters_and_flops():
    for tied in (True, False):
        cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                          num_kv_heads=2, tie_word_embeddings=tied)
        p = hand_count(97, 32, 48, 2, 4, 2, tied)
        model = build_model(cfg, 0)
        assert matmul_params(model) == p
        assert train_flops(model, 1000) == 6 * p * 1000 and forward_flops(model, 10) == 2 * p * 10
