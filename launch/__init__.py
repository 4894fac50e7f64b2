"""Sweeps over lpjax runs: a grid of config overrides, run one point after
another, on Slurm through submitit, or on Cloud TPU VM slices, and one
report over all of them. See README's "Sweeps" section."""
