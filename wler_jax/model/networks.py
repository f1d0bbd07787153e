"""The paper's networks in Flax linen (N_S, N_T / N_W); `wler_jax.model.spec.ModelSpec` is their one entry.

Synopsis (through the spec)::

    spec = ModelSpec.from_config(config, num_classes, devices=mesh.devices.flat)
    params = spec.init(rng)                                   # float32 parameter tree
    seg, mask, extras = spec.segment_logits(params, features, num_frames)   # WLER and SLAT alike
    clip = spec.clip_logits(params, seg, mask, extras)        # the method's global pooling
    logits, valid = spec.training_logits(params, features, num_frames, rngs=..., slat_hop=128)

`ModelSpec` fixes the network's function (method, width, pooling, dtype, dropout, SLAT's test hop)
and the op implementations (`conv_impl`, `pool_impl`), chosen once from the devices of the run
(`resolve_ops`); callers never branch on the method or the module class. Anything else the model
needs to score a recording belongs on the spec / module too, so that training, `predict_fn`,
chunked scoring and export apply it identically.

Layout NHWC with H = time (frames) and W = mel bands. `ConvStack` is shared: `SegmentNet` (N_S)
puts the dense head of SLAT on a 128-frame window (`slat_windows` cuts them); `WLER` (N_W) puts
the fully convolutional head (FCv1 4x4 VALID, FCv2 1x1) on a whole recording and pools its
segment logits with a mask. `WLER` masks every conv input to the recording's valid length, so a
recording scores the same in any batch as alone: padding frames can hold anything.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from wler_jax.features import FLOOR_DB
from wler_jax.geometry import N_MELS, SEGMENT_FRAMES, segment_mask, window_mask
from wler_jax.model import conv as conv_lib
from wler_jax.model import conv1_pallas, relu_max_pool
from wler_jax.model import pooling as pooling_lib

PAPER_FILTERS = (96, 128, 128, 256, 256)  # C1P1 .. C5P5
PAPER_HIDDEN = 256  # FC1 / FCv1 units
HEAD_SIZE = 4  # time and mel size after five 2x pools of 128 x 128


# Lasagne's default initialisation (the paper's framework): Glorot-uniform kernels, zero biases.
# Flax's default LeCun-normal is ~7x larger on conv1 and saturates the logits of raw dB input.
KERNEL_INIT = nn.initializers.xavier_uniform()


def scaled(channels: int, width: float) -> int:
    """Channels scaled by `width`, kept a multiple of 8 and at least 8."""
    return max(8, int(round(channels * width / 8.0)) * 8)


def prepare_input(features: jax.Array, num_frames: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pad a feature batch for the network and pin down its padding (docs/design.md §3).

    Time is padded to at least 128 frames; frames in [num_frames, 128) get FLOOR_DB (a short
    recording is padded with the log-mel floor), frames at or after max(num_frames, 128) become 0,
    exactly what the network's SAME zero padding shows a recording processed alone.

    Args:
      features: [B, T, 128] log-mel in dB.
      num_frames: [B] valid frames per example.
    Returns:
      x: [B, max(T, 128), 128] float32; effective: [B] int32 = max(num_frames, 128).
    """
    t = features.shape[1]
    if t < SEGMENT_FRAMES:
        features = jnp.pad(features, ((0, 0), (0, SEGMENT_FRAMES - t), (0, 0)))
    num_frames = jnp.asarray(num_frames, jnp.int32)
    effective = jnp.maximum(num_frames, SEGMENT_FRAMES)
    idx = jnp.arange(features.shape[1])[None, :, None]
    x = jnp.where(idx < num_frames[:, None, None], features,
                  jnp.where(idx < effective[:, None, None], FLOOR_DB, 0.0))
    return x, effective


class InputNorm(nn.Module):
    """Per-mel-band standardisation `(x - mean) / std` with statistics of the training split.

    The statistics are parameters (so every path that applies the params -- training,
    `predict_fn`, chunked scoring, export -- applies them, and checkpoints carry them) that the
    optimiser never changes (`steps.make_optimizer` freezes them; the gradient is stopped too).
    Init is the identity; `train` writes the measured values (`input_stats.band_statistics`).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jax.lax.stop_gradient(self.param("mean", nn.initializers.zeros, (N_MELS,)))
        std = jax.lax.stop_gradient(self.param("std", nn.initializers.ones, (N_MELS,)))
        return (x - mean) / std


class ConvStack(nn.Module):
    """C1P1 .. C5P5: Conv 3x3 SAME + ReLU + MaxPool 2x2, five times (time and mel / 32).

    With `lengths`, each conv input is zeroed at and after the example's valid length at that
    resolution (length // 2**block), so padded frames never reach a valid output.

    `conv_impl` picks the convolutions' kernel-gradient implementation (`conv.Conv`): "xla"
    (= flax.linen.Conv), "matmul_grad" (every layer) or "matmul_grad_wide" (wide layers only).
    Parameters and forward results are the same for all three.
    `pool_impl` picks how bias + ReLU + max pool run (`relu_max_pool.relu_max_pool_2x2`): "fused"
    (the custom-VJP op, each window's gradient to its first maximal element as in PyTorch) or
    "xla" (autodiff of `max_pool_2x2(nn.relu(x + bias))`, ties share the gradient). Forward
    results are the same. `resolve_ops` chooses both for a run's devices.
    """

    width: float = 1.0
    dtype: Any = jnp.float32
    conv_impl: str = "xla"
    pool_impl: str = "xla"
    conv1_impl: str = "plain"  # "pallas"(_interpret): C1P1 as one fused kernel (conv1_pallas)

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
        # x: [B, T, 128] or [B, T, 128, 1]
        if x.ndim == 3:
            x = x[..., None]
        x = x.astype(self.dtype)
        for i, filters in enumerate(PAPER_FILTERS):
            if lengths is not None:
                valid = jnp.arange(x.shape[1])[None, :] < (lengths >> i)[:, None]
                x = jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype))
            if i == 0 and self.conv1_impl != "plain":  # same params, same function
                x = conv1_pallas.Conv1Block(scaled(filters, self.width), dtype=self.dtype,
                                            kernel_init=KERNEL_INIT, impl=self.conv1_impl,
                                            name="conv1")(x)
                continue
            x, bias = conv_lib.Conv(scaled(filters, self.width), (3, 3), padding="SAME",
                                    dtype=self.dtype, kernel_init=KERNEL_INIT,
                                    impl=self.conv_impl, name=f"conv{i + 1}")(
                x, separate_bias=True)
            # = max_pool_2x2(nn.relu(x + bias)); the fused op adds the bias after pooling.
            x = relu_max_pool.relu_max_pool_2x2(x, bias, self.pool_impl)
        return x


class SegmentNet(nn.Module):
    """N_S: the SLAT network on fixed 128 x 128 windows -> class logits [N, C]."""

    num_classes: int
    width: float = 1.0
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    conv_impl: str = "xla"
    pool_impl: str = "xla"
    input_norm: bool = False
    conv1_impl: str = "plain"

    @nn.compact
    def __call__(self, windows: jax.Array, *, train: bool = False) -> jax.Array:
        if windows.shape[1:3] != (SEGMENT_FRAMES, N_MELS):
            raise ValueError(f"N_S takes [N, 128, 128] windows, got {windows.shape}")
        if self.input_norm:
            windows = InputNorm(name="input_norm")(windows)
        x = ConvStack(self.width, self.dtype, self.conv_impl, self.pool_impl,
                      self.conv1_impl, name="conv_stack")(windows)
        x = x.reshape(x.shape[0], -1)  # flatten [4, 4, C5] row-major: (time, mel, channel)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.relu(nn.Dense(scaled(PAPER_HIDDEN, self.width), dtype=self.dtype,
                             kernel_init=KERNEL_INIT, name="fc1")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=KERNEL_INIT, name="fc2")(x)
        return x.astype(jnp.float32)


class WLER(nn.Module):
    """N_W: conv stack + fully convolutional head (N_T) + masked global pooling.

    Returns `(clip_logits [B, C], aux)` with aux["segment_logits"] [B, S, C] (N_T's output,
    S = max(T, 128) // 32 - 3), aux["segment_mask"] [B, S] (segment k valid iff
    32k + 128 <= max(num_frames, 128)) and, for attention pooling, aux["attention_logits"]
    [B, S, C]. `conv_impl` as in `ConvStack` (all convolutions, FCv1 / FCv2 / attention
    included), `pool_impl` as in `ConvStack`.
    """

    num_classes: int
    width: float = 1.0
    dropout_rate: float = 0.5
    pooling: str = "max"
    dtype: Any = jnp.float32
    conv_impl: str = "xla"
    pool_impl: str = "xla"
    input_norm: bool = False
    conv1_impl: str = "plain"

    @nn.compact
    def __call__(self, features: jax.Array, num_frames: jax.Array, *,
                 train: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
        pool_fn = pooling_lib.get(self.pooling)
        x, effective = prepare_input(features, num_frames)
        if self.input_norm:  # frames past `effective` are zeroed again by ConvStack's mask
            x = InputNorm(name="input_norm")(x)
        x = ConvStack(self.width, self.dtype, self.conv_impl, self.pool_impl,
                      self.conv1_impl, name="conv_stack")(x, effective)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = conv_lib.Conv(scaled(PAPER_HIDDEN, self.width), (HEAD_SIZE, HEAD_SIZE),
                          padding="VALID", dtype=self.dtype, kernel_init=KERNEL_INIT,
                          impl=self.conv_impl, name="fc1")(x)  # FCv1
        h = nn.relu(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        seg = conv_lib.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=KERNEL_INIT,
                            impl=self.conv_impl, name="fc2")(x)  # FCv2
        seg = seg[:, :, 0, :].astype(jnp.float32)  # [B, S, C]
        mask = segment_mask(effective, x.shape[1] * 32 + 96, xp=jnp)
        extra = {}
        if self.pooling == "attention":
            extra["attention_logits"] = conv_lib.Conv(self.num_classes, (1, 1),
                                                      kernel_init=KERNEL_INIT,
                                                      impl=self.conv_impl, name="attention")(
                h)[:, :, 0, :].astype(jnp.float32)
        elif self.pooling == "auto_pool":
            extra["alpha"] = self.param("alpha", nn.initializers.ones, (self.num_classes,))
        clip = pool_fn(seg, mask, **extra)
        aux = {"segment_logits": seg, "segment_mask": mask}
        if "attention_logits" in extra:
            aux["attention_logits"] = extra["attention_logits"]
        return clip, aux


def slat_windows(features: jax.Array, num_frames: jax.Array, hop: int
                 ) -> tuple[jax.Array, jax.Array]:
    """All 128-frame windows of each example (SLAT's inputs): ([N, W, 128, 128], valid [N, W]).

    The input is padded exactly as N_W sees it (`prepare_input`), so window s of a recording is
    the same frames N_T's segment s covers when hop = 32; validity is `geometry.window_mask`.
    """
    x, _ = prepare_input(features, num_frames)
    valid = window_mask(num_frames, x.shape[1], hop=hop, xp=jnp)
    idx = jnp.arange(valid.shape[1])[:, None] * hop + jnp.arange(SEGMENT_FRAMES)[None, :]
    return x[:, idx], valid  # gather [N, W, 128, 128]


def ns_to_nt_params(ns_params: dict) -> dict:
    """Convert N_S parameters to N_T (WLER) parameters exactly (paper §II-C).

    FC1's kernel [4*4*C5, H] becomes FCv1's 4x4 conv kernel [4, 4, C5, H] (the flatten order of
    SegmentNet is (time, mel, channel), matching HWIO); FC2's [H, C] becomes a 1x1 conv [1, 1, H, C].
    """
    p = ns_params["params"] if "params" in ns_params else ns_params
    fc1, fc2 = p["fc1"], p["fc2"]
    hidden = fc1["kernel"].shape[1]
    out = {
        "conv_stack": jax.tree.map(lambda a: a, p["conv_stack"]),
        "fc1": {"kernel": fc1["kernel"].reshape(HEAD_SIZE, HEAD_SIZE, -1, hidden),
                "bias": fc1["bias"]},
        "fc2": {"kernel": fc2["kernel"].reshape(1, 1, hidden, -1), "bias": fc2["bias"]},
    }
    if "input_norm" in p:
        out["input_norm"] = dict(p["input_norm"])
    return {"params": out} if "params" in ns_params else out


def num_params(params) -> int:
    """Total number of scalars in a parameter tree."""
    return int(sum(np.prod(a.shape) for a in jax.tree.leaves(params)))
