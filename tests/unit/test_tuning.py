"""lpjax/tuning.py: where choices are cached, how a budget is chosen from
measured rates, and the scoring autotune on a tiny model (its choice scores
exactly as the plain path does)."""
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from lpjax import tuning
from lpjax.loss import mean_loss
from lpjax.models.llama import LlamaConfig
from lpjax.scoring.score import auto_token_budget, make_score_fn, score_examples
from tests.helpers import prefixed_examples, tiny_model


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LPJAX_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_dir() == str(tmp_path / "explicit")
    monkeypatch.delenv("LPJAX_CACHE_DIR")
    assert tuning.cache_dir() == str(tmp_path / "xdg" / "lpjax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tuning.cache_dir() == str(tmp_path / "home" / ".cache" / "lpjax")


def test_tuned_choices_are_keyed_by_machine_and_model_shape(tmp_path):
    small = LlamaConfig(vocab_size=61, hidden_size=32)
    other = LlamaConfig(vocab_size=61, hidden_size=64)
    a = tuning.Tuned("budget", small, {"length": 64}, directory=str(tmp_path))
    assert a.get() is None
    a.put({"token_budget": 1024})
    assert tuning.Tuned("budget", small, {"length": 64}, directory=str(tmp_path)).get() == {"token_budget": 1024}
    # Another model shape, another length: measured again.
    assert tuning.Tuned("budget", other, {"length": 64}, directory=str(tmp_path)).get() is None
    assert tuning.Tuned("budget", small, {"length": 96}, directory=str(tmp_path)).get() is None
    stored = json.load(open(a.path))
    assert stored["key"]["machine"]["backend"] == jax.default_backend()
    assert stored["key"]["model"]["hidden_size"] == 32
    # A file whose key differs (a hash collision, an older lpjax) is not trusted.
    stored["key"]["version"] = -1
    open(a.path, "w").write(json.dumps(stored))
    assert a.get() is None
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")] == []  # written atomically


def test_budget_candidates_start_at_one_row_of_the_longest_bucket():
    assert tuning.budget_candidates("cpu", 96) == [256, 512, 1024, 2048, 4096, 8192, 16384]
    assert tuning.budget_candidates("cpu", 520)[:2] == [1024, 2048]
    assert tuning.budget_candidates("cpu", 40000) == [65536]  # past the CPU range: the one that fits
    assert tuning.budget_candidates("gpu", 512)[0] == 4096 and tuning.budget_candidates("gpu", 512)[-1] == 1 << 18


def test_budget_candidates_stop_at_the_first_that_holds_the_whole_pass():
    assert tuning.budget_candidates("cpu", 96, data_tokens=3000) == [256, 512, 1024, 2048, 4096]
    assert tuning.budget_candidates("cpu", 96, data_tokens=4096) == [256, 512, 1024, 2048, 4096]
    assert tuning.budget_candidates("cpu", 96, data_tokens=100) == [256]  # one row of the longest bucket at least
    assert tuning.budget_candidates("cpu", 96, data_tokens=10**6)[-1] == 16384


def test_tune_budget_stops_past_the_peak_and_prefers_larger_near_ties():
    rates = {256: 100.0, 512: 150.0, 1024: 149.0, 2048: 140.0, 4096: 90.0, 8192: 10.0}
    tried = []

    def measure(b):
        tried.append(b)
        return rates[b]

    out = tuning.tune_budget(measure, sorted(rates))
    assert tried == [256, 512, 1024, 2048]  # 2048 < 0.95 x 150: past the peak, stop
    assert out["token_budget"] == 1024  # within 3 % of the best, and larger
    assert tuning.pick_fastest({256: 100.0, 512: 90.0}) == 256


def test_tune_budget_stops_at_out_of_memory():
    def measure(b):
        if b > 512:
            raise MemoryError
        return float(b)

    assert tuning.tune_budget(measure, [256, 512, 1024, 2048])["token_budget"] == 512
    with pytest.raises(MemoryError):
        tuning.tune_budget(measure, [1024])


def test_typical_length_is_the_bucket_of_the_token_weighted_median_row():
    lengths = [10] * 50 + [100] * 10  # 500 tokens in short rows, 1000 in long ones
    buckets = (16, 32, 64, 128)
    cum = np.cumsum(np.sort(lengths))
    assert int(np.sort(lengths)[np.searchsorted(cum, cum[-1] / 2)]) == 100
    assert tuning.typical_length(lengths, buckets) == 128
    assert tuning.typical_length([10] * 50, buckets) == 16


def test_auto_token_budget_measures_once_then_reads_the_cache(monkeypatch, tmp_path):
    """The tuned budget scores like the plain path (per-sample losses to
    fp32 rounding), and a second call reads the choice instead of measuring."""
    monkeypatch.setenv("LPJAX_CACHE_DIR", str(tmp_path))
    vocab = 29
    model = tiny_model(vocab)
    graphdef, params = nnx.split(model)
    examples = prefixed_examples(40, vocab, seed=5)
    fn = make_score_fn(graphdef)
    first = auto_token_budget(fn, params, model.cfg, examples, max_len=48)
    assert first["source"] == "measured" and first["rates"]
    assert first["token_budget"] in {int(k) for k in first["rates"]}
    assert first["token_budget"] >= 48  # holds a row of the longest bucket
    again = auto_token_budget(fn, params, model.cfg, examples, max_len=48)
    assert again["source"] == "cached" and again["token_budget"] == first["token_budget"]
    plain = score_examples(fn, params, examples, 8, 8)
    tuned = score_examples(fn, params, examples, 8, 8, token_budget=first["token_budget"], response_head=True,
                           shared_prefix=True, max_len=48)
    np.testing.assert_allclose(mean_loss(*tuned), mean_loss(*plain), rtol=1e-5, atol=1e-6)


def test_probe_keeps_the_geometry_its_output_records(tmp_path):
    """A resumed probe scores with the budget the interrupted run chose
    (its score_geometry.json), not with what this machine would pick now;
    explicit settings are taken as they are."""
    from lpjax.config import ProbeConfig
    from lpjax.stages.probe import score_geometry

    out = tmp_path / "probe"
    out.mkdir()
    (out / "score_geometry.json").write_text(json.dumps({"token_budget": 768, "source": "measured"}))
    # score_fn None: measuring would fail, so the record must be read.
    assert score_geometry(str(out), ProbeConfig(), 96, None, None, None, [])["token_budget"] == 768
    fixed = score_geometry(str(tmp_path / "a"), ProbeConfig(score_token_budget=-1, score_batch_size=24), 96, None,
                           None, None, [])
    assert fixed["token_budget"] == 0 and fixed["batch_size"] == 24
    explicit = score_geometry(str(tmp_path / "b"), ProbeConfig(score_token_budget=4096), 96, None, None, None, [])
    assert explicit == {"token_budget": 4096, "source": "config"}
    assert json.load(open(tmp_path / "b" / "score_geometry.json")) == explicit
