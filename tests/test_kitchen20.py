"""The Kitchen20 benchmark's build: sources never cross splits, no test audio in training
recordings, test backgrounds only under the test recordings, labels that match the events.

The fixture corpus gives every source its own tone frequency and every background its own
signature, so what went into a written recording can be read back from its spectrum."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from wler_jax import errors
from wler_jax.data import kitchen20

SR = 44_100
CLASSES = ("blender", "drawer", "peel")
NUM_SOURCES = 12
TEST_TONE = 15_000.0  # Hz: the signature of the test background
BG_SECONDS = 61  # longer than any recording: a looped noise would put lines in every band


def _source_freq(k: int) -> float:
    return 600.0 + 450.0 * k


def _fixture(root) -> tuple[str, str, str]:
    """A Kitchen20-like tree (2 clips per source, 1 s: a 0.5-s tone then silence) and two
    background folders: white noise for training, white noise + a 15 kHz tone for test."""
    src = root / "k20"
    (src / "audio").mkdir(parents=True)
    t = np.arange(SR) / SR
    rows = []
    for k in range(NUM_SOURCES):
        for take in range(2):
            wave = np.zeros(SR)  # a Hann-shaped tone: no spectral splatter onto other sources
            wave[:SR // 2] = 0.3 * np.hanning(SR // 2) * np.sin(
                2 * np.pi * _source_freq(k) * t[:SR // 2])
            name = f"audio/{k}-src{k}-{take}.wav"
            sf.write(src / name, wave.astype(np.float32), SR)
            rows.append({"category": CLASSES[k % 3], "fold": 1, "path": name, "take": take,
                         "target": k % 3, "usr_id": f"src{k}"})
    with open(src / "kitchen20.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rng = np.random.default_rng(0)
    train_bg, test_bg = root / "bg_train", root / "bg_test"
    train_bg.mkdir()
    test_bg.mkdir()
    for i in range(2):
        sf.write(train_bg / f"noise{i}.wav", 0.01 * rng.standard_normal(BG_SECONDS * SR), SR)
    tb = np.arange(BG_SECONDS * SR) / SR
    sf.write(test_bg / "tone.wav", 0.01 * rng.standard_normal(BG_SECONDS * SR)
             + 0.02 * np.sin(2 * np.pi * TEST_TONE * tb), SR)
    return str(src), str(train_bg), str(test_bg)


def _tones(path: str) -> set[float]:
    """The fixture frequencies (source tones and the test tone) present in a recording."""
    x, sr = sf.read(path)
    spec = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    floor = np.median(spec)
    peaks = {f: spec[(freqs > f - 20) & (freqs < f + 20)].max()
             for f in [_source_freq(k) for k in range(NUM_SOURCES)] + [TEST_TONE]}
    top = max(peaks.values())
    return {f for f, p in peaks.items() if p > 30 * floor and p > 0.02 * top}


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitchen20")
    src, train_bg, test_bg = _fixture(root)
    out = str(root / "build")
    manifest = kitchen20.build(src, train_bg, test_bg, out, split_seed=3, num_weak=10,
                               num_mixtures=8)
    return out, manifest


def test_sources_never_cross_splits_and_every_split_is_used(build):
    out, manifest = build
    side: dict[str, set] = {}
    for r in _rows(os.path.join(out, "clips.csv")):
        side.setdefault(r["source"], set()).add(r["split"])
    assert all(len(s) == 1 for s in side.values()), side
    assert {next(iter(s)) for s in side.values()} == {"train", "validation", "test"}
    assert sum(manifest["clips"].values()) == 2 * NUM_SOURCES
    assert manifest["weak"] == {"train": 10, "validation": 2}


def test_recordings_hold_only_their_splits_sources_and_backgrounds(build):
    out, _ = build
    freq_split = {}
    for r in _rows(os.path.join(out, "clips.csv")):
        k = int(r["source"][3:])
        freq_split[_source_freq(k)] = r["split"]
    heard = {"train": set(), "validation": set(), "test": set()}
    checks = [("weak_train", "train"), ("weak_validation", "validation"),
              ("mixtures", "test"), ("mixtures_val", "validation")]
    for folder, split in checks:
        for name in sorted(os.listdir(os.path.join(out, folder))):
            tones = _tones(os.path.join(out, folder, name))
            assert (TEST_TONE in tones) == (folder == "mixtures"), (folder, name)
            events = tones - {TEST_TONE}
            assert {freq_split[f] for f in events} <= {split}, (folder, name, events)
            heard[split] |= events
    assert heard["train"] and heard["test"]  # the check saw events at all


def test_labels_are_the_union_of_the_placed_events(build):
    out, _ = build
    for name in ("mixtures", "mixtures_val"):
        events: dict[str, set] = {}
        with open(os.path.join(out, f"{name}_events.tsv")) as f:
            for row in list(csv.reader(f, delimiter="\t"))[1:]:
                events.setdefault(row[0], set()).add(row[3])
        rows = _rows(os.path.join(out, f"{name}.csv"))
        assert len(rows) == (8 if name == "mixtures" else 4)
        for r in rows:
            assert set(filter(None, r["labels"].split(";"))) == events[os.path.basename(r["path"])]
    weak = _rows(os.path.join(out, "weak.csv"))
    assert {r["split"] for r in weak} == {"train", "validation", "test"}
    assert all(r["labels"] in CLASSES for r in weak if r["split"] == "test")  # the clip test split


def test_the_build_is_reused_and_a_shared_background_is_refused(build, tmp_path):
    out, manifest = build
    p = manifest["params"]
    stamp = os.path.getmtime(os.path.join(out, "weak.csv"))
    again = kitchen20.build("/nonexistent", p["backgrounds"], p["test_backgrounds"], out,
                            split_seed=3, num_weak=10, num_mixtures=8)
    assert again == manifest and os.path.getmtime(os.path.join(out, "weak.csv")) == stamp
    with pytest.raises(errors.DataError, match="none of the same file"):
        kitchen20.build("/nonexistent", p["backgrounds"], p["backgrounds"], str(tmp_path))
    with pytest.raises(errors.DataError, match="kitchen20.csv"):
        kitchen20.build(str(tmp_path), p["backgrounds"], p["test_backgrounds"],
                        str(tmp_path / "b"))


def _sweep(path, seeds, *, overrides=("model.width=0.25",), train_set="clips"):
    runs = [{"method": "wler", "seed": s, "test_mAP": 0.5 + 0.01 * s,
             "validation_mAP": 0.4 + 0.01 * s, "long_tagging": {"mAP": 0.3 + 0.02 * s},
             "long_val_tagging": {"mAP": 0.35}} for s in seeds]
    with open(path, "w") as f:
        json.dump({"config_file": "configs/experiments/real_office.py:folder,cpu",
                   "overrides": list(overrides), "args": {"train_set": train_set},
                   "runs": runs}, f)
    return str(path)


def test_seed_summary_joins_runs_apart_and_sets_them_beside_the_baseline(tmp_path):
    from wler_jax.analysis.seed_summary import merge
    baseline = tmp_path / "base.json"
    with open(baseline, "w") as f:
        json.dump({"settings": {"clips": {"clip_test": {"mAP": 0.45, "mAP_ci95": [0.4, 0.5]},
                                          "long_tagging": {"mAP": 0.32, "mAP_ci95": [0.3, 0.4]}},
                                "weak": {}}}, f)
    a, b = _sweep(tmp_path / "a.json", [0]), _sweep(tmp_path / "b.json", [1, 2])
    out = merge([a, b], str(baseline), "clips")
    s = out["summary"]["wler"]
    assert s["seeds"] == [0, 1, 2] and s["clip_test"]["n"] == 3
    assert s["clip_test"]["mean"] == pytest.approx(0.51)
    assert s["clip_test_minus_baseline"]["per_seed"] == pytest.approx([0.05, 0.06, 0.07])
    assert s["clip_test_minus_baseline"]["above_every_seed"]
    assert s["long_test_minus_baseline"]["per_seed"] == pytest.approx([-0.02, 0.0, 0.02])
    assert not s["long_test_minus_baseline"]["above_every_seed"]
    lo, hi = s["clip_test"]["ci95"]
    assert lo < 0.51 < hi
    with pytest.raises(errors.DataError, match="seed 0 is in two files"):
        merge([a, a], str(baseline), "clips")
    other = _sweep(tmp_path / "c.json", [3], overrides=("model.width=0.5",))
    with pytest.raises(errors.DataError, match="differs"):
        merge([a, other], None, "clips")
    with pytest.raises(errors.DataError, match="not --train_set='weak'"):
        merge([a], None, "weak")


def test_calibration_ab_pairs_fitted_and_fixed_thresholds_over_runs(tmp_path):
    from wler_jax.analysis.seed_summary import calibration_ab
    build = tmp_path / "build"
    os.makedirs(build)
    with open(build / "mixtures.csv", "w") as f:
        f.write("path,labels\nmixtures/a.wav,x\nmixtures/b.wav,y\nmixtures/c.wav,x;y\n")
    workdirs = []
    for seed, cut in ((0, 0.25), (1, 0.75)):
        w = tmp_path / f"run{seed}"
        os.makedirs(w)
        with open(w / "results.json", "w") as f:
            json.dump({"test": {"calibration": {"clip_f1_fixed": 0.5,
                                                "clip_f1_fitted": 0.6 - 0.2 * seed}}}, f)
        with open(w / "thresholds.json", "w") as f:
            json.dump({"thresholds": {"x": cut, "y": cut}}, f)
        # x scores 0.3 where present, 0.1 elsewhere: found at 0.25, missed at 0.5 and 0.75
        pred = {"class_names": ["x", "y"], "failed": [], "results": [
            {"file": "a.wav", "scores": {"x": 0.3, "y": 0.1}},
            {"file": "b.wav", "scores": {"x": 0.1, "y": 0.9}},
            {"file": "c.wav", "scores": {"x": 0.3, "y": 0.9}}]}
        with open(w / "mixtures_predictions.json", "w") as f:
            json.dump(pred, f)
        workdirs.append(str(w))
    out = calibration_ab(workdirs, str(build))
    first, second = out["runs"]
    assert first["long_f1_fixed"] == pytest.approx(0.5)  # x: F1 0, y: F1 1
    assert first["long_f1_fitted"] == pytest.approx(1.0)  # both found at 0.25
    assert second["long_f1_fitted"] == pytest.approx(0.5)  # at 0.75: as at 0.5
    d = out["summary"]["long_f1"]["fitted_minus_fixed"]
    assert d["per_seed"] == pytest.approx([0.5, 0.0]) and not d["better_every_seed"]
    assert out["summary"]["clip_f1"]["fitted_minus_fixed"]["per_seed"] == pytest.approx([0.1, -0.1])
