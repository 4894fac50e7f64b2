"""The train loop end to end on tiny models: a run interrupted inside an
epoch hook resumes to the uninterrupted result bit for bit; gradient
accumulation, the response-only head, shared prefixes and remat give the
plain path's parameters."""
import jax
import numpy as np
import pytest

from lpjax.training.train import train
from tests.helpers import prefixed_examples, random_examples, tiny_model
from tests.unit.training.test_train import small_train_cfg


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_the_uninterrupted_result(tmp_path):
    vocab = 29
    examples = random_examples(20, vocab, seed=4)
    cfg = small_train_cfg(epochs=3, checkpoint_every=2, pad_multiple=40)  # one shape: one compile
    straight = train(tiny_model(vocab), examples, cfg, str(tmp_path / "a"), seed=0)

    seen = []

    def die_after_epoch_two(epoch, params):
        seen.append(epoch)
        if epoch == 2 and seen.count(2) == 1:
            raise Interrupt  # killed inside the epoch-end hook, before its checkpoint

    with pytest.raises(Interrupt):
        train(tiny_model(vocab), examples, cfg, str(tmp_path / "b"), seed=0, on_epoch_end=die_after_epoch_two)
    # Rerun with a fresh model: it restores the last checkpoint and finishes.
    resumed = train(tiny_model(vocab, seed=9), examples, cfg, str(tmp_path / "b"), seed=0,
                    on_epoch_end=die_after_epoch_two)
    assert seen == [1, 2, 2, 3]
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    vocab = 29
    examples = random_examples(16, vocab, seed=6)
    results = []
    for accum in (1, 4):
        cfg = small_train_cfg(epochs=1, batch_size=8, grad_accum=accum, pad_multiple=40)
        results.append(train(tiny_model(vocab), examples, cfg, str(tmp_path / str(accum)), seed=0))
    for a, b in zip(*(jax.tree_util.tree_leaves(r) for r in results)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_response_head_shared_prefix_and_remat_train_the_same(tmp_path):
    """The cheaper loss paths and activation checkpointing change FLOPs and
    memory, not the update: the same params after an epoch as the plain path
    (with grad_accum, so the prefix table rides along every micro-batch)."""
    accum = 2
    vocab = 29
    examples = prefixed_examples(24, vocab, seed=3)
    results = []
    for fast in (False, True):
        cfg = small_train_cfg(epochs=1, batch_size=8, grad_accum=accum, response_head=fast, shared_prefix=fast,
                              remat="dots" if fast else "none")
        results.append(train(tiny_model(vocab), examples, cfg, str(tmp_path / str(fast)), seed=0))
    for a, b in zip(*(jax.tree_util.tree_leaves(r) for r in results)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
