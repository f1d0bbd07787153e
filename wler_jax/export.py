"""Export a trained model as serialized StableHLO (`jax.export`) that runs with jax alone.

    export_model(workdir, "model.jaxexport")           # + "model.jaxexport.json" (class names)
    model = load_exported("model.jaxexport")           # needs only jax and numpy
    out = model(audio, num_samples)                    # {"clip", "segments", "segment_mask"}

The exported function has the parameters baked in and symbolic batch and time dimensions, so one
file serves every batch size and length. Inputs (`inputs="audio"`, the default): float32
waveforms [b, 512 * t] at 44.1 kHz mono, zero-padded (to a multiple of 512 samples and at least
127 * 512, i.e. 128 frames: `load_exported` pads for you), and num_samples [b] int32; the four
log-mel scales are computed inside. With `inputs="features"`: log-mel [4, b, t, 128] (t >= 128)
and num_frames [b]. Outputs as `predict_fn`: clip [b, C], segments [b, S, C], segment_mask [b, S].

Without wler_jax installed at all::

    import json, jax, numpy as np
    exported = jax.export.deserialize(open("model.jaxexport", "rb").read())
    class_names = json.load(open("model.jaxexport.json"))["class_names"]
    out = exported.call(audio, num_samples)   # audio float32 [b, 512 * t], t >= 127

It is exported for the CPU and for the backend it is exported on (a GPU session gets ("cpu",
"cuda"), so the file runs where it was made and on any CPU) unless `platforms=` says otherwise.

Why a second forward pass here: `models.WLER` computes its segment count with `int()` on the
time length (`geometry.num_segments`), which a symbolic dimension refuses, so this module runs
the same layers (`prepare_input`, `ConvStack`, FCv1, FCv2, the pooling) with the mask built
from shapes. tests/test_export.py holds the exported scores equal to `predict_fn`.
"""
from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence

import numpy as np

HOP = 512
MIN_FRAMES = 128
EXPORT_FORMAT = 1


def _poly_scale_logits(spec, params, features, num_frames):
    """`inference.scale_logits` without shape-dependent Python ints (symbolic time works)."""
    import flax.linen as nn
    import jax.numpy as jnp

    from wler_jax import models
    from wler_jax.geometry import SEGMENT_FRAMES, SEGMENT_HOP

    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[spec.dtype]
    x, effective = models.prepare_input(features, num_frames)
    if spec.method == "slat":
        w = (x.shape[1] - SEGMENT_FRAMES) // spec.slat_hop + 1
        starts = jnp.arange(w) * spec.slat_hop
        wins = x[:, starts[:, None] + jnp.arange(SEGMENT_FRAMES)[None, :]]  # [B, W, 128, 128]
        logits = spec.module().apply({"params": params},
                                     wins.reshape(-1, SEGMENT_FRAMES, x.shape[2]))
        mask = (starts[None, :] + SEGMENT_FRAMES) <= effective[:, None]
        return logits.reshape(x.shape[0], w, -1).astype(jnp.float32), mask, None
    x = models.ConvStack(spec.width, dtype).apply({"params": params["conv_stack"]}, x, effective)

    def conv(name, n, k, pad, h, dt=dtype):
        return nn.Conv(n, (k, k), padding=pad, dtype=dt).apply({"params": params[name]}, h)

    h = nn.relu(conv("fc1", models.scaled(models.PAPER_HIDDEN, spec.width), models.HEAD_SIZE,
                     "VALID", x))
    seg = conv("fc2", spec.num_classes, 1, "SAME", h)[:, :, 0, :].astype(jnp.float32)
    mask = (jnp.arange(seg.shape[1])[None, :] * SEGMENT_HOP + SEGMENT_FRAMES) <= effective[:, None]
    att = None
    if spec.pooling == "attention":
        att = conv("attention", spec.num_classes, 1, "SAME", h, None)  # float32, as in WLER
        att = att[:, :, 0, :].astype(jnp.float32)
    return seg, mask, att


def _poly_predict(spec, params, inputs: str, x, lengths):
    import jax.numpy as jnp

    from wler_jax import features as features_lib
    from wler_jax import inference

    if inputs == "audio":
        feats, num_frames = features_lib.multi_scale_log_mel(x, lengths)
    else:
        feats, num_frames = x, lengths
    outs = [_poly_scale_logits(spec, params, feats[k], num_frames) for k in range(feats.shape[0])]
    att = None if outs[0][2] is None else jnp.stack([o[2] for o in outs])
    return inference.finalize(spec, params, jnp.stack([o[0] for o in outs]), outs[0][1], att)


def export_model(workdir_or_model: Any, path: str, *, platforms: Sequence[str] | None = None,
                 inputs: str = "audio") -> str:
    """Serialize the best checkpoint of a workdir (or a loaded `predict.Model`) to `path`.

    Args:
      workdir_or_model: a training workdir, or `wler_jax.predict.load_model(...)`'s result.
      path: output file; metadata (class names, input format, config) goes to `path + ".json"`.
      platforms: jax platforms to compile for later ("cpu", "cuda", "rocm", "tpu"); default
        "cpu" plus the platform of this process's default backend.
      inputs: "audio" (waveforms [b, 512 t] + num_samples [b]) or "features"
        (log-mel [4, b, t, 128] + num_frames [b]).
    Returns:
      `path`.
    """
    import jax
    import jax.numpy as jnp
    from jax import export

    from wler_jax import predict
    from wler_jax.geometry import N_FFTS, N_MELS, SAMPLE_RATE

    if platforms is None:
        platforms = tuple(dict.fromkeys(("cpu", export.default_export_platform())))
    model = workdir_or_model
    if isinstance(model, (str, os.PathLike)):
        model = predict.load_model(model)
    params = jax.device_get(model.params)
    if inputs == "audio":
        b, t = export.symbolic_shape("b, t", constraints=(f"t >= {MIN_FRAMES - 1}",))
        args = (jax.ShapeDtypeStruct((b, HOP * t), jnp.float32),
                jax.ShapeDtypeStruct((b,), jnp.int32))
    elif inputs == "features":
        b, t = export.symbolic_shape("b, t", constraints=(f"t >= {MIN_FRAMES}",))
        args = (jax.ShapeDtypeStruct((len(N_FFTS), b, t, N_MELS), jnp.float32),
                jax.ShapeDtypeStruct((b,), jnp.int32))
    else:
        raise ValueError(f"inputs must be 'audio' or 'features', got {inputs!r}")
    fn = jax.jit(lambda x, n: _poly_predict(model.spec, params, inputs, x, n))
    exported = export.export(fn, platforms=tuple(platforms))(*args)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(exported.serialize())
    info = {"format": EXPORT_FORMAT, "inputs": inputs, "class_names": list(model.class_names),
            "sample_rate": SAMPLE_RATE, "hop_length": HOP, "min_frames": MIN_FRAMES,
            "n_ffts": list(N_FFTS), "platforms": list(platforms), "method": model.spec.method,
            "pooling": model.spec.pooling, "width": model.spec.width,
            "config": model.config.to_dict() if hasattr(model.config, "to_dict") else None}
    with open(path + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return path


class ExportedModel(NamedTuple):
    """A deserialized export: call it like `predict_fn` without params.

    Attributes:
      exported: the `jax.export.Exported` (its `.call(x, lengths)` is the raw function).
      class_names: C names.
      info: the metadata written beside it.
    """

    exported: Any
    class_names: tuple
    info: dict

    def __call__(self, x, lengths) -> dict:
        """audio [b, n] (float32, or int16) + num_samples [b] (inputs "audio"; padded here to
        a multiple of 512 samples and >= 128 frames), or features [4, b, t, 128] + num_frames
        [b] (inputs "features"; t >= 128)."""
        x = np.asarray(x)
        lengths = np.asarray(lengths, np.int32).reshape(-1)
        if self.info["inputs"] == "audio":
            if x.dtype == np.int16:
                x = x.astype(np.float32) * np.float32(1.0 / 32767.0)
            x = np.asarray(x, np.float32).reshape(len(lengths), -1)
            blocks = max(-(-x.shape[1] // HOP), MIN_FRAMES - 1)
            x = np.pad(x, ((0, 0), (0, blocks * HOP - x.shape[1])))
        return self.exported.call(x, lengths)


def load_exported(path: str) -> ExportedModel:
    """Load `export_model`'s output; imports only jax and numpy (no training code)."""
    from jax import export

    with open(path, "rb") as f:
        exported = export.deserialize(bytearray(f.read()))
    with open(path + ".json") as f:
        info = json.load(f)
    return ExportedModel(exported, tuple(info["class_names"]), info)

