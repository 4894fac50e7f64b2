"""The generated dataset: deterministic, graded, with exactly the noise asked for."""
import re

import pytest

from lpjax.data.synthetic import TASK_FAMILIES, WORDS, generate

N_TRAIN, N_TEST, NOISE = 1500, 300, 0.2


@pytest.fixture(scope="module")
def data():
    return generate(N_TRAIN, N_TEST, NOISE, seed=3)


def _arith(instruction):
    """Re-derive the expression from the English and let Python evaluate it."""
    patterns = [
        (r"What is (\d+ [-+*] \d+(?: - \d+)?)\?", r"\1"),
        (r"Add (\d+) and (\d+)\.", r"\1 + \2"),
        (r"Subtract (\d+) from (\d+)\.", r"\2 - \1"),
        (r"Multiply (\d+) by (\d+)\.", r"\1 * \2"),
        (r"Add (\d+) and (\d+), then subtract (\d+)\.", r"\1 + \2 - \3"),
    ]
    for pattern, expr in patterns:
        m = re.fullmatch(pattern, instruction)
        if m:
            return str(eval(m.expand(expr)))  # digits and + - * only
    raise AssertionError(f"unrecognized arithmetic instruction {instruction!r}")


def _numbers(text):
    return [int(x) for x in text.split(", ")]


def _number_in(instruction):
    return int(re.search(r"\d+", instruction).group())


def _asked_word(instruction):
    return re.search(r"(?:word|mention) (\w+)", instruction).group(1)


EXPECTED = {
    "last_word": lambda r: r["input"].split()[-1],
    "count_words": lambda r: str(len(r["input"].split())),
    "parity": lambda r: "even" if _number_in(r["instruction"]) % 2 == 0 else "odd",
    "first_word": lambda r: r["input"].split()[0],
    "larger": lambda r: str(max(map(int, re.findall(r"\d+", r["instruction"])))),
    "contains": lambda r: "yes" if _asked_word(r["instruction"]) in r["input"].split() else "no",
    "add": lambda r: _arith(r["instruction"]),
    "max_of_list": lambda r: str(max(_numbers(r["input"]))),
    "second_word": lambda r: r["input"].split()[1],
    "subtract": lambda r: _arith(r["instruction"]),
    "multiply": lambda r: _arith(r["instruction"]),
    "min_of_list": lambda r: str(min(_numbers(r["input"]))),
    "sort_numbers": lambda r: ", ".join(str(x) for x in sorted(_numbers(r["input"]))),
    "multi_step": lambda r: _arith(r["instruction"]),
}


def test_families_are_graded():
    assert set(TASK_FAMILIES) == set(EXPECTED)
    assert all(isinstance(d, int) and 1 <= d <= 5 for d in TASK_FAMILIES.values())
    assert {TASK_FAMILIES[f] for f in ("last_word", "count_words", "parity")} == {1}
    assert TASK_FAMILIES["multi_step"] == 5
    assert set(TASK_FAMILIES.values()) == {1, 2, 3, 4, 5}
    assert len(set(WORDS)) == len(WORDS) >= 150


def test_deterministic_for_a_seed(data):
    assert generate(N_TRAIN, N_TEST, NOISE, seed=3) == data
    assert generate(N_TRAIN, N_TEST, NOISE, seed=4) != data
    # The test split does not depend on how much train data is drawn.
    assert generate(50, N_TEST, 0.5, seed=3)[1] == data[1]


def test_record_shape_and_family_balance(data):
    for split in data:
        for r in split:
            assert set(r) == {"instruction", "input", "output", "kind", "difficulty", "noisy"}
            assert all(isinstance(r[k], str) for k in ("instruction", "input", "output"))
            assert r["difficulty"] == TASK_FAMILIES[r["kind"]] and type(r["difficulty"]) is int
            assert r["output"] and len(r["output"]) <= 24 and len(r["input"]) <= 40
        counts = [sum(r["kind"] == f for r in split) for f in TASK_FAMILIES]
        assert max(counts) - min(counts) <= 1  # every family, in equal shares
    assert len(data[0]) == N_TRAIN and len(data[1]) == N_TEST
    # Two paraphrases of each family's instruction both occur.
    instructions = {r["instruction"] for r in data[0] if r["kind"] == "last_word"}
    assert len(instructions) == 2


def test_clean_answers_are_right_and_noisy_ones_wrong(data):
    train, test = data
    for r in train + test:
        right = EXPECTED[r["kind"]](r)
        if r["noisy"]:
            assert r["output"] != right, r
        else:
            assert r["output"] == right, r


def test_noise_fraction_only_in_train(data):
    train, test = data
    assert sum(r["noisy"] for r in train) == round(NOISE * N_TRAIN)
    assert not any(r["noisy"] for r in test)
    assert not any(r["noisy"] for r in generate(100, 10, 0.0, seed=1)[0])
    assert all(r["noisy"] for r in generate(100, 10, 1.0, seed=1)[0])


def test_splits_share_no_instruction_input_pair(data):
    train, test = data
    assert not {(r["instruction"], r["input"]) for r in train} & {
        (r["instruction"], r["input"]) for r in test
    }


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate(10, 10, 1.5, seed=0)
    with pytest.raises(ValueError):
        generate(-1, 10, 0.1, seed=0)
    assert generate(0, 0, 0.1, seed=0) == ([], [])
