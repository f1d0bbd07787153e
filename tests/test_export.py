"""jax.export round trip: the serialized model gives predict_fn's scores, with jax alone."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from wler_jax import export, features, predict
from wler_jax.geometry import SAMPLE_RATE, num_segments
from conftest import float_atol, tones_and_noise
from test_predict import CLASSES, make_workdir


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return predict.load_model(make_workdir(tmp_path_factory.mktemp("export_workdir"), seed=2))


@pytest.fixture(scope="module")
def exported_path(model, tmp_path_factory):
    return export.export_model(model, str(tmp_path_factory.mktemp("exp") / "m.jaxexport"))


def test_round_trip_gives_predict_fn_scores(model, exported_path):
    loaded = export.load_exported(exported_path)
    assert loaded.class_names == tuple(CLASSES) and loaded.info["inputs"] == "audio"
    # The CPU plus the exporting backend (on a GPU: ["cpu", "cuda"]; it was ["cpu"] only).
    assert loaded.info["platforms"] == list(dict.fromkeys(
        ["cpu", jax.export.default_export_platform()]))
    # Two batch sizes and lengths through the one file (symbolic b and t), one under 128 frames.
    for lengths in ([3 * SAMPLE_RATE, SAMPLE_RATE + 5], [30_000]):
        n = max(lengths)
        wav = np.zeros((len(lengths), n), np.float32)
        for i, m in enumerate(lengths):
            wav[i, :m] = tones_and_noise(m, seed=20 + i)
        got = jax.device_get(loaded(wav, lengths))
        ref = jax.device_get(model.predict_fn(model.params, {
            "audio": wav, "num_samples": np.array(lengths, np.int32)}))
        np.testing.assert_allclose(got["clip"], ref["clip"], atol=float_atol(1e-5))
        for i, m in enumerate(lengths):
            s = num_segments(1 + m // 512)
            assert got["segment_mask"][i].sum() == s
            np.testing.assert_allclose(got["segments"][i, :s], ref["segments"][i, :s],
                                       atol=float_atol(1e-5))


def test_features_export_and_slat(tmp_path):
    m = predict.load_model(make_workdir(tmp_path / "slat", "slat", seed=3))
    path = export.export_model(m, str(tmp_path / "slat.jaxexport"), inputs="features")
    loaded = export.load_exported(path)
    n = 200 * 512
    wav = tones_and_noise(n, seed=30)[None]
    feats, nf = features.multi_scale_log_mel(wav, np.array([n]))
    got = jax.device_get(loaded(feats, nf))
    ref = jax.device_get(m.predict_fn(m.params, {"features": feats, "num_frames": nf}))
    np.testing.assert_allclose(got["clip"], ref["clip"], atol=float_atol(1e-5))
    np.testing.assert_allclose(got["segments"], ref["segments"], atol=float_atol(1e-5))
    assert json.load(open(path + ".json"))["method"] == "slat"
    with pytest.raises(ValueError, match="inputs must be"):
        export.export_model(m, str(tmp_path / "x"), inputs="spectrogram")


@pytest.mark.parametrize("pooling", ["attention", "auto_pool"])
def test_pooling_with_parameters_exports(tmp_path, pooling):
    """The export runs the model's own forward pass, so poolings with their own layers or
    parameters export too; a 300-frame and a 150-frame recording through one file."""
    m = predict.load_model(make_workdir(tmp_path / pooling, pooling=pooling, seed=5))
    loaded = export.load_exported(export.export_model(m, str(tmp_path / "m.jaxexport")))
    lengths = [300 * 512, 150 * 512]
    wav = np.stack([tones_and_noise(lengths[0], seed=50),
                    np.pad(tones_and_noise(lengths[1], seed=51), (0, lengths[0] - lengths[1]))])
    got = jax.device_get(loaded(wav, lengths))
    ref = jax.device_get(m.predict_fn(m.params, {"audio": wav,
                                                 "num_samples": np.array(lengths, np.int32)}))
    np.testing.assert_allclose(got["clip"], ref["clip"], atol=float_atol(1e-5))
    np.testing.assert_allclose(got["segments"], ref["segments"], atol=float_atol(1e-5))


def test_exported_file_runs_without_wler_jax(exported_path, model):
    """The docstring's recipe in a fresh interpreter that never imports wler_jax."""
    n = 2 * SAMPLE_RATE
    wav = tones_and_noise(n, seed=40)
    np.save(os.path.join(os.path.dirname(exported_path), "wav.npy"), wav)
    code = textwrap.dedent(f"""
        import json, sys
        import jax, numpy as np
        exported = jax.export.deserialize(open({exported_path!r}, "rb").read())
        class_names = json.load(open({exported_path!r} + ".json"))["class_names"]
        wav = np.load({os.path.dirname(exported_path)!r} + "/wav.npy")
        audio = np.pad(wav, (0, -len(wav) % 512))[None]      # a multiple of 512 samples
        out = exported.call(audio, np.array([len(wav)], np.int32))
        assert not any(m.startswith("wler_jax") for m in sys.modules), "imported wler_jax"
        print(json.dumps({{"names": class_names, "clip": np.asarray(out["clip"][0]).tolist()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = model.predict_fn(model.params, {"audio": wav[None], "num_samples": np.array([n])})
    assert result["names"] == CLASSES
    np.testing.assert_allclose(result["clip"], np.asarray(ref["clip"][0]), atol=float_atol(1e-5))
