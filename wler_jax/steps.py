"""Pure, jit-able train steps for WLER (N_W) and SLAT (N_S) on waveform batches.

The step takes the pipeline's batch (int16 waveforms + lengths + multi-hot labels + weights)
and computes the log-mel scales on the device from that one transfer. Training treats each
scale as its own example (the paper's 4x data): the step's examples are B recordings x 4
scales. The loss is Eq. 2 (BCE averaged over classes) averaged over real examples; weight-0
padding rows never count. What a method trains on (WLER: pooled clips; SLAT: 128-frame windows)
is the model's business (`ModelSpec.training_logits`): nothing here branches on the method.
Evaluation is `inference.predict`, the same function users call.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from wler_jax import features as features_lib
from wler_jax.geometry import N_FFTS, SAMPLE_RATE
from wler_jax.models import ModelSpec

TrainState = train_state.TrainState


def scale_batch(batch: dict, n_ffts=N_FFTS, *, step: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Training examples of a batch: log-mel of every scale, flattened recording-major.

    Returns (features [B * S, T, 128], num_frames, labels, weight), each repeated per scale, so
    that example b * S + s is recording b at scale s (keeps the 'data'-sharded batch axis
    contiguous). With `step` given, only scale `step % 4` is computed (`lax.switch`: one
    compiled program, one scale's work at run time) and S = 1: the 4x data is covered over
    consecutive steps instead of within one step.
    """
    if step is not None:
        branches = [lambda a, n, k=k: features_lib.log_mel(a, n, k)[0] for k in n_ffts]
        feats = jax.lax.switch(step % len(n_ffts), branches, batch["audio"], batch["num_samples"])
        return feats, batch["num_frames"], batch["labels"], batch["weight"]
    feats, _ = features_lib.multi_scale_log_mel(batch["audio"], batch["num_samples"], n_ffts)
    s, b, t, m = feats.shape
    feats = jnp.swapaxes(feats, 0, 1).reshape(b * s, t, m)
    rep = lambda x: jnp.repeat(x, s, axis=0)
    return feats, rep(batch["num_frames"]), rep(batch["labels"]), rep(batch["weight"])


def bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Eq. 2: binary cross-entropy averaged over classes -> logits.shape[:-1]."""
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)


def feature_loss(spec: ModelSpec, params, features: jax.Array, num_frames: jax.Array,
                 labels: jax.Array, weight: jax.Array, rng: jax.Array, *,
                 slat_hop: int) -> tuple[jax.Array, dict]:
    """The method's loss on log-mel examples: BCE of every training logit (WLER: the pooled
    clip; SLAT: each valid window) against its recording's label, averaged over real ones.

    Args:
      features: [N, T, 128]; num_frames: [N]; labels: [N, C] multi-hot; weight: [N] (0: padding).
    Returns:
      (loss, {"examples": number of weighted examples}).
    """
    logits, valid = spec.training_logits(params, features, num_frames, rngs={"dropout": rng},
                                         slat_hop=slat_hop)
    per_example = bce(logits, labels[:, None, :])  # [N, K]
    wts = valid * weight[:, None]
    return (per_example * wts).sum() / jnp.maximum(wts.sum(), 1.0), {"examples": wts.sum()}


def loss(spec: ModelSpec, params, batch: dict, rng: jax.Array, *, slat_hop: int = 128,
         step=None) -> tuple[jax.Array, dict]:
    """`feature_loss` on a waveform batch, every scale a separate example (`scale_batch`)."""
    feats, nf, labels, weight = scale_batch(batch, step=step)
    return feature_loss(spec, params, feats, nf, labels, weight, rng, slat_hop=slat_hop)


def make_train_step(spec: ModelSpec, *, slat_hop: int = 128, base_rng: jax.Array,
                    scales_per_step: str = "all") -> Callable:
    """(state, batch) -> (state, metrics): one optimiser step; dropout rng folded per step.

    `scales_per_step`: "all" (each step trains on all four scales of its recordings, the
    paper's 4x data within every epoch) or "one" (step k trains on scale k % 4 only: a quarter
    of the compute per step, so four times the optimiser steps for the same compute).
    `slat_hop`: hop of SLAT's training windows in frames (unused by WLER).
    """
    if scales_per_step not in ("all", "one"):
        raise ValueError(f"scales_per_step must be 'all' or 'one', got {scales_per_step!r}")

    def loss_fn(params, batch, rng, scale_step):
        return loss(spec, params, batch, rng, slat_hop=slat_hop, step=scale_step)

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(base_rng, state.step)
        scale_step = state.step if scales_per_step == "one" else None
        (value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, rng, scale_step)
        state = state.apply_gradients(grads=grads)
        weight = batch["weight"]
        return state, {"loss": value, "grad_norm": optax.tree.norm(grads),
                       "recordings": weight.sum(),
                       "audio_seconds": (batch["num_samples"] * weight).sum() / SAMPLE_RATE, **aux}

    return train_step


def make_optimizer(optimizer: str, learning_rate: float, *, adagrad_eps: float = 1e-6,
                   adagrad_initial_accumulator: float = 0.0) -> optax.GradientTransformation:
    """The paper's Adagrad(1e-3) with Lasagne's semantics (accumulator from 0, eps 1e-6):
    update = -lr * g / sqrt(sum g^2 + eps), which is what optax's `scale_by_rss` computes."""
    if optimizer == "adagrad":
        return optax.adagrad(learning_rate, initial_accumulator_value=adagrad_initial_accumulator,
                             eps=adagrad_eps)
    if optimizer == "adam":
        return optax.adam(learning_rate)
    raise ValueError(f"unknown optimizer {optimizer!r}: 'adagrad' or 'adam'")
