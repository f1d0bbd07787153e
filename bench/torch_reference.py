"""PyTorch twins of N_W (WLER) and N_S (SLAT), their loss and Adagrad step, for bench/ only.

The same networks as `wler_jax.model.networks`, written the plain PyTorch way (NCHW, eager), so that
`bench/train_speed.py` can time the project's JAX train step against a PyTorch implementation
of the identical network and loss in the same process. Layout NCHW with H = time, W = mel: the
Flax NHWC kernels (HWIO) map onto PyTorch's OIHW with the same spatial orientation.

Identical to the JAX models (docs/design.md §2-3): conv 3x3 SAME (padding 1) + ReLU + 2x2 max pool
(floor: a trailing odd row/column is dropped) five times, 96/128/128/256/256 channels (scaled by
`width` exactly like `wler_jax.model.networks.scaled`); N_W masks every conv input to the example's
valid length at that resolution and pads input like `models.prepare_input`, then dropout 0.5 ->
FCv1 4x4 VALID -> ReLU -> dropout 0.5 -> FCv2 1x1 -> masked global max over segments; N_S
flattens 4x4xC5 -> dropout -> Dense -> ReLU -> dropout -> Dense. Loss: BCE with logits averaged
over classes (Eq. 2), then a weighted mean over examples (weight-0 rows never count).

Optimiser: `torch.optim.Adagrad(lr, eps=1e-6, initial_accumulator_value=0)`. PyTorch adds eps
*after* the square root (g / (sqrt(sum g^2) + eps)) where optax (Lasagne's semantics, the
project's) adds it inside (g / sqrt(sum g^2 + eps)): the updates differ numerically for small
gradients, the cost is the same.

torch is a bench-only optional extra (`pip install -e .[bench]`); nothing in wler_jax or the
tests imports this module.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wler_jax.features import FLOOR_DB  # noqa: E402
from wler_jax.geometry import SEGMENT_FRAMES, SEGMENT_HOP  # noqa: E402
from wler_jax.model.networks import HEAD_SIZE, PAPER_FILTERS, PAPER_HIDDEN, scaled  # noqa: E402


def prepare_input(features: torch.Tensor, num_frames: torch.Tensor):
    """`models.prepare_input` in PyTorch: [B, T, 128] -> ([B, max(T, 128), 128], effective [B])."""
    t = features.shape[1]
    if t < SEGMENT_FRAMES:
        features = F.pad(features, (0, 0, 0, SEGMENT_FRAMES - t))
    num_frames = num_frames.to(torch.int32)
    effective = torch.clamp(num_frames, min=SEGMENT_FRAMES)
    idx = torch.arange(features.shape[1], device=features.device)[None, :, None]
    floor = torch.full((), FLOOR_DB, dtype=features.dtype, device=features.device)
    zero = torch.zeros((), dtype=features.dtype, device=features.device)
    x = torch.where(idx < num_frames[:, None, None], features,
                    torch.where(idx < effective[:, None, None], floor, zero))
    return x, effective


class ConvStack(nn.Module):
    """C1P1 .. C5P5 on [B, 1, T, 128]; with `lengths`, conv inputs are zeroed past the length."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        chans = [1] + [scaled(f, width) for f in PAPER_FILTERS]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                   for a, b in zip(chans[:-1], chans[1:]))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            if lengths is not None:
                valid = (torch.arange(x.shape[2], device=x.device)[None, :]
                         < (lengths >> i)[:, None])
                x = x.masked_fill(~valid[:, None, :, None], 0.0)
            x = F.max_pool2d(F.relu(conv(x)), 2)
        return x


class WLERTorch(nn.Module):
    """N_W: features [B, T, 128], num_frames [B] -> (clip logits [B, C], segment logits [B, S, C]).
    """

    def __init__(self, num_classes: int, width: float = 1.0, dropout_rate: float = 0.5):
        super().__init__()
        c5, hidden = scaled(PAPER_FILTERS[-1], width), scaled(PAPER_HIDDEN, width)
        self.conv_stack = ConvStack(width)
        self.fc1 = nn.Conv2d(c5, hidden, HEAD_SIZE)  # FCv1, VALID
        self.fc2 = nn.Conv2d(hidden, num_classes, 1)  # FCv2
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, features: torch.Tensor, num_frames: torch.Tensor):
        x, effective = prepare_input(features, num_frames)
        x = self.conv_stack(x[:, None], effective)
        x = F.relu(self.fc1(self.dropout(x)))
        seg = self.fc2(self.dropout(x))[:, :, :, 0].transpose(1, 2).float()  # [B, S, C]
        k = torch.arange(seg.shape[1], device=seg.device)
        mask = k[None, :] * SEGMENT_HOP + SEGMENT_FRAMES <= effective[:, None]  # [B, S]
        neg = torch.finfo(seg.dtype).min
        clip = seg.masked_fill(~mask[..., None], neg).amax(1)
        return clip, seg


class SegmentNetTorch(nn.Module):
    """N_S: windows [N, 128, 128] -> class logits [N, C]."""

    def __init__(self, num_classes: int, width: float = 1.0, dropout_rate: float = 0.5):
        super().__init__()
        c5, hidden = scaled(PAPER_FILTERS[-1], width), scaled(PAPER_HIDDEN, width)
        self.conv_stack = ConvStack(width)
        self.fc1 = nn.Linear(HEAD_SIZE * HEAD_SIZE * c5, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = self.conv_stack(windows[:, None]).flatten(1)  # (channel, time, mel) order
        x = F.relu(self.fc1(self.dropout(x)))
        return self.fc2(self.dropout(x)).float()


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Eq. 2 per example (mean over classes), then the weighted mean over examples."""
    per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)
    return (per * weight).sum() / torch.clamp(weight.sum(), min=1.0)


def _t(a, device) -> torch.Tensor:
    return torch.from_numpy(np.array(a, np.float32)).to(device)


def load_flax_params(model: nn.Module, params: dict) -> None:
    """Copy Flax params of `models.WLER` / `models.SegmentNet` into the PyTorch twin (exactly)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        for i, conv in enumerate(model.conv_stack.convs):
            p = params["conv_stack"][f"conv{i + 1}"]
            conv.weight.copy_(_t(p["kernel"], device).permute(3, 2, 0, 1))  # HWIO -> OIHW
            conv.bias.copy_(_t(p["bias"], device))
        fc1, fc2 = params["fc1"], params["fc2"]
        if isinstance(model, WLERTorch):
            model.fc1.weight.copy_(_t(fc1["kernel"], device).permute(3, 2, 0, 1))
            model.fc2.weight.copy_(_t(fc2["kernel"], device).permute(3, 2, 0, 1))
        else:
            # Flax flattens (time, mel, channel); PyTorch NCHW flattens (channel, time, mel).
            k = _t(fc1["kernel"], device)
            c5, hidden = k.shape[0] // (HEAD_SIZE * HEAD_SIZE), k.shape[1]
            model.fc1.weight.copy_(k.reshape(HEAD_SIZE, HEAD_SIZE, c5, hidden)
                                   .permute(3, 2, 0, 1).reshape(hidden, -1))
            model.fc2.weight.copy_(_t(fc2["kernel"], device).T)
        model.fc1.bias.copy_(_t(fc1["bias"], device))
        model.fc2.bias.copy_(_t(fc2["bias"], device))


def make_optimizer(model: nn.Module, learning_rate: float = 1e-3) -> torch.optim.Optimizer:
    """The paper's Adagrad(1e-3): accumulator from 0, eps 1e-6 (added after the sqrt, see top)."""
    return torch.optim.Adagrad(model.parameters(), lr=learning_rate, eps=1e-6,
                               initial_accumulator_value=0.0)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bfloat16 autocast on `device` (None: a no-op context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
    """Training loss of either twin on a batch {"features", ["num_frames"], "labels", "weight"}."""
    if isinstance(model, WLERTorch):
        logits, _ = model(batch["features"], batch["num_frames"])
    else:
        logits = model(batch["features"])
    return weighted_bce(logits, batch["labels"], batch["weight"])


def make_step_fns(model: nn.Module, opt: torch.optim.Optimizer, forward: Callable,
                  device: torch.device, amp_dtype: torch.dtype | None) -> dict[str, Callable]:
    """The timed PyTorch callables for one case, each ending synchronised with the device.

    Returns {"step": zero_grad + forward + loss + backward + Adagrad step,
             "forward": forward + loss with autograd recording (train mode, graph dropped),
             "forward_backward": forward + loss + backward (no optimiser step)}.
    `forward(model, batch) -> loss` may be a torch.compile'd function.
    """

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(batch, backward: bool = False, update: bool = False):
        if backward:
            opt.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            loss = forward(model, batch)
        if backward:
            loss.backward()
        if update:
            opt.step()
        sync()
        return loss

    return {"step": functools.partial(run, backward=True, update=True), "forward": run,
            "forward_backward": functools.partial(run, backward=True)}


def make_infer_fn(model: nn.Module, device: torch.device,
                  amp_dtype: torch.dtype | None) -> Callable:
    """N_W inference forward (eval mode, inference_mode) -> clip logits, synchronised."""

    def infer(batch):
        with torch.inference_mode(), autocast(device, amp_dtype):
            clip, _ = model(batch["features"], batch["num_frames"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return clip

    return infer
