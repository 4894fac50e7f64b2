"""The pipeline's stages, one module each, each declaring next to its body
what its output depends on (lpjax/workdir.py):

    data -> probe -> (cluster) -> select -> target/<subset> -> evaluate/<subset> -> report

lpjax/pipeline.py runs them in that order.
"""
