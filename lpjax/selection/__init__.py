"""Selecting the hard samples: metrics (LP, LP_app, P0, IFD), select (global,
per-cluster, baselines), clusters (MiniLM embed + kmeans, or a file),
transfer (do probes agree?), export (write a subset out)."""
