"""The pretraining corpus states true facts of every task family, and a
seeded share of its documents are generic requests in the template's shape
that neither ask nor state the tasks."""
import hashlib
import json
import re

import numpy as np
import pytest

from lpjax.data import corpus, synthetic
from lpjax.data.template import PROMPT_INPUT, PROMPT_NO_INPUT, build_prompt


def test_documents_are_deterministic_and_cover_every_family():
    a, b = corpus.documents(50, seed=3), corpus.documents(50, seed=3)
    assert a == b and a != corpus.documents(50, seed=4)
    text = " ".join(corpus.documents(400, seed=0))
    for family, forms in corpus.FACTS.items():
        # Every family's phrasing occurs (its fixed words, placeholders stripped).
        fixed = [w for w in re.split(r"\{\w+\}", forms[0]) if w.strip(" .,:?")]
        assert all(f.strip() in text for f in fixed), family


def test_facts_are_true():
    text = " ".join(corpus.documents(300, seed=1))
    checks = {
        r"\b(\d+) plus (\d+) is (\d+)\.": lambda a, b, c: a + b == c,
        r"of (\d+) and (\d+) the larger is (\d+)\.": lambda a, b, c: max(a, b) == c,
    }
    for pattern, rule in checks.items():
        found = re.findall(pattern, text)
        assert found, pattern
        assert all(rule(*map(int, f)) for f in found), pattern
    words = re.findall(r"the last word of ([a-z ]+) is ([a-z]+)\.", text)
    assert words and all(x.split()[-1] == y for x, y in words)
    parity = re.findall(r"\b(\d+) is (even|odd)\.", text)
    assert parity and all((int(n) % 2 == 0) == (p == "even") for n, p in parity)
    counts = re.findall(r"((?:\d+, )*\d+) has (\d+) numbers\.", text)
    assert counts and all(len(x.split(", ")) == int(n) for x, n in counts)


# ------------------------------------------- documents in the template's shape

def old_documents(num_docs, seed, facts_per_doc=(3, 8), prose_fraction=0.2):
    """documents() as it was before template documents, seed for seed."""
    rng = np.random.default_rng(seed)
    families = list(corpus.FACTS)
    docs = []
    for _ in range(num_docs):
        sentences = []
        for _ in range(int(rng.integers(facts_per_doc[0], facts_per_doc[1] + 1))):
            if rng.random() < prose_fraction:
                sentences.append(corpus.prose(rng))
            else:
                sentences.append(corpus.fact(rng, families[int(rng.integers(len(families)))]))
        docs.append(" ".join(sentences))
    return docs


# sha256 of json.dumps(documents(200, seed=5)) before template documents existed.
OLD_SHA256 = "be51fe69504bfcd2402ab0f50d9c31c0aaf3060f609aced20475d454f0bc2ca5"

PREAMBLES = (PROMPT_INPUT.split("### Instruction:")[0], PROMPT_NO_INPUT.split("### Instruction:")[0])
# A rendered record: the template's fixed parts around instruction, optional input, response.
PARSE = re.compile(r"(?P<pre>.*?)### Instruction:\n(?P<instruction>.*?)\n\n"
                   r"(?:### Input:\n(?P<input>.*?)\n\n)?### Response:(?P<output>.*)", re.S)


def _pattern(form, slots):
    """A regex for a phrasing with {fields}: fixed text escaped, fields as ``slots`` say."""
    parts = re.split(r"\{(\w+)\}", form)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else slots[p] for i, p in enumerate(parts)))


NUMBER, WORD, TEXT = r"\d+", r"[a-z]+", r"[a-z0-9][a-z0-9, ]*"
FACT_PATTERNS = [_pattern(f, {"x": TEXT, "y": r"[a-z0-9]+", "n": NUMBER, "a": NUMBER, "b": NUMBER, "w": WORD})
                 for forms in corpus.FACTS.values() for f in forms]
INSTRUCTION_PATTERNS = [_pattern(i, {"n": NUMBER, "a": NUMBER, "b": NUMBER, "w": WORD})
                        for pair in synthetic.INSTRUCTIONS.values() for i in pair]


def _templated(docs):
    return [d for d in docs if d.startswith(PREAMBLES)]


def test_fraction_zero_is_the_old_corpus_seed_for_seed():
    for n, seed in [(200, 5), (57, 0), (1, 9)]:
        assert corpus.documents(n, seed) == corpus.documents(n, seed, template_fraction=0.0) == old_documents(n, seed)
    assert corpus.documents(30, 2, (1, 2), 0.5) == old_documents(30, 2, (1, 2), 0.5)
    assert hashlib.sha256(json.dumps(corpus.documents(200, seed=5)).encode()).hexdigest() == OLD_SHA256
    assert not _templated(corpus.documents(300, seed=1))


@pytest.mark.parametrize("fraction,n", [(0.25, 400), (0.1, 57), (0.5, 3), (1.0, 20), (0.001, 100)])
def test_the_share_of_template_documents_is_exact(fraction, n):
    docs = corpus.documents(n, seed=4, template_fraction=fraction)
    assert len(docs) == n and len(_templated(docs)) == round(fraction * n)
    # The other documents are the fraction-0 corpus, in order; the template
    # documents sit at seeded places among them.
    rest = [d for d in docs if d not in _templated(docs)]
    assert rest == old_documents(n, seed=4)[: len(rest)]
    assert docs == corpus.documents(n, seed=4, template_fraction=fraction)
    if fraction == 0.25:
        assert docs != corpus.documents(n, seed=5, template_fraction=fraction)
        positions = [i for i, d in enumerate(docs) if d.startswith(PREAMBLES)]
        assert positions[0] < n // 4 and positions[-1] > 3 * n // 4  # spread, not a block


def test_template_documents_render_as_the_probe_sees_a_record():
    docs = _templated(corpus.documents(600, seed=0, template_fraction=0.5))
    phrasings, with_input = set(), 0
    for doc in docs:
        m = PARSE.fullmatch(doc)
        assert m and "### Response:" in doc, doc
        record = {"instruction": m["instruction"], "input": m["input"] or "", "output": m["output"]}
        # Exactly the data pipeline's rendering: the prompt, the response right after it.
        assert doc == build_prompt(record, "alpaca") + record["output"]
        assert m["pre"] == (PREAMBLES[0] if m["input"] is not None else PREAMBLES[1])
        assert record["output"] and record["output"] != record["input"]
        with_input += bool(record["input"])
        matched = [(kind, f, _pattern(f, {"w": f"(?P<w>{WORD})"}).fullmatch(record["instruction"]))
                   for kind, forms in corpus.REQUESTS.items() for f in forms]
        matched = [x for x in matched if x[2]]
        assert len(matched) == 1, record["instruction"]
        kind, form, request = matched[0]
        phrasings.add(form)
        assert (kind in corpus.WITH_INPUT) == bool(record["input"])
        if kind == "about":  # a sentence holding the word asked about
            assert request["w"] in record["output"].rstrip(".").split()
        # Short answers are a word, a number or yes/no, drawn at random.
        if kind == "one_word":
            assert record["output"] in synthetic.WORDS
        elif kind == "number":
            assert record["output"].isdigit() and 0 <= int(record["output"]) < 100
        elif kind == "yes_no":
            assert record["output"] in ("yes", "no")
        # Otherwise plain words of the vocabulary only.
        words = (record["input"] + " " + record["output"]).replace(".", " ").split()
        if kind not in ("number", "yes_no"):
            assert set(words) <= set(synthetic.WORDS) | {"the"}, doc
    assert 0.2 * len(docs) < with_input < 0.6 * len(docs)
    assert phrasings == {f for forms in corpus.REQUESTS.values() for f in forms}  # every phrasing occurs


def test_template_documents_neither_ask_nor_state_the_tasks():
    docs = corpus.documents(800, seed=3, template_fraction=0.5)
    templated = _templated(docs)
    assert len(templated) == 400
    for doc in templated:
        # A number only as the whole answer to "give a number" (nothing to count, add,
        # compare or test for parity), never in a request or its input.
        assert not re.search(r"\d", doc.rsplit("### Response:", 1)[0]), doc
        for p in INSTRUCTION_PATTERNS:
            assert not p.search(doc), (p.pattern, doc)
        for p in FACT_PATTERNS:
            assert not p.search(doc), (p.pattern, doc)
    # The patterns do find the tasks where they are: in the fact documents.
    facts = " ".join(d for d in docs if d not in templated)
    assert all(p.search(facts) for p in FACT_PATTERNS)
    record = synthetic.generate(20, 0, 0.0, seed=0)[0]
    assert all(any(p.fullmatch(r["instruction"]) for p in INSTRUCTION_PATTERNS) for r in record)


def test_bad_template_fraction():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="template_fraction"):
            corpus.documents(10, seed=0, template_fraction=bad)
