"""Prediction: predict_fn vs training's eval step, jit/vmap vs the CLI, exact chunking, the
stream reader vs audio.load, event times from known scores, bad files, the usage snippet."""
import csv
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from wler_jax import audio, predict

from wler_jax.serving import chunked

from wler_jax.model import networks

from wler_jax.serving import reports
from wler_jax.geometry import SAMPLE_RATE, num_segments, segment_times
from conftest import float_atol, tones_and_noise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["dog_bark", "siren", "drilling", "car_horn"]


def make_workdir(path, method="wler", pooling="max", seed=0):
    """A real workdir (run.json + orbax best checkpoint, written by the project's own
    Checkpointer) holding a random smoke-width model: training one takes ~40 s of this test
    budget and adds nothing to what prediction is tested for. Parameters are drawn with numpy
    (LeCun-normal kernels, small random biases: no init compile), shaped by `jax.eval_shape` of
    the model's own init, so probabilities spread over (0, 1)."""
    from wler_jax import checkpoints
    from wler_jax.training import train
    from wler_jax.configs.common import base_config

    config = base_config(method, "smoke")
    config.model.pooling = pooling
    spec = train.create_model(config, len(CLASSES))
    shapes = jax.eval_shape(spec.init, jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            fan_in = int(np.prod(leaf.shape[:-1]))
            return (rng.standard_normal(leaf.shape) * 1.5 / np.sqrt(fan_in)).astype(np.float32)
        return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(draw, shapes)
    ckpt = checkpoints.Checkpointer(str(path))
    ckpt.save_best(1, params, {"epoch": 1, "step": 1, "mAP": 0.0})
    ckpt.wait()
    ckpt.close()
    checkpoints.write_run_file(str(path), {"config": config.to_dict(), "class_names": CLASSES,
                                           "data": {"builder": "test"}})
    return str(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("wler_workdir"))


@pytest.fixture(scope="module")
def model(workdir):
    return predict.load_model(workdir)


@pytest.fixture(scope="module")
def wav_dir(tmp_path_factory):
    """Two good 44.1 kHz files (one in a sub-folder, one stereo int16), a corrupt one, an empty
    one, one with a NaN in the middle, and a text file the folder search must ignore."""
    d = tmp_path_factory.mktemp("audio")
    os.makedirs(d / "sub")
    a, b = tones_and_noise(3 * SAMPLE_RATE, seed=3), tones_and_noise(2 * SAMPLE_RATE + 77, seed=4)
    sf.write(d / "a.wav", a, SAMPLE_RATE, subtype="FLOAT")
    sf.write(d / "sub" / "b.wav", np.stack([b, b], 1), SAMPLE_RATE, subtype="PCM_16")
    (d / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(400))
    (d / "empty.flac").write_bytes(b"")
    nan = tones_and_noise(2 * SAMPLE_RATE, seed=5)
    nan[SAMPLE_RATE] = np.nan
    sf.write(d / "nan.wav", nan, SAMPLE_RATE, subtype="FLOAT")
    (d / "notes.txt").write_text("not audio")
    return d


def test_load_model(model, workdir):
    assert model.class_names == tuple(CLASSES)
    assert model.spec.method == "wler" and model.config.method == "wler"
    assert model.workdir == os.path.abspath(workdir)
    assert set(model.params) == {"conv_stack", "fc1", "fc2"}
    with pytest.raises(FileNotFoundError, match="not a wler_jax workdir"):
        predict.load_model(os.path.dirname(workdir))


def reference_scores(spec, params, batch):
    """Four scales through the network module directly, probabilities averaged (paper §II-C):
    an oracle written apart from `inference.predict`."""
    from wler_jax import features
    module, clips, segs = spec.module(), [], []
    for n_fft in (1024, 512, 2048, 4096):
        feats, nf = features.log_mel(batch["audio"], batch["num_samples"], n_fft)
        if spec.method == "wler":
            clip, aux = module.apply({"params": params}, feats, nf)
            clips.append(jax.nn.sigmoid(clip))
            segs.append(jax.nn.sigmoid(aux["segment_logits"]))
            mask = aux["segment_mask"]
        else:
            wins, mask = networks.slat_windows(feats, nf, 32)
            n, w = mask.shape
            p = jax.nn.sigmoid(module.apply({"params": params}, wins.reshape(n * w, 128, 128)))
            p = p.reshape(n, w, -1)
            segs.append(p)
            clips.append(jnp.where(mask[..., None], p, 0.0).max(1))
    return {"clip": np.mean(clips, 0), "segments": np.mean(segs, 0), "segment_mask": mask}


def two_recordings():
    """[2, 3 s] float32, the batch shape of USAGE_SNIPPET and of the CLI test (one compile)."""
    n = 3 * SAMPLE_RATE
    lengths = np.array([n, n // 2 + 100], np.int32)
    wav = np.zeros((2, n), np.float32)
    for i, m in enumerate(lengths):
        wav[i, :m] = tones_and_noise(int(m), seed=10 + i)
    return wav, lengths


def test_predict_fn_equals_training_eval_step_and_feature_inputs(model):
    wav, lengths = two_recordings()
    out = jax.device_get(model.predict_fn(model.params, {"audio": wav, "num_samples": lengths}))
    ref = reference_scores(model.spec, model.params,
                           {"audio": audio.to_int16(wav), "num_samples": lengths})
    int16 = jax.device_get(model.predict_fn(model.params, {"audio": audio.to_int16(wav),
                                                           "num_samples": lengths}))
    mask = out["segment_mask"]
    np.testing.assert_array_equal(mask, ref["segment_mask"])
    np.testing.assert_allclose(int16["clip"], ref["clip"], atol=float_atol(1e-6))
    np.testing.assert_allclose(int16["segments"][mask], ref["segments"][mask],
                               atol=float_atol(1e-6))
    assert np.all(out["segments"][~mask] == 0)
    assert 0.05 < out["segments"][mask].std() and out["clip"].shape == (2, len(CLASSES))
    # Precomputed features: all four scales, or one scale alone.
    from wler_jax import features

    feats, nf = features.multi_scale_log_mel(wav, lengths)
    by_features = model.predict_fn(model.params, {"features": feats, "num_frames": nf})
    np.testing.assert_allclose(by_features["clip"], out["clip"], atol=float_atol(1e-6))
    one = model.predict_fn(model.params, {"features": feats[0], "num_frames": nf})
    one_ref = model.predict_fn(model.params, {"features": feats[:1], "num_frames": nf})
    np.testing.assert_allclose(one["segments"], one_ref["segments"], atol=float_atol(1e-6))
    with pytest.raises(ValueError, match="batch needs"):
        model.predict_fn(model.params, {"waveform": wav})


def test_predict_fn_under_jit_and_vmap_matches_cli(model, workdir, wav_dir, tmp_path):
    out_json = tmp_path / "p.json"
    files = [str(wav_dir / "a.wav"), str(wav_dir / "sub" / "b.wav")]
    assert predict.cli(["predict", f"--workdir={workdir}", f"--output={out_json}",
                        "--noprogress", *files]) == 0
    result = json.loads(out_json.read_text())
    assert result["failed"] == [] and result["class_names"] == CLASSES
    recs = {r["file"]: r for r in result["results"]}
    waves = [audio.load(f) for f in files]
    n = 3 * SAMPLE_RATE
    batch = {"audio": np.stack([np.pad(w, (0, n - w.size)) for w in waves]),
             "num_samples": np.array([w.size for w in waves], np.int32)}

    @jax.jit
    def clip_and_segments(params, batch):  # another module's own jitted code
        out = model.predict_fn(params, batch)
        return out["clip"], out["segments"], out["segment_mask"]

    clip, segs, mask = jax.device_get(clip_and_segments(model.params, batch))
    vm = jax.device_get(jax.vmap(model.predict_fn, in_axes=(None, 0))(model.params, batch))
    for i, f in enumerate(files):
        rec = recs[f]
        s = int(mask[i].sum())
        assert s == num_segments(1 + waves[i].size // 512) == len(rec["segment_scores"])
        cli_clip = np.array([rec["scores"][c] for c in CLASSES])
        cli_segs = np.array([[seg["scores"][c] for c in CLASSES] for seg in rec["segment_scores"]])
        np.testing.assert_allclose(cli_clip, clip[i], atol=float_atol(1e-5))
        np.testing.assert_allclose(cli_segs, segs[i, :s], atol=float_atol(1e-5))
        np.testing.assert_allclose(vm["clip"][i], clip[i], atol=float_atol(1e-6))
        np.testing.assert_allclose(vm["segments"][i], segs[i], atol=float_atol(1e-6))
        start, end = segment_times(s)
        assert rec["segment_scores"][0]["start"] == 0.0
        np.testing.assert_allclose([x["end"] for x in rec["segment_scores"]],
                                   np.minimum(end, waves[i].size / SAMPLE_RATE), atol=1e-6)
        assert rec["duration"] == pytest.approx(waves[i].size / SAMPLE_RATE, abs=1e-6)
    # The same run as CSV: clip, segment and event rows.
    out_csv = tmp_path / "p.csv"
    assert predict.cli(["predict", f"--workdir={workdir}", f"--output={out_csv}",
                        "--noprogress", files[0]]) == 0
    rows = list(csv.DictReader(open(out_csv)))
    clip_rows = [r for r in rows if r["level"] == "clip"]
    assert [r["label"] for r in clip_rows] == CLASSES
    np.testing.assert_allclose([float(r["score"]) for r in clip_rows], clip[0],
                               atol=float_atol(1e-5))
    assert sum(r["level"] == "segment" for r in rows) == len(CLASSES) * int(mask[0].sum())
    assert len([r for r in rows if r["level"] == "event"]) == len(recs[files[0]]["segments"])


def test_chunked_equals_single_pass(model):
    """5000 frames in chunks of 512 (each keeps 11 segments): 15 chunks, incl. a short last one."""
    n = 4999 * 512 + 300
    x = tones_and_noise(n, seed=7)
    full = jax.device_get(model.predict_fn(model.params, {"audio": x[None],
                                                          "num_samples": np.array([n])}))
    scorer = chunked.ChunkedScorer(model.spec, model.params, chunk_frames=512, batch_size=2)
    scorer.add("x", (x[i:i + 100_000] for i in range(0, n, 100_000)))
    (key, pred), = list(scorer.completed()) + list(scorer.flush())
    s = num_segments(5000)
    assert key == "x" and pred.segments.shape == (s, len(CLASSES)) and pred.num_frames == 5000
    np.testing.assert_allclose(pred.segments, full["segments"][0, :s], atol=float_atol(1e-4))
    np.testing.assert_allclose(pred.clip, full["clip"][0], atol=float_atol(1e-4))
    assert np.abs(pred.segments - full["segments"][0, :s]).max() < float_atol(1e-5)
    assert scorer.shapes_compiled <= {512, 128, 192, 288, 432}
    # Short recordings (one chunk, < 128 frames too) go through the same path.
    for m in (20_000,):  # < 128 frames: padded with the floor value like in training
        y = x[:m]
        one = predict.predict_waveform(model, audio.to_int16(y), chunk_frames=512)
        ref = model.predict_fn(model.params, {"audio": audio.to_int16(y)[None],
                                              "num_samples": np.array([m])})
        np.testing.assert_allclose(one.clip, ref["clip"][0], atol=float_atol(1e-5))
        np.testing.assert_allclose(one.segments, ref["segments"][0, :num_segments(1 + m // 512)],
                                   atol=float_atol(1e-5))
    with pytest.raises(ValueError, match="multiple of 32"):
        chunked.ChunkedScorer(model.spec, model.params, chunk_frames=500)


@pytest.mark.parametrize("method,pooling", [("slat", "max"), ("wler", "attention"),
                                            ("wler", "auto_pool")])
def test_slat_and_attention_workdirs(tmp_path, method, pooling):
    m = predict.load_model(make_workdir(tmp_path / method, method, pooling, seed=1))
    assert m.spec.method == method and m.spec.pooling == pooling
    n = 450 * 512
    x = tones_and_noise(n, seed=8)
    full = jax.device_get(m.predict_fn(m.params, {"audio": x[None], "num_samples": np.array([n])}))
    ref = reference_scores(m.spec, m.params, {"audio": x[None], "num_samples": np.array([n])})
    np.testing.assert_allclose(full["clip"], ref["clip"], atol=float_atol(1e-6))
    s = num_segments(451)
    np.testing.assert_allclose(full["segments"][0, :s], ref["segments"][0, :s],
                               atol=float_atol(1e-6))
    pred = predict.predict_waveform(m, x, chunk_frames=256)
    np.testing.assert_allclose(pred.segments, full["segments"][0, :s], atol=float_atol(1e-5))
    np.testing.assert_allclose(pred.clip, full["clip"][0], atol=float_atol(1e-5))


def test_audio_stream_equals_load(tmp_path):
    x = tones_and_noise(3 * 48_000 + 5, seed=9)
    for sr, subtype, name in ((48_000, "PCM_16", "a.flac"), (22_050, "FLOAT", "b.wav"),
                              (SAMPLE_RATE, "PCM_24", "c.wav")):
        stereo = np.stack([x, 0.5 * x[::-1]], 1)[: 3 * sr]
        sf.write(tmp_path / name, stereo, sr, subtype=subtype)
        ref = audio.load(tmp_path / name)
        got = np.concatenate(list(audio.stream(tmp_path / name, block_frames=10_000)))
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-6)
    with pytest.raises(audio.AudioError, match="does not exist"):
        list(audio.stream(tmp_path / "missing.wav"))


def test_thresholds_and_merging_give_known_event_times(tmp_path):
    """A 20 s recording with class 'siren' from 4.0 to 8.0 s: segment scores = the fraction of
    each segment's window the event fills; the CLI's post-processing finds it back."""
    n = 20 * SAMPLE_RATE
    s = num_segments(1 + n // 512)
    start, end = segment_times(s)
    overlap = np.clip(np.minimum(end, 8.0) - np.maximum(start, 4.0), 0, None) / (end - start)
    segs = np.full((s, len(CLASSES)), 0.1, np.float32)
    segs[:, 1] = overlap
    segs[10, 3] = 0.5  # exactly at the threshold: not detected (strictly above counts)
    segs[30:33, 0] = 0.9  # 'dog_bark' in segments 30-32
    pred = chunked.Prediction(clip=segs.max(0), segments=segs, num_samples=n)
    rec = reports.prediction_record("x.wav", pred, CLASSES, threshold=0.5)
    assert [(e["label"]) for e in rec["segments"]] == ["siren", "dog_bark"]
    siren, dog = rec["segments"]
    hop, win = 32 * 512 / SAMPLE_RATE, 128 * 512 / SAMPLE_RATE
    first, last = np.flatnonzero(overlap > 0.5)[[0, -1]]
    assert siren["start"] == pytest.approx(first * hop, abs=1e-6)
    assert siren["end"] == pytest.approx(last * hop + win, abs=1e-6)
    assert siren["start"] <= 4.0 and siren["end"] >= 8.0
    assert dog == {"label": "dog_bark", "start": pytest.approx(30 * hop, abs=1e-6),
                   "end": pytest.approx(32 * hop + win, abs=1e-6), "score": pytest.approx(0.9)}
    cell = 32 * 512 / SAMPLE_RATE
    for median in (1, 3):
        events = reports.detect_file_events(pred, CLASSES, threshold=0.5, median_filter=median,
                                            reduce="mean")
        sirens = [e for e in events if e["label"] == "siren"]
        assert len(sirens) == 1
        assert abs(sirens[0]["start"] - 4.0) <= cell and abs(sirens[0]["end"] - 8.0) <= cell
    tsv = tmp_path / "events.tsv"
    reports.write_events_tsv(str(tsv), [("x.wav", events)])
    lines = tsv.read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    name, on, off, label = lines[1 + [e["label"] for e in events].index("siren")].split("\t")
    assert name == "x.wav" and abs(float(on) - 4.0) <= cell and abs(float(off) - 8.0) <= cell


def test_cli_reports_bad_files_and_writes_the_good_ones(workdir, wav_dir, tmp_path, capsys):
    out, tsv, plots = tmp_path / "out.json", tmp_path / "ev.tsv", tmp_path / "plots"
    code = predict.cli(["predict", f"--workdir={workdir}", f"--output={out}",
                        f"--events_tsv={tsv}", "--median_filter=3", f"--plot={plots}",
                        "--threshold=0.3", "--noprogress", str(wav_dir),
                        str(wav_dir / "missing.wav")])
    assert code == 1
    stderr = capsys.readouterr().err
    result = json.loads(out.read_text())
    good = sorted(os.path.relpath(r["file"], wav_dir) for r in result["results"])
    assert good == ["a.wav", os.path.join("sub", "b.wav")]
    reasons = {os.path.basename(f["file"]): f["reason"] for f in result["failed"]}
    assert set(reasons) == {"corrupt.wav", "empty.flac", "nan.wav", "missing.wav"}
    assert "cannot be decoded" in reasons["corrupt.wav"] and "empty" in reasons["empty.flac"]
    assert "non-finite" in reasons["nan.wav"] and "does not exist" in reasons["missing.wav"]
    assert "4 file(s) failed" in stderr and "corrupt.wav" in stderr.split("failed")[-1]
    for rec in result["results"]:
        assert set(rec) == {"file", "duration", "scores", "segment_scores", "segments"}
        assert all(e["score"] > 0.3 for e in rec["segments"])
    lines = tsv.read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    assert {ln.split("\t")[0] for ln in lines[1:]} <= {"a.wav", os.path.join("sub", "b.wav")}
    pngs = sorted(os.listdir(plots))
    assert pngs == ["a.wav.png", "sub__b.wav.png"]
    assert all(os.path.getsize(plots / p) > 5000 for p in pngs)


def test_cli_exit_code_as_a_program(workdir, wav_dir, tmp_path):
    """`python -m wler_jax.predict`: exit code 1 and the failures listed when files fail."""
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "wler_jax.predict", f"--workdir={workdir}", f"--output={out}",
         str(wav_dir / "corrupt.wav"), str(wav_dir / "missing.wav")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 file(s) failed" in proc.stderr and "missing.wav: file does not exist" in proc.stderr
    result = json.loads(out.read_text())
    assert result["results"] == [] and len(result["failed"]) == 2


def test_usage_snippet_runs(workdir):
    code = predict.USAGE_SNIPPET
    assert '"/path/to/workdir"' in code
    exec(compile(code.replace("/path/to/workdir", workdir), "USAGE_SNIPPET", "exec"), {})


def _python(script: str) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter on the CPU (what it imports is what a user's import does)."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_importing_the_library_defines_no_flags():
    """Flags live in the entry point (`wler_jax/predict/__main__.py`), not in the library."""
    script = ("from absl import flags\n"
              "import wler_jax.predict, wler_jax.export\n"
              "assert not {'workdir', 'threshold', 'output'} & set(flags.FLAGS), list(flags.FLAGS)\n"
              "from wler_jax.predict import __main__\n"
              "assert {'workdir', 'threshold', 'output'} <= set(flags.FLAGS)\n"
              "print('OK')")
    out = _python(script)
    assert "OK" in out.stdout, out.stderr[-3000:]


def test_written_scores_keep_every_float32_value_and_order(tmp_path):
    """Scores in the CLI's JSON/CSV read back as the very float32 the model gave, tiny ones too:
    a fixed 6-decimal rounding tied everything below 5e-7 at 0, which changes AP (it ranks)."""
    rng = np.random.default_rng(0)
    clip = np.array([3e-9, 2.9e-9, 0.5, 0.99999994], np.float32)
    segs = np.concatenate([rng.random((6, 4)), 1e-8 * rng.random((6, 4))]).astype(np.float32)
    pred = chunked.Prediction(clip=clip, segments=segs, num_samples=5 * SAMPLE_RATE)
    names = CLASSES[:4]
    rec = json.loads(json.dumps(reports.prediction_record("x.wav", pred, names)))
    got = np.float32([rec["scores"][c] for c in names])
    np.testing.assert_array_equal(got, clip)  # exact, so 3e-9 > 2.9e-9 stays ranked
    got_segs = np.float32([[s["scores"][c] for c in names] for s in rec["segment_scores"]])
    np.testing.assert_array_equal(got_segs, segs[:len(got_segs)])
    out = tmp_path / "p.csv"
    reports.write_csv(str(out), [rec], [])
    rows = [r for r in csv.DictReader(open(out)) if r["level"] == "clip"]
    np.testing.assert_array_equal(np.float32([float(r["score"]) for r in rows]), clip)


def test_serving_imports_no_training_config_or_data_code():
    """Loading a model to score recordings (predict, its CLI, embeddings, export, HEAR, the web
    server's scorer and page) never imports the training loop, the config module or the dataset
    builders. (wler_jax.serve.app adds only Starlette to these, and the serve entry point only
    predict's modules: its flags would clash with predict's here.)"""
    script = ("import sys\n"
              "import wler_jax.predict, wler_jax.hear, wler_jax.embed, wler_jax.export\n"
              "from wler_jax.predict import __main__\n"
              "from wler_jax.serving import chunked, embeddings, inference, localisation, reports\n"
              "from wler_jax.serve import page, uploads\n"
              "bad = sorted(m for m in sys.modules if m.split('.')[:2] in\n"
              "             (['wler_jax', 'training'], ['wler_jax', 'configs'], ['wler_jax', 'data']))\n"
              "print('OK' if not bad else bad)")
    out = _python(script)
    assert out.stdout.strip() == "OK", out.stdout + out.stderr[-3000:]
