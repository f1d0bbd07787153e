"""`ModelSpec`: the one entry to the model family, and the only place that knows the method.

Synopsis::

    spec = ModelSpec.from_config(config, num_classes, devices=mesh.devices.flat)
    params = spec.init(rng)                                   # float32 parameter tree
    seg, mask, extras = spec.segment_logits(params, features, num_frames)   # WLER and SLAT alike
    clip = spec.clip_logits(params, seg, mask, extras)        # the method's global pooling
    logits, valid = spec.training_logits(params, features, num_frames, rngs=..., slat_hop=128)
    emb, mask = spec.segment_embeddings(params, features, num_frames)       # FCv1 activations

`ModelSpec` fixes the network's function (method, width, pooling, dtype, dropout, SLAT's test hop)
and the op implementations (`conv_impl`, `pool_impl`, `conv1_impl`), chosen once from the devices
of the run (`resolve_ops`, `resolve_conv1`); callers never branch on the method or the module class.
Anything else the model needs to score a recording belongs here too, so that training,
`predict_fn`, chunked scoring and export apply it identically.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import errors, geometry
from wler_jax.geometry import N_MELS, SEGMENT_FRAMES, SEGMENT_HOP
from wler_jax.model import pooling as pooling_lib
from wler_jax.model.networks import (
    PAPER_HIDDEN,
    WLER,
    SegmentNet,
    ns_to_nt_params,
    scaled,
    slat_windows,
)

METHODS = ("wler", "slat")
EMBEDDING_LAYER = "fc1"  # FCv1 (N_W / N_T) and FC1 (N_S): the module name in both networks  # config field `method`: N_W on whole recordings, N_S on windows

# model.* fields added after workdirs existed, with the value that behaves as before the field.
# A run.json written before a field existed reads as this value (`model_field`): for scoring,
# resuming and fine-tuning alike.
MODEL_FIELDS_BEFORE_ADDED = {"op_impl": "auto", "conv1_impl": "plain", "input_norm": "none",
                             "head_bias_init": "zeros"}
# model.* values measured, not adopted and removed (docs/experiments.md, parts 6, 10 and 11):
# a run.json holding one cannot be resumed or fine-tuned from under the same behaviour, so
# `check_removed_options` refuses it. (Scoring is unchanged: what they did is in the params.)
REMOVED_MODEL_OPTIONS = {"input_norm": ("per_band_mean",)}


def model_field(model: Mapping[str, Any], name: str) -> Any:
    """`model[name]` of a config's model section (ConfigDict or run.json dict), or the value it
    had before the field existed."""
    return model.get(name, MODEL_FIELDS_BEFORE_ADDED[name])


def check_removed_options(model: Mapping[str, Any], what: str) -> None:
    """Raises `errors.IncompatibleWorkdirError` (one line) if a run.json's model section
    `model` holds a removed option (`REMOVED_MODEL_OPTIONS`); `what` names the workdir."""
    for name, removed in REMOVED_MODEL_OPTIONS.items():
        value = model_field(model, name)
        if value in removed:
            raise errors.IncompatibleWorkdirError(
                f"{what} was trained with model.{name}={value!r}, an option this version no "
                "longer has, so it cannot go on training; python -m wler_jax.predict still "
                "scores it: train a new --workdir to train further")


# -- the op choice, once per run -----------------------------------------------------------------
OP_IMPLS = ("auto", "cpu", "xla")  # config field model.op_impl
# What each choice means for (conv_impl, pool_impl). "cpu": the matmul kernel gradient on wide
# layers and the fused ReLU + 2x2 max pool (fast on XLA:CPU, docs/performance.md); "xla": plain XLA
# ops (= flax.linen.Conv and autodiff of the max pool; GPUs and TPUs). Forward results and
# parameters are identical; only the gradients' implementation (and max-pool tie-breaking) differ.
OPS = {"cpu": ("matmul_grad_wide", "fused"), "xla": ("xla", "xla")}


def resolve_ops(op_impl: str, devices: Optional[Iterable[Any]] = None) -> str:
    """`model.op_impl` for the devices a run computes on: "cpu" or "xla".

    "auto" is "cpu" when every device is a CPU and "xla" otherwise; "cpu" / "xla" are kept.
    `devices` defaults to `jax.devices()` (the process's default backend).
    """
    if op_impl not in OP_IMPLS:
        raise ValueError(f"model.op_impl must be one of {OP_IMPLS}, got {op_impl!r}")
    if op_impl != "auto":
        return op_impl
    devices = list(jax.devices() if devices is None else devices)
    return "cpu" if devices and all(d.platform == "cpu" for d in devices) else "xla"


CONV1_IMPLS = ("plain", "pallas")  # config field model.conv1_impl


def resolve_conv1(conv1_impl: str, devices: Optional[Iterable[Any]] = None) -> str:
    """`model.conv1_impl` for the devices of a run: "plain", "pallas" (GPUs, TPUs) or
    "pallas_interpret" ("pallas" when every device is a CPU: Pallas' interpreter, for tests)."""
    if conv1_impl not in CONV1_IMPLS:
        raise ValueError(f"model.conv1_impl must be one of {CONV1_IMPLS}, got {conv1_impl!r}")
    if conv1_impl == "plain":
        return "plain"
    devices = list(jax.devices() if devices is None else devices)
    return "pallas_interpret" if all(d.platform == "cpu" for d in devices) else "pallas"


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What fixes the network's function (hashable: a static argument of the jitted functions).

    Attributes:
      method: "wler" (N_W on whole recordings) or "slat" (N_S on 128-frame windows).
      num_classes: C.
      width: channel width multiplier.
      pooling: N_W's global pooling (`wler_jax.model.pooling`); SLAT always takes the max.
      dtype: compute dtype name, "float32" or "bfloat16" (params stay float32).
      dropout_rate: on the inputs of FC1/FCv1 and FC2/FCv2 (training only).
      slat_hop: hop of SLAT's test windows in frames (32 = N_T's segment grid).
      conv_impl: `conv.Conv` implementation, "xla" | "matmul_grad" | "matmul_grad_wide".
      pool_impl: `relu_max_pool` implementation, "xla" | "fused".
      input_norm: `(x - mean) / std` per mel band with the training split's statistics, kept in
        params["input_norm"] (`InputNorm`).
      conv1_impl: C1P1 as XLA ops ("plain") or one fused Pallas kernel ("pallas", or
        "pallas_interpret" on CPUs): `conv1_pallas`, same parameters and function.
    """

    method: str
    num_classes: int
    width: float
    pooling: str = "max"
    dtype: str = "float32"
    dropout_rate: float = 0.5
    slat_hop: int = SEGMENT_HOP
    conv_impl: str = "xla"
    pool_impl: str = "xla"
    input_norm: bool = False
    conv1_impl: str = "plain"

    @classmethod
    def from_config(cls, config, num_classes: int, *,
                    devices: Optional[Iterable[Any]] = None) -> "ModelSpec":
        """The spec of a training config (`configs/common.py` fields).

        `config.model.op_impl` ("auto" when the config predates the field) is resolved for
        `devices` (default `jax.devices()`): see `resolve_ops`; `model.conv1_impl` ("plain"
        when absent) likewise (`resolve_conv1`).
        """
        ops = resolve_ops(model_field(config.model, "op_impl"), devices)
        conv_impl, pool_impl = OPS[ops]
        return cls(method=config.method, num_classes=int(num_classes),
                   width=float(config.model.width), pooling=config.model.pooling,
                   dtype=config.model.dtype, dropout_rate=float(config.model.dropout_rate),
                   slat_hop=int(config.input.slat_eval_hop), conv_impl=conv_impl,
                   pool_impl=pool_impl,
                   input_norm=model_field(config.model, "input_norm") != "none",
                   conv1_impl=resolve_conv1(model_field(config.model, "conv1_impl"), devices))

    @property
    def ops(self) -> dict[str, str]:
        """The op choice, as recorded in the workdir's run.json."""
        return {"conv_impl": self.conv_impl, "pool_impl": self.pool_impl}

    @property
    def clip_pooling(self) -> str:
        """The global pooling from segments to a clip: the configured one for WLER, max for SLAT
        (a recording's score is its best window's)."""
        return self.pooling if self.method == "wler" else "max"

    def module(self) -> nn.Module:
        """N_W (WLER) or N_S (SLAT) with this spec's width, dtype and ops."""
        dtype = _DTYPES[self.dtype]
        kwargs = dict(width=self.width, dropout_rate=self.dropout_rate, dtype=dtype,
                      conv_impl=self.conv_impl, pool_impl=self.pool_impl,
                      input_norm=self.input_norm, conv1_impl=self.conv1_impl)
        if self.method == "wler":
            return WLER(self.num_classes, pooling=self.pooling, **kwargs)
        if self.method == "slat":
            return SegmentNet(self.num_classes, **kwargs)
        raise ValueError(f"unknown method {self.method!r}: one of {METHODS}")

    def init(self, rng: jax.Array) -> Any:
        """Float32 parameters (the "params" collection) from a 128-frame dummy input."""
        x = jnp.zeros((1, SEGMENT_FRAMES, N_MELS), jnp.float32)
        if self.method == "wler":
            return self.module().init(rng, x, jnp.array([SEGMENT_FRAMES]))["params"]
        return self.module().init(rng, x)["params"]

    def segment_logits(self, params: Any, features: jax.Array, num_frames: jax.Array, *,
                       train: bool = False, rngs: Optional[dict] = None,
                       hop: Optional[int] = None
                       ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """One scale through the network: WLER's segments, or SLAT's windows scored one by one.

        Args:
          params: the "params" collection.
          features: [B, T, 128] log-mel dB.
          num_frames: [B] valid frames.
          train: dropout on (needs rngs={"dropout": key}).
          hop: SLAT's window hop (default `slat_hop`, the test grid); unused by WLER.
        Returns:
          segment_logits [B, S, C] float32, segment_mask [B, S] bool and extras, the per-segment
          inputs of the global pooling ({"attention_logits": [B, S, C]} for attention pooling,
          else {}). For WLER and SLAT at hop 32, S = max(T, 128) // 32 - 3.
        """
        module = self.module()
        if self.method == "wler":
            _, aux = module.apply({"params": params}, features, num_frames, train=train,
                                  rngs=rngs)
            extras = {k: aux[k] for k in ("attention_logits",) if k in aux}
            return aux["segment_logits"], aux["segment_mask"], extras
        wins, mask = slat_windows(features, num_frames, self.slat_hop if hop is None else hop)
        n, w = mask.shape
        logits = module.apply({"params": params}, wins.reshape(n * w, SEGMENT_FRAMES, -1),
                              train=train, rngs=rngs)
        return logits.reshape(n, w, -1).astype(jnp.float32), mask, {}

    def clip_logits(self, params: Any, segment_logits: jax.Array, mask: jax.Array,
                    extras: Optional[dict] = None) -> jax.Array:
        """Masked global pooling of [B, S, C] segment logits -> [B, C] clip logits."""
        extras = dict(extras or {})
        if self.clip_pooling == "auto_pool":
            extras["alpha"] = params["alpha"]
        return pooling_lib.get(self.clip_pooling)(segment_logits, mask, **extras)

    @property
    def embedding_width(self) -> int:
        """D: the FCv1 (N_W) / FC1 (N_S) width, the size of `segment_embeddings`."""
        return scaled(PAPER_HIDDEN, self.width)

    @property
    def example_unit(self) -> str:
        """What one training example of the method is: "recordings" (WLER) or "windows" (SLAT)."""
        return "recordings" if self.method == "wler" else "windows"

    def training_examples(self, num_frames: np.ndarray, slat_hop: int) -> int:
        """How many examples the loss counts for recordings of `num_frames` valid frames: one
        per recording (WLER), or every `slat_hop`-spaced window `slat_windows` cuts (SLAT)."""
        frames = np.asarray(num_frames)
        if self.method == "wler":
            return int(frames.size)
        return int(geometry.window_mask(frames, int(frames.max()), hop=slat_hop).sum())

    def segment_embeddings(self, params: Any, features: jax.Array, num_frames: jax.Array
                           ) -> tuple[jax.Array, jax.Array]:
        """One scale's FCv1 activations after their ReLU: ([B, S, D] float32, mask [B, S]).

        The network runs as in `segment_logits` (test mode); FCv1's output is captured (flax
        `capture_intermediates`). WLER: segment k of the whole recording; SLAT: the window on
        segment k's frames (hop `slat_hop`), scored alone.
        """
        def is_fcv1(module, method_name: str) -> bool:
            return module.name == EMBEDDING_LAYER and method_name == "__call__"

        module = self.module()
        if self.method == "wler":
            (_, aux), state = module.apply({"params": params}, features, num_frames,
                                           capture_intermediates=is_fcv1,
                                           mutable=["intermediates"])
            h = state["intermediates"][EMBEDDING_LAYER]["__call__"][0][:, :, 0, :]  # [B, S, D]
            mask = aux["segment_mask"]
        else:
            wins, mask = slat_windows(features, num_frames, self.slat_hop)
            n, w = mask.shape
            _, state = module.apply({"params": params}, wins.reshape(n * w, SEGMENT_FRAMES, -1),
                                    capture_intermediates=is_fcv1, mutable=["intermediates"])
            h = state["intermediates"][EMBEDDING_LAYER]["__call__"][0].reshape(n, w, -1)
        return jax.nn.relu(h.astype(jnp.float32)), mask

    def training_logits(self, params: Any, features: jax.Array, num_frames: jax.Array, *,
                        rngs: dict, slat_hop: int) -> tuple[jax.Array, jax.Array]:
        """What the method's loss is computed on, each labelled with its recording's label.

        WLER: one pooled clip per recording; SLAT: every `slat_hop`-spaced 128-frame window.
        Returns logits [B, K, C] and their validity [B, K] (K = 1 for WLER).
        """
        seg, mask, extras = self.segment_logits(params, features, num_frames, train=True,
                                                rngs=rngs, hop=slat_hop)
        if self.method == "wler":
            clip = self.clip_logits(params, seg, mask, extras)
            return clip[:, None], jnp.ones((clip.shape[0], 1), bool)
        return seg, mask


def convert_params(source_params: dict, source_method: str, target_method: str
                   ) -> tuple[dict, str]:
    """Another run's params in the target method's layout, and the conversion's name ('' if none).

    N_S -> N_T is exact (paper §II-C, `ns_to_nt_params`); N_T -> N_S is its inverse reshape, and
    WLER's pooling parameters (attention, alpha) have no N_S counterpart and are dropped.
    """
    for method in (source_method, target_method):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: one of {METHODS}")
    if source_method == target_method:
        return dict(source_params), ""
    if target_method == "wler":
        return ns_to_nt_params(dict(source_params)), "N_S -> N_T (SLAT source, WLER run)"
    return nt_to_ns_params(source_params), "N_T -> N_S (WLER source, SLAT run)"


def nt_to_ns_params(nt_params: dict) -> dict:
    """The inverse of `ns_to_nt_params`: WLER's FCv1 [4, 4, C5, H] -> N_S's FC1 [4*4*C5, H]
    (row-major (time, mel, channel), N_S's flatten order), FCv2 [1, 1, H, C] -> FC2 [H, C].
    Other top-level entries (conv stack, input norm) are kept."""
    p = dict(nt_params)
    fc1, fc2 = p["fc1"], p["fc2"]
    hidden = fc1["kernel"].shape[-1]
    p["fc1"] = {"kernel": np.reshape(fc1["kernel"], (-1, hidden)), "bias": fc1["bias"]}
    p["fc2"] = {"kernel": np.reshape(fc2["kernel"], (hidden, -1)), "bias": fc2["bias"]}
    for name in ("attention", "alpha"):  # WLER pooling params: no N_S counterpart
        p.pop(name, None)
    return p
