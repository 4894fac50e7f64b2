"""Fine-tuning: AdamW with warmup + cosine decay on the response loss, with
per-epoch hooks (the probe scores the training set there) and Orbax resume.

The model is split into a static graph and a parameter pytree once; the train
step is pure jitted functions of (params, batch) and (params, opt_state, lr,
grads), which is what sharding and ahead-of-time compilation need.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from lpjax import faults, sharding
from lpjax.aot import AotFunction, compile_stats, fast_compile_options
from lpjax.config import TrainConfig
from lpjax.training.checkpoint import Checkpointer
from lpjax.data.batching import ROW_KEYS, batches_per_epoch, collate_plan, epoch_plan, shared_prefixes
from lpjax.loss import token_mean_loss


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with gradient clipping at a unit learning rate: the train step
    multiplies its update by the step's learning rate (``lr_schedule``),
    passed in as a value, so one compiled step serves every run length,
    learning rate and warmup (probe, every target, every sweep point)."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.max_grad_norm),
        optax.adamw(1.0, b1=cfg.b1, b2=cfg.b2, eps=1e-8, weight_decay=cfg.weight_decay),
    )


def lr_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warmup, then cosine to 0, as HF Trainer's ``cosine`` scheduler."""
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    return optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(total_steps, warmup + 1), 0.0)


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """One optimizer step as two jitted programs: ``grads(params, batch) ->
    (loss, grads)`` compiles for every batch shape an epoch meets;
    ``update(params, opt_state, lr, grads) -> (params, opt_state)`` has the
    parameters' shapes only and compiles once per run, so a new batch shape
    does not compile AdamW again (about a sixth of a fused SmolLM2 step's
    compiling, docs/performance.md, "Compiling"). Calling it runs both;
    the gradients are dropped on return, so two batches' gradients never
    live together."""

    grads: Any
    update: Any

    def __call__(self, params, opt_state, lr, batch):
        loss, grads = self.grads(params, batch)
        params, opt_state = self.update(params, opt_state, lr, grads)
        return params, opt_state, loss

    def compiled_ahead(self, name: str) -> "TrainStep":
        """The same step with each program compiled ahead of time and counted
        (``AotFunction``): the gradient once per batch shape, the update once."""
        return TrainStep(AotFunction(self.grads, f"{name} gradients"),
                         AotFunction(self.update, f"{name} update", key=lambda args: ()))


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, param_sh, opt_sh, mesh: Mesh,
                    grad_accum: int = 1, batch_keys: Sequence[str] = ("tokens", "targets", "loss_mask"),
                    fast_compile: bool = True) -> TrainStep:
    """The train step (``TrainStep``) with explicit shardings: params,
    gradients and optimizer state stay where the rules put them, the batch
    is split over (data, fsdp); ``lr`` (a float32 scalar) scales the update
    of ``tx`` (``make_optimizer``). ``fast_compile``: on CPU, the per-shape
    gradient program compiles with ``aot.fast_compile_options``.

    With grad_accum = A the batch runs as A micro-batches (rows i::A, so each
    device keeps its own rows) under lax.scan; gradients are summed against
    the whole batch's token count, so the update equals the unaccumulated one.
    """

    def micro_loss(params, batch, total):
        return token_mean_loss(nnx.merge(graphdef, params), batch, total)

    def grads(params, batch):
        total = jnp.maximum(jnp.sum(batch["loss_mask"]), 1.0)
        if grad_accum == 1:
            return jax.value_and_grad(micro_loss)(params, batch, total)
        rows = {k: v for k, v in batch.items() if k in ROW_KEYS}
        table = {k: v for k, v in batch.items() if k not in ROW_KEYS}  # the prefix table: every micro-batch's
        micro = jax.tree_util.tree_map(
            lambda x: jnp.swapaxes(x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]), 0, 1), rows)

        def body(acc, mb):
            loss, grads = jax.value_and_grad(micro_loss)(params, {**mb, **table}, total)
            return jax.tree_util.tree_map(jnp.add, acc, (loss, grads)), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree_util.tree_map(jnp.zeros_like, params))
        return jax.lax.scan(body, zeros, micro)[0]

    def update(params, opt_state, lr, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree_util.tree_map(lambda u: lr * u, updates)
        return optax.apply_updates(params, updates), opt_state

    replicated = sharding.replicated(mesh)
    batch_sh = sharding.batch_shardings(mesh, batch_keys, ROW_KEYS)
    return TrainStep(
        grads=jax.jit(grads, in_shardings=(param_sh, batch_sh), out_shardings=(replicated, param_sh),
                      compiler_options=fast_compile_options(mesh.devices.flat) if fast_compile else None),
        update=jax.jit(update, in_shardings=(param_sh, opt_sh, replicated, param_sh),
                       out_shardings=(param_sh, opt_sh), donate_argnums=(0, 1)),
    )


EpochHook = Callable[[int, Any], None]


def train(
    model: nnx.Module,
    examples: Sequence,
    cfg: TrainConfig,
    ckpt_dir: str,
    seed: int,
    on_epoch_end: EpochHook | None = None,
    log_metrics: Callable[[dict], None] | None = None,
    name: str = "train",
    mesh: Mesh | None = None,
) -> Any:
    """Train for cfg.epochs; returns the final params (an nnx.State).

    on_epoch_end(epoch, params) runs before the epoch's checkpoint is saved,
    so a run killed inside the hook redoes it on resume.
    """
    mesh = mesh or sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    model.remat = cfg.remat
    graphdef, params = nnx.split(model)
    param_sh = sharding.param_shardings(params, mesh)
    params = jax.device_put(params, param_sh)
    steps_per_epoch = batches_per_epoch(len(examples), cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    tx = make_optimizer(cfg)
    # Evaluated here, not in the step: the step's program then does not
    # depend on the run's length, and its compile is shared (and cached).
    schedule = lr_schedule(cfg, total)
    # Moments inherit their parameter's sharding through jit; step counters
    # and other scalars are replicated.
    opt_state = jax.jit(tx.init)(params)
    opt_sh = jax.tree_util.tree_map(
        lambda x: x.sharding if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh
        else sharding.replicated(mesh), opt_state)
    opt_state = jax.device_put(opt_state, opt_sh)
    rows = sharding.local_rows(mesh, cfg.batch_size)  # this process's share of every batch
    if cfg.batch_size % cfg.grad_accum:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by grad_accum={cfg.grad_accum}")
    # Optional cheaper loss (lpjax/data/batching.py): same loss and gradients.
    resp_multiple = cfg.pad_multiple if cfg.response_head else None
    prefixes = shared_prefixes(examples) if cfg.shared_prefix else None
    keys = ["tokens", "targets", "loss_mask"] + (["resp_pos"] if resp_multiple else []) + (
        ["prefix_id", "prefix_tokens", "prefix_len"] if prefixes is not None else [])
    step_fn = make_train_step(graphdef, tx, param_sh, opt_sh, mesh, cfg.grad_accum, keys,
                              cfg.fast_compile).compiled_ahead(name)

    ckpt = Checkpointer(ckpt_dir)
    step = 0
    epoch, batch_pos = 0, 0
    if (latest := ckpt.latest_step()) is not None:
        (params, opt_state), pos = ckpt.restore(latest, (params, opt_state))
        step, epoch, batch_pos = latest, pos["epoch"], pos["batch"]
        logging.info("%s: resumed at step %d (epoch %d, batch %d)", name, step, epoch, batch_pos)

    def put(batch):
        batch.pop("index")
        return sharding.put_batch(batch, mesh, cfg.batch_size, ROW_KEYS)

    t0, done_at_start, compiled_before = time.time(), step, compile_stats()
    while epoch < cfg.epochs:
        # Every batch shape the epoch will meet, compiled up front in
        # parallel threads (on the first batch of each shape, which the loop
        # then uses) instead of one by one as the loop reaches them.
        plan = epoch_plan(examples, cfg.batch_size, cfg.pad_multiple, seed, epoch, resp_multiple, prefixes)[batch_pos:]
        firsts = {(b.length, b.resp_len): i for i, b in reversed(list(enumerate(plan)))}
        ready = {i: put(collate_plan(examples, plan[i], prefixes, rows)) for i in sorted(firsts.values())}
        step_fn.grads.precompile([(params, batch) for batch in ready.values()])
        for i, planned in enumerate(plan):
            batch = ready.pop(i) if i in ready else put(collate_plan(examples, planned, prefixes, rows))
            params, opt_state, loss = step_fn(params, opt_state, np.float32(schedule(step)), batch)
            step += 1
            batch_pos += 1
            faults.point(f"step:{name}")
            if step % cfg.log_every == 0 or step == total:
                loss = float(loss)
                rate = (step - done_at_start) / max(time.time() - t0, 1e-9)
                record = dict(
                    stage=name, step=step, total_steps=total, epoch=epoch, loss=loss,
                    samples_per_s=rate * cfg.batch_size, eta_s=(total - step) / max(rate, 1e-9),
                    **compile_stats().since(compiled_before).as_dict(),
                )
                logging.info("%s step %d/%d loss %.4f %.1f samples/s ETA %.0fs", name, step, total, loss,
                             record["samples_per_s"], record["eta_s"])
                if log_metrics:
                    log_metrics(record)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and batch_pos < steps_per_epoch:
                ckpt.save(step, (params, opt_state), {"epoch": epoch, "batch": batch_pos})
        epoch, batch_pos = epoch + 1, 0
        if on_epoch_end:
            on_epoch_end(epoch, params)
        faults.point(f"epoch-end:{name}")
        ckpt.save(step, (params, opt_state), {"epoch": epoch, "batch": 0})
    ckpt.close()
    return params
