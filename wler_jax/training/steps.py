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

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util
from flax.training import train_state

from wler_jax import features as features_lib
from wler_jax.geometry import N_FFTS, SAMPLE_RATE
from wler_jax.model.spec import ModelSpec
from wler_jax.training import augment
from wler_jax.training.augment import Augmentation, augment_waveforms, spec_augment


class TrainState(train_state.TrainState):
    """flax's TrainState plus `ema_params`, an exponential moving average of `params` kept by
    the train step when `train.ema_decay` > 0 (None, no leaves, when off: the state's tree is
    then the one checkpoints held before the field existed)."""
    ema_params: Any = None


def ema_update(ema_params: Any, params: Any, step: jax.Array, decay: float) -> Any:
    """One step of the weights' moving average, with TensorFlow's warm start: the decay is
    min(decay, (1 + step) / (10 + step)), so the first steps' average is not the
    initialisation's. Written e + (1 - d)(p - e): a parameter that never moves (frozen, the
    input statistics) stays bit for bit what it was."""
    t = step.astype(jnp.float32)
    d = jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))
    return jax.tree.map(lambda e, p: e + (1.0 - d) * (p - e), ema_params, params)


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
                 slat_hop: int, example_norm: float = 0.0) -> tuple[jax.Array, dict]:
    """The method's loss on log-mel examples: BCE of every training logit (WLER: the pooled
    clip; SLAT: each valid window) against its recording's label, averaged over real ones.

    Args:
      features: [N, T, 128]; num_frames: [N]; labels: [N, C] multi-hot; weight: [N] (0: padding).
      example_norm: > 0: divide the weighted sum by this constant instead of by the batch's
        own example count, so every example weighs the same in an epoch whatever the size of
        its batch (length buckets hold 1 to 20+ recordings; see `train.loss_weighting`).
    Returns:
      (loss, {"examples": number of weighted examples}).
    """
    logits, valid = spec.training_logits(params, features, num_frames, rngs={"dropout": rng},
                                         slat_hop=slat_hop)
    per_example = bce(logits, labels[:, None, :])  # [N, K]
    wts = valid * weight[:, None]
    norm = example_norm if example_norm > 0 else jnp.maximum(wts.sum(), 1.0)
    return (per_example * wts).sum() / norm, {"examples": wts.sum()}


def loss(spec: ModelSpec, params, batch: dict, rng: jax.Array, *, slat_hop: int = 128,
         step=None, example_norm: float = 0.0,
         aug: Augmentation | None = None) -> tuple[jax.Array, dict]:
    """`feature_loss` on a waveform batch, every scale a separate example (`scale_batch`);
    `example_norm` is per recording and scale (scaled here by the scales in the step).
    `aug`: SpecAugment masks on the log-mel examples (`augment.spec_augment`), when it has any."""
    feats, nf, labels, weight = scale_batch(batch, step=step)
    if aug is not None and aug.on_features:
        rng, mask_rng = jax.random.split(rng)
        feats = spec_augment(feats, nf, mask_rng, aug)
    scales = feats.shape[0] // batch["audio"].shape[0]
    return feature_loss(spec, params, feats, nf, labels, weight, rng, slat_hop=slat_hop,
                        example_norm=example_norm * scales)


def make_train_step(spec: ModelSpec, *, slat_hop: int = 128, base_rng: jax.Array,
                    scales_per_step: str = "all", augmentation: Augmentation = augment.NONE,
                    example_norm: float = 0.0, ema_decay: float = 0.0) -> Callable:
    """(state, batch) -> (state, metrics): one optimiser step; dropout rng folded per step.

    `scales_per_step`: "all" (each step trains on all four scales of its recordings, the
    paper's 4x data within every epoch) or "one" (step k trains on scale k % 4 only: a quarter
    of the compute per step, so four times the optimiser steps for the same compute).
    `slat_hop`: hop of SLAT's training windows in frames (unused by WLER).
    `augmentation`: what is done to each batch's waveforms and log-mel (`augment.Augmentation`;
    off by default). With background mixing or negatives the batches carry "background" rows.
    `example_norm`: > 0: the loss is the sum over the batch's examples (per scale) divided by
    this constant, not their mean (`feature_loss`).
    `ema_decay`: > 0 updates `state.ema_params` (`ema_update`) after every step; the state must
    then carry them (`with_ema`).
    """
    if scales_per_step not in ("all", "one"):
        raise ValueError(f"scales_per_step must be 'all' or 'one', got {scales_per_step!r}")

    def loss_fn(params, batch, rng, scale_step):
        return loss(spec, params, batch, rng, slat_hop=slat_hop, step=scale_step,
                    example_norm=example_norm, aug=augmentation)

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(base_rng, state.step)
        scale_step = state.step if scales_per_step == "one" else None
        if augmentation.on_waveforms:  # off by default
            rng, aug_rng = jax.random.split(rng)
            batch = augment_waveforms(batch, aug_rng, augmentation)
        (value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, rng, scale_step)
        state = state.apply_gradients(grads=grads)
        if ema_decay > 0:
            if state.ema_params is None:  # at trace time: a clear error, not a tree mismatch
                raise ValueError("ema_decay > 0 needs a state with ema_params (steps.with_ema)")
            state = state.replace(ema_params=ema_update(state.ema_params, state.params,
                                                        state.step, ema_decay))
        weight = batch["weight"]
        return state, {"loss": value, "grad_norm": optax.tree.norm(grads),
                       "recordings": weight.sum(),
                       "audio_seconds": (batch["num_samples"] * weight).sum() / SAMPLE_RATE, **aux}

    return train_step


def with_ema(state: TrainState) -> TrainState:
    """`state` with its moving average started at its current params (copies: the train step
    donates the state, and one buffer cannot be donated twice)."""
    return state.replace(ema_params=jax.jit(lambda p: jax.tree.map(jnp.copy, p))(state.params))


def eval_params(state: TrainState) -> Any:
    """What is evaluated, kept as the best checkpoint and predicted with: the moving average
    when one is kept, else the params."""
    return state.params if state.ema_params is None else state.ema_params


def make_optimizer(optimizer: str, learning_rate: float, *, adagrad_eps: float = 1e-6,
                   adagrad_initial_accumulator: float = 0.0, total_steps: int = 0,
                   warmup_steps: int = 0, schedule: str = "constant", clip_norm: float = 0.0,
                   frozen: tuple[str, ...] = ()) -> optax.GradientTransformation:
    """The configured optimiser: Adagrad (paper) or Adam, with an optional schedule and clipping.

    Adagrad is the paper's 1e-3 with Lasagne's semantics (accumulator from 0, eps 1e-6):
    update = -lr * g / sqrt(sum g^2 + eps), which is what optax's `scale_by_rss` computes.

    Args:
      schedule: "constant" (paper) or "cosine" (decay to 0 over `total_steps`), both after a
        linear warm-up of `warmup_steps` from 0.
      clip_norm: > 0 clips the global gradient norm first (batches of 1-8 recordings are noisy).
      frozen: parameter subtrees the optimiser never changes: top-level names ("input_norm")
        or '/'-paths ("conv_stack/conv1").
    """
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown schedule {schedule!r}: 'constant' or 'cosine'")
    lr = learning_rate
    if schedule == "cosine" and warmup_steps > 0:
        lr = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps,
                                                max(total_steps, warmup_steps + 1))
    elif schedule == "cosine":  # (optax logs a warning for a 0-step warm-up phase)
        lr = optax.cosine_decay_schedule(learning_rate, max(total_steps, 1))
    elif warmup_steps > 0:
        lr = optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps),
                                   optax.constant_schedule(learning_rate)], [warmup_steps])
    if optimizer == "adagrad":
        tx = optax.adagrad(lr, initial_accumulator_value=adagrad_initial_accumulator,
                           eps=adagrad_eps)
    elif optimizer == "adam":
        tx = optax.adam(lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}: 'adagrad' or 'adam'")
    if clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    if frozen:
        prefixes = [tuple(f.split("/")) for f in frozen]

        def labels(params):
            return traverse_util.path_aware_map(
                lambda path, _: "frozen" if any(path[:len(p)] == p for p in prefixes)
                else "train", params)
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx
