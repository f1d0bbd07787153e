"""ONNX export: `python -m wler_jax.export --format=onnx` writes one model (log-mel front end +
network, symbolic time axis) whose onnxruntime scores equal predict_fn's at any length."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from wler_jax import export_onnx, features, predict
from wler_jax.geometry import SAMPLE_RATE, num_segments
from conftest import float_atol, tones_and_noise
from test_predict import CLASSES, REPO, make_workdir

ort = pytest.importorskip("onnxruntime")  # the "onnx" extra; CI installs it with "test"
pytest.importorskip("jax2onnx")

ATOL = 1e-4  # probabilities; measured <= 7e-6 here (the front ends differ by <= 6e-4 dB)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Attention pooling: the pooling's own layer and per-segment extras go through the
    conversion too (max pooling, the default, is what bench/onnx_speed.py checks)."""
    return make_workdir(tmp_path_factory.mktemp("onnx_workdir"), pooling="attention", seed=7)


@pytest.fixture(scope="module")
def onnx_path(workdir, tmp_path_factory):
    """The command line, as a user runs it."""
    path = str(tmp_path_factory.mktemp("onnx") / "m.onnx")
    proc = subprocess.run([sys.executable, "-m", "wler_jax.export", f"--workdir={workdir}",
                           "--format=onnx", f"--output={path}"], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return path


@pytest.fixture(scope="module")
def session(onnx_path):
    return ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])


def test_symbolic_time_axis_and_metadata(session, onnx_path):
    audio, num_samples = session.get_inputs()
    assert (audio.name, num_samples.name) == ("audio", "num_samples")
    assert audio.shape[0] == 1 and isinstance(audio.shape[1], str)  # time is symbolic
    assert [o.name for o in session.get_outputs()] == ["clip", "segments"]
    info = json.load(open(onnx_path + ".json"))
    assert info["class_names"] == CLASSES and info["sample_rate"] == SAMPLE_RATE


@pytest.fixture(scope="module")
def model(workdir):
    return predict.load_model(workdir)


# Nothing about the length is fixed at export: under 128 frames, off the 512 grid, 12 s.
@pytest.mark.parametrize("n", [20_000, 3 * SAMPLE_RATE + 77, 12 * SAMPLE_RATE + 300])
def test_onnxruntime_scores_equal_predict_fn(model, session, n):
    x = tones_and_noise(n, seed=n % 13)
    audio, num_samples = export_onnx.pad_audio(x)
    clip, segments = session.run(None, {"audio": audio, "num_samples": num_samples})
    ref = jax.device_get(model.predict_fn(model.params, {"audio": x[None],
                                                         "num_samples": np.array([n])}))
    s = num_segments(1 + n // 512)
    np.testing.assert_allclose(clip, ref["clip"], atol=max(ATOL, float_atol(ATOL)))
    np.testing.assert_allclose(segments[0, :s], ref["segments"][0, :s],
                               atol=max(ATOL, float_atol(ATOL)))
    assert not segments[0, s:].any()  # invalid segments are 0, as predict_fn's


def test_onnx_front_end_equals_log_mel():
    """The ONNX operators' log-mel (STFT, mel MatMul, Log) against features.log_mel, every scale,
    a loud and a quiet recording; a flipped window or a mel basis off by one band fails."""
    front = ort.InferenceSession(export_onnx.frontend_graph().SerializeToString(),
                                 providers=["CPUExecutionProvider"])
    for gain in (1.0, 1e-3):
        x = gain * tones_and_noise(2 * SAMPLE_RATE + 99, seed=16)
        audio, num_samples = export_onnx.pad_audio(x)
        got, num_frames = front.run(None, {"audio": audio, "num_samples": num_samples})
        ref, ref_frames = features.multi_scale_log_mel(audio, num_samples)
        assert num_frames.tolist() == np.asarray(ref_frames).tolist()
        np.testing.assert_allclose(got, np.asarray(ref), atol=5e-3)  # dB
