"""The generated dataset: deterministic, graded, with exactly the noise asked for."""
import re

import pytest

from lpjax.data.synthetic import TASK_FAMILIES, WORDS, generate

N_TRAIN, N_TEST, NOISE = 1500, 300, 0.2


@pytest.fixture(scope="module")
def data():
    return generate(N_TRAIN, N_TEST, NOISE, seed=3)


def _number_in(instruction):
    return int(re.search(r"\d+", instruction).group())


def _asked_word(instruction):
    return re.search(r"(?:word|mention) (\w+)", instruction).group(1)


def _is_number(token):
    return token.rstrip(",").isdigit()


EXPECTED = {
    "count_words": lambda r: str(len(r["input"].split())),
    "count_numbers": lambda r: str(len(r["input"].split(", "))),
    "kind_of_list": lambda r: "numbers" if all(map(_is_number, r["input"].split())) else "words",
    "has_number": lambda r: "yes" if any(map(_is_number, r["input"].split())) else "no",
    "parity": lambda r: "even" if _number_in(r["instruction"]) % 2 == 0 else "odd",
    "contains": lambda r: "yes" if _asked_word(r["instruction"]) in r["input"].split() else "no",
    # Digits and + only; Python does the sum.
    "add": lambda r: str(sum(map(int, re.findall(r"\d+", r["instruction"])))),
    "last_word": lambda r: r["input"].split()[-1],
    "larger": lambda r: str(max(map(int, re.findall(r"\d+", r["instruction"])))),
}


def test_families_are_graded():
    assert set(TASK_FAMILIES) == set(EXPECTED)
    assert all(isinstance(d, int) and 1 <= d <= 5 for d in TASK_FAMILIES.values())
    assert {TASK_FAMILIES[f] for f in ("count_words", "count_numbers", "kind_of_list")} == {1}
    assert TASK_FAMILIES["larger"] == 5
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
    instructions = {r["instruction"] for r in data[0] if r["kind"] == "count_words"}
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
