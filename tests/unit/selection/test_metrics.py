"""LP / LP_app on small hand-computed examples (docs/method.md)."""

import math
import warnings

import numpy as np
import pytest

from lpjax.selection.metrics import compute_metric, hard_is_low, lp, lp_app

# Columns are samples, rows are P0..P3. Expected values below were worked out
# by hand from the formulas of docs/method.md, not produced by the code.
SCORES = np.array(
    [
        # s0  s1  s2  s3  s4  s5
        [10.0, 4.0, 5.0, 1.0, 5.0, 2.0],  # P0
        [6.0, 4.0, 3.0, 1.0, 3.0, 3.0],  # P1
        [3.0, 4.0, 2.0, 1.0, 6.0, 3.0],  # P2
        [2.0, 4.0, 1.0, 1.0, 5.0, 4.0],  # P3
    ]
)
# s0: P0-P3 = 8           -> LP1 4/8, LP2 3/8, LP3 1/8; LP_app 4/10
# s1: constant            -> all LP 0 (P0 == P3); LP_app 0
# s2: P0-P3 = 4           -> LP1 2/4, LP2 1/4, LP3 1/4; LP_app 2/5
# s3: constant ppl 1.0    -> all 0 (the truncated-response case)
# s4: P0 == P3, not flat  -> all LP 0 by the rule; LP_app 2/5
# s5: ppl rises, P0-P3=-2 -> LP1 (2-3)/-2 = 1/2, LP2 0, LP3 (3-4)/-2 = 1/2; LP_app -1/2
EXPECTED = {
    "lp1": [0.5, 0.0, 0.5, 0.0, 0.0, 0.5],
    "lp2": [0.375, 0.0, 0.25, 0.0, 0.0, 0.0],
    "lp3": [0.125, 0.0, 0.25, 0.0, 0.0, 0.5],
    "lp_app": [0.4, 0.0, 0.4, 0.0, 0.4, -0.5],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_compute_metric_matches_hand_values(name):
    np.testing.assert_allclose(compute_metric(name, SCORES), EXPECTED[name], rtol=0, atol=1e-15)


def test_lp_by_epoch_equals_named_metric():
    for epoch in (1, 2, 3):
        np.testing.assert_allclose(lp(SCORES, epoch), EXPECTED[f"lp{epoch}"], atol=1e-15)


def test_lp_epochs_sum_to_one_where_total_change_is_nonzero():
    # Telescoping: sum_i (P(i-1) - P(i)) = P0 - Pn, so the LPs partition 1.
    rng = np.random.default_rng(0)
    scores = rng.uniform(1.0, 50.0, size=(4, 200))
    total = sum(lp(scores, i) for i in (1, 2, 3))
    np.testing.assert_allclose(total, 1.0, rtol=1e-9)


def test_zero_denominators_raise_no_warning_and_give_zero():
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        for epoch in (1, 2, 3):
            out = lp(SCORES, epoch)
            assert out[1] == 0.0 and out[3] == 0.0 and out[4] == 0.0
        assert lp_app(np.array([[0.0, 2.0], [1.0, 1.0]]))[0] == 0.0


def test_lp_app_ignores_later_epochs_so_a_one_epoch_run_works():
    one_epoch = SCORES[:2]
    np.testing.assert_array_equal(lp_app(one_epoch), lp_app(SCORES))
    # With only P0 and P1, P1 is also Pn: LP1 is then 1 wherever P0 != P1.
    np.testing.assert_allclose(lp(one_epoch, 1), [1, 0, 1, 0, 1, 1])


def test_losses_and_perplexities_rank_differently_for_lp_app():
    # Sample A: loss 2.0 -> 1.0; sample B: loss 0.5 -> 0.2.
    # On losses LP_app is 0.5 vs 0.6 (B learns more); on ppl = exp(loss) it is
    # 1 - e^-1 = 0.632 vs 1 - e^-0.3 = 0.259 (A learns more).
    losses = np.array([[2.0, 0.5], [1.0, 0.2]])
    on_loss = lp_app(losses)
    on_ppl = lp_app(np.exp(losses))
    np.testing.assert_allclose(on_loss, [0.5, 0.6])
    np.testing.assert_allclose(on_ppl, [1 - math.exp(-1.0), 1 - math.exp(-0.3)])
    assert np.argmin(on_loss) != np.argmin(on_ppl)


@pytest.mark.parametrize(
    "name, rows",
    [
        ("lp0", 4),
        ("lp4", 4),  # epoch 4 does not exist in a 3-epoch run
        ("lp1", 1),  # needs P0 and P1
        ("lp_app", 1),
        ("LP1", 4),
        ("lp", 4),
        ("lp01", 4),
        ("ppl", 4),
    ],
)
def test_compute_metric_rejects_unknown_names_and_missing_epochs(name, rows):
    with pytest.raises(ValueError, match=name if name != "lp01" else "unknown"):
        compute_metric(name, SCORES[:rows])


def test_scores_must_be_two_dimensional():
    with pytest.raises(ValueError, match="2-D"):
        lp(SCORES[0], 1)


@pytest.mark.parametrize("name", ["lp1", "lp2", "lp3", "lp_app"])
def test_lp_metrics_are_hard_when_low(name):
    assert hard_is_low(name) is True


def test_hard_is_low_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        hard_is_low("loss")


# ---------------------------------------------------------------- p0 and IFD
from lpjax.selection.metrics import ifd, needs_response_only, p0  # noqa: E402


def test_p0_is_row_zero_and_hard_when_high():
    np.testing.assert_array_equal(compute_metric("p0", SCORES), SCORES[0])
    np.testing.assert_array_equal(p0(SCORES), SCORES[0])
    assert hard_is_low("p0") is False
    out = p0(SCORES)
    out[0] = -1  # a copy, not a view into the scores
    assert SCORES[0, 0] == 10.0


def test_ifd_by_hand():
    with_prompt = np.array([4.0, 2.0, 9.0, 1.0])
    alone = np.array([8.0, 2.0, 3.0, 1.0])
    # 4/8, 2/2, 9/3, 1/1 (a response lost to truncation: ppl 1.0 both ways)
    np.testing.assert_allclose(ifd(with_prompt, alone), [0.5, 1.0, 3.0, 1.0], rtol=0, atol=0)
    assert hard_is_low("ifd") is False and hard_is_low("ifd2") is False
    with np.errstate(all="raise"):
        assert ifd(np.array([2.0]), np.array([0.0]))[0] == 0.0
    with pytest.raises(ValueError, match="one shape"):
        ifd(np.ones(3), np.ones(2))


def test_ifd_through_compute_metric_uses_the_named_row():
    alone = SCORES * 2.0
    np.testing.assert_allclose(compute_metric("ifd", SCORES, response_only=alone), 0.5)
    alone = SCORES.copy()
    alone[2] = 1.0
    np.testing.assert_allclose(compute_metric("ifd2", SCORES, response_only=alone), SCORES[2])
    np.testing.assert_allclose(compute_metric("ifd", SCORES, response_only=alone), 1.0)
    with pytest.raises(ValueError, match="response_only"):
        compute_metric("ifd", SCORES)
    with pytest.raises(ValueError, match="row 4"):
        compute_metric("ifd4", SCORES, response_only=alone)
    with pytest.raises(ValueError, match="samples"):
        compute_metric("ifd", SCORES, response_only=alone[:, :3])
    # Other metrics ignore a response_only array.
    np.testing.assert_array_equal(compute_metric("lp1", SCORES, response_only=alone), EXPECTED["lp1"])


def test_needs_response_only():
    assert [needs_response_only(m) for m in ["ifd", "ifd1", "lp1", "lp_app", "p0"]] == [True, True, False, False, False]
    for bad in ["ifd0", "IFD", "p1", "p"]:
        with pytest.raises(ValueError, match="unknown metric"):
            needs_response_only(bad)
