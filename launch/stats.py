"""The statistics of a sweep's report, as pure functions: mean, sample
standard deviation and a two-sided 95 % Student-t interval over seeds, and
the same for paired differences (two methods on the same seeds)."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps


@dataclasses.dataclass(frozen=True)
class Summary:
    """n values: mean, std (ddof=1; nan for n < 2), and the 95 % t-interval
    mean ± half (half nan for n < 2: one seed has no spread to speak of)."""

    n: int
    mean: float
    std: float
    half: float

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def text(self, digits: int = 3) -> str:
        if self.n == 0:
            return ""
        if math.isnan(self.half):
            return f"{self.mean:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f} (n={self.n})"


def t_half_width(std: float, n: int, level: float = 0.95) -> float:
    """Half the width of the two-sided t-interval of a mean: t_{(1+level)/2, n-1} * std / sqrt(n)."""
    if n < 2:
        return float("nan")
    return float(sps.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def summarize(values: Sequence[float], level: float = 0.95) -> Summary:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Summary(0, float("nan"), float("nan"), float("nan"))
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return Summary(int(x.size), float(x.mean()), std, t_half_width(std, int(x.size), level))


def paired(a: Mapping[object, float], b: Mapping[object, float], level: float = 0.95) -> Summary:
    """a - b over the seeds (keys) both have: the paired comparison, whose
    interval is narrower than the two means' when seeds move both alike."""
    common = sorted(set(a) & set(b), key=str)
    return summarize([a[k] - b[k] for k in common], level)
