"""Export a trained model as serialized StableHLO (`jax.export`) that runs with jax alone.

Command line: `python -m wler_jax.export --workdir=DIR [--format=stablehlo|onnx]
[--output=PATH]`; `--format=onnx` writes the ONNX model of `wler_jax.export_onnx` instead
(onnxruntime; log-mel front end inside, batch 1, any length).

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

The exported function is `inference.predict`, the body of `predict_fn`: geometry's
shape arithmetic (`geometry.static_length`) lets jax.export's symbolic time dimension through.
tests/test_export.py holds the exported scores equal to `predict_fn`.
"""
from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from wler_jax import predict
from wler_jax.geometry import N_FFTS, N_MELS, SAMPLE_RATE
from wler_jax.serving import inference

HOP = 512
MIN_FRAMES = 128
EXPORT_FORMAT = 1


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
    keys = ("audio", "num_samples") if inputs == "audio" else ("features", "num_frames")
    fn = jax.jit(lambda x, n: inference.predict(model.spec, params, dict(zip(keys, (x, n)))))
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
                from wler_jax.geometry import from_int16  # numpy only

                x = from_int16(x)
            x = np.asarray(x, np.float32).reshape(len(lengths), -1)
            blocks = max(-(-x.shape[1] // HOP), MIN_FRAMES - 1)
            x = np.pad(x, ((0, 0), (0, blocks * HOP - x.shape[1])))
        return self.exported.call(x, lengths)


def load_exported(path: str) -> ExportedModel:
    """Load `export_model`'s output (the file itself needs only jax and numpy to run)."""
    with open(path, "rb") as f:
        exported = export.deserialize(bytearray(f.read()))
    with open(path + ".json") as f:
        info = json.load(f)
    return ExportedModel(exported, tuple(info["class_names"]), info)



def main(argv: Sequence[str]) -> int:
    """`python -m wler_jax.export --workdir=DIR [--format=stablehlo|onnx] [--output=PATH]`."""
    from absl import flags

    from wler_jax import errors

    flag_values = flags.FLAGS
    if argv[1:]:
        errors.fail(f"unexpected arguments {' '.join(argv[1:])}; give --workdir, --format and "
                    "--output")
    if not flag_values.workdir:
        errors.fail("--workdir is required; give the workdir of a training run")
    output = flag_values.output or ("model.onnx" if flag_values.format == "onnx"
                                    else "model.jaxexport")
    with errors.report_user_errors():
        if flag_values.format == "onnx":
            import importlib.util

            from wler_jax import export_onnx

            missing = [m for m in ("onnx", "jax2onnx") if importlib.util.find_spec(m) is None]
            if missing:
                errors.fail(f"--format=onnx needs {' and '.join(missing)}: pip install -e "
                            "'.[onnx]' && pip install --no-deps jax2onnx==0.17.1 "
                            "(docs/deployment.md, ONNX)")
            export_onnx.export_onnx(flag_values.workdir, output)
        else:
            export_model(flag_values.workdir, output)
    print(f"wrote {output} and {output}.json")
    return 0


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "Training workdir whose best checkpoint is exported.")
    flags.DEFINE_enum("format", "stablehlo", ["stablehlo", "onnx"], "stablehlo: jax.export "
                      "(runs with jax alone; any batch and length); onnx: the log-mel front end "
                      "and the network in one ONNX model (onnxruntime; batch 1, any length).")
    flags.DEFINE_string("output", None, "Output file (default model.jaxexport / model.onnx); "
                        "metadata goes beside it as OUTPUT.json.")
    app.run(main)
