"""PyTorch twins of N_W (WLER) and N_S (SLAT), their loss and Adagrad step, for bench/ only.

The same networks as `wler_jax.model.networks`, written the plain PyTorch way (NCHW, eager), so that
`python -m bench.train_speed` can time the project's JAX train step against a PyTorch implementation
of the identical network and loss in the same process. Layout NCHW with H = time, W = mel: the
Flax NHWC kernels (HWIO) map onto PyTorch's OIHW with the same spatial orientation.

Identical to the JAX models (docs/design.md §2-3): conv 3x3 SAME (padding 1) + ReLU + 2x2 max pool
(floor: a trailing odd row/column is dropped) five times, 96/128/128/256/256 channels (scaled by
`width` exactly like `wler_jax.model.networks.scaled`); N_W masks every conv input to the example's
valid length at that resolution and pads input like `wler_jax.model.networks.prepare_input`, then dropout 0.5 ->
FCv1 4x4 VALID -> ReLU -> dropout 0.5 -> FCv2 1x1 -> masked global max over segments; N_S
flattens 4x4xC5 -> dropout -> Dense -> ReLU -> dropout -> Dense. Loss: BCE with logits averaged
over classes (Eq. 2), then a weighted mean over examples (weight-0 rows never count).

Optimiser: `torch.optim.Adagrad(lr, eps=1e-6, initial_accumulator_value=0)`. PyTorch adds eps
*after* the square root (g / (sqrt(sum g^2) + eps)) where optax (Lasagne's semantics, the
project's) adds it inside (g / sqrt(sum g^2 + eps)): the updates differ numerically for small
gradients, the cost is the same.

`TorchSide` is train_speed's PyTorch half: the twins timed on its batches, PyTorch's matmul rate
and a forward check against the JAX networks with the same weights.

torch is a bench-only optional extra (`pip install -e .[bench]`); nothing in wler_jax or the
tests imports this module (train_speed imports it only when torch is there).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench import common
from wler_jax import geometry
from wler_jax.features import FLOOR_DB
from wler_jax.geometry import SEGMENT_FRAMES, SEGMENT_HOP
from wler_jax.model.networks import HEAD_SIZE, PAPER_FILTERS, PAPER_HIDDEN, scaled


def prepare_input(features: torch.Tensor, num_frames: torch.Tensor):
    """`wler_jax.model.networks.prepare_input` in PyTorch: [B, T, 128] -> ([B, max(T, 128), 128], effective [B])."""
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
    """Copy Flax params of `wler_jax.model.networks.WLER` / `wler_jax.model.networks.SegmentNet` into the PyTorch twin (exactly)."""
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


class TorchSide:
    """The PyTorch half of `python -m bench.train_speed`: the twins timed on the same batches,
    their matmul rate, and a forward check against the JAX networks with the same weights."""

    available, error = True, None

    def __init__(self, args):
        torch.set_num_threads(args.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if args.fp32_precision != "default":
            tf32 = args.fp32_precision == "tf32"
            torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
        self.amp = torch.bfloat16 if args.dtype == "bfloat16" else None
        torch.manual_seed(args.seed)

    def info(self) -> dict:
        info = {"torch_version": torch.__version__, "torch_device": self.device.type,
                "torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads(),
                "torch_autocast": None if self.amp is None else "bfloat16"}
        if self.device.type == "cuda":
            info.update({"torch_device_name": torch.cuda.get_device_name(self.device),
                         "torch_cudnn_version": torch.backends.cudnn.version(),
                         "torch_cudnn_benchmark": torch.backends.cudnn.benchmark,
                         "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                         "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32})
        return info

    def tensors(self, batch_np: dict) -> dict:
        out = {}
        for k, v in batch_np.items():
            arr = np.asarray(v)
            arr = arr.astype(np.int32) if arr.dtype.kind in "iu" else arr.astype(np.float32)
            out[k] = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
        return out

    def sync(self, _=None):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def model(self, kind: str, width: float, params_np: dict):
        cls = WLERTorch if kind == "wler" else SegmentNetTorch
        model = cls(common.NUM_CLASSES, width=width).to(self.device)
        load_flax_params(model, params_np)
        return model

    def train_case(self, kind: str, batch_np: dict, params_np: dict, args) -> dict:
        model = self.model(kind, args.width, params_np).train()
        opt = make_optimizer(model, common.LEARNING_RATE)
        batch = self.tensors(batch_np)
        fns = make_step_fns(model, opt, loss_fn, self.device, self.amp)
        out = {"step": common.time_calls(lambda: fns["step"](batch), args.reps, self.sync)}
        if args.breakdown:
            out["forward"] = common.time_calls(lambda: fns["forward"](batch), args.reps,
                                               self.sync)
            out["forward_backward"] = common.time_calls(
                lambda: fns["forward_backward"](batch), args.reps, self.sync)
        out["final_loss"] = float(fns["forward"](batch).detach())
        if args.torch_compile:
            out["compile"] = self._compiled(kind, batch, params_np, args)
        return out

    def _compiled(self, kind, batch, params_np, args) -> dict:
        """Optional torch.compile of forward + loss (a failure is recorded, not raised)."""
        try:
            model = self.model(kind, args.width, params_np).train()
            opt = make_optimizer(model, common.LEARNING_RATE)
            forward = torch.compile(loss_fn)
            fns = make_step_fns(model, opt, forward, self.device, self.amp)
            return {"step": common.time_calls(lambda: fns["step"](batch), args.reps, self.sync)}
        except Exception as e:  # noqa: BLE001 - optional, recorded
            return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}

    def infer_case(self, batch_np: dict, params_np: dict, args) -> dict:
        model = self.model("wler", args.width, params_np).eval()
        batch = self.tensors(batch_np)
        fn = make_infer_fn(model, self.device, self.amp)
        return {"step": common.time_calls(lambda: fn(batch), args.reps, self.sync)}

    def matmul(self, n: int, reps: int) -> dict:
        dtype = torch.bfloat16 if self.amp is not None else torch.float32
        a = torch.randn(n, n, device=self.device).to(dtype)
        b = torch.randn(n, n, device=self.device).to(dtype)

        def mm():
            c = a @ b
            self.sync()
            return c

        timing = common.time_calls(mm, max(reps, 10), lambda _: None)
        return {"n": n, "gflops": 2.0 * n ** 3 / timing["median"] / 1e9, **timing}

    def check(self, width: float, dtype, seed: int) -> dict:
        """Eval-mode forward of both twins with the same weights on small inputs: max |diff|."""
        rng = np.random.default_rng(seed + 7)
        out = {}
        wler = common.make_model("wler", width, dtype)
        params = jax.tree.map(np.asarray, common.init_state(wler, seed).params)
        feats = common.fake_log_mel(rng, (2, 256, geometry.N_MELS))
        nf = np.array([256, 200], np.int32)
        ours = np.asarray(jax.jit(lambda p, f, n: wler.segment_logits(p, f, n)[0])(
            params, feats, nf))
        tm = self.model("wler", width, params).eval()
        with torch.inference_mode(), autocast(self.device, self.amp):
            _, theirs = tm(self.tensors({"f": feats})["f"], self.tensors({"n": nf})["n"])
        mask = np.asarray(geometry.segment_mask(nf, 256))
        diff = np.abs(ours - theirs.float().cpu().numpy())[mask]
        out["wler_segment_logits_max_abs_diff"] = float(diff.max())
        out["wler_max_abs_logit"] = float(np.abs(ours[mask]).max())
        ns = common.make_model("slat", width, dtype)
        params = jax.tree.map(np.asarray, common.init_state(ns, seed).params)
        wins = common.fake_log_mel(rng, (4, geometry.SEGMENT_FRAMES, geometry.N_MELS))
        ours = np.asarray(jax.jit(lambda p, w: ns.module().apply({"params": p}, w))(params, wins))
        tm = self.model("slat", width, params).eval()
        with torch.inference_mode(), autocast(self.device, self.amp):
            theirs = tm(self.tensors({"w": wins})["w"]).float().cpu().numpy()
        out["slat_logits_max_abs_diff"] = float(np.abs(ours - theirs).max())
        out["slat_max_abs_logit"] = float(np.abs(ours).max())
        return out
