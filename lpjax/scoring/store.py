"""Per-sample score files: the one on-disk format between scoring and selection.

A score directory holds two zarr arrays written with tensorstore, `ppl` and
`loss`, each [epochs + 1, N] float32 (row 0 = before training, row i = after
epoch i; NaN = not scored yet), and `meta.json` (model, template, max_len,
data fingerprint). Rows are separate chunks, so each epoch's row lands
whole and an interrupted run knows which rows it still owes.

The authors released perplexities as pickles of plain float lists;
``import_scores`` converts them into a score directory. Pickle can run
arbitrary code on load, so these are read with an unpickler that refuses
every global: a list of floats needs none, and anything that does need one is
not a score file.
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import tensorstore as ts

from lpjax import atomic, faults
from lpjax.errors import DataError
from lpjax.loss import mean_loss, perplexity

ARRAYS = ("ppl", "loss")


def _spec(directory: str, name: str) -> dict:
    return {"driver": "zarr", "kvstore": {"driver": "file", "path": os.path.join(directory, name)}}


class ScoreStore:
    """Per-epoch ppl/loss arrays of one model on one dataset."""

    def __init__(self, directory: str, arrays: dict[str, ts.TensorStore], meta: dict):
        self.directory, self._arrays, self.meta = directory, arrays, meta

    @classmethod
    def create(cls, directory: str, num_rows: int, num_samples: int, meta: dict) -> "ScoreStore":
        os.makedirs(directory, exist_ok=True)
        arrays = {
            name: ts.open(
                _spec(directory, name), create=True, delete_existing=True, dtype=ts.float32,
                shape=[num_rows, num_samples], chunk_layout=ts.ChunkLayout(chunk_shape=[1, num_samples]),
                fill_value=np.nan,
            ).result()
            for name in ARRAYS
        }
        atomic.write_json(os.path.join(directory, "meta.json"), meta)
        return cls(directory, arrays, meta)

    @classmethod
    def open(cls, directory: str) -> "ScoreStore":
        with open(os.path.join(directory, "meta.json")) as f:
            meta = json.load(f)
        return cls(directory, {name: ts.open(_spec(directory, name)).result() for name in ARRAYS}, meta)

    def write_row(self, row: int, loss_sum: np.ndarray, count: np.ndarray) -> None:
        self._arrays["loss"][row].write(mean_loss(loss_sum, count).astype(np.float32)).result()
        # ppl last: done_rows() reads ppl, so a row whose ppl landed has its loss too.
        faults.point("score-row")
        self._arrays["ppl"][row].write(perplexity(loss_sum, count).astype(np.float32)).result()

    def write(self, name: str, values: np.ndarray) -> None:
        """Every row of one array at once (an import)."""
        self._arrays[name].write(np.asarray(values, np.float32)).result()

    def read(self, name: str = "ppl") -> np.ndarray:
        return np.asarray(self._arrays[name].read().result())

    def done_rows(self) -> list[int]:
        ppl = self.read("ppl")
        return [i for i in range(ppl.shape[0]) if not np.isnan(ppl[i]).any()]


class _NoGlobalsUnpickler(pickle.Unpickler):
    """An unpickler that can build only builtin containers and scalars."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        # Every code-execution route in pickle (REDUCE, BUILD, INST, OBJ,
        # NEWOBJ) needs a callable, and callables only come from find_class.
        raise pickle.UnpicklingError(f"global {module}.{name} is forbidden in score files")


def _describe(obj: object) -> str:
    """Short description of a rejected object for error messages."""
    text = repr(obj)
    return f"{type(obj).__name__}: {text[:80]}{'...' if len(text) > 80 else ''}"


def parse_score_pickle(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse pickle bytes holding a list/tuple of numbers into float64 [N]."""
    try:
        obj = _NoGlobalsUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError) as err:
        raise DataError(source, f"not a plain score pickle ({err}); score pickles hold a list of floats and "
                                "nothing else, and are never executed") from None
    if not isinstance(obj, (list, tuple)):
        raise DataError(source, f"expected a list of numbers, found {_describe(obj)}")
    for i, item in enumerate(obj):
        # bool is an int subclass but a True/False "perplexity" is a bug upstream.
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise DataError(source, f"not a number, found {_describe(item)}", i + 1)
    return np.asarray(obj, dtype=np.float64)


def load_score_pickle(path: str | Path) -> np.ndarray:
    """Load one released score pickle (list of floats) safely as float64 [N]."""
    path = Path(path)
    return parse_score_pickle(path.read_bytes(), source=str(path))


def reference_score_files(directory: str | Path) -> list[Path]:
    """epoch-pre.pkl, epoch-1.pkl, ... up to the first missing epoch."""
    directory = Path(directory)
    files = [directory / "epoch-pre.pkl"]
    if not files[0].is_file():
        raise DataError(directory, "not a score directory: no meta.json (lpjax scores) and no epoch-pre.pkl "
                                   "(the authors' pickles)")
    epoch = 1
    while (directory / f"epoch-{epoch}.pkl").is_file():
        files.append(directory / f"epoch-{epoch}.pkl")
        epoch += 1
    return files


def load_reference_scores(directory: str | Path) -> np.ndarray:
    """Stack the released per-epoch scores into [epochs+1, N], row 0 = P0."""
    rows = [load_score_pickle(p) for p in reference_score_files(directory)]
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise DataError(directory, f"epoch files differ in length: {sorted(lengths)}")
    return np.stack(rows)


# ---------------------------------------------------------------------------
# One score format everywhere: the probe writes a ScoreStore while it trains;
# import_scores converts the authors' pickles into one; load_scores reads
# either, refusing scores computed on other records than the ones in use.

REQUIRED_META = ("model", "template", "max_len")
SCORE_KINDS = ("ppl", "loss")


def import_scores(
    src: str | Path,
    dst_dir: str | Path,
    records_fingerprint: str,
    meta: dict,
    num_records: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert the authors' pickles (epoch-pre.pkl, epoch-1.pkl, ...) in `src`
    into a score directory `dst_dir` with the ScoreStore layout.

    `meta` must name the `model`, `template` and `max_len` the scores were
    computed with; `meta["metric"]` says what the pickles hold: "ppl"
    (default, as released; loss = log(ppl)) or "loss" (mean token
    cross-entropy; ppl = exp(loss)). `records_fingerprint` is
    ``lpjax.data.formats.fingerprint`` of the records the scores belong to,
    in the same order; `num_records`, when given, must equal the number of
    scores. The directory is written under a temporary name beside `dst_dir`
    and renamed into place, so it appears whole or not at all; an existing
    `dst_dir` is replaced only with ``overwrite=True``. Returns `dst_dir`.
    """
    src, dst = Path(src), Path(dst_dir)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"import_scores: meta lacks {missing}; say which model/template/max_len made the scores")
    kind = meta.get("metric", "ppl")
    if kind not in SCORE_KINDS:
        raise ValueError(f"import_scores: meta['metric'] must be one of {SCORE_KINDS}, got {kind!r}")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
    files = reference_score_files(src)
    rows = load_reference_scores(src)
    if num_records is not None and rows.shape[1] != num_records:
        raise DataError(src, f"{rows.shape[1]} scores per epoch, but there are {num_records} training records; "
                             "the scores must belong to exactly these records, in this order")
    if not np.isfinite(rows).all():
        row, col = np.argwhere(~np.isfinite(rows))[0]
        raise DataError(files[row], f"scores contain NaN or infinity ({rows[row, col]})", int(col) + 1)
    if kind == "ppl":
        if (rows <= 0).any():
            row, col = np.argwhere(rows <= 0)[0]
            raise DataError(files[row], f"perplexities must be positive, got {rows[row, col]}", int(col) + 1)
        ppl, loss = rows, np.log(rows)
    else:
        ppl, loss = np.exp(rows), rows

    full_meta = {
        **meta,
        "metric": kind,
        "fingerprint": records_fingerprint,
        "source": str(src),
        "source_files": [p.name for p in files],
        "num_samples": int(rows.shape[1]),
        "rows": "row 0 = before training, row i = after epoch i",
    }
    with atomic.directory(dst) as tmp:
        store = ScoreStore.create(tmp, rows.shape[0], rows.shape[1], full_meta)
        for name, values in (("ppl", ppl), ("loss", loss)):
            store.write(name, values)
    return dst


def load_scores(
    directory: str | Path, expected_fingerprint: str | None, name: str = "ppl", require_complete: bool = True
) -> tuple[np.ndarray, dict]:
    """(scores [epochs+1, N] float32, meta) of a score directory.

    Raises a ValueError naming both fingerprints when the scores were
    computed on other records than `expected_fingerprint` (pass None only to
    skip the check on purpose), and, with `require_complete`, when a row was
    never written (NaN: an interrupted probe run).
    """
    directory = Path(directory)
    if not (directory / "meta.json").is_file():
        raise DataError(directory, "not a score directory (no meta.json)")
    if name not in SCORE_KINDS:
        raise ValueError(f"name must be one of {SCORE_KINDS}, got {name!r}")
    store = ScoreStore.open(str(directory))
    found = store.meta.get("fingerprint")
    if expected_fingerprint is not None and found != expected_fingerprint:
        raise DataError(directory, f"scores belong to records with fingerprint {found}, but the records in use "
                                   f"have fingerprint {expected_fingerprint}; they were computed on other data "
                                   "(or another order)")
    scores = store.read(name)
    if require_complete:
        missing = [i for i in range(scores.shape[0]) if np.isnan(scores[i]).any()]
        if missing:
            raise DataError(directory, f"score rows {missing} are incomplete (NaN); finish the probe run first")
    return scores, dict(store.meta)


def load_any(source: str | Path, fingerprint: str, kind: str, import_dir: str | Path, meta: dict) -> np.ndarray:
    """Scores [epochs+1, N] (``kind``: ppl or loss) from an lpjax score
    directory or from a directory of the authors' pickles, which is first
    imported into ``import_dir`` (``meta`` names its model, template and
    max_len), so that everything downstream reads one format."""
    if not (Path(source) / "meta.json").is_file():
        import_scores(source, import_dir, fingerprint, {**meta, "source": str(source)}, overwrite=True)
        source = import_dir
    return load_scores(source, fingerprint, kind)[0]
