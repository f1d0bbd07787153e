"""ONNX export: the model with its log-mel front end inside and a symbolic time axis, for
onnxruntime and other ONNX runtimes (`python -m wler_jax.export --format=onnx`).

    export_onnx(workdir, "model.onnx")               # + "model.onnx.json" (class names, ...)
    sess = onnxruntime.InferenceSession("model.onnx")
    clip, segments = sess.run(None, {"audio": audio, "num_samples": n})
    # audio float32 [1, 512 t] at 44.1 kHz mono, zero-padded, t >= 127 (`pad_audio` pads);
    # num_samples int32 [1]; clip [1, C], segments [1, t // 32 - 3, C] (valid: the first
    # geometry.num_segments(1 + n // 512), the rest 0), as predict_fn's.

How. The network (from log-mel [4, 1, T, 128] and num_frames [1]) is converted by jax2onnx from
`inference.predict` itself, with a symbolic T. The front end is built from ONNX operators
(`frontend_graph`: STFT, ReduceSumSquare, MatMul with librosa's mel basis, Log) computing what
`features.log_mel` computes (centre zero padding, periodic Hann, power, Slaney mel,
10 log10(max(mel, 1e-10)), frames past the length at -100 dB), and the two graphs are joined
(`onnx.compose`). jax2onnx 0.17.1 lowers `jnp.fft.rfft` wrongly when the frame axis is symbolic
(its DFT gets no trailing channel axis, and the real/imaginary split after it has the wrong
rank; onnxruntime refuses the model), hence the front end of ONNX operators; the network
converts as is, but for `jnp.arange` of a symbolic length, which jax2onnx 0.17.1 turns into a
placeholder that jax 0.10's indexing rejects; `lax.iota` is the same array and converts
(`_iota_arange`, during conversion only).

The batch axis is 1 (jax2onnx 0.17.1 fails on the masks' arithmetic with a symbolic batch);
score several recordings by calling the session once each. tests/test_export_onnx.py holds
onnxruntime's scores equal to predict_fn's (max abs difference <= 1e-4 on probabilities) at
lengths the export never saw.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import features, predict
from wler_jax.geometry import HOP_LENGTH, N_FFTS, N_MELS, SAMPLE_RATE, SEGMENT_FRAMES
from wler_jax.serving import inference

OPSET = 23  # jax2onnx's default; STFT needs >= 17
MIN_BLOCKS = SEGMENT_FRAMES - 1  # 127 hops of audio: 128 frames, the network's shortest input


def pad_audio(waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One recording ([n] float32 44.1 kHz) as the ONNX model's inputs: audio [1, 512 t]
    zero-padded (t = max(ceil(n / 512), 127)) and num_samples [1] int32."""
    x = np.asarray(waveform, np.float32).reshape(-1)
    blocks = max(-(-x.size // HOP_LENGTH), MIN_BLOCKS)
    return (np.pad(x, (0, blocks * HOP_LENGTH - x.size))[None],
            np.array([x.size], np.int32))


def frontend_graph(dtype: Any = np.float32):
    """The log-mel front end as an ONNX graph: audio [1, n] + num_samples [1] int32 ->
    features [4, 1, n // 512 + 1, 128] dB and num_frames [1] int32 (`features.log_mel` at
    the four `N_FFTS`). `dtype` float16 builds the same graph in half precision (measured by
    bench/onnx_speed.py; the export is float32)."""
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.array(v, t), name) for name, v, t in (
        ("hop", HOP_LENGTH, np.int64), ("zero", 0, np.int64), ("one", 1, np.int64),
        ("hop32", HOP_LENGTH, np.int32), ("one32", 1, np.int32), ("axis0", [0], np.int64),
        ("axes_last", [-1], np.int64), ("axes01", [0, 1], np.int64),
        ("amin", features.AMIN, dtype), ("db_per_ln", 10.0 / np.log(10.0), dtype),
        ("floor_db", features.FLOOR_DB, dtype), ("zero_f", 0.0, dtype))]
    nodes = [
        helper.make_node("Shape", ["audio"], ["audio_shape"]),
        helper.make_node("Gather", ["audio_shape", "one"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "n", "one"], ["sample_idx"]),
        helper.make_node("Cast", ["num_samples"], ["num_samples64"], to=TensorProto.INT64),
        helper.make_node("Less", ["sample_idx", "num_samples64"], ["sample_valid"]),
        helper.make_node("Cast", ["audio"], ["audio_t"], to=elem),
        helper.make_node("Where", ["sample_valid", "audio_t", "zero_f"], ["signal"]),
        helper.make_node("Div", ["num_samples", "hop32"], ["num_hops"]),
        helper.make_node("Add", ["num_hops", "one32"], ["num_frames"]),
        helper.make_node("Div", ["n", "hop"], ["n_hops"]),
        helper.make_node("Add", ["n_hops", "one"], ["total_frames"]),
        helper.make_node("Range", ["zero", "total_frames", "one"], ["frame_idx"]),
        helper.make_node("Cast", ["num_frames"], ["num_frames64"], to=TensorProto.INT64),
        helper.make_node("Less", ["frame_idx", "num_frames64"], ["frame_valid_1d"]),
        helper.make_node("Unsqueeze", ["frame_valid_1d", "axes_last"], ["frame_valid"]),
    ]
    scales = []
    for n_fft in N_FFTS:
        s = f"_{n_fft}"
        half = n_fft // 2
        inits += [numpy_helper.from_array(np.array([0, half, 0, half], np.int64), "pads" + s),
                  numpy_helper.from_array(np.array(n_fft, np.int64), "n_fft" + s),
                  numpy_helper.from_array(features.hann_window(n_fft).astype(dtype), "hann" + s),
                  numpy_helper.from_array(features.mel_basis(n_fft).astype(dtype), "mel" + s)]
        nodes += [
            helper.make_node("Pad", ["signal", "pads" + s], ["padded" + s]),  # centre, zeros
            helper.make_node("Unsqueeze", ["padded" + s, "axes_last"], ["real" + s]),
            helper.make_node("STFT", ["real" + s, "hop", "hann" + s, "n_fft" + s],
                             ["spec" + s], onesided=1),  # [1, T, n_fft / 2 + 1, 2]
            helper.make_node("ReduceSumSquare", ["spec" + s, "axes_last"], ["power" + s],
                             keepdims=0),
            helper.make_node("MatMul", ["power" + s, "mel" + s], ["mel_power" + s]),
            helper.make_node("Max", ["mel_power" + s, "amin"], ["floored" + s]),
            helper.make_node("Log", ["floored" + s], ["ln" + s]),
            helper.make_node("Mul", ["ln" + s, "db_per_ln"], ["db" + s]),
            helper.make_node("Where", ["frame_valid", "db" + s, "floor_db"], ["masked" + s]),
            helper.make_node("Cast", ["masked" + s], ["masked32" + s], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["masked32" + s, "axis0"], ["scale" + s]),
        ]
        scales.append("scale" + s)
    nodes.append(helper.make_node("Concat", scales, ["features"], axis=0))
    graph = helper.make_graph(
        nodes, "wler_log_mel",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, "n"]),
         helper.make_tensor_value_info("num_samples", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                       [len(N_FFTS), 1, "frames", N_MELS]),
         helper.make_tensor_value_info("num_frames", TensorProto.INT32, [1])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


@contextlib.contextmanager
def _iota_arange() -> Iterator[None]:
    """`jnp.arange(n)` as `lax.iota` while jax2onnx traces (see the module docstring)."""
    original = jnp.arange

    def arange(*args, **kwargs):
        if len(args) == 1 and not kwargs:
            return jax.lax.iota(jnp.int32, args[0])
        return original(*args, **kwargs)

    jnp.arange = arange
    try:
        yield
    finally:
        jnp.arange = original


def network_graph(spec, params):
    """The network from log-mel features ([4, 1, T, 128], T >= 128 symbolic) and num_frames
    [1] to clip [1, C] and segments [1, S, C] probabilities, converted by jax2onnx."""
    from jax import export as jax_export

    # jax2onnx imports its example plugins too; those needing packages its core does not
    # (equinox, dm-pix: see docs/deployment.md "ONNX") log a traceback each. Not errors.
    logging.getLogger("jax2onnx.plugins.plugin_system").setLevel(logging.ERROR)
    logging.getLogger("onnx_ir.serde").setLevel(logging.ERROR)  # shape-only values it skips
    from jax2onnx import to_onnx

    def scores(feats, num_frames):
        with _iota_arange():
            out = inference.predict(spec, params, {"features": feats, "num_frames": num_frames})
        return out["clip"], out["segments"]

    t = jax_export.symbolic_shape("frames", constraints=(f"frames >= {SEGMENT_FRAMES}",))[0]
    return to_onnx(scores, [jax.ShapeDtypeStruct((len(N_FFTS), 1, t, N_MELS), jnp.float32),
                            jax.ShapeDtypeStruct((1,), jnp.int32)],
                   model_name="wler_network", opset=OPSET,
                   input_names=["net_features", "net_num_frames"],
                   output_names=["clip", "segments"])


def export_onnx(workdir_or_model: Any, path: str) -> str:
    """Write the best checkpoint of a workdir (or a loaded `predict.Model`) as one ONNX model
    (front end + network) to `path`, metadata to `path + ".json"`. Returns `path`."""
    import onnx
    from onnx import compose

    model = workdir_or_model
    if isinstance(model, (str, os.PathLike)):
        model = predict.load_model(model)
    params = jax.device_get(model.params)
    net = network_graph(model.spec, params)
    front = frontend_graph()
    net.ir_version = front.ir_version = min(net.ir_version, front.ir_version)
    joined = compose.merge_models(front, net, io_map=[("features", "net_features"),
                                                      ("num_frames", "net_num_frames")])
    onnx.checker.check_model(joined)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(joined, path)
    info = {"format": "onnx", "opset": OPSET, "inputs": {"audio": "float32 [1, 512 t], t >= "
                                                         f"{MIN_BLOCKS}", "num_samples":
                                                         "int32 [1]"},
            "outputs": {"clip": "[1, C]", "segments": "[1, t // 32 - 3, C]"},
            "class_names": list(model.class_names), "sample_rate": SAMPLE_RATE,
            "hop_length": HOP_LENGTH, "n_ffts": list(N_FFTS), "method": model.spec.method,
            "pooling": model.spec.pooling, "width": model.spec.width}
    with open(path + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return path
