"""Training gradients of every family against transformers' autograd.

The models' attention and gated MLP have hand-written backward passes
(lpjax.models.common: the attention recomputes its probabilities from the
saved log-sum-exp and runs long sequences in causal query blocks, the
gated activation recomputes act(gate), Llama's RMSNorm recomputes its
statistics from its input, every projection writes out its weight
gradient), so the
gradient of the training loss is checked parameter by parameter against
PyTorch's on the same right-padded batch.
"""
import jax
import numpy as np
import pytest
from flax import nnx

from lpjax.data import batching
from lpjax.loss import token_mean_loss
from lpjax.models import common
from lpjax.models.family import family_of_model
from lpjax.models.hf import load_hf
from tests.helpers import random_examples
from tests.unit.models.hf_cases import CASES, VOCAB


def torch_gradients(ref, examples) -> tuple[float, dict[str, np.ndarray]]:
    """transformers' mean response-token loss on one right-padded batch
    (labels -100 on prompt and padding) and its gradient per parameter name."""
    import torch

    n = max(len(ex.ids) for ex in examples)
    ids = torch.zeros((len(examples), n), dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    labels = torch.full((len(examples), n), -100, dtype=torch.long)
    for i, ex in enumerate(examples):
        ids[i, : len(ex.ids)] = torch.as_tensor(ex.ids)
        mask[i, : len(ex.ids)] = 1
        labels[i, ex.prompt_len : len(ex.ids)] = ids[i, ex.prompt_len : len(ex.ids)]
    ref.eval()  # no dropout; autograd still runs
    named = dict(ref.named_parameters())
    loss = ref(input_ids=ids, attention_mask=mask, labels=labels).loss
    grads = dict(zip(named, (g.numpy().copy() for g in torch.autograd.grad(loss, list(named.values())))))
    # nn.Embedding(padding_idx=...) never passes a gradient to its padding
    # row (OPT's pad id is 1, which these random tokens use as a real token);
    # lpjax's embedding has no such row, so it is left out of the comparison.
    pad_row = ref.get_input_embeddings().padding_idx
    if pad_row is not None:
        for name, p in named.items():
            if p is ref.get_input_embeddings().weight:
                grads[name][pad_row] = np.nan
    return float(loss.detach()), grads


def lpjax_gradients(model, examples) -> tuple[float, dict[str, np.ndarray]]:
    """The training loss on the batch train() builds, and its gradient in
    transformers' names and layouts."""
    planned = batching.fixed_batch(examples, list(range(len(examples))), len(examples), 8, resp_multiple=8)
    batch = batching.collate_plan(examples, planned, None)
    batch.pop("index")
    graphdef, params = nnx.split(model)
    total = np.maximum(batch["loss_mask"].sum(), 1.0)
    loss, grads = jax.jit(jax.value_and_grad(lambda p: token_mean_loss(nnx.merge(graphdef, p), batch, total)))(params)
    flat = dict(nnx.to_flat_state(grads))
    out = {name: np.asarray(t.transform.to_hf(t.part(np.asarray(flat[t.path].get_value()))))
           for name, t in family_of_model(model).tensor_map(model.cfg).items()}
    return float(loss), out


@pytest.mark.parametrize("block", [None, 8], ids=["one-block", "causal-blocks"])
@pytest.mark.parametrize("case", list(CASES))
def test_training_gradients_match_transformers(case, block, hf_checkpoint, monkeypatch):
    """``causal-blocks``: attention in query blocks of 8 rows (the path
    sequences longer than ATTENTION_BLOCK take), three blocks here."""
    if block is not None:
        monkeypatch.setattr(common, "ATTENTION_BLOCK", block)
    path, ref = hf_checkpoint(case)
    examples = random_examples(6, VOCAB, seed=3, max_len=20)
    want_loss, want = torch_gradients(ref, examples)
    got_loss, got = lpjax_gradients(load_hf(path)[0], examples)
    assert abs(got_loss - want_loss) < 1e-5 * abs(want_loss)
    assert set(got) <= set(want)
    # A key bias's gradient is zero in exact arithmetic (softmax ignores a
    # constant added to a row of scores), so each error is relative to the
    # tensor's own gradient or to a thousandth of the largest, whichever is larger.
    floor = 1e-3 * max(np.nanmax(np.abs(w)) for w in want.values())
    for name, g in got.items():
        keep = ~np.isnan(want[name])
        err = np.abs(g - want[name])[keep].max() / max(np.abs(want[name][keep]).max(), floor)
        assert err < 1e-4, (name, err)


def test_bf16_gradients_stay_close_to_fp32(hf_checkpoint):
    """bf16 compute runs the same hand-written backward passes in bf16 with
    fp32 accumulation: the gradient must stay near fp32's, not just run."""
    path, _ = hf_checkpoint("llama_gqa_untied_bias")
    examples = random_examples(6, VOCAB, seed=4, max_len=20)
    _, fp32 = lpjax_gradients(load_hf(path)[0], examples)
    _, bf16 = lpjax_gradients(load_hf(path, compute_dtype="bfloat16")[0], examples)
    for name, g in fp32.items():
        err = np.abs(bf16[name] - g).max() / np.abs(g).max()
        assert err < 0.1, (name, err)
