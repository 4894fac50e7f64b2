"""Refuse before work: every input a run will read is checked before the
first stage runs (and so before the first model is built), and the workdir
and store are checked to be writable.

``lpjax.validate`` has already checked the config's own values and that
named paths exist; this reads what they hold: the data records (loaded once
here, and reused by the data stage), score files, the cluster file (or
the cluster field in every record),
checkpoint directories and tokenizers, test sets, and the judge endpoint.
Each problem raises a ``UserError`` naming the file (and record) or field, so
a rejected run leaves no stage output behind.
"""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from lpjax.config import SYNTHETIC, Config
from lpjax.errors import DataError, DiskError, UserError, disk_error
from lpjax.selection.metrics import epochs_needed


def check(cfg: Config) -> None:
    """Raise a UserError for the first input of ``cfg`` that cannot work."""
    from lpjax.data import split

    train, test, source_index = split.load_splits(cfg.data, cfg.seed)
    _check_splits(cfg, len(train), len(test))
    if cfg.select.scores_from == "files" or cfg.select.compare:
        from lpjax.data.formats import fingerprint

        fp = fingerprint(train)
        if cfg.select.scores_from == "files":
            check_scores(cfg.select.score_files, fp, len(train), cfg.select.metric)
        for other in cfg.select.compare:
            check_scores(other, fp, len(train), cfg.select.metric)
    if cfg.cluster.method == "file":
        from lpjax.selection.clusters import read_cluster_file

        read_cluster_file(cfg.cluster.file, len(train))
    elif cfg.cluster.method == "field":
        from lpjax.selection.clusters import field_clusters

        field_clusters(train, cfg.cluster.field, cfg.data.source, source_index)
    elif cfg.cluster.method == "minilm" and not cfg.cluster.embed_model:
        from lpjax.selection import embed

        try:
            embed.default_model_dir()
        except FileNotFoundError as e:
            raise UserError("cluster.method", f"minilm: {e}") from None
    from lpjax.pipeline import model_sides  # the pipeline imports this module

    for side in model_sides(cfg):
        _check_model(cfg, side)
    if cfg.evaluate.answers.test_sets:
        from lpjax.evaluation.testsets import load_test_sets

        load_test_sets(cfg.evaluate.answers.test_sets)
    if cfg.evaluate.enabled and cfg.evaluate.reference_sets:
        from lpjax.evaluation.heldout import reference_items

        for spec in cfg.evaluate.reference_sets:
            reference_items(spec)  # DataError: a set without any reference answer
    _check_judge(cfg)
    check_writable(cfg.workdir, cfg.store)


def _check_splits(cfg: Config, num_train: int, num_test: int) -> None:
    d = cfg.data
    if d.source == SYNTHETIC:
        return
    if num_train == 0:
        raise DataError(d.source, f"no training records left: the file holds {num_test} record(s) and "
                                  f"data.test_size={d.test_size} holds them all out; add records or lower "
                                  "data.test_size")
    if cfg.evaluate.enabled and num_test == 0:
        raise DataError(d.test_source or d.source, "no held-out records to evaluate on; set data.test_size > 0, "
                                                   "data.test_source, or evaluate.enabled=False")


def check_scores(source: str, fingerprint: str, num_records: int, metric: str) -> None:
    """A score directory (lpjax's) or a directory of the authors' pickles,
    read without writing anything: it must hold finite, positive scores for
    exactly ``num_records`` records and enough epochs for ``metric``."""
    from lpjax.scoring.store import load_reference_scores, load_scores, reference_score_files

    path = Path(source)
    if (path / "meta.json").is_file():
        rows = load_scores(path, fingerprint)[0]
        name = str(path)
    else:
        rows = load_reference_scores(path)
        files = reference_score_files(path)
        if rows.shape[1] != num_records:
            raise DataError(path, f"{rows.shape[1]} scores per epoch, but there are {num_records} training "
                                  "records; the scores must belong to exactly these records, in this order")
        bad = np.argwhere(~np.isfinite(rows) | (rows <= 0))
        if len(bad):
            row, col = bad[0]
            raise DataError(files[row], f"perplexities must be finite and positive, got {rows[row, col]}",
                            int(col) + 1)
        name = str(path)
    needed = max(epochs_needed(metric), 0)
    if rows.shape[0] < needed + 1:
        raise DataError(name, f"holds scores before training and after {rows.shape[0] - 1} epoch(s), but "
                              f"select.metric={metric} needs epoch {needed}")


def _check_model(cfg: Config, side: str) -> None:
    """A checkpoint directory's config, tensors (names and shapes, no data)
    and tokenizer; a preset is built by the base stage and needs nothing."""
    from lpjax.data.tokenizer import load_tokenizer
    from lpjax.models import hf, registry

    s = getattr(cfg, side)
    if registry.is_preset(s.model):
        if s.tokenizer:
            _check_tokenizer(load_tokenizer(s.tokenizer), s.tokenizer, f"{side}.tokenizer", cfg.data.template)
        return
    hf_config = hf.check_checkpoint(s.model)
    registry.model_config(s.model)  # an encoder is refused here
    tok_dir = s.tokenizer or registry.tokenizer_path(s.model)
    tok = load_tokenizer(tok_dir)
    registry.check_vocab(s.model, int(hf_config.get("vocab_size") or 0) or len(tok), len(tok))
    _check_tokenizer(tok, tok_dir, f"{side}.tokenizer", cfg.data.template)


def _check_tokenizer(tok: Any, path: str, field: str, template: str) -> None:
    if template == "chat" and not getattr(tok, "chat_template", None):
        raise UserError(path, f"data.template=chat, but this tokenizer has no chat template; use "
                              f"data.template=alpaca or set {field} to one that has")


def _check_judge(cfg: Config) -> None:
    j = cfg.evaluate.judge
    if j.backend == "lpjax":
        from lpjax.models import hf

        hf.check_checkpoint(j.model)
    elif j.backend == "openai":
        url = urlparse(j.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            # Hours of training before finding the judge down would be lost time.
            with socket.create_connection((url.hostname, port), timeout=10):
                pass
        except OSError as e:
            raise UserError("evaluate.judge.base_url", f"cannot reach {j.base_url} ({e.strerror or e}); start the "
                                                       "judge server or fix the URL") from None


def check_writable(workdir: str, store: str = "") -> None:
    """The workdir and store can be created and written to (a file written
    and removed in each), so a run on a read-only or full disk stops now,
    naming the path, not after its first hour."""
    for path in dict.fromkeys(p for p in (workdir, store or os.path.join(workdir, "store"))):
        # Probe the deepest existing ancestor when the directory does not exist
        # yet: creating it now would leave a workdir behind a rejected run.
        probe_dir = os.path.abspath(path)
        while not os.path.isdir(probe_dir):
            if os.path.lexists(probe_dir):
                raise DiskError(probe_dir, "exists and is not a directory; choose another --config.workdir")
            probe_dir = os.path.dirname(probe_dir)
        try:
            fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".lpjax-write-check-")
            try:
                os.write(fd, b"x" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(tmp)
        except OSError as e:
            err = disk_error(e, probe_dir)
            if err is None:
                raise
            raise DiskError(probe_dir, err.message) from None
