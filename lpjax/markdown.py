"""The markdown of reports: tables and FLOP counts, shared by the run's
report (lpjax/stages/report.py), the sweep's (launch/aggregate.py) and the
selection audit and transfer sections (lpjax/selection/)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], cell: Callable[[Any], str] = str) -> list[str]:
    """A markdown table's lines: the header, the separator, one line per
    row. ``cell`` renders every cell, header included (default ``str``)."""
    return ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(c) for c in row) + " |" for row in rows)]


def escaped(value: Any) -> str:
    """``str(value)`` safe in a table cell: a "|" would split the cell, a
    newline the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def flops(x: float) -> str:
    """A FLOP count in three significant digits (1.23e+15); "0" for none
    (0 or NaN)."""
    return "0" if not x or math.isnan(x) else f"{x:.2e}"
