"""The embedded default dataset: small graded tasks lpjax generates itself.

Nine task families, from counting the words of the input (difficulty 1)
to comparing two numbers (5), give the probe something whose hardness is
known in advance, and a known fraction of deliberately wrong training answers
gives it noise to find. Prompts and answers are short so the default run
trains tiny models on a CPU in minutes. Everything follows from the seed.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

# ~200 common short words: the only vocabulary, so nothing is downloaded.
WORDS = tuple("""
able acid age air all arm art ask bad bag ball band bank base bath bear bed bell
best big bird black blue boat body bone book box boy bread brick bus cake call
calm camp car card care cat chair city clay cloud coat cold cook cool corn cow
cup cut dark day deep desk dog door down draw dream dress drink dry duck dust
early earth east easy egg end eye face fair farm fast fire fish flag floor fly
food foot fork fox free frog fun game gift girl glass gold good grass green hair
hand hat head heart hill home hope horse hot house ice idea iron jam job joke
jump key king kite lake lamp land leaf left leg lion long love low map milk
moon mouse name nest net new nice night nose note oak old open page park pen
pig pink plan plant rain red rice ring road rock roof room rope rose salt sand
sea seed ship shoe shop sky slow small snow sock soft song soup star stone sun
swim table tall tea tent tiger time toy train tree wall warm water wave west wet
white wind wing wolf wood word yard year yellow young zoo
""".split())

# Family -> difficulty, 1 (learnt from the tuning data in a minute: the
# answer is a property of the whole input, such as its length or the kind
# of tokens in it) .. 5 (not learnt by the embedded target in the default's
# budget: it must copy or compare single tokens, which tiny models learn
# only after thousands of steps). Graded by what the embedded full-data
# target reaches, so the probe has easy, middling and hopeless samples to
# tell apart. Answers are one word or number.
TASK_FAMILIES: dict[str, int] = {
    "count_words": 1,
    "count_numbers": 1,
    "kind_of_list": 1,
    "has_number": 2,
    "parity": 2,
    "contains": 3,
    "add": 3,
    "last_word": 4,
    "larger": 5,
}

# Two paraphrases per family, so the instruction text alone does not name the task.
INSTRUCTIONS: dict[str, tuple[str, str]] = {
    "count_words": ("How many words are in the text?", "Count the words in the input."),
    "count_numbers": ("How many numbers are in the list?", "Count the numbers in the list."),
    "kind_of_list": ("Are these words or numbers?", "Say whether the input holds words or numbers."),
    "has_number": ("Does the text contain a number?", "Is there a number in the text?"),
    "parity": ("Is {n} even or odd?", "Say whether {n} is even or odd."),
    "contains": ("Is the word {w} in the text?", "Does the text mention {w}?"),
    "add": ("What is {a} + {b}?", "Add {a} and {b}."),
    "last_word": ("What is the last word of the text?", "Give the final word."),
    "larger": ("Which is larger, {a} or {b}?", "Name the bigger number: {a} or {b}."),
}

# A task: (input, output, values for the instruction's format fields).
Task = tuple[str, str, dict]


def _words(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    n = int(rng.integers(lo, hi + 1))
    return [WORDS[i] for i in rng.choice(len(WORDS), n, replace=False)]


def _numbers(rng: np.random.Generator, lo: int, hi: int, count_lo: int, count_hi: int) -> list[int]:
    # Distinct, so "the larger" is unambiguous.
    n = int(rng.integers(count_lo, count_hi + 1))
    return [int(x) for x in rng.choice(np.arange(lo, hi + 1), n, replace=False)]


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _count_words(rng):
    words = _words(rng, 2, 6)
    return " ".join(words), str(len(words)), {}


def _count_numbers(rng):
    numbers = _numbers(rng, 0, 99, 2, 6)
    return _listed(numbers), str(len(numbers)), {}


def _kind_of_list(rng):
    if rng.random() < 0.5:
        return " ".join(_words(rng, 2, 5)), "words", {}
    return _listed(_numbers(rng, 0, 99, 2, 5)), "numbers", {}


def _has_number(rng):
    words = _words(rng, 3, 6)
    present = rng.random() < 0.5
    if present:
        words[int(rng.integers(len(words)))] = str(_int(rng, 0, 99))
    return " ".join(words), "yes" if present else "no", {}


def _parity(rng):
    n = _int(rng, 0, 99)
    return "", "even" if n % 2 == 0 else "odd", {"n": n}


def _contains(rng):
    words = _words(rng, 4, 6)
    present = rng.random() < 0.5
    asked = words[int(rng.integers(len(words) - 1))] if present else words[-1]
    shown = words[:-1]
    return " ".join(shown), "yes" if present else "no", {"w": asked}


def _add(rng):
    a, b = _int(rng, 0, 9), _int(rng, 0, 9)
    return "", str(a + b), {"a": a, "b": b}


def _last_word(rng):
    words = _words(rng, 2, 5)
    return " ".join(words), words[-1], {}


def _larger(rng):
    a, b = _numbers(rng, 0, 99, 2, 2)
    return "", str(max(a, b)), {"a": a, "b": b}


GENERATORS: dict[str, Callable[[np.random.Generator], Task]] = {
    name: globals()[f"_{name}"] for name in TASK_FAMILIES
}

# Rejection sampling gives up after this many duplicates in a row, which only
# happens when far more records are asked for than a family can produce.
_MAX_TRIES = 1000


def _record(rng: np.random.Generator, family: str) -> dict:
    input_, output, fields = GENERATORS[family](rng)
    instruction = INSTRUCTIONS[family][int(rng.integers(2))].format(**fields)
    return {
        "instruction": instruction,
        "input": input_,
        "output": output,
        "kind": family,
        "difficulty": TASK_FAMILIES[family],
        "noisy": False,
    }


def _sample(rng: np.random.Generator, n: int, exclude: set[tuple[str, str]], families: list[str]) -> list[dict]:
    # Equal counts per family (up to one), in shuffled order.
    order = np.resize(np.arange(len(families)), n)
    rng.shuffle(order)
    records = []
    for f in order:
        for _ in range(_MAX_TRIES):
            record = _record(rng, families[f])
            if (record["instruction"], record["input"]) not in exclude:
                break
        else:
            raise ValueError(f"cannot draw enough distinct '{families[f]}' records")
        records.append(record)
    return records


def _corrupt(rng: np.random.Generator, record: dict) -> dict:
    """The record with another same-family record's answer: plausible, but wrong."""
    for _ in range(_MAX_TRIES):
        wrong = _record(rng, record["kind"])["output"]
        if wrong != record["output"]:
            return {**record, "output": wrong, "noisy": True}
    raise ValueError(f"cannot draw a wrong answer for {record!r}")


def select_families(families: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The families to generate, in TASK_FAMILIES order: ``families``, or all
    nine when it is None or empty. An unknown or repeated name raises ValueError."""
    if not families:
        return list(TASK_FAMILIES)
    for name in families:
        if name not in TASK_FAMILIES:
            raise ValueError(f"{name!r} is not one of {', '.join(TASK_FAMILIES)}")
    if len(set(families)) != len(families):
        raise ValueError(f"names a family twice: {tuple(families)}")
    return [f for f in TASK_FAMILIES if f in families]


def generate(
    num_train: int, num_test: int, noise_fraction: float, seed: int,
    families: tuple[str, ...] | list[str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` records with ``kind``, ``difficulty`` and ``noisy`` metadata.

    Only the task ``families`` given appear (both splits), in equal shares
    up to one record; None or empty means all nine and gives exactly the
    records of a call without the argument (the order in which ``families``
    names them does not matter). Exactly ``round(noise_fraction *
    num_train)`` train records carry a wrong answer; test records never do. No (instruction, input) pair of the test
    split appears in train. The test split depends only on ``seed`` and
    ``num_test``, so growing the train split keeps the same test set.
    """
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be non-negative")
    if not 0.0 <= noise_fraction <= 1.0:
        raise ValueError(f"noise_fraction must be in [0, 1], got {noise_fraction}")
    test_rng, train_rng = np.random.default_rng(seed).spawn(2)
    chosen = select_families(families)
    test = _sample(test_rng, num_test, exclude=set(), families=chosen)
    train = _sample(train_rng, num_train, exclude={(r["instruction"], r["input"]) for r in test}, families=chosen)
    num_noisy = round(noise_fraction * num_train)
    for i in sorted(train_rng.choice(num_train, num_noisy, replace=False).tolist()):
        train[i] = _corrupt(train_rng, train[i])
    return train, test
