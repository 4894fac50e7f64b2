"""One process of the two-process test in test_multihost.py (or, with
process count 1, the single-process reference): train and score a tiny model
on a (4, 1, 1) mesh and save the results."""
import json
import os
import sys

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
# The test's other XLA flags (tests/conftest.py) stay; the device count is this process's share.
_inherited = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
os.environ["XLA_FLAGS"] = " ".join([f"--xla_force_host_platform_device_count={4 // num_processes}", *_inherited])

import jax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from lpjax import distributed  # noqa: E402

distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from lpjax import sharding  # noqa: E402
from lpjax.config import TrainConfig  # noqa: E402
from lpjax.data import batching  # noqa: E402
from lpjax.scoring.score import make_score_fn, score_examples  # noqa: E402
from lpjax.training.train import train  # noqa: E402
from tests.helpers import random_examples, tiny_model  # noqa: E402

fed = []
_collate = batching.collate


def recording_collate(examples, indices, *args, **kwargs):
    fed.append([int(i) for i in indices if i >= 0])  # the samples this process turned into arrays
    return _collate(examples, indices, *args, **kwargs)


batching.collate = recording_collate

mesh = sharding.make_mesh((4, 1, 1))
cfg = TrainConfig(epochs=1, batch_size=8, lr=3e-3, pad_multiple=40, log_every=1000)
examples = random_examples(24, 64, seed=5)
model = tiny_model(64, num_layers=1)
params = train(model, examples, cfg, os.path.join(out, "ckpt"), seed=0, mesh=mesh)  # one shared directory, as on a pod
fed_train = list(fed)
s, c = score_examples(make_score_fn(nnx.graphdef(model), mesh), params, examples, 8, 40)
flat = [np.asarray(multihost_utils.process_allgather(x, tiled=True)).ravel()
        for x in jax.tree_util.tree_leaves(params)]
with open(os.path.join(out, f"result{process_id}.json"), "w") as f:
    json.dump({"loss_sum": s.tolist(), "count": c.tolist(), "params": np.concatenate(flat).tolist(),
               "fed_train": fed_train, "devices": jax.device_count(), "local": jax.local_device_count()}, f)
