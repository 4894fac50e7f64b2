"""The generic pretraining corpus of the embedded default: plain text in
which the synthetic world's facts are stated, not asked for.

Real probes and targets start from pretrained checkpoints that already
hold their knowledge; instruction tuning teaches them to answer in the
template's form. The embedded default mirrors that: the base stage
pretrains its tiny models on documents like "the last word of sun dog cat
is cat. 3 plus 4 is 7." built from the task families of
lpjax/data/synthetic.py, in declarative phrasings that never use the
instruction template. Everything follows from the seed.
"""
from __future__ import annotations

import numpy as np

from lpjax.data import synthetic

# One declarative phrasing per family (two where a family's instructions
# have two): {x} the input, {y} the answer, then the family's fields.
FACTS: dict[str, tuple[str, ...]] = {
    "last_word": ("the last word of {x} is {y}.",),
    "count_words": ("{x} has {y} words.", "there are {y} words in {x}."),
    "parity": ("{n} is {y}.",),
    "first_word": ("the first word of {x} is {y}.",),
    "larger": ("of {a} and {b} the larger is {y}.",),
    "contains": ("is {w} in {x}? {y}.",),
    "add": ("{a} plus {b} is {y}.", "{y} is {a} and {b} together."),
    "max_of_list": ("the biggest of {x} is {y}.",),
    "second_word": ("the second word of {x} is {y}.",),
    "subtract": ("{a} minus {b} is {y}.",),
    "multiply": ("{a} times {b} is {y}.",),
    "min_of_list": ("the smallest of {x} is {y}.",),
    "sort_numbers": ("{x} in order is {y}.",),
    "multi_step": ("{a} plus {b} minus {c} is {y}.",),
}


def fact(rng: np.random.Generator, family: str) -> str:
    """One sentence stating a task instance of ``family`` and its answer."""
    x, y, fields = synthetic.GENERATORS[family](rng)
    forms = FACTS[family]
    return forms[int(rng.integers(len(forms)))].format(x=x, y=y, **fields)


def prose(rng: np.random.Generator) -> str:
    """A sentence of plain words, so the corpus is not only facts."""
    words = [synthetic.WORDS[i] for i in rng.choice(len(synthetic.WORDS), int(rng.integers(4, 10)))]
    return " ".join(words) + "."


def documents(num_docs: int, seed: int, facts_per_doc: tuple[int, int] = (3, 8),
              prose_fraction: float = 0.2) -> list[str]:
    """``num_docs`` documents of a few sentences each, every family equally
    likely, ``prose_fraction`` of the sentences plain words."""
    rng = np.random.default_rng(seed)
    families = list(FACTS)
    docs = []
    for _ in range(num_docs):
        sentences = []
        for _ in range(int(rng.integers(facts_per_doc[0], facts_per_doc[1] + 1))):
            if rng.random() < prose_fraction:
                sentences.append(prose(rng))
            else:
                sentences.append(fact(rng, families[int(rng.integers(len(families)))]))
        docs.append(" ".join(sentences))
    return docs
