import math

import jax
import numpy as np
import pytest
from flax import nnx

from lpjax.config import TrainConfig
from lpjax.data.batching import collate
from lpjax.data.tokenize import Example
from lpjax.scoring.score import make_score_fn, score_examples
from lpjax.training.train import lr_schedule, make_optimizer, train
from tests.helpers import random_examples, tiny_model


def small_train_cfg(**kw):
    return TrainConfig(**{**dict(epochs=2, batch_size=4, lr=3e-3, log_every=1000, pad_multiple=8), **kw})


def test_collate_masks_exactly_the_response_predictions():
    ex = Example(ids=np.array([5, 6, 7, 8, 9], np.int32), prompt_len=3)
    b = collate([ex], [0], 2, 8)
    np.testing.assert_array_equal(b["tokens"][0], [5, 6, 7, 8, 9, 0, 0, 0])
    np.testing.assert_array_equal(b["targets"][0, :4], [6, 7, 8, 9])
    # Positions 2 and 3 predict ids[3] and ids[4], the response tokens.
    np.testing.assert_array_equal(b["loss_mask"][0], [0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(b["index"], [0, -1])
    assert b["loss_mask"][1].sum() == 0


def test_schedule_is_linear_warmup_then_cosine_to_zero():
    cfg = small_train_cfg(lr=1e-3, warmup_ratio=0.1)
    total = 100
    schedule = lr_schedule(cfg, total)
    warmup = math.ceil(0.1 * total)
    for step in (0, 5, 10, 50, 99):
        want = 1e-3 * step / warmup if step < warmup else 0.5e-3 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert float(schedule(step)) == pytest.approx(want, rel=1e-3, abs=1e-9)


def test_step_is_adamw_at_the_given_learning_rate():
    """make_optimizer's update scaled by lr, as the train step applies it, is
    torch.optim.AdamW's (decoupled weight decay, bias correction) after
    clipping at max_grad_norm; the lr changes from step to step."""
    torch = pytest.importorskip("torch")
    cfg = small_train_cfg(weight_decay=0.1, max_grad_norm=1.0)
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) * s for s in (0.1, 3.0, 0.5)]
    lrs = [1e-2, 3e-2, 5e-3]
    tx = make_optimizer(cfg)
    params, state = {"w": w0}, tx.init({"w": w0})
    for g, lr in zip(grads, lrs):
        updates, state = tx.update({"w": g}, state, params)
        params = {"w": params["w"] + lr * np.asarray(updates["w"])}
    w = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.AdamW([w], lr=lrs[0], betas=(cfg.b1, cfg.b2), eps=1e-8, weight_decay=0.1)
    for g, lr in zip(grads, lrs):
        w.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([w], cfg.max_grad_norm)
        opt.param_groups[0]["lr"] = lr
        opt.step()
    np.testing.assert_allclose(params["w"], w.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_train_step_is_adamw_on_the_gradient_of_the_response_loss():
    """make_train_step's two programs (the per-shape gradient, the update
    compiled once for every shape) give optax's AdamW, scaled by lr, on
    jax.grad of a plain masked cross-entropy of the model's logits, over
    batches of two lengths; only the gradient program compiles per shape."""
    import jax.numpy as jnp
    import optax

    from lpjax import sharding
    from lpjax.aot import compile_stats
    from lpjax.training.train import make_train_step

    vocab = 23
    model = tiny_model(vocab)
    graphdef, params = nnx.split(model)
    examples = random_examples(8, vocab, seed=2)
    batches = [collate(examples, range(4), 4, 40), collate(examples, range(4, 8), 4, 32)]
    cfg = small_train_cfg(weight_decay=0.1, max_grad_norm=0.5)
    tx = make_optimizer(cfg)
    mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    param_sh = sharding.param_shardings(params, mesh)
    opt = tx.init(params)
    opt_sh = jax.tree_util.tree_map(lambda _: sharding.replicated(mesh), opt)
    step = make_train_step(graphdef, tx, param_sh, opt_sh, mesh).compiled_ahead("test")

    def reference_loss(p, batch):
        logp = jax.nn.log_softmax(nnx.merge(graphdef, p)(batch["tokens"]))
        nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
        return jnp.sum(nll * batch["loss_mask"]) / jnp.sum(batch["loss_mask"])

    ref_params, ref_opt = params, opt
    got_params, got_opt = jax.tree_util.tree_map(jnp.copy, params), jax.tree_util.tree_map(jnp.copy, opt)
    before = compile_stats()
    for lr, batch in zip((3e-3, 1e-3), batches):
        batch = {k: v for k, v in batch.items() if k != "index"}
        want_loss, g = jax.value_and_grad(reference_loss)(ref_params, batch)
        updates, ref_opt = tx.update(g, ref_opt, ref_params)
        ref_params = optax.apply_updates(ref_params, jax.tree_util.tree_map(lambda u: lr * u, updates))
        got_params, got_opt, loss = step(got_params, got_opt, np.float32(lr), batch)
        assert float(loss) == pytest.approx(float(want_loss), rel=1e-5)
    # Adam divides by the gradient's own scale, so a rounding difference in
    # a small gradient moves its update by up to ~1e-3 of lr; a wrong lr, sign
    # or decay moves updates by a good share of lr (3e-3 + 1e-3).
    for a, b in zip(jax.tree_util.tree_leaves(got_params), jax.tree_util.tree_leaves(ref_params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=2e-5)
    assert compile_stats().since(before).compiles == 3  # two gradient shapes, one update


def _mean_loss(graphdef, params, examples):
    s, c = score_examples(make_score_fn(graphdef), params, examples, 8, 8)
    return s.sum() / c.sum()


def test_training_lowers_the_response_loss(tmp_path):
    vocab = 17
    rng = np.random.default_rng(0)
    # A learnable task: the response repeats the prompt.
    examples = []
    for _ in range(32):
        p = rng.integers(3, vocab, 5)
        examples.append(Example(ids=np.concatenate([[1], p, p, [2]]).astype(np.int32), prompt_len=6))
    model = tiny_model(vocab)
    graphdef, before = nnx.split(model)
    before = jax.tree_util.tree_map(np.array, before)
    after = train(model, examples, small_train_cfg(epochs=8, lr=1e-2), str(tmp_path / "ckpt"), seed=0)
    assert _mean_loss(graphdef, after, examples) < 0.7 * _mean_loss(graphdef, before, examples)


def test_unknown_remat_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="remat="):
        train(tiny_model(29), random_examples(8, 29), small_train_cfg(epochs=1, remat="everything"),
              str(tmp_path), seed=0)
