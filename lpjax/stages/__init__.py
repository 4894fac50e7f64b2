"""The pipeline's stages, one module each, each declaring next to its body
what its output depends on (lpjax/workdir.py):

    (base/<preset>) -> data -> probe -> (cluster) -> select -> target/<subset>
        -> evaluate/<subset>, answers/<subset> -> judge/<selection>-vs-<baseline> -> report

lpjax/pipeline.py runs them in that order; common.py is what the model
stages share (tokenizers, models, the tuned target on the mesh).
"""
