"""configs/paper_opt_alpaca.py end to end, with tiny random OPT checkpoints
standing in for OPT-350M (post-LN, projected 512-wide embedding) and OPT-13B."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, SHARED, launch_env

ALPACA = os.path.join(SHARED, "data", "alpaca_52k.json")
GPT2 = os.path.join(SHARED, "tokenizers", "gpt2")

pytestmark = pytest.mark.skipif(not (os.path.isfile(ALPACA) and os.path.isdir(GPT2)), reason=f"needs {ALPACA}, {GPT2}")


def tiny_opt(path, **kw):
    import torch
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(vocab_size=50272, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                    max_position_embeddings=256, bos_token_id=2, eos_token_id=2, pad_token_id=1, **kw)
    OPTForCausalLM(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(GPT2).save_pretrained(path)
    return str(path)


def test_paper_config_runs_with_tiny_opt_stand_ins(tmp_path):
    probe = tiny_opt(tmp_path / "opt-350m-like", do_layer_norm_before=False, word_embed_proj_dim=16)
    target = tiny_opt(tmp_path / "opt-13b-like")
    n = 48
    clusters = np.random.default_rng(1).integers(0, 6, n)
    (tmp_path / "clusters.json").write_text(json.dumps(clusters.tolist()))
    w = tmp_path / "w"
    overrides = [
        f"--config.workdir={w}", f"--config.probe.model={probe}", f"--config.target.model={target}",
        f"--config.data.source={ALPACA}", f"--config.data.limit={n}", "--config.data.max_len=128",
        "--config.cluster.method=file", f"--config.cluster.file={tmp_path / 'clusters.json'}",
        "--config.select.percent=25",
        "--config.probe.train.batch_size=16", "--config.target.train.batch_size=16", "--config.target.train.epochs=1",
        # A set scoring budget: measuring one (tests/unit/test_tuning.py) would be a third of this run.
        "--config.probe.score_token_budget=2048", "--config.target.train.pad_multiple=32",
        "--config.probe.train.pad_multiple=32", "--config.select.export_formats=('jsonl',)",
    ]
    proc = subprocess.run([sys.executable, "-m", "lpjax.launch", "--config=configs/paper_opt_alpaca.py", *overrides],
                          cwd=REPO, capture_output=True, text=True, timeout=900, env=launch_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    import tensorstore as ts

    ppl = np.asarray(ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(w / "probe/scores/ppl")}})
                     .result().read().result())
    assert ppl.shape == (4, n) and np.all(np.isfinite(ppl))  # P0..P3: the 3-epoch run of the paper
    chosen = json.load(open(w / "select" / "indices_lp_app.json"))
    lp_app = (ppl[0].astype(np.float64) - ppl[1]) / ppl[0]
    want = []
    for c in np.unique(clusters):  # the authors' chunk rule, k = round(100 / 25) = 4
        members = np.where(clusters == c)[0]
        want += np.array_split(members[np.argsort(lp_app[members], kind="stable")], 4)[0].tolist()
    assert sorted(chosen) == sorted(want)
    for subset in ("lp_app", "clust_rand", "random", "full"):
        assert (w / "target" / subset / "hf" / "config.json").exists()
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(str(w / "target" / "lp_app" / "hf"))
    assert tuned.config.model_type == "opt"
    assert "## Selection audit" in open(w / "report.md").read()
