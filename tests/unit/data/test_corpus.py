"""The pretraining corpus states true facts of every task family."""
import re

from lpjax.data import corpus


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
        r"(?<![\d,] )\b(\d+) plus (\d+) is (\d+)\.": lambda a, b, c: a + b == c,
        r"(?<!plus )\b(\d+) minus (\d+) is (\d+)\.": lambda a, b, c: a - b == c,
        r"\b(\d+) times (\d+) is (\d+)\.": lambda a, b, c: a * b == c,
        r"\b(\d+) plus (\d+) minus (\d+) is (\d+)\.": lambda a, b, c, d: a + b - c == d,
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
