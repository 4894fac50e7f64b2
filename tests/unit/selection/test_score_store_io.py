"""import_scores / load_scores: the authors' pickles in the probe's ScoreStore layout."""

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from lpjax.data.formats import DataError, fingerprint
from lpjax.scoring.store import ScoreStore
from lpjax.selection.metrics import compute_metric
from lpjax.scoring.store import import_scores, load_scores

RECORDS = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
META = {"model": "opt-350m", "template": "alpaca", "max_len": 512}
PPL = [[9.0, 4.0, 1.0], [5.0, 3.0, 1.0], [2.5, 2.0, 1.0]]
REF = Path("/work/shared/reference/small2large")


def _pickles(directory: Path, rows, names=("epoch-pre", "epoch-1", "epoch-2")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, row in zip(names, rows):
        (directory / f"{name}.pkl").write_bytes(pickle.dumps(row))
    return directory


def test_import_round_trips_into_the_score_store_layout(tmp_path):
    src = _pickles(tmp_path / "pkl", PPL)
    fp = fingerprint(RECORDS)
    dst = import_scores(src, tmp_path / "scores", fp, META, num_records=3)
    assert sorted(p.name for p in dst.iterdir()) == ["loss", "meta.json", "ppl"]
    store = ScoreStore.open(str(dst))  # the probe's own reader
    ppl, loss = store.read("ppl"), store.read("loss")
    assert ppl.dtype == np.float32 and ppl.shape == (3, 3)
    assert ppl.tolist() == PPL  # these values are exact in float32
    np.testing.assert_array_equal(loss, np.log(np.array(PPL)).astype(np.float32))
    assert loss[0, 2] == 0.0 and store.done_rows() == [0, 1, 2]
    meta = json.loads((dst / "meta.json").read_text())
    assert {k: meta[k] for k in ["metric", "model", "template", "max_len", "fingerprint", "num_samples"]} == {
        "metric": "ppl", "model": "opt-350m", "template": "alpaca", "max_len": 512, "fingerprint": fp,
        "num_samples": 3}
    assert meta["source_files"] == ["epoch-pre.pkl", "epoch-1.pkl", "epoch-2.pkl"]
    scores, meta2 = load_scores(dst, fp)
    assert scores.tolist() == PPL and meta2 == meta
    assert load_scores(dst, fp, "loss")[0].tolist() == loss.tolist()
    # Nothing but the result is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkl", "scores"]


def test_loss_pickles(tmp_path):
    losses = [[2.0, 0.0], [1.0, 0.0]]
    src = _pickles(tmp_path / "pkl", losses)
    dst = import_scores(src, tmp_path / "s", "f", dict(META, metric="loss"))
    ppl, meta = load_scores(dst, "f")
    np.testing.assert_array_equal(ppl, np.exp(np.array(losses)).astype(np.float32))
    assert load_scores(dst, "f", "loss")[0].tolist() == losses and meta["metric"] == "loss"


def test_fingerprint_mismatch_names_both(tmp_path):
    dst = import_scores(_pickles(tmp_path / "pkl", PPL), tmp_path / "s", fingerprint(RECORDS), META)
    other = fingerprint(RECORDS[::-1])
    with pytest.raises(ValueError) as info:
        load_scores(dst, other)
    assert fingerprint(RECORDS) in str(info.value) and other in str(info.value)
    assert load_scores(dst, None)[0].shape == (3, 3)  # explicitly unchecked


def test_reads_a_probe_written_store_and_refuses_incomplete_rows(tmp_path):
    meta = dict(META, fingerprint="abc")
    store = ScoreStore.create(str(tmp_path / "probe"), 3, 2, meta)
    store.write_row(0, np.array([2.0, 0.0]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"rows \[1, 2\] are incomplete"):
        load_scores(tmp_path / "probe", "abc")
    partial, _ = load_scores(tmp_path / "probe", "abc", require_complete=False)
    assert partial[0].tolist() == [np.float32(math.exp(2.0)), 1.0] and np.isnan(partial[1:]).all()
    for row in (1, 2):
        store.write_row(row, np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    assert load_scores(tmp_path / "probe", "abc")[0].shape == (3, 2)


def test_import_errors_and_overwrite(tmp_path):
    src = _pickles(tmp_path / "pkl", PPL)
    with pytest.raises(ValueError, match="max_len"):
        import_scores(src, tmp_path / "s", "f", {"model": "m", "template": "alpaca"})
    with pytest.raises(ValueError, match="metric"):
        import_scores(src, tmp_path / "s", "f", dict(META, metric="lp1"))
    with pytest.raises(ValueError, match="3 scores per epoch, but there are 4 training records"):
        import_scores(src, tmp_path / "s", "f", META, num_records=4)
    bad = _pickles(tmp_path / "bad", [[1.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="positive"):
        import_scores(bad, tmp_path / "s", "f", META)
    import_scores(src, tmp_path / "s", "f", META)
    with pytest.raises(FileExistsError):
        import_scores(src, tmp_path / "s", "g", META)
    import_scores(_pickles(tmp_path / "pkl2", PPL[:2]), tmp_path / "s", "g", META, overwrite=True)
    scores, meta = load_scores(tmp_path / "s", "g")
    assert scores.shape == (2, 3) and meta["fingerprint"] == "g"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "pkl", "pkl2", "s"]
    with pytest.raises(DataError, match="meta.json"):
        load_scores(tmp_path / "pkl", "g")


def test_released_scores_keep_the_design_taus_through_the_store(tmp_path):
    """float32 storage does not move the reference Kendall taus (docs/method.md)."""
    if not REF.is_dir():
        pytest.skip(f"released reference data not available at {REF}")
    meta = {"template": "alpaca", "max_len": 512}
    small, _ = load_scores(import_scores(REF / "alpaca-opt-350m", tmp_path / "350m", "alpaca",
                                         dict(meta, model="facebook/opt-350m")), "alpaca")
    large, _ = load_scores(import_scores(REF / "alpaca-opt-13b", tmp_path / "13b", "alpaca",
                                         dict(meta, model="facebook/opt-13b")), "alpaca")
    for metric, expected in [("lp1", 0.601), ("lp_app", 0.714)]:
        tau = kendalltau(compute_metric(metric, small), compute_metric(metric, large)).statistic
        assert round(float(tau), 3) == expected
