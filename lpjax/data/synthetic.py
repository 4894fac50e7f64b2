"""The embedded default dataset: small graded tasks lpjax generates itself.

Fifteen task families, from copying text (difficulty 1) to two-step
arithmetic (5), give the probe something whose hardness is known in
advance, and a known fraction of deliberately wrong training answers gives
it noise to find. Prompts and answers are short so the default run trains
tiny models on a CPU in minutes. Everything follows from the seed.
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

# Family -> difficulty, 1 (copying) .. 5 (two arithmetic steps).
TASK_FAMILIES: dict[str, int] = {
    "copy": 1,
    "uppercase": 1,
    "lowercase": 1,
    "count_words": 2,
    "first_letters": 2,
    "add": 2,
    "reverse_words": 2,
    "max_of_list": 2,
    "reverse_chars": 3,
    "sort_numbers": 3,
    "subtract": 3,
    "sum_list": 3,
    "multiply": 4,
    "caesar_shift": 4,
    "multi_step": 5,
}

# Two paraphrases per family, so the instruction text alone does not name the task.
INSTRUCTIONS: dict[str, tuple[str, str]] = {
    "copy": ("Repeat the following text exactly.", "Copy the input text."),
    "uppercase": ("Convert the text to uppercase.", "Rewrite the text in capital letters."),
    "lowercase": ("Convert the text to lowercase.", "Rewrite the text in small letters."),
    "count_words": ("How many words are in the text?", "Count the words in the input."),
    "first_letters": ("Write the first letter of each word.", "Join the first letters of the words."),
    "add": ("What is {a} + {b}?", "Add {a} and {b}."),
    "reverse_words": ("Reverse the order of the words.", "Write the words in reverse order."),
    "max_of_list": ("What is the largest number in the list?", "Find the biggest number."),
    "reverse_chars": ("Spell the text backwards.", "Reverse the letters of the text."),
    "sort_numbers": ("Sort the numbers from smallest to largest.", "Put the numbers in ascending order."),
    "subtract": ("What is {a} - {b}?", "Subtract {b} from {a}."),
    "sum_list": ("What is the sum of the numbers?", "Add up all the numbers."),
    "multiply": ("What is {a} * {b}?", "Multiply {a} by {b}."),
    "caesar_shift": (
        "Shift every letter forward by {k} in the alphabet.",
        "Apply a Caesar shift of {k} to the text.",
    ),
    "multi_step": ("What is ({a} + {b}) * {c}?", "Add {a} and {b}, then multiply the result by {c}."),
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


def _caesar(text: str, k: int) -> str:
    return "".join(chr((ord(c) - 97 + k) % 26 + 97) if c.isalpha() else c for c in text)


def _mixed_case(rng: np.random.Generator, words: list[str]) -> str:
    return " ".join(w.upper() if rng.random() < 0.5 else w.title() for w in words)


def _copy(rng):
    text = " ".join(_words(rng, 2, 4))
    return text, text, {}


def _uppercase(rng):
    text = " ".join(_words(rng, 2, 3))
    return text, text.upper(), {}


def _lowercase(rng):
    words = _words(rng, 2, 3)
    return _mixed_case(rng, words), " ".join(words), {}


def _count_words(rng):
    words = _words(rng, 2, 7)
    return " ".join(words), str(len(words)), {}


def _first_letters(rng):
    words = _words(rng, 3, 5)
    return " ".join(words), "".join(w[0] for w in words), {}


def _add(rng):
    a, b = _int(rng, 0, 99), _int(rng, 0, 99)
    return "", str(a + b), {"a": a, "b": b}


def _reverse_words(rng):
    words = _words(rng, 3, 4)
    return " ".join(words), " ".join(reversed(words)), {}


def _max_of_list(rng):
    numbers = _numbers(rng, 0, 99, 3, 5)
    return _listed(numbers), str(max(numbers)), {}


def _reverse_chars(rng):
    text = " ".join(_words(rng, 1, 2))
    return text, text[::-1], {}


def _sort_numbers(rng):
    numbers = _numbers(rng, 0, 99, 3, 5)
    return _listed(numbers), _listed(sorted(numbers)), {}


def _subtract(rng):
    a, b = _int(rng, 0, 99), _int(rng, 0, 99)
    return "", str(a - b), {"a": a, "b": b}


def _sum_list(rng):
    numbers = _numbers(rng, 0, 50, 3, 4)
    return _listed(numbers), str(sum(numbers)), {}


def _multiply(rng):
    a, b = _int(rng, 2, 99), _int(rng, 2, 12)
    return "", str(a * b), {"a": a, "b": b}


def _caesar_shift(rng):
    k = _int(rng, 1, 3)
    text = " ".join(_words(rng, 1, 2))
    return text, _caesar(text, k), {"k": k}


def _multi_step(rng):
    a, b, c = _int(rng, 1, 20), _int(rng, 1, 20), _int(rng, 2, 9)
    return "", str((a + b) * c), {"a": a, "b": b, "c": c}


_GENERATORS: dict[str, Callable[[np.random.Generator], Task]] = {
    name: globals()[f"_{name}"] for name in TASK_FAMILIES
}

# Rejection sampling gives up after this many duplicates in a row, which only
# happens when far more records are asked for than a family can produce.
_MAX_TRIES = 1000


def _record(rng: np.random.Generator, family: str) -> dict:
    input_, output, fields = _GENERATORS[family](rng)
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
