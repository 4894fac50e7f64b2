"""Global selection rules against hand-worked examples and a pure-Python sort."""

import numpy as np
import pytest

from lpjax.selection.select import num_selected, select_full, select_hardest, select_random


@pytest.mark.parametrize(
    "n, percent, expected",
    [
        (52002, 1, 520),  # 520.02
        (52002, 10, 5200),  # 5200.2
        (200, 2.5, 5),
        (100, 100, 100),
        (10, 1, 1),  # 0.1 rounds to 0, floored to 1
        (50, 1, 1),  # 0.5 rounds half-to-even to 0, floored to 1
        (250, 1, 2),  # 2.5 rounds half-to-even to 2
        (350, 1, 4),  # 3.5 rounds half-to-even to 4
        (0, 5, 0),  # nothing to select
    ],
)
def test_num_selected(n, percent, expected):
    assert num_selected(n, percent) == expected


@pytest.mark.parametrize("percent", [0, -1, 100.5])
def test_num_selected_rejects_bad_percent(percent):
    with pytest.raises(ValueError, match="percent"):
        num_selected(10, percent)


METRIC = np.array([0.3, -0.1, 0.3, 0.0, 0.5, -0.1])


def test_select_hardest_low_end_by_hand():
    # 50 % of 6 = 3. Ascending: -0.1 (idx 1), -0.1 (idx 5), 0.0 (idx 3); the
    # tie at -0.1 goes to the lower index.
    out = select_hardest(METRIC, 50)
    assert out.dtype == np.int64
    assert out.tolist() == [1, 5, 3]


def test_select_hardest_high_end_by_hand():
    # Descending: 0.5 (idx 4), 0.3 (idx 0), 0.3 (idx 2); the tie at 0.3 goes
    # to the lower index here too.
    assert select_hardest(METRIC, 50, hard_is_low=False).tolist() == [4, 0, 2]


@pytest.mark.parametrize("hard_low", [True, False])
@pytest.mark.parametrize("percent", [1, 5, 33.3, 50, 100])
def test_select_hardest_matches_python_sort_with_many_ties(hard_low, percent):
    rng = np.random.default_rng(1)
    metric = rng.integers(0, 7, size=997).astype(np.float64) / 4  # heavy ties
    sign = 1 if hard_low else -1
    # Independent reference: Python's sorted on (value, index) tuples.
    reference = sorted(range(metric.size), key=lambda i: (sign * metric[i], i))
    count = max(1, round(metric.size * percent / 100))
    assert select_hardest(metric, percent, hard_is_low=hard_low).tolist() == reference[:count]


def test_select_hardest_rejects_nan_and_wrong_shape():
    with pytest.raises(ValueError, match="NaN"):
        select_hardest(np.array([0.1, np.nan]), 50)
    with pytest.raises(ValueError, match="1-D"):
        select_hardest(np.zeros((2, 2)), 50)


def test_select_random_is_seeded_sorted_and_distinct():
    a = select_random(1000, 50, seed=42)
    assert a.tolist() == select_random(1000, 50, seed=42).tolist()
    assert a.tolist() != select_random(1000, 50, seed=43).tolist()
    assert a.dtype == np.int64 and len(a) == 50 and len(set(a.tolist())) == 50
    assert a.tolist() == sorted(a.tolist()) and 0 <= a.min() and a.max() < 1000
    # The documented contract: numpy's Generator.choice without replacement.
    expected = sorted(np.random.default_rng(42).choice(1000, 50, replace=False).tolist())
    assert a.tolist() == expected


def test_select_random_bounds():
    assert select_random(5, 5, seed=0).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        select_random(5, 6, seed=0)


def test_select_full():
    out = select_full(4)
    assert out.dtype == np.int64 and out.tolist() == [0, 1, 2, 3]
