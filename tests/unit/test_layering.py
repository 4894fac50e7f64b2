"""Imports run down the layers: lpjax/config.py is a leaf (the dataclasses
everything else takes), so it imports nothing of lpjax but lpjax.errors,
at module level or inside a function. Its validation, which asks the
domains (models, selection, data, evaluation, sharding), is lpjax/validate.py."""
import ast
import os

import lpjax

LEAVES = {"config.py": {"lpjax.errors"}}


def lpjax_imports(path: str) -> list[tuple[int, str]]:
    """(line, module) of every lpjax module ``path`` imports, at any depth:
    ``import lpjax.x``, ``from lpjax.x import y`` (as lpjax.x), ``from lpjax
    import x`` (as lpjax.x), relative imports, and importlib.import_module /
    __import__ of a literal name."""
    package = os.path.relpath(os.path.dirname(path), os.path.dirname(os.path.dirname(lpjax.__file__)))
    package = package.replace(os.sep, ".")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "lpjax"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "lpjax":
                continue
            if base == "lpjax":  # from lpjax import x: x is a module of the package
                found += [(node.lineno, f"lpjax.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, base))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if (name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).split(".")[0] == "lpjax"):
                found.append((node.lineno, node.args[0].value))
    return found


def test_leaves_import_only_what_they_may():
    root = os.path.dirname(lpjax.__file__)
    for name, allowed in LEAVES.items():
        path = os.path.join(root, name)
        bad = [f"{name}:{line} imports {module}" for line, module in lpjax_imports(path) if module not in allowed]
        assert not bad, "; ".join(bad)


def test_the_check_sees_every_form_of_import(tmp_path):
    path = tmp_path / "lpjax_like.py"
    path.write_text("import importlib\n"
                    "from lpjax.errors import UserError\n"
                    "import lpjax.sharding\n"
                    "from lpjax import errors, workdir\n"
                    "def f():\n"
                    "    from lpjax.models import registry\n"
                    "    importlib.import_module('lpjax.selection.embed')\n")
    assert [m for _, m in sorted(lpjax_imports(str(path)))] == [
        "lpjax.errors", "lpjax.sharding", "lpjax.errors", "lpjax.workdir", "lpjax.models", "lpjax.selection.embed"]
