"""The report's statistics against scipy's own routines."""
import math

import numpy as np
from scipy import stats

from launch.stats import paired, summarize


def test_summary_matches_scipy_t_interval():
    x = [0.31, 0.42, 0.38, 0.29]
    s = summarize(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert s.n == 4 and math.isclose(s.mean, np.mean(x)) and math.isclose(s.std, np.std(x, ddof=1))
    assert math.isclose(s.lo, lo) and math.isclose(s.hi, hi)


def test_one_seed_has_no_interval():
    s = summarize([0.5])
    assert s.mean == 0.5 and math.isnan(s.std) and math.isnan(s.half) and s.text() == "0.500 (n=1)"
    assert summarize([]).n == 0 and summarize([]).text() == ""


def test_paired_difference_matches_ttest_rel():
    a = {1: 0.50, 2: 0.61, 3: 0.47, 4: 0.70}
    b = {1: 0.45, 2: 0.52, 3: 0.46, 5: 0.99}  # seed 4 and 5 unpaired: left out
    d = paired(a, b)
    ref = stats.ttest_rel([0.50, 0.61, 0.47], [0.45, 0.52, 0.46]).confidence_interval(0.95)
    assert d.n == 3 and math.isclose(d.lo, ref.low) and math.isclose(d.hi, ref.high)
