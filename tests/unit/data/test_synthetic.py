"""The generated dataset: deterministic, graded, with exactly the noise asked for."""
import hashlib
import json
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


# ------------------------------------------------- only some families

LEARNABLE = tuple(f for f, d in TASK_FAMILIES.items() if d <= 3)

# sha256 of json.dumps(generate(300, 60, 0.2, seed=3)) as generated before
# `families` existed: the default must stay the same records, bit for bit.
DEFAULT_SHA256 = "0c766c276d808d993c8c37dd9fce8b30dfe52d6f3385a00290d2cbf54fa035e4"


def test_default_families_unchanged():
    default = generate(300, 60, 0.2, seed=3)
    assert hashlib.sha256(json.dumps(default).encode()).hexdigest() == DEFAULT_SHA256
    assert generate(300, 60, 0.2, seed=3, families=None) == default
    assert generate(300, 60, 0.2, seed=3, families=()) == default
    assert generate(300, 60, 0.2, seed=3, families=tuple(TASK_FAMILIES)) == default


@pytest.mark.parametrize("families", [LEARNABLE, ("add",), ("parity", "count_words")])
def test_only_the_families_asked_for_in_equal_shares(families):
    train, test = generate(700, 140, 0.1, seed=5, families=families)
    assert len(train) == 700 and len(test) == 140
    for split in (train, test):  # the held-out split too
        assert {r["kind"] for r in split} == set(families)
        counts = [sum(r["kind"] == f for r in split) for f in families]
        assert max(counts) - min(counts) <= 1
    # Still right answers (noise aside), disjoint splits, the noise asked for.
    assert all(r["output"] == EXPECTED[r["kind"]](r) for r in train + test if not r["noisy"])
    assert sum(r["noisy"] for r in train) == 70 and not any(r["noisy"] for r in test)
    assert not {(r["instruction"], r["input"]) for r in train} & {(r["instruction"], r["input"]) for r in test}


def test_families_order_does_not_matter_and_bad_names_fail():
    assert generate(90, 20, 0.1, seed=1, families=LEARNABLE) == \
        generate(90, 20, 0.1, seed=1, families=tuple(reversed(LEARNABLE)))
    with pytest.raises(ValueError, match="is not one of"):
        generate(10, 10, 0.1, seed=0, families=("multiply",))
    with pytest.raises(ValueError, match="twice"):
        generate(10, 10, 0.1, seed=0, families=("add", "add"))


def test_split_passes_the_families():
    from lpjax.config import DataConfig, SyntheticConfig
    from lpjax.data import split

    d = DataConfig(test_size=30, synthetic=SyntheticConfig(num_train=120, families=LEARNABLE))
    train, test, index = split.load_splits(d, seed=2)
    assert (train, test) == generate(120, 30, d.synthetic.noise_fraction, seed=2, families=LEARNABLE)
    assert {r["kind"] for r in train} == {r["kind"] for r in test} == set(LEARNABLE)
    assert index == list(range(120))
