"""A corpus of malformed and awkward inputs, each written here and run
through the launcher as a user would run it.

Rejected inputs must stop with exit status 2 and one line on stderr,
``lpjax: <file or field>[: record N]: ...``, naming the file (and the record
where there is one), with no traceback and no stage output (the checks run
before the first model is built, so each takes seconds). Awkward but valid
inputs must run to the end, and report.md must say what was seen.

The launches run once per module, three at a time, each in its own process
(forked from one interpreter that imported lpjax once: tests/forked_launch.py);
each case is one test that reads its result.
"""
import json
import os
import pickle
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO, launch_env
from tests.forked_launch import run_lanes

MICRO = "configs/lp_app.py:micro"
SELECT = "configs/select_only.py"


def _records(n, start=0):
    return [{"instruction": f"Repeat the word w{i}.", "input": "", "output": f"w{i}"} for i in range(start, start + n)]


class _RunsCommand:
    """A pickle whose loading would run a shell command (and touch a file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# ---------------------------------------------------------------- the corpus
#
# Each builder gets a fresh directory and returns (config, overrides,
# expected): for a rejection, expected = (what the line must name, record
# number or None); for an acceptance, expected = the text report.md's
# "Input checks" section must hold.

def _data(content, name="data.json", mode="w"):
    def build(d):
        path = d / name
        (path.write_bytes if "b" in mode else path.write_text)(content)
        return MICRO, [f"--config.data.source={path}"], path
    return build


def _reject_data(content, record=None, name="data.json", mode="w", extra=()):
    def build(d):
        _, args, path = _data(content, name, mode)(d)
        return MICRO, args + list(extra), (str(path), record)
    return build


def _jsonl(lines):
    return "\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n"


GOOD = _records(40)

REJECT = {
    "truncated-json": _reject_data(json.dumps(GOOD[:3])[:-30], record=3),
    "empty-file": _reject_data(""),
    "whitespace-only": _reject_data("  \n\n "),
    "object-not-list": _reject_data(json.dumps({"data": GOOD}), record=1),
    "missing-output": _reject_data(json.dumps(GOOD[:1] + [{"instruction": "x", "input": ""}] + GOOD[2:]), record=2),
    "null-instruction": _reject_data(json.dumps(GOOD[:2] + [{"instruction": None, "input": "", "output": "y"}]),
                                     record=3),
    "number-output": _reject_data(json.dumps(GOOD[:3] + [{"instruction": "x", "input": "", "output": 7}]), record=4),
    "list-item-not-object": _reject_data(json.dumps(GOOD[:1] + ["just a string"] + GOOD[2:]), record=2),
    "non-utf8": _reject_data(_jsonl(GOOD[:2]).encode() + b'{"instruction": "caf\xe9", "input": "", "output": "x"}\n',
                             name="data.jsonl", mode="wb"),
    "bad-jsonl-line-5": _reject_data(_jsonl(GOOD[:4] + ['{"instruction": "x", "output": ', *GOOD[5:10]]), record=5,
                                     name="data.jsonl"),
    "single-record": _reject_data(json.dumps(GOOD[:1])),
    "chat-without-assistant": _reject_data(_jsonl([{"messages": [{"role": "user", "content": "hi"}]}]), record=1,
                                           name="chat.jsonl"),
    "chat-messages-not-list": _reject_data(_jsonl([{"messages": [{"role": "user", "content": "a"},
                                                                 {"role": "assistant", "content": "b"}]},
                                                   {"messages": "hello"}]), record=2, name="chat.jsonl"),
    "corrupt-parquet": _reject_data(b"PAR1 this is not parquet", name="data.parquet", mode="wb"),
}


def _missing_source(d):
    return MICRO, [f"--config.data.source={d / 'nope.json'}"], ("data.source", None)


def _empty_datasets_dir(d):
    (d / "ds").mkdir()
    return MICRO, [f"--config.data.source={d / 'ds'}"], (str(d / "ds"), None)


def _bad_test_source(d):
    (d / "train.json").write_text(json.dumps(GOOD))
    (d / "test.json").write_text(json.dumps(GOOD[:2] + [{"instruction": "x", "input": 3, "output": "y"}]))
    return MICRO, [f"--config.data.source={d / 'train.json'}", f"--config.data.test_source={d / 'test.json'}"], (
        str(d / "test.json"), 3)


REJECT.update({"missing-data-path": _missing_source, "empty-datasets-dir": _empty_datasets_dir,
               "bad-test-source-record": _bad_test_source})


# Score files, read by the select-only config (no model at all).
def _scores(epochs, record=None, what=None, n=len(GOOD), extra=()):
    def build(d):
        (d / "data.json").write_text(json.dumps(GOOD))
        scores = d / "scores"
        scores.mkdir()
        for name, values in epochs(n, d).items():
            _pickle(scores / name, values)
        where = what(d) if what else str(scores)
        return SELECT, [f"--config.data.source={d / 'data.json'}", f"--config.select.score_files={scores}",
                        *extra], (where, record)
    return build


def _ppl(n, seed=0):
    return (1.5 + np.random.default_rng(seed).random(n)).tolist()


def _code_pickle(d):
    return {"epoch-pre.pkl": _ppl(40), "epoch-1.pkl": [1.0, _RunsCommand(d / "PWNED")]}


REJECT.update({
    "scores-wrong-length": _scores(lambda n, d: {"epoch-pre.pkl": _ppl(n - 1), "epoch-1.pkl": _ppl(n - 1, 1)}),
    "scores-nan": _scores(lambda n, d: {"epoch-pre.pkl": _ppl(n), "epoch-1.pkl": _ppl(n, 1)[:6] + [float("nan")]
                                         + _ppl(n, 1)[7:]}, record=7,
                          what=lambda d: str(d / "scores" / "epoch-1.pkl")),
    "scores-not-a-list": _scores(lambda n, d: {"epoch-pre.pkl": {"ppl": _ppl(n)}, "epoch-1.pkl": _ppl(n)},
                                 what=lambda d: str(d / "scores" / "epoch-pre.pkl")),
    "scores-pickle-runs-a-command": _scores(lambda n, d: _code_pickle(d),
                                            what=lambda d: str(d / "scores" / "epoch-1.pkl")),
    "scores-missing-epoch-1": _scores(lambda n, d: {"epoch-pre.pkl": _ppl(n)}),
    "scores-string-item": _scores(lambda n, d: {"epoch-pre.pkl": _ppl(n), "epoch-1.pkl": ["1.5"] * n},
                                  record=1, what=lambda d: str(d / "scores" / "epoch-1.pkl")),
    "scores-empty-dir": _scores(lambda n, d: {}),
})


def _wrong_fingerprint(d):
    from lpjax.scoring.store import import_scores

    (d / "data.json").write_text(json.dumps(GOOD))
    for name, seed in (("epoch-pre.pkl", 0), ("epoch-1.pkl", 1)):
        _pickle(d / "pkl" / name, _ppl(len(GOOD), seed))
    import_scores(d / "pkl", d / "scores", "0" * 64, {"model": "m", "template": "alpaca", "max_len": 512})
    return SELECT, [f"--config.data.source={d / 'data.json'}", f"--config.select.score_files={d / 'scores'}"], (
        str(d / "scores"), None)


REJECT["scores-wrong-fingerprint"] = _wrong_fingerprint


# Cluster files, with good score files.
def _clusters(content, record=None, mode="w"):
    def build(d):
        config, args, _ = _scores(lambda n, d: {"epoch-pre.pkl": _ppl(n), "epoch-1.pkl": _ppl(n, 1)})(d)
        path = d / "clusters.txt"
        (path.write_bytes if "b" in mode else path.write_text)(content)
        return config, args + ["--config.cluster.method=file", f"--config.cluster.file={path}"], (str(path), record)
    return build


REJECT.update({
    "clusters-wrong-length": _clusters(json.dumps([0, 1] * 19)),
    "clusters-negative": _clusters(json.dumps([0, 1, 2, -1] + [0] * 36), record=4),
    "clusters-non-integer": _clusters(json.dumps([0] * 9 + [1.5] + [0] * 30), record=10),
    "clusters-text-token": _clusters("\n".join(["3"] * 11 + ["three"] + ["3"] * 28), record=12),
    "clusters-not-utf8": _clusters(b"\xff\xfe0\n1\n", mode="wb"),
})


# Checkpoint directories: a valid tiny Llama checkpoint, then broken copies.
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from lpjax.data.tokenizer import train_bpe
    from lpjax.models import hf, registry

    out = tmp_path_factory.mktemp("ckpt") / "good"
    tok = train_bpe([r["instruction"] + r["output"] for r in GOOD] * 5, 300, str(out) + "_tok")
    hf.save_hf(registry.load_model("llama-micro", len(tok), 0), str(out), tok)
    return out


def _broken_checkpoint(change, where=lambda c: str(c)):
    def build(d, good):
        import shutil

        c = d / "ckpt"
        shutil.copytree(good, c)
        change(c)
        (d / "data.json").write_text(json.dumps(GOOD))
        return MICRO, [f"--config.data.source={d / 'data.json'}", "--config.data.test_size=4",
                       f"--config.probe.model={c}"], (where(c), None)
    build.needs_checkpoint = True
    return build


def _drop_tensor(c):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(c / "model.safetensors")
    del tensors["model.layers.0.mlp.up_proj.weight"]
    save_file(tensors, c / "model.safetensors", metadata={"format": "np"})


def _wrong_shape(c):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(c / "model.safetensors")
    tensors["model.norm.weight"] = np.ones(7, np.float32)
    save_file(tensors, c / "model.safetensors", metadata={"format": "np"})


def _config(c, **changes):
    config = json.loads((c / "config.json").read_text())
    config.update(changes)
    (c / "config.json").write_text(json.dumps(config))


def _only_bin(c):
    os.rename(c / "model.safetensors", c / "pytorch_model.bin")


def _no_tokenizer(c):
    for name in os.listdir(c):
        if name.startswith(("tokenizer", "special_tokens")):
            os.remove(c / name)


def _garbage_tokenizer(c):
    (c / "tokenizer.json").write_text("{not json")


def _chat_without_template(d, good):
    config, args, _ = _broken_checkpoint(lambda c: None)(d, good)
    return config, args + ["--config.data.template=chat", "--config.target.enabled=False",
                           "--config.evaluate.enabled=False"], (str(d / "ckpt"), None)


_chat_without_template.needs_checkpoint = True

REJECT.update({
    "checkpoint-missing-tensor": _broken_checkpoint(_drop_tensor),
    "checkpoint-wrong-shape": _broken_checkpoint(_wrong_shape),
    "checkpoint-unknown-model-type": _broken_checkpoint(lambda c: _config(c, model_type="t5")),
    "checkpoint-config-not-json": _broken_checkpoint(lambda c: (c / "config.json").write_text("{oops"),
                                                     where=lambda c: str(c / "config.json")),
    "checkpoint-pytorch-bin-only": _broken_checkpoint(_only_bin),
    "checkpoint-without-tokenizer": _broken_checkpoint(_no_tokenizer),
    "tokenizer-corrupt": _broken_checkpoint(_garbage_tokenizer),
    "chat-template-missing": _chat_without_template,
})


# Config values and the judge endpoint.
def _config_value(*overrides, field):
    return lambda d: (MICRO, list(overrides), (field, None))


def _judge_unreachable(d):
    (d / "q.jsonl").write_text(_jsonl([{"question": "hi?"}]))
    return MICRO, [f"--config.evaluate.answers.test_sets=('q={d / 'q.jsonl'}#prompt=question',)",
                   "--config.evaluate.judge.backend=openai", "--config.evaluate.judge.model=gpt",
                   f"--config.evaluate.judge.base_url=http://127.0.0.1:{_free_port()}/v1"], (
        "evaluate.judge.base_url", None)


def _bad_test_set(d):
    (d / "q.jsonl").write_text(_jsonl([{"question": "hi?"}, {"q": "no prompt field"}]))
    return MICRO, [f"--config.evaluate.answers.test_sets=('q={d / 'q.jsonl'}#prompt=question',)"], (
        str(d / "q.jsonl"), 2)


REJECT.update({
    "percent-zero": _config_value("--config.select.percent=0", field="select.percent"),
    "percent-negative": _config_value("--config.select.percent=-5", field="select.percent"),
    "template-unknown": _config_value("--config.data.template=vicuna", field="data.template"),
    "lr-negative": _config_value("--config.probe.train.lr=-1", field="probe.train.lr"),
    "max-len-tiny": _config_value("--config.data.max_len=2", field="data.max_len"),
    "test-size-negative": _config_value("--config.data.test_size=-3", field="data.test_size"),
    "misspelt-field": _config_value("--config.select.percnt=5", field="select.percnt"),
    "judge-unreachable": _judge_unreachable,
    "test-set-bad-record": _bad_test_set,
})


# ---------------------------------------------------------------- awkward but valid

ACCEPT_ARGS = ["--config.data.test_size=4", "--config.target.enabled=False", "--config.evaluate.enabled=False",
               "--config.data.max_len=64"]


def _accept(records, expect, name="data.json", encode=None, extra=()):
    def build(d):
        path = d / name
        text = _jsonl(records) if name.endswith(".jsonl") else json.dumps(records, ensure_ascii=False)
        path.write_bytes(encode(text) if encode else text.encode())
        return MICRO, [f"--config.data.source={path}", *ACCEPT_ARGS, *extra], expect
    return build


BIG = "lorem ipsum " * (1_000_000 // 12)
ACCEPT = {
    "bom-json": _accept(GOOD, "byte-order mark read past in", encode=lambda t: b"\xef\xbb\xbf" + t.encode()),
    "bom-jsonl-crlf": _accept(GOOD, "byte-order mark read past in", name="data.jsonl",
                              encode=lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode()),
    "extra-fields": _accept([{**r, "source": "web", "score": i} for i, r in enumerate(GOOD)],
                            "extra fields kept as metadata: `score`, `source`"),
    # Some duplicates may land in the held-out split: any count above zero.
    "duplicates": _accept(GOOD[:30] + GOOD[:10], re.compile(r"- [1-9]\d* exact duplicate\(s\)")),
    "one-megabyte-record": _accept(GOOD[:39] + [{"instruction": "Say it.", "input": "", "output": BIG}],
                                   "largest record 1,000,"),
    "prompts-over-max-len": _accept(GOOD[:30] + [{"instruction": "word " * 200, "input": "x " * 100, "output": "ok"}
                                                 for _ in range(10)], "prompts shortened"),
    "all-empty-responses": _accept([{**r, "output": ""} for r in GOOD], "(all of them"),
    "null-input-unicode": _accept([{**r, "input": None, "instruction": r["instruction"] + " ☃ é 中"} for r in GOOD],
                                  "0 of 36 training responses empty"),
}


# ---------------------------------------------------------------- running them

def _argv(config, args, workdir):
    if config == MICRO and not any(a.startswith("--config.cluster.method=") for a in args):
        # The embedded default clusters by its records' `kind`, which these files lack.
        args = [*args, "--config.cluster.method=none"]
    return [f"--config={config}", f"--config.workdir={workdir}", *args]


@pytest.fixture(scope="module")
def results(tmp_path_factory, checkpoint):
    """Every case launched once, three at a time; {case: (dir, expected, proc)}.

    Each launch is its own process running the launcher's main, as
    `python -m lpjax.launch` does, forked from one interpreter that imported
    lpjax once (tests/forked_launch.py): its exit status and stderr are the
    launch's own. The accepted runs compile the same train and scoring steps
    once: lpjax's compilation cache is the test session's (tests/conftest.py)."""
    root = tmp_path_factory.mktemp("corpus")
    store = root / "shared-store"  # accepted runs share the pretrained base
    jobs = {}
    for kind, cases in (("accept", ACCEPT), ("reject", REJECT)):  # the long ones first
        for name, build in cases.items():
            d = root / name
            d.mkdir()
            config, args, expected = build(d, checkpoint) if getattr(build, "needs_checkpoint", False) else build(d)
            if kind == "accept":
                args = args + [f"--config.store={store}"]
            jobs[name] = (d, config, args, expected)
    env = launch_env()
    env.pop("LPJAX_TRACEBACK", None)
    procs = run_lanes([[{"name": name, "argv": _argv(config, args, d / "w")}]
                       for name, (d, config, args, _) in jobs.items()], cwd=REPO, env=env, parallel=3, timeout=900)
    return {name: (jobs[name][0], jobs[name][3], procs[name]) for name in jobs}


def test_corpus_is_large_enough():
    assert len(REJECT) + len(ACCEPT) >= 30


@pytest.mark.parametrize("case", sorted(REJECT))
def test_rejected_with_one_line(results, case):
    d, (where, record), proc = results[case]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lpjax:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert proc.stderr.rstrip().endswith(lines[0])  # the last thing printed
    prefix = f"lpjax: {where}: " + (f"record {record}: " if record is not None else "")
    assert lines[0].startswith(prefix), (prefix, lines[0])
    assert len(lines[0]) > len(prefix) + 10  # says what is wrong
    # No stage output: the checks ran before the workdir was created.
    assert not (d / "w").exists(), os.listdir(d / "w")
    assert not (d / "PWNED").exists()  # nothing in a pickle ran


@pytest.mark.parametrize("case", sorted(ACCEPT))
def test_accepted_and_reported(results, case):
    d, expected, proc = results[case]
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (d / "w" / "report.md").read_text()
    section = report.split("## Input checks", 1)[1].split("\n## ", 1)[0]
    assert (expected.search(section) if isinstance(expected, re.Pattern) else expected in section), section


def test_traceback_on_request(tmp_path):
    """LPJAX_TRACEBACK=1 shows where a rejection came from, for debugging."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps(GOOD[:3] + [{"instruction": "x", "input": "", "output": 7}]))
    cmd = [sys.executable, "-m", "lpjax.launch", f"--config={MICRO}", f"--config.workdir={tmp_path / 'w'}",
           f"--config.data.source={path}", "--config.cluster.method=none"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=launch_env(LPJAX_TRACEBACK="1"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "DataError" in proc.stderr, proc.stderr[-2000:]
    assert "record 4: field 'output' must be a string, got int" in proc.stderr
