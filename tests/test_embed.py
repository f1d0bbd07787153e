"""Embeddings: FCv1 activations against an oracle written apart from the model, padding
invariance, chunked = one pass, and the `python -m wler_jax.embed` command line."""
import os

import jax
import numpy as np
import pytest

from wler_jax import embed, errors, features, predict

from wler_jax.serving import embeddings

from wler_jax.model import networks
from wler_jax.geometry import SAMPLE_RATE, num_segments
from conftest import tones_and_noise
from test_predict import make_workdir, wav_dir  # noqa: F401  (wav_dir: a fixture)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return predict.load_model(make_workdir(tmp_path_factory.mktemp("wler_workdir")))


def fcv1_oracle(spec, params, feats, num_frames):
    """FCv1 + ReLU computed from the parameters by hand: the conv stack (the model's own
    submodule), then FCv1 as a plain 4x4 VALID convolution (WLER) or, for SLAT, each
    window's flattened conv output times FC1's kernel."""
    stack = networks.ConvStack(spec.width, conv_impl=spec.conv_impl, pool_impl=spec.pool_impl)
    fc1 = params["fc1"]
    if spec.method == "wler":
        x, eff = networks.prepare_input(feats, num_frames)
        h = stack.apply({"params": params["conv_stack"]}, x, eff)
        y = jax.lax.conv_general_dilated(h, fc1["kernel"], (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(y + fc1["bias"])[:, :, 0, :]
    wins, mask = networks.slat_windows(feats, num_frames, spec.slat_hop)
    n, w = mask.shape
    h = stack.apply({"params": params["conv_stack"]}, wins.reshape(n * w, 128, 128))
    return jax.nn.relu(h.reshape(n * w, -1) @ fc1["kernel"] + fc1["bias"]).reshape(n, w, -1)


def _batch(lengths, total, seed=0):
    wav = np.zeros((len(lengths), total), np.float32)
    for i, m in enumerate(lengths):
        wav[i, :m] = tones_and_noise(int(m), seed=seed + i)
    return {"audio": wav, "num_samples": np.array(lengths, np.int32)}


def test_embeddings_are_the_models_fcv1_activations(model):
    spec, params = model.spec, model.params
    batch = _batch([3 * SAMPLE_RATE, SAMPLE_RATE], 3 * SAMPLE_RATE)
    out = jax.device_get(model.embed_fn(params, batch))
    d = spec.embedding_width
    b, s = out["segment_mask"].shape
    assert out["segments"].shape == (b, s, d) and out["clip_mean"].shape == (b, d)
    per_scale = []
    for n_fft in (1024, 512, 2048, 4096):
        feats, nf = features.log_mel(batch["audio"], batch["num_samples"], n_fft)
        want = fcv1_oracle(spec, params, feats, nf)
        got, mask = spec.segment_embeddings(params, feats, nf)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # ... and exactly what FCv2 reads: a 1x1 conv of them gives the model's segment logits.
        logits, _, _ = spec.segment_logits(params, feats, nf)
        fc2 = params["fc2"]
        np.testing.assert_allclose(got @ fc2["kernel"][0, 0] + fc2["bias"], logits,
                                   rtol=1e-4, atol=1e-4)
        per_scale.append(np.where(np.asarray(mask)[..., None], want, 0.0))
    np.testing.assert_allclose(out["segments"], np.mean(per_scale, 0), rtol=1e-5, atol=1e-5)
    for row in range(b):
        valid = out["segments"][row][out["segment_mask"][row]]
        assert len(valid) == num_segments(1 + batch["num_samples"][row] // 512)
        np.testing.assert_allclose(out["clip_mean"][row], valid.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["clip_max"][row], valid.max(0), rtol=1e-6)
    assert (out["segments"] >= 0).all() and out["segments"].std() > 0


def test_padding_never_changes_an_embedding(model):
    """Two recordings alone, together, and padded with garbage features: the same vectors."""
    spec, params = model.spec, model.params
    rng = np.random.default_rng(0)
    feats, nf = features.log_mel(*_batch([3 * SAMPLE_RATE, 80 * 512], 3 * SAMPLE_RATE).values(),
                                 1024)
    feats = np.asarray(feats)
    garbage = feats.copy()
    for row, n in enumerate(np.asarray(nf)):
        garbage[row, n:] = rng.uniform(-1e3, 1e3, garbage[row, n:].shape)
    longer = np.concatenate([garbage, rng.normal(0, 50, (2, 96, 128))], 1).astype(np.float32)
    ref = jax.device_get(model.embed_fn(params, {"features": feats, "num_frames": nf}))
    for variant in (garbage, longer):
        out = jax.device_get(model.embed_fn(params, {"features": variant, "num_frames": nf}))
        for row in range(2):
            m = ref["segment_mask"][row]
            np.testing.assert_allclose(out["segments"][row, :len(m)][m], ref["segments"][row][m],
                                       rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(out["clip_mean"][row], ref["clip_mean"][row], rtol=1e-5,
                                       atol=1e-5)
            np.testing.assert_allclose(out["clip_max"][row], ref["clip_max"][row], rtol=1e-5,
                                       atol=1e-5)
    for row in range(2):  # alone, without a batch axis (what jax.vmap gives)
        one = jax.device_get(model.embed_fn(params, {"features": longer[row],
                                                     "num_frames": nf[row]}))
        np.testing.assert_allclose(one["clip_mean"], ref["clip_mean"][row], rtol=1e-5, atol=1e-5)


def test_chunked_embeddings_equal_one_pass(model):
    n = 1000 * 512 + 100
    x = tones_and_noise(n, seed=7)
    full = jax.device_get(model.embed_fn(model.params, {"audio": x[None],
                                                        "num_samples": np.array([n])}))
    emb = embeddings.embed_waveform(model, x, chunk_frames=256)
    s = num_segments(1001)
    assert emb.segments.shape == (s, model.spec.embedding_width)
    np.testing.assert_allclose(emb.segments, full["segments"][0, :s], atol=1e-4)
    # a mean of activations of order 100: a few float32 ulps (1.5e-5 at 157) of summation order
    np.testing.assert_allclose(emb.clip_mean, full["clip_mean"][0], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(emb.clip_max, full["clip_max"][0], atol=1e-4)
    start, end = emb.segment_times()
    assert start[0] == 0 and end[-1] <= emb.duration + 1e-9


def test_slat_embeddings(tmp_path):
    m = predict.load_model(make_workdir(tmp_path / "slat", "slat", seed=1))
    batch = _batch([200 * 512], 200 * 512, seed=3)
    out = jax.device_get(m.embed_fn(m.params, batch))
    feats, nf = features.log_mel(batch["audio"], batch["num_samples"], 512)
    got, mask = m.spec.segment_embeddings(m.params, feats, nf)
    np.testing.assert_allclose(got, fcv1_oracle(m.spec, m.params, feats, nf), rtol=1e-5,
                               atol=1e-5)
    assert out["segments"].shape[1] == num_segments(201) == mask.shape[1]


def test_cli_writes_npz_names_failed_files(model, wav_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "emb.npz"
    code = embed.cli(["embed", f"--workdir={model.workdir}", f"--output={out}", "--segments",
                      "--noprogress", "--chunk_frames=256", str(wav_dir),
                      str(wav_dir / "missing.wav")])
    assert code == 1
    err = capsys.readouterr().err
    assert "4 file(s) failed" in err and "missing.wav" in err
    z = np.load(out)
    good = sorted(os.path.relpath(f, wav_dir) for f in z["files"])
    assert good == ["a.wav", os.path.join("sub", "b.wav")]
    d = model.spec.embedding_width
    assert z["clip"].shape == (2, d) and z["clip"].dtype == np.float32
    assert {os.path.basename(f) for f in z["failed_files"]} == {
        "corrupt.wav", "empty.flac", "nan.wav", "missing.wav"}
    assert len(z["failed_reasons"]) == 4
    for k, f in enumerate(z["files"]):
        rows = z["segment_file"] == k
        segs = z["segments"][rows]
        np.testing.assert_allclose(segs.mean(0), z["clip"][k], rtol=1e-5, atol=1e-6)
        assert z["segment_start"][rows][0] == 0 and z["segment_end"][rows][-1] <= z["duration"][k]
    # The same file through embed_fn (one pass): the CLI's chunked vectors agree.
    from wler_jax import audio
    x = audio.load(wav_dir / "a.wav")
    ref = model.embed_fn(model.params, {"audio": x, "num_samples": np.int32(x.size)})
    k = [os.path.basename(f) for f in z["files"]].index("a.wav")
    np.testing.assert_allclose(z["clip"][k], ref["clip_mean"], atol=1e-5)
    # CSV: one row per file, D mean and D max columns.
    csv_out = tmp_path / "emb.csv"
    assert embed.cli(["embed", f"--workdir={model.workdir}", f"--output={csv_out}",
                      "--noprogress", "--chunk_frames=256", str(wav_dir / "a.wav")]) == 0
    header, row = csv_out.read_text().splitlines()
    assert header.split(",")[:3] == ["file", "duration", "mean_0"]
    assert len(row.split(",")) == 2 + 2 * d


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        embed.cli(["embed", f"--workdir={tmp_path}", str(tmp_path)])
    assert e.value.code == errors.EXIT_USER_ERROR
    line, = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert "not a wler_jax workdir" in line
    with pytest.raises(SystemExit):
        embed.cli(["embed", f"--workdir={tmp_path}", "--output=x.json", str(tmp_path)])
    assert ".npz or .csv" in capsys.readouterr().err
