"""Per-sample scores: computing them with a model (score.py) and the score
files selection reads (store.py: the zarr store, the authors' pickles)."""
