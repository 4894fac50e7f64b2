"""How good a tuned target is: decoding (generate.py) and held-out metrics
(heldout.py)."""
