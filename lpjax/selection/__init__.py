"""Selecting the hard samples: metrics (LP, LP_app, P0, IFD), select (global,
per-cluster, baselines), score_io (score files), transfer (do probes agree?),
export (write a subset out)."""
