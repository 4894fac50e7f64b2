"""The embedded default dataset: small graded tasks lpjax generates itself.

Fourteen task families, from reading a word off the input (difficulty 1)
to two-step arithmetic (5), give the probe something whose hardness is known
in advance, and a known fraction of deliberately wrong training answers
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

# Family -> difficulty, 1 (read off the input) .. 5 (two arithmetic
# steps). Answers are short, mostly one word or number, so a tiny model
# tuned for minutes on a CPU can get them exactly right.
TASK_FAMILIES: dict[str, int] = {
    "last_word": 1,
    "count_words": 1,
    "parity": 1,
    "first_word": 2,
    "larger": 2,
    "contains": 2,
    "add": 3,
    "max_of_list": 3,
    "second_word": 3,
    "subtract": 4,
    "multiply": 4,
    "min_of_list": 4,
    "sort_numbers": 5,
    "multi_step": 5,
}

# Two paraphrases per family, so the instruction text alone does not name the task.
INSTRUCTIONS: dict[str, tuple[str, str]] = {
    "last_word": ("What is the last word of the text?", "Give the final word."),
    "count_words": ("How many words are in the text?", "Count the words in the input."),
    "parity": ("Is {n} even or odd?", "Say whether {n} is even or odd."),
    "first_word": ("What is the first word of the text?", "Give the opening word."),
    "larger": ("Which is larger, {a} or {b}?", "Name the bigger number: {a} or {b}."),
    "contains": ("Is the word {w} in the text?", "Does the text mention {w}?"),
    "add": ("What is {a} + {b}?", "Add {a} and {b}."),
    "max_of_list": ("What is the largest number in the list?", "Find the biggest number."),
    "second_word": ("What is the second word of the text?", "Give the word after the first one."),
    "subtract": ("What is {a} - {b}?", "Subtract {b} from {a}."),
    "multiply": ("What is {a} * {b}?", "Multiply {a} by {b}."),
    "min_of_list": ("What is the smallest number in the list?", "Find the lowest number."),
    "sort_numbers": ("Sort the numbers from smallest to largest.", "Put the numbers in ascending order."),
    "multi_step": ("What is {a} + {b} - {c}?", "Add {a} and {b}, then subtract {c}."),
}

# A task: (input, output, values for the instruction's format fields).
Task = tuple[str, str, dict]


def _words(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    n = int(rng.integers(lo, hi + 1))
    return [WORDS[i] for i in rng.choice(len(WORDS), n, replace=False)]


def _numbers(rng: np.random.Generator, lo: int, hi: int, count_lo: int, count_hi: int) -> list[int]:
    # Distinct, so "the largest" is unambiguous and sorting has one answer.
    n = int(rng.integers(count_lo, count_hi + 1))
    return [int(x) for x in rng.choice(np.arange(lo, hi + 1), n, replace=False)]


def _int(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(rng.integers(lo, hi + 1))


def _listed(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _last_word(rng):
    words = _words(rng, 2, 5)
    return " ".join(words), words[-1], {}


def _count_words(rng):
    words = _words(rng, 2, 6)
    return " ".join(words), str(len(words)), {}


def _parity(rng):
    n = _int(rng, 0, 99)
    return "", "even" if n % 2 == 0 else "odd", {"n": n}


def _first_word(rng):
    words = _words(rng, 2, 5)
    return " ".join(words), words[0], {}


def _larger(rng):
    a, b = _numbers(rng, 0, 99, 2, 2)
    return "", str(max(a, b)), {"a": a, "b": b}


def _contains(rng):
    words = _words(rng, 4, 6)
    present = rng.random() < 0.5
    asked = words[int(rng.integers(len(words) - 1))] if present else words[-1]
    shown = words[:-1]
    return " ".join(shown), "yes" if present else "no", {"w": asked}


def _add(rng):
    a, b = _int(rng, 0, 9), _int(rng, 0, 9)
    return "", str(a + b), {"a": a, "b": b}


def _max_of_list(rng):
    numbers = _numbers(rng, 0, 99, 3, 5)
    return _listed(numbers), str(max(numbers)), {}


def _second_word(rng):
    words = _words(rng, 3, 5)
    return " ".join(words), words[1], {}


def _subtract(rng):
    b = _int(rng, 0, 9)
    a = b + _int(rng, 0, 9)
    return "", str(a - b), {"a": a, "b": b}


def _multiply(rng):
    a, b = _int(rng, 2, 9), _int(rng, 2, 9)
    return "", str(a * b), {"a": a, "b": b}


def _min_of_list(rng):
    numbers = _numbers(rng, 0, 99, 3, 5)
    return _listed(numbers), str(min(numbers)), {}


def _sort_numbers(rng):
    numbers = _numbers(rng, 0, 99, 3, 3)
    return _listed(numbers), _listed(sorted(numbers)), {}


def _multi_step(rng):
    a, b = _int(rng, 1, 9), _int(rng, 1, 9)
    c = _int(rng, 0, a + b)
    return "", str(a + b - c), {"a": a, "b": b, "c": c}


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


def _sample(rng: np.random.Generator, n: int, exclude: set[tuple[str, str]]) -> list[dict]:
    # Equal counts per family (up to one), in shuffled order.
    families = list(TASK_FAMILIES)
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


def generate(
    num_train: int, num_test: int, noise_fraction: float, seed: int
) -> tuple[list[dict], list[dict]]:
    """``(train, test)`` records with ``kind``, ``difficulty`` and ``noisy`` metadata.

    Exactly ``round(noise_fraction * num_train)`` train records carry a wrong
    answer; test records never do. No (instruction, input) pair of the test
    split appears in train. The test split depends only on ``seed`` and
    ``num_test``, so growing the train split keeps the same test set.
    """
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be non-negative")
    if not 0.0 <= noise_fraction <= 1.0:
        raise ValueError(f"noise_fraction must be in [0, 1], got {noise_fraction}")
    test_rng, train_rng = np.random.default_rng(seed).spawn(2)
    test = _sample(test_rng, num_test, exclude=set())
    train = _sample(train_rng, num_train, exclude={(r["instruction"], r["input"]) for r in test})
    num_noisy = round(noise_fraction * num_train)
    for i in sorted(train_rng.choice(num_train, num_noisy, replace=False).tolist()):
        train[i] = _corrupt(train_rng, train[i])
    return train, test
