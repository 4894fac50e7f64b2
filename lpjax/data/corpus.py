"""The generic pretraining corpus of the embedded default: plain text in
which the synthetic world's facts are stated, not asked for.

Real probes and targets start from pretrained checkpoints that already
hold their knowledge; instruction tuning teaches them to answer in the
template's form. The embedded default mirrors that: the base stage
pretrains its tiny models on documents like "the last word of sun dog cat
is cat. 3 plus 4 is 7." built from the task families of
lpjax/data/synthetic.py, in declarative phrasings that never use the
instruction template.

Real pretrained models have also seen text in shapes like the Alpaca
template, so a share ``template_fraction`` of the documents is one
template-shaped exchange each, rendered exactly as the data pipeline renders
a record (prompt, then the response right after "### Response:"), holding a
*generic* request: write a sentence about a word, describe a thing, give
some words, continue a text. None asks a task family's question or teaches
its answer (nothing is counted, compared, added, copied from the end of a
text, tested for membership or parity, and no number appears), so the bases
know the template but not the tasks: before instruction tuning the probe's
perplexity measures the task, not the template. Everything follows from the
seed.
"""
from __future__ import annotations

import numpy as np

from lpjax.data import synthetic
from lpjax.data.template import build_prompt

# One declarative phrasing per family (two where a family's instructions
# have two): {x} the input, {y} the answer, then the family's fields.
FACTS: dict[str, tuple[str, ...]] = {
    "count_words": ("{x} has {y} words.", "there are {y} words in {x}."),
    "count_numbers": ("{x} has {y} numbers.",),
    "kind_of_list": ("{x} are {y}.",),
    "has_number": ("is there a number in {x}? {y}.",),
    "parity": ("{n} is {y}.",),
    "contains": ("is {w} in {x}? {y}.",),
    "add": ("{a} plus {b} is {y}.", "{y} is {a} and {b} together."),
    "last_word": ("the last word of {x} is {y}.",),
    "larger": ("of {a} and {b} the larger is {y}.",),
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


# Generic requests in the template's shape, several phrasings each ({w} a
# word of synthetic.WORDS): none is a task family's question.
REQUESTS: dict[str, tuple[str, ...]] = {
    "about": ("Write a sentence about {w}.", "Write a short sentence about the {w}.", "Use {w} in a sentence."),
    "describe": ("Describe the {w}.", "Tell me about the {w}.", "Say something about a {w}."),
    "some_words": ("Give some words.", "List a few words.", "Write down a few words."),
    # Short answers, as real text holds them: a word, a number, yes or no,
    # each drawn at random (the format of a short answer, no task's mapping).
    "one_word": ("Say a word.", "Give one word.", "Name a thing."),
    "number": ("Give a number.", "Pick a number.", "Say any number."),
    "yes_no": ("Do you like this text? Answer yes or no.", "Is this a nice note? Say yes or no."),
    # With an input: a text of plain words.
    "continue": ("Continue the text.", "Write what comes next.", "Keep writing after this text."),
    "reply": ("Write a reply to this note.", "Answer the message in a sentence."),
}
WITH_INPUT = frozenset({"continue", "reply", "yes_no"})


def _plain_words(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    return [synthetic.WORDS[i] for i in rng.choice(len(synthetic.WORDS), int(rng.integers(lo, hi + 1)))]


def template_record(rng: np.random.Generator) -> dict:
    """A generic request and its answer, as an instruction record
    (instruction, input, output): plain words only, the answer never a copy
    of the input."""
    kind = list(REQUESTS)[int(rng.integers(len(REQUESTS)))]
    forms = REQUESTS[kind]
    w = synthetic.WORDS[int(rng.integers(len(synthetic.WORDS)))]
    instruction = forms[int(rng.integers(len(forms)))].format(w=w)
    input_ = ""
    if kind == "about":  # a sentence with the word somewhere in it
        words = _plain_words(rng, 3, 8)
        words.insert(int(rng.integers(len(words) + 1)), w)
        output = " ".join(words) + "."
    elif kind == "describe":
        output = f"the {w} " + " ".join(_plain_words(rng, 3, 8)) + "."
    elif kind == "some_words":
        output = " ".join(_plain_words(rng, 3, 6))
    elif kind == "one_word":
        output = synthetic.WORDS[int(rng.integers(len(synthetic.WORDS)))]
    elif kind == "number":
        output = str(int(rng.integers(100)))
    elif kind == "yes_no":
        input_, output = prose(rng), ("yes", "no")[int(rng.integers(2))]
    else:  # continue, reply: new words, not the input again
        input_ = prose(rng)
        output = prose(rng)
        while output == input_:
            output = prose(rng)
    return {"instruction": instruction, "input": input_, "output": output}


def template_document(rng: np.random.Generator) -> str:
    """A generic request rendered as the probe sees a record: the Alpaca
    prompt (with the "### Input:" block when there is an input) followed
    directly by the response (lpjax/data/tokenize.py)."""
    record = template_record(rng)
    return build_prompt(record, "alpaca") + record["output"]


def documents(num_docs: int, seed: int, facts_per_doc: tuple[int, int] = (3, 8),
              prose_fraction: float = 0.2, template_fraction: float = 0.0) -> list[str]:
    """``num_docs`` documents of a few sentences each, every family equally
    likely, ``prose_fraction`` of the sentences plain words; exactly
    ``round(template_fraction * num_docs)`` of the documents, at places drawn
    from the seed, are instead one generic request in the template's shape
    (``template_document``).

    The template documents come from a stream of their own, so the others
    are the documents of ``template_fraction=0`` in order (the first
    ``num_docs - round(template_fraction * num_docs)`` of them), and 0 gives
    exactly the corpus of before template documents existed."""
    if not 0.0 <= template_fraction <= 1.0:
        raise ValueError(f"template_fraction must be in [0, 1], got {template_fraction}")
    rng = np.random.default_rng(seed)
    num_template = round(template_fraction * num_docs)
    # A child stream: drawing from it leaves ``rng`` (the facts) untouched.
    template_rng = np.random.default_rng(seed).spawn(1)[0]
    at = set(template_rng.choice(num_docs, num_template, replace=False).tolist()) if num_template else set()
    families = list(FACTS)
    docs = []
    for i in range(num_docs):
        if i in at:
            docs.append(template_document(template_rng))
            continue
        sentences = []
        for _ in range(int(rng.integers(facts_per_doc[0], facts_per_doc[1] + 1))):
            if rng.random() < prose_fraction:
                sentences.append(prose(rng))
            else:
                sentences.append(fact(rng, families[int(rng.integers(len(families)))]))
        docs.append(" ".join(sentences))
    return docs
