"""The one entry point:

    python -m lpjax.launch --config=configs/lp_app.py [--config.field=value ...]
"""
from __future__ import annotations

import logging as logging_std
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/*.py[:variant]).")
flags.mark_flags_as_required(["config"])


class _QuietLibraries(logging_std.Filter):
    """Orbax logs every checkpoint read and write at INFO; keep lpjax's own
    progress lines readable."""

    def filter(self, record: logging_std.LogRecord) -> bool:
        return record.levelno >= logging_std.WARNING or "/orbax/" not in record.pathname


_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the traceback of an input error (also LPJAX_TRACEBACK=1).")


def _fail(message: str) -> None:
    print(f"lpjax: {message}", file=sys.stderr)
    sys.exit(2)


def _show_traceback() -> bool:
    # Before flag parsing finished (a bad flag), only the environment variable can ask.
    return os.environ.get("LPJAX_TRACEBACK", "") not in ("", "0") or (flags.FLAGS.is_parsed() and _TRACEBACK.value)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a misspelt config field as one line
    (config_flags raises a KeyError from deep inside)."""
    try:
        return flags.FLAGS(argv)
    except (KeyError, AttributeError) as e:
        _fail(_unknown_field(argv) or str(e))
    except (flags.Error, ValueError) as e:
        # A config file that raised: its last line says why, not the traceback config_flags quotes.
        lines = [line for line in str(e).splitlines() if line.strip()]
        _fail(lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}")


def _unknown_field(argv: list[str]) -> str | None:
    """'<path>: no such field; <section> has: ...' for the first override
    that names no field of the config."""
    import dataclasses

    from lpjax.config import Config

    for arg in argv:
        if not arg.startswith("--config."):
            continue
        obj, path = Config(), arg[len("--config."):].split("=", 1)[0]
        for part in path.split("."):
            if not dataclasses.is_dataclass(obj) or not hasattr(obj, part):
                known = ", ".join(f.name for f in dataclasses.fields(obj)) if dataclasses.is_dataclass(obj) else ""
                return f"{path}: no such config field" + (f"; {type(obj).__name__} has: {known}" if known else "")
            obj = getattr(obj, part)
    return None


def main(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # After flag parsing: keeps --help fast.
    import jax

    from lpjax import distributed, preflight, tuning, validate
    from lpjax.errors import UserError, disk_error

    try:
        cfg = validate.finalize(_CONFIG.value)
        d = cfg.distributed
        distributed.initialize(d.coordinator, d.num_processes, d.process_id)
        # Every field, then every input file, is checked before the first stage
        # runs, and before the stages' modules (flax, orbax, ...) are imported:
        # a rejected run takes seconds.
        validate.validate(cfg, jax.device_count())
        preflight.check(cfg)
        # Compiled steps persist between runs (a rerun, a resume, a second
        # target with the same shapes load them instead of compiling).
        tuning.enable_compilation_cache()
        from lpjax import pipeline

        result = pipeline.run(cfg, checked=True)
    except UserError as e:
        # What the user can fix: one line naming the file or field (and record), exit 2.
        if _show_traceback():
            raise
        _fail(str(e))
    except OSError as e:
        # A full disk or a permission problem met outside lpjax's own writers
        # (Orbax, tensorstore, datasets): the same one line, naming the path.
        if (err := disk_error(e)) is None or _show_traceback():
            raise
        _fail(str(err))
    logging.info("report: %s", result["report"])
    print(result["report"])


def reexec_with_huge_pages() -> None:
    """Start again with glibc's malloc asking for transparent huge pages.

    XLA:CPU takes each step's temporaries as one block (4 GiB for a SmolLM2
    train step of 8 x 272 tokens), which malloc maps fresh and the kernel
    faults in 4 KiB at a time on every step: over a third of the step was
    system time. With huge pages the faults fall 30-fold and the step takes
    a fifth less (docs/performance.md, AMD EPYC). The tunable must be set
    before the process starts, so the launcher re-executes itself once
    (same PID, same arguments). LPJAX_HUGE_PAGES=0, or a GLIBC_TUNABLES that already names
    the setting, leaves the process as it is."""
    import platform

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (sys.platform != "linux" or os.environ.get("LPJAX_HUGE_PAGES", "1") == "0"
            or "glibc.malloc.hugetlb" in tunables or platform.libc_ver()[0] != "glibc"):
        return
    env = {**os.environ, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, "glibc.malloc.hugetlb=1"]))}
    os.execve(sys.executable, sys.orig_argv, env)


if __name__ == "__main__":
    reexec_with_huge_pages()
    app.run(main, flags_parser=_parse_flags)
