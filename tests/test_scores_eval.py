"""Issue 32: score tables (predict --scores_dir), the evaluation CLI, calibrated thresholds and
the model card, on a random-parameter workdir and on a trained smoke workdir."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from wler_jax import predict
from wler_jax.evaluate import __main__ as evaluate_cli
from wler_jax.evaluate import scoring
from wler_jax.geometry import SAMPLE_RATE
from wler_jax.serving import localisation, reports
from wler_jax.training import calibration
from conftest import tones_and_noise
from test_predict import CLASSES, make_workdir
from test_train import run_main


@pytest.fixture(scope="module")
def random_workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("w32_random"))


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("w32_audio")
    os.makedirs(d / "sub")
    sf.write(d / "a.wav", tones_and_noise(4 * SAMPLE_RATE + 300, seed=1), SAMPLE_RATE,
             subtype="FLOAT")
    sf.write(d / "sub" / "b.wav", tones_and_noise(SAMPLE_RATE // 2, seed=2), SAMPLE_RATE,
             subtype="FLOAT")  # shorter than one segment window
    return d


def test_score_tables_are_what_sed_scores_eval_reads(random_workdir, audio_dir, tmp_path):
    from sed_scores_eval.base_modules.io import read_sed_scores

    out, scores_dir = tmp_path / "p.json", tmp_path / "scores"
    assert predict.cli(["predict", f"--workdir={random_workdir}", str(audio_dir),
                        f"--output={out}", f"--scores_dir={scores_dir}", "--noprogress"]) == 0
    assert sorted(os.listdir(scores_dir)) == ["a.tsv", "sub__b.tsv"]
    tables = read_sed_scores(str(scores_dir))  # the maintained reader, whole folder
    records = {os.path.basename(r["file"]): r for r in json.load(open(out))["results"]}
    model = predict.load_model(random_workdir)
    for rid, wav in (("a", "a.wav"), ("sub__b", "b.wav")):
        frame = tables[rid]
        assert list(frame.columns) == ["onset", "offset", *CLASSES]
        on, off = frame["onset"].to_numpy(), frame["offset"].to_numpy()
        np.testing.assert_array_equal(off[:-1], on[1:])  # gapless, non-overlapping
        assert on[0] == 0.0 and np.all(off > on)
        rec = records[wav]
        assert off[-1] == pytest.approx(rec["duration"], abs=1e-6)
        # The same scores as the JSON output: each row is the max of the JSON's segment scores
        # whose window covers the row (grid_scores), exactly in float32.
        segs = np.array([[s["scores"][c] for c in CLASSES] for s in rec["segment_scores"]])
        n = int(round(rec["duration"] * SAMPLE_RATE))
        want = localisation.grid_scores(segs, 1 + n // 512, duration=n / SAMPLE_RATE)
        np.testing.assert_array_equal(frame[CLASSES].to_numpy(np.float32),
                                      want[2].astype(np.float32))
        np.testing.assert_allclose(on, want[0], atol=1e-12)
        pred = predict.predict_file(model, str(audio_dir / ("sub" if rid != "a" else "") / wav))
        np.testing.assert_allclose(frame[CLASSES].to_numpy(),
                                   reports.score_table(pred)[2], atol=1e-6)


def test_per_class_thresholds_cut_each_class_at_its_own():
    probs = np.array([[0.6, 0.3], [0.7, 0.35], [0.2, 0.1]])
    names = ["x", "y"]
    assert [e["label"] for e in localisation.merge_segments(probs, names, 0.5)] == ["x"]
    events = localisation.merge_segments(probs, names, {"x": 0.65, "y": 0.25})
    assert sorted(e["label"] for e in events) == ["x", "y"]
    x, = [e for e in events if e["label"] == "x"]
    assert x["start"] == pytest.approx(32 * 512 / SAMPLE_RATE)  # only segment 1 is > 0.65
    with pytest.raises(ValueError, match="not for"):
        localisation.class_thresholds({"x": 0.5}, names)


def test_clip_metrics_against_definitions():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 4)) < 0.35).astype(int)
    labels[0] = 0  # a clip without labels: no weight in lwlrap
    scores = np.clip(labels * 0.3 + rng.random((40, 4)) * 0.8, 0, 1)
    m = scoring.clip_metrics(labels, scores, list("abcd"), thresholds=0.5)
    # lwlrap by its definition: every (clip, positive label) pair weighs the same; its
    # precision is the share of positives among the labels ranked at or above it.
    precisions = []
    for i in range(len(labels)):
        for c in np.flatnonzero(labels[i]):
            above = scores[i] >= scores[i, c]
            precisions.append(labels[i][above].sum() / above.sum())
    assert m["lwlrap"] == pytest.approx(np.mean(precisions))
    from scipy.stats import norm
    assert m["d_prime"] == pytest.approx(np.sqrt(2) * norm.ppf(m["roc_auc"]))
    c = 2
    tp = np.sum((scores[:, c] > 0.5) & (labels[:, c] == 1))
    f1 = 2 * tp / ((scores[:, c] > 0.5).sum() + labels[:, c].sum())
    assert m["clip_f1_per_class"]["c"] == pytest.approx(f1)


def test_best_clip_threshold_separates_and_lies_between_scores():
    labels = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    t, f1 = calibration.best_clip_threshold(labels, scores)
    # candidates: >0.25 gives P 3/4 R 1 (F1 .857); >0.35 gives P 1 R 2/3 (F1 .8)
    assert f1 == pytest.approx(6 / 7) and 0.2 < t < 0.3 and t == pytest.approx(0.25)


def _write_eval_inputs(tmp_path, rows):
    gt = tmp_path / "gt.tsv"
    gt.write_text("filename\tonset\toffset\tevent_label\n" + "".join(rows))
    return gt


def test_evaluate_cli_names_bad_inputs_in_one_line(random_workdir, audio_dir, tmp_path, capsys):
    scores_dir = tmp_path / "scores"
    predict.cli(["predict", f"--workdir={random_workdir}", str(audio_dir),
                 f"--output={tmp_path / 'p.json'}", f"--scores_dir={scores_dir}", "--noprogress"])
    capsys.readouterr()
    cases = [(["a.wav\t0.5\t1.5\tsiren\n", "missing.wav\t0.1\t0.2\tsiren\n"], "missing"),
             (["a.wav\t0.5\t1.5\tlaughter\n"], "laughter"),
             (["a.wav\t1.5\t0.5\tsiren\n"], "onset < offset")]
    for rows, needle in cases:
        gt = _write_eval_inputs(tmp_path, rows)
        with pytest.raises(SystemExit) as e:
            evaluate_cli.cli(["evaluate", f"--scores_dir={scores_dir}", f"--ground_truth={gt}"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        line, = err.strip().splitlines()
        assert line.startswith("error: ") and needle in line and "Traceback" not in err
    # a good ground truth: the table and the JSON
    gt = _write_eval_inputs(tmp_path, ["a.wav\t0.5\t2.5\tsiren\n", "sub/b.wav\t\t\t\n"])
    out = tmp_path / "m.json"
    assert evaluate_cli.cli(["evaluate", f"--scores_dir={scores_dir}", f"--ground_truth={gt}",
                             f"--output={out}"]) == 0
    m = json.load(open(out))
    assert m["files"] == 2 and m["localisation"]["evaluated_classes"] == ["siren"]
    for key in ("psds1", "psds2", "segment_f1", "event_f1"):
        assert 0.0 <= m["localisation"][key] <= 1.0
    assert "PSDS2" in capsys.readouterr().out


# ------------------------------------------------------------- a trained workdir (subprocess)

@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_runs):
    workdir = str(tmp_path_factory.mktemp("w32_trained"))
    proc = run_main(shared_runs, workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir


@pytest.mark.slow
def test_training_ends_with_thresholds_card_and_calibrated_results(trained):
    results = json.load(open(os.path.join(trained, "results.json")))
    fit = json.load(open(os.path.join(trained, predict.THRESHOLDS_FILE)))
    names = results["class_names"]
    assert sorted(fit["thresholds"]) == sorted(names)
    assert set(fit["criterion"].values()) <= {"segment_f1", "clip_f1", "fixed"}
    for split in ("validation", "test"):
        cal = results[split]["calibration"]
        # F1 at the fixed threshold is the figure training reported at 0.5
        assert cal["segment_f1_fixed"] == pytest.approx(
            results[split]["localisation"]["segment_f1"])
        for key in ("clip_f1_fitted", "segment_f1_fitted", "clip_f1_fixed"):
            assert 0.0 <= cal[key] <= 1.0
    # fitted on validation: every class fitted on segment F1 reaches there at least its F1 at 0.5
    # (0.5 is one of the thresholds the search considered), so the macro F1 cannot drop
    val = results["validation"]["calibration"]
    if set(fit["criterion"].values()) == {"segment_f1"}:
        assert val["segment_f1_fitted"] >= val["segment_f1_fixed"] - 1e-9
    card = open(os.path.join(trained, predict.MODEL_CARD_FILE)).read()
    for needle in ("## Data", "## Recipe", "## Results", "## Calibrated thresholds",
                   "## Known limits", "44100 Hz", "95 % interval", names[0],
                   f"{results['test']['mAP']:.3f}", "Training clips were"):
        assert needle in card, needle
    # post hoc on the finished workdir: the same thresholds (scores and search deterministic)
    again = calibration.finish_workdir(trained)
    assert again["thresholds"]["thresholds"] == pytest.approx(fit["thresholds"])


@pytest.mark.slow
def test_evaluate_cli_reproduces_results_json(trained, tmp_path):
    from wler_jax.evaluate.split_export import export_split

    out = export_split(trained, "test", str(tmp_path))
    scores_dir, preds = tmp_path / "scores", tmp_path / "predictions.json"
    assert predict.cli(["predict", f"--workdir={trained}", out["audio"], f"--output={preds}",
                        f"--scores_dir={scores_dir}", "--threshold=0.5", "--noprogress"]) == 0
    metrics = tmp_path / "metrics.json"
    assert evaluate_cli.cli([
        "evaluate", f"--scores_dir={scores_dir}", f"--ground_truth={out['events']}",
        f"--durations={out['durations']}", f"--weak_labels={out['labels']}",
        f"--clip_scores={preds}", f"--output={metrics}"]) == 0
    got = json.load(open(metrics))
    want = json.load(open(os.path.join(trained, "results.json")))["test"]
    assert got["mAP"] == pytest.approx(want["mAP"], abs=1e-6)
    assert got["AP"] == pytest.approx(want["AP"], abs=1e-6)
    assert got["mAP_ci95"] == pytest.approx(want["mAP_ci95"], abs=1e-6)
    for key in ("segment_f1", "psds1", "psds2"):
        assert got["localisation"][key] == pytest.approx(want["localisation"][key], abs=1e-6)
    for key in ("roc_auc", "d_prime", "lwlrap", "clip_f1"):
        assert np.isfinite(got[key])


@pytest.mark.slow
def test_predict_uses_fitted_thresholds_unless_told(trained, audio_dir, tmp_path):
    fit = json.load(open(os.path.join(trained, predict.THRESHOLDS_FILE)))["thresholds"]
    model = predict.load_model(trained)
    assert model.thresholds == pytest.approx(fit)
    for extra, want in (([], fit), (["--threshold=0.5"], 0.5)):
        out = tmp_path / "p.json"
        assert predict.cli(["predict", f"--workdir={trained}", str(audio_dir / "a.wav"),
                            f"--output={out}", "--noprogress", *extra]) == 0
        data = json.load(open(out))
        assert data["threshold"] == pytest.approx(want)
        rec, = data["results"]
        cut = localisation.class_thresholds(want, data["class_names"])
        probs = np.array([[s["scores"][c] for c in data["class_names"]]
                          for s in rec["segment_scores"]])
        detected = {data["class_names"][c] for c in np.flatnonzero((probs > cut).any(0))}
        assert {e["label"] for e in rec["segments"]} == detected
