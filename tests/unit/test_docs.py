"""The docs name what the code has: every stage module appears in README's
stage list and in docs/design.md's stage table, and every module README's
Layout names exists."""
import os
import re

from tests.conftest import REPO

STAGES = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "lpjax", "stages"))
                if f.endswith(".py") and f not in ("__init__.py", "common.py"))


def _section(path, heading):
    text = open(os.path.join(REPO, path), encoding="utf-8").read()
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def test_every_stage_module_is_in_readme_and_design():
    readme = _section("README.md", "## The stages")
    design = open(os.path.join(REPO, "docs", "design.md"), encoding="utf-8").read()
    assert len(STAGES) >= 10
    for name in STAGES:
        assert re.search(rf"\*\*{name}(\*\*|/)", readme), f"README's stage list does not name {name}"
        assert f"`lpjax/stages/{name}.py`" in design, f"docs/design.md's stage table has no row for {name}"


def test_layout_names_only_files_that_exist():
    layout = _section("README.md", "## Layout")
    for path in re.findall(r"^(lpjax/\S+\.py|lpjax/\S+/)", layout, re.M):
        assert os.path.exists(os.path.join(REPO, path)), f"README's Layout names {path}, which does not exist"
