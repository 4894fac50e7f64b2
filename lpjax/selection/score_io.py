"""Reading per-sample score files, apart from the math.

The authors released perplexities as pickles of plain float lists. Pickle can
run arbitrary code on load, so these are read with an unpickler that refuses
every global: a list of floats needs none, and anything that does need one is
not a score file.
"""

import io
import pickle
from pathlib import Path

import numpy as np


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
        raise ValueError(f"{source}: not a plain score pickle ({err})") from err
    if not isinstance(obj, (list, tuple)):
        raise ValueError(f"{source}: expected a list of numbers, found {_describe(obj)}")
    for i, item in enumerate(obj):
        # bool is an int subclass but a True/False "perplexity" is a bug upstream.
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise ValueError(f"{source}: item {i} is not a number, found {_describe(item)}")
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
        raise ValueError(f"{directory}: no epoch-pre.pkl")
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
        raise ValueError(f"{directory}: epoch files differ in length: {sorted(lengths)}")
    return np.stack(rows)
