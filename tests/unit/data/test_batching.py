import numpy as np
import pytest

from lpjax.data.batching import (ROW_KEYS, collate, collate_plan, find_prefixes, length_buckets, plan_stats,
                                 plan_token_budget, response_positions, plan_fixed)
from lpjax.data.tokenize import Example


def templated_examples(n: int, seed: int = 0, vocab: int = 500, preambles=((3, 4, 5, 6, 7, 8, 9, 10, 11, 12),
                                                                           (3, 4, 5, 6, 20, 21, 22, 23, 24, 25, 26, 27))):
    """Examples shaped like Alpaca: one of a few fixed preambles, a random
    instruction, a response; lengths spread like Alpaca's (log-normal)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pre = list(preambles[int(rng.integers(len(preambles)))]) if preambles else []
        total = int(np.clip(rng.lognormal(np.log(100), 0.6), len(pre) + 3, 512))
        prompt = len(pre) + int(rng.integers(1, max(2, (total - len(pre)) // 2 + 1)))
        body = rng.integers(30, vocab, total - len(pre))
        out.append(Example(ids=np.array(pre + list(body), np.int32)[:total], prompt_len=min(prompt, total)))
    return out


def test_length_buckets_are_bounded_and_fine():
    b = length_buckets(512)
    assert b[0] == 16 and b[-1] == 512 and len(b) <= 25
    assert all(x % 8 == 0 for x in b) and list(b) == sorted(set(b))
    # Padding a row to its bucket wastes at most ~1/8 of the bucket (above 64).
    assert all((hi - lo) / hi <= 1 / 7 + 1e-9 for lo, hi in zip(b, b[1:]) if lo >= 64)
    assert length_buckets(300)[-1] == 300


def test_find_prefixes_finds_the_template_preambles():
    pre_a, pre_b = tuple(range(3, 13)), (3, 4, 5, 6) + tuple(range(20, 28))
    examples = templated_examples(200, preambles=(pre_a, pre_b))
    p = find_prefixes(examples, min_len=4, min_count=4)
    got = {tuple(p.tokens[k, : p.lengths[k]]) for k in range(1, p.num + 1)}
    assert {pre_a, pre_b} <= {g[: len(pre_a)] if g[: len(pre_a)] == pre_a else g[: len(pre_b)] for g in got}
    assert p.lengths[0] == 0 and p.num <= 4
    for i, ex in enumerate(examples):
        k = p.assignment[i]
        plen = p.lengths[k]
        np.testing.assert_array_equal(ex.ids[:plen], p.tokens[k, :plen])
        assert plen <= ex.prompt_len - 1  # ends before the first loss position
    # Each example got one of the two preambles (or a longer shared prefix).
    assert (p.lengths[p.assignment] >= 10).mean() > 0.95


def test_find_prefixes_without_shared_prefix_assigns_none():
    examples = templated_examples(50, preambles=())
    p = find_prefixes(examples)
    assert p.num == 0 and (p.assignment == 0).all()


def _check_plan(examples, plan, budget, buckets, prefixes=None):
    seen = np.concatenate([b.indices[b.indices >= 0] for b in plan])
    # Every example exactly once.
    np.testing.assert_array_equal(np.sort(seen), np.arange(len(examples)))
    for b in plan:
        assert b.length in buckets and b.rows * b.length <= budget
        assert b.resp_len is None or 1 <= b.resp_len <= b.length
        for i in b.indices[b.indices >= 0]:
            skip = 0 if prefixes is None else prefixes.length_of(i)
            assert len(examples[i].ids) - skip <= b.length
            assert b.resp_len is None or response_positions(examples[i], skip) <= b.resp_len


@pytest.mark.parametrize("budget", [1024, 4096])
def test_token_budget_plan_covers_everything_once_with_little_padding(budget):
    examples = templated_examples(3000, seed=1)
    buckets = length_buckets(512)
    plan = plan_token_budget(examples, budget, buckets)
    _check_plan(examples, plan, budget, buckets)
    stats = plan_stats(examples, plan)
    assert stats["padding_fraction"] < 0.10, stats
    # A bounded set of shapes: at most one partial row count per bucket, four resp_pos lengths.
    assert len(stats["shapes"]) <= len(buckets) * 2 * 4
    assert len({(r, l) for r, l, _ in stats["shapes"]}) <= 2 * len(buckets)


def test_token_budget_plan_with_prefixes_and_row_multiple():
    examples = templated_examples(1000, seed=2)
    prefixes = find_prefixes(examples, min_len=4, min_count=4)
    buckets = length_buckets(512)
    plan = plan_token_budget(examples, 2048, buckets, prefixes=prefixes, row_multiple=4)
    _check_plan(examples, plan, 2048, buckets, prefixes)
    assert all(b.rows % 4 == 0 for b in plan)
    stats = plan_stats(examples, plan, prefixes)
    assert stats["prefix_tokens_skipped"] > 0.05 * stats["tokens"]
    assert stats["padding_fraction"] < 0.10, stats


def test_token_budget_plan_of_a_small_dataset_keeps_padding_bounded():
    examples = templated_examples(128, seed=3)
    plan = plan_token_budget(examples, 1024)
    _check_plan(examples, plan, 1024, length_buckets(512))
    assert plan_stats(examples, plan)["padding_fraction"] < 0.2


def test_token_budget_plan_is_deterministic_and_rejects_a_too_small_budget():
    examples = templated_examples(300, seed=4)
    a = plan_token_budget(examples, 2048)
    b = plan_token_budget(examples, 2048)
    assert [x.indices.tolist() for x in a] == [x.indices.tolist() for x in b]
    with pytest.raises(ValueError, match="token_budget"):
        plan_token_budget(examples, 100, buckets=(64, 512))


def test_resp_pos_lists_exactly_the_masked_positions():
    examples = templated_examples(40, seed=5) + [Example(np.array([1, 2, 3], np.int32), 3)]  # no response
    prefixes = find_prefixes(examples, min_len=4, min_count=4)
    for pre in (None, prefixes):
        for b in plan_token_budget(examples, 2048, prefixes=pre):
            batch = collate_plan(examples, b, pre)
            assert batch["resp_pos"].shape == (b.rows, b.resp_len)
            for row in range(b.rows):
                pos = np.flatnonzero(batch["loss_mask"][row])
                n = len(pos)
                np.testing.assert_array_equal(batch["resp_pos"][row, :n], pos)
                # Fillers point at a position whose mask is 0.
                assert (batch["loss_mask"][row, batch["resp_pos"][row, n:]] == 0).all()
                i = batch["index"][row]
                if i >= 0:
                    assert n == response_positions(examples[i])
            assert set(batch) - set(ROW_KEYS) <= {"prefix_tokens", "prefix_len"}


def test_prefixed_rows_hold_the_tokens_after_the_prefix():
    examples = templated_examples(60, seed=6)
    prefixes = find_prefixes(examples, min_len=4, min_count=4)
    plan = plan_token_budget(examples, 2048, prefixes=prefixes)
    for b in plan:
        batch = collate_plan(examples, b, prefixes)
        for row, i in enumerate(b.indices):
            if i < 0:
                assert batch["loss_mask"][row].sum() == 0
                continue
            k = batch["prefix_id"][row]
            plen = batch["prefix_len"][k]
            ids = examples[i].ids
            np.testing.assert_array_equal(batch["prefix_tokens"][k, :plen], ids[:plen])
            np.testing.assert_array_equal(batch["tokens"][row, : len(ids) - plen], ids[plen:])


def test_fixed_count_batches_can_carry_resp_pos():
    examples = templated_examples(20, seed=7)
    for planned in plan_fixed(examples, 4, 16, resp_multiple=8):
        batch = collate_plan(examples, planned)
        assert batch["resp_pos"].shape[1] % 8 == 0 or batch["resp_pos"].shape[1] == batch["tokens"].shape[1]
        assert batch["loss_mask"].sum() == sum(batch["loss_mask"][r, batch["resp_pos"][r]].sum() for r in range(4))
    plain = collate(examples, [0, 1], 2, 512)
    assert "resp_pos" not in plain and "prefix_id" not in plain


def test_training_batches_with_prefixes_and_resp_pos_hold_the_same_predictions():
    from lpjax.data.batching import training_batches

    examples = templated_examples(30, seed=8)
    prefixes = find_prefixes(examples, min_len=4, min_count=4)
    plain = list(training_batches(examples, 8, 16, seed=0, epoch=1))
    fast = list(training_batches(examples, 8, 16, seed=0, epoch=1, resp_multiple=16, prefixes=prefixes))
    assert len(plain) == len(fast)
    for a, b in zip(plain, fast):
        np.testing.assert_array_equal(a["index"], b["index"])
        assert b["tokens"].shape[1] <= a["tokens"].shape[1] and b["resp_pos"].shape[1] % 16 == 0
        for row in range(8):
            # The same (position-shifted) predictions are scored.
            ta = a["targets"][row][a["loss_mask"][row] > 0]
            tb = b["targets"][row][b["loss_mask"][row] > 0]
            np.testing.assert_array_equal(ta, tb)
            np.testing.assert_array_equal(b["targets"][row, b["resp_pos"][row, : len(tb)]], tb)
