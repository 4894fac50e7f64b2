"""Stages that declare their inputs: keys from exactly the declared inputs,
bodies refused undeclared config fields, content-addressed outputs."""
import dataclasses
import json
import os

import pytest

from lpjax import atomic
from lpjax.workdir import Stage, UndeclaredRead, Workdir, stage_key


@dataclasses.dataclass
class Inner:
    a: int = 1
    b: int = 2


@dataclasses.dataclass
class Cfg:
    seed: int = 0
    inner: Inner = dataclasses.field(default_factory=Inner)
    other: str = "x"


def writer(ctx):
    """Writes what it read, and counts its runs."""
    atomic.write_json(os.path.join(ctx.out, "value.json"), {"a": ctx.cfg.inner.a, "seed": ctx.cfg.seed})
    return {"a": ctx.cfg.inner.a}


STAGE = Stage("s", writer, reads=("seed", "inner.a"))


def runs(work):
    return [json.loads(line)["action"] for line in open(work.path("stages.jsonl"))]


def test_key_follows_declared_fields_only(tmp_path):
    work, cfg = Workdir(str(tmp_path)), Cfg()
    first = work.run(STAGE, cfg)
    cfg.inner.b, cfg.other = 99, "y"  # not declared: same key, skipped
    assert work.run(STAGE, cfg).key == first.key
    cfg.inner.a = 5  # declared: a new key and a new directory
    second = work.run(STAGE, cfg)
    assert second.key != first.key and second.dir != first.dir
    assert runs(work) == ["ran", "skipped", "ran"]
    assert json.load(open(os.path.join(second.dir, "value.json")))["a"] == 5
    assert json.load(open(os.path.join(first.dir, "value.json")))["a"] == 1  # the earlier output is kept


def test_a_stored_format_enters_the_key_only_when_set():
    """Outputs stored in an older layout (model weights before their layers
    were stacked) are never found under the new one."""
    keys = {fmt: stage_key(dataclasses.replace(STAGE, format=fmt), Cfg(), {}, {}, "s")[0]
            for fmt in (None, "a", "b")}
    assert len(set(keys.values())) == 3


def test_switching_back_reuses_the_earlier_output_and_repoints_the_link(tmp_path):
    work, cfg = Workdir(str(tmp_path)), Cfg()
    one = work.run(STAGE, cfg)
    cfg.inner.a = 2
    two = work.run(STAGE, cfg)
    assert os.path.realpath(work.path("s")) == os.path.realpath(two.dir)
    cfg.inner.a = 1
    again = work.run(STAGE, cfg)
    assert again.dir == one.dir and runs(work) == ["ran", "ran", "skipped"]
    assert json.load(open(work.path("s", "value.json")))["a"] == 1  # <workdir>/s is the current output


def test_undeclared_config_read_fails(tmp_path):
    def sneaky(ctx):
        return {"b": ctx.cfg.inner.b}

    with pytest.raises(UndeclaredRead, match="'inner.b'"):
        Workdir(str(tmp_path)).run(Stage("sneaky", sneaky, reads=("inner.a",)), Cfg())
    with pytest.raises(UndeclaredRead, match="'other'"):
        Workdir(str(tmp_path)).run(Stage("sneaky2", lambda ctx: {"o": ctx.cfg.other}, reads=("seed",)), Cfg())


def test_whole_section_and_runtime_fields_are_readable_but_runtime_is_not_keyed(tmp_path):
    seen = []

    def body(ctx):
        seen.append((ctx.cfg.inner, ctx.cfg.other))
        return {}

    stage = Stage("t", body, reads=("inner",), runtime=("other",))
    work, cfg = Workdir(str(tmp_path)), Cfg()
    key = work.run(stage, cfg).key
    cfg.other = "changed"
    assert work.run(stage, cfg).key == key and len(seen) == 1
    cfg.inner.b = 3
    assert work.run(stage, cfg).key != key and seen[-1] == (Inner(1, 3), "changed")


def test_upstream_keys_params_and_files_enter_the_key(tmp_path):
    work, cfg = Workdir(str(tmp_path)), Cfg()
    up = work.run(STAGE, cfg)
    data = tmp_path / "input.txt"
    data.write_text("one")
    down = Stage("d", lambda ctx: {"up": ctx.inputs["up"].summary["a"]}, reads=(), needs=("up",),
                 files=lambda c: [str(data)])
    k1 = work.run(down, cfg, {"up": up}, {"subset": "x"}, name="d/x").key
    assert work.run(down, cfg, {"up": up}, {"subset": "y"}, name="d/x").key != k1
    data.write_text("two")
    assert work.run(down, cfg, {"up": up}, {"subset": "x"}, name="d/x").key != k1
    cfg.inner.a = 7
    up2 = work.run(STAGE, cfg)
    data.write_text("one")
    assert work.run(down, cfg, {"up": up2}, {"subset": "x"}, name="d/x").key != k1
    with pytest.raises(TypeError, match="declares needs"):
        work.run(down, cfg, {}, name="d/x")


def test_an_unfinished_stage_resumes_in_its_own_directory(tmp_path):
    attempts = []

    def flaky(ctx):
        attempts.append(os.listdir(ctx.out))
        if len(attempts) == 1:
            atomic.write_text(os.path.join(ctx.out, "partial"), "progress")
            raise KeyboardInterrupt  # killed mid-stage
        return {}

    stage, work = Stage("f", flaky, reads=("seed",)), Workdir(str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        work.run(stage, Cfg())
    assert not json.load(open(work.path("f", "stage.json")))["done"]
    work.run(stage, Cfg())
    assert "partial" in attempts[1]  # the second attempt found the first one's progress
    assert json.load(open(work.path("f", "stage.json")))["done"]


def test_stores_shared_between_workdirs(tmp_path):
    store = str(tmp_path / "store")
    a, b = Workdir(str(tmp_path / "a"), store), Workdir(str(tmp_path / "b"), store)
    first = a.run(STAGE, Cfg())
    second = b.run(STAGE, Cfg())
    assert second.dir == first.dir and runs(b) == ["skipped"]
    assert os.path.realpath(b.path("s")) == os.path.realpath(first.dir)
