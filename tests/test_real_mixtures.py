"""The real benchmark (`python -m bench.real_mixtures`) on a tiny fake SASED tree (generated tones,
no real audio): its build (`wler_jax.data.sased`, `wler_jax.data.mixtures`), its run naming and
sweep summaries (`wler_jax.analysis.real_sweeps`) and paired runs (`wler_jax.analysis.paired`).

Checks the source matching (monophonic scenes by order, polyphonic by duration), the grouped
clip split (no source on two sides) and the long mixtures' tables (weak labels = the TSV's
events, events inside the recording, drawn from test sources only).
"""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from wler_jax import errors
from wler_jax.analysis import paired, real_sweeps
from wler_jax.configs import recipes
from wler_jax.data import mixtures, sased

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_OFFICE = os.path.join(REPO, "configs", "experiments", "real_office.py")

SR = 44_100
CLASSES = ("cough", "doorslam", "keysDrop", "phone")


def _tone(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.25 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def match(x: np.ndarray, w: np.ndarray) -> float:
    """Peak normalised cross-correlation of waveform `w` inside `x` (1: `w` is in `x` as is)."""
    from scipy.signal import fftconvolve

    corr = fftconvolve(x, w[::-1], mode="valid")
    energy = np.sqrt(fftconvolve(x ** 2, np.ones_like(w), mode="valid").clip(1e-12))
    return float(np.max(np.abs(corr) / (energy * np.linalg.norm(w))))


def _fake_sased(root: str) -> dict:
    """data/train/sound (5 files per class, distinct durations), two scenes x two EBRs of
    segments with their annotation and wav_files lists. Returns {segment file: true source}."""
    data = os.path.join(root, "data")
    iso = {}
    for c_i, c in enumerate(CLASSES):
        for k in range(5):
            name = f"{c}{10 * c_i + k:03d}.wav"
            dur = 0.3 + 0.11 * k + 0.02 * c_i
            path = os.path.join(data, "train", "sound", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sf.write(path, _tone(dur, 10 * c_i + k), SR, subtype="PCM_16")
            iso[name] = dur
    # Monophonic scene: list in annotation order. Polyphonic: list grouped by class, the
    # annotation in onset order, so same-class events must be matched by duration.
    mono = ["cough000.wav", "phone032.wav", "doorslam011.wav", "keysDrop022.wav"]
    poly_list = ["cough001.wav", "cough003.wav", "doorslam012.wav", "phone030.wav",
                 "phone034.wav"]
    poly_order = ["phone034.wav", "cough003.wav", "phone030.wav", "doorslam012.wav",
                  "cough001.wav"]
    truth = {}
    for scene, listed, order in (("dev_1_ebr_{}_nec_1_poly_0", mono, mono),
                                 ("dev_1_ebr_{}_nec_3_poly_1", poly_list, poly_order)):
        for ebr in (-6, 6):
            name = scene.format(ebr)
            lines, t = [], 0.5
            for k, w in enumerate(order):
                label = sased.class_of(w)
                label = "keys" if label == "keysDrop" else label
                lines.append(f"{t:.2f}\t{t + iso[w]:.2f}\t{label}")
                seg = os.path.join(data, "val", "segments", f"{name}_{label}_{k:02d}.wav")
                os.makedirs(os.path.dirname(seg), exist_ok=True)
                sf.write(seg, _tone(iso[w], 99 + k), SR, subtype="PCM_16")
                truth[seg] = os.path.splitext(w)[0]
                t += iso[w] + 1.0
            for sub, text in (("annotation", lines), ("wav_files", listed)):
                path = os.path.join(data, "val", sub, name + ".txt")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("\n".join(text) + "\n")
    return truth


def test_sources_are_matched_and_splits_are_grouped(tmp_path):
    truth = _fake_sased(str(tmp_path / "sased"))
    clips, facts = sased.scan_corpus(sased.find_root(str(tmp_path / "sased")))
    assert facts["matched_by_order"] == 8 and facts["matched_by_duration"] == 10
    assert facts["merged_ambiguous"] == 0 and facts["max_match_error_s"] < 0.01
    by_path = {k.path: k for k in clips}
    for seg, source in truth.items():
        assert by_path[seg].source == source and by_path[seg].kind == "segment"
    assert sum(k.kind == "isolated" for k in clips) == 20
    splits = sased.split_sources(clips, seed=0)
    again = sased.split_sources(list(reversed(clips)), seed=0)
    assert splits == again
    # Per class: 5 sources -> 1 test, 1 validation, 3 train.
    for c in CLASSES:
        got = [splits[s] for s in sorted({k.source for k in clips if k.label == c})]
        assert sorted(got) == ["test", "train", "train", "train", "validation"]
    counts = sased.write_clips_csv(str(tmp_path / "clips.csv"), clips, splits)
    assert sum(counts.values()) == len(clips)
    with open(tmp_path / "clips.csv") as f:
        rows = list(csv.DictReader(f))
    assert len({r["path"] for r in rows}) == len(rows) == len(clips)
    where = {}
    for r in rows:
        where.setdefault(r["source"], set()).add(r["split"])
    assert all(len(s) == 1 for s in where.values())  # no source straddles two splits


def test_build_writes_mixtures_from_test_sources_with_consistent_tables(tmp_path):
    _fake_sased(str(tmp_path / "sased"))
    out = str(tmp_path / "bench")
    manifest = mixtures.build(str(tmp_path / "sased"), out, num_mixtures=3)
    assert manifest["mixtures"]["count"] == 3
    with open(os.path.join(out, "clips.csv")) as f:
        clip_rows = list(csv.DictReader(f))
    test_files = {os.path.basename(r["path"]) for r in clip_rows
                  if r["split"] == "test" and r["kind"] == "isolated"}
    with open(os.path.join(out, "mixtures.csv")) as f:
        mixes = list(csv.DictReader(f))
    events = mixtures.read_events_tsv(os.path.join(out, "mixtures_events.tsv"))
    with open(os.path.join(out, "mixtures_events.tsv")) as f:
        assert f.readline() == "filename\tonset\toffset\tevent_label\n"
    assert len(mixes) == 3
    for m in mixes:
        name = os.path.basename(m["path"])
        x, sr = sf.read(os.path.join(out, m["path"]))
        assert sr == SR and abs(len(x) / SR - float(m["duration"])) < 1e-4
        assert 10.0 <= len(x) / SR <= 60.0 and np.abs(x).max() <= 1.0
        evs = events[name]
        assert 1 <= len(evs) <= 4
        assert sorted({e[2] for e in evs}) == sorted(m["labels"].split(";"))
        assert all(0 <= on < off <= len(x) / SR + 1e-3 for on, off, _ in evs)
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["mixture_event_pool"] == len(test_files)
    # Events come from test sources only (the builder records the files it mixed).
    records = mixtures.make_mixtures([k for k in sased.scan_corpus(sased.find_root(
        str(tmp_path / "sased")))[0] if os.path.basename(k.path) in test_files],
        str(tmp_path / "again"), 3, 0)
    assert all(e[3] in test_files for r in records for e in r["events"])
    assert [r["labels"] for r in records] == [m["labels"].split(";") for m in mixes]
    # Validation mixtures: same recipe, from validation sources only, other recordings.
    val_files = {os.path.basename(r["path"]) for r in clip_rows
                 if r["split"] == "validation" and r["kind"] == "isolated"}
    with open(os.path.join(out, "mixtures_val.csv")) as f:
        val_mixes = list(csv.DictReader(f))
    assert len(val_mixes) == 3 and manifest["val_mixtures"]["event_pool"] == len(val_files)
    assert all(m["path"].startswith("mixtures_val/") for m in val_mixes)
    val_records = mixtures.make_mixtures([k for k in sased.scan_corpus(sased.find_root(
        str(tmp_path / "sased")))[0] if os.path.basename(k.path) in val_files],
        str(tmp_path / "again_val"), 3, manifest["val_mixtures"]["seed"])
    assert all(e[3] in val_files for r in val_records for e in r["events"])
    assert [r["labels"] for r in val_records] == [m["labels"].split(";") for m in val_mixes]
    assert not np.allclose(sf.read(os.path.join(out, val_mixes[0]["path"]))[0][:1000],
                           sf.read(os.path.join(out, mixes[0]["path"]))[0][:1000])
    # Same parameters: reused, not rebuilt.
    assert mixtures.build(str(tmp_path / "sased"), out, num_mixtures=3) == manifest
    # A build from before the validation mixtures gains them and keeps its other files.
    before = os.stat(os.path.join(out, "mixtures", "mix_000.wav")).st_mtime_ns
    del manifest["val_mixtures"]
    shutil.rmtree(os.path.join(out, "mixtures_val"))
    os.remove(os.path.join(out, "mixtures_val.csv"))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    again = mixtures.build(str(tmp_path / "sased"), out, num_mixtures=3)
    assert again["val_mixtures"]["count"] == 3
    assert os.path.isfile(os.path.join(out, "mixtures_val.csv"))
    assert os.stat(os.path.join(out, "mixtures", "mix_000.wav")).st_mtime_ns == before


def test_weak_training_set_adds_events_in_context_and_negatives_from_train_and_validation(
        tmp_path):
    _fake_sased(str(tmp_path / "sased"))
    out = str(tmp_path / "bench")
    manifest = mixtures.build(str(tmp_path / "sased"), out, num_mixtures=1, train_mixtures=0.0)
    with open(os.path.join(out, "clips.csv")) as f:
        clip_rows = list(csv.DictReader(f))
    with open(os.path.join(out, "weak.csv")) as f:
        weak_rows = list(csv.DictReader(f))
    assert weak_rows[:len(clip_rows)] == clip_rows  # every clip, unchanged, test split included
    extra = weak_rows[len(clip_rows):]
    split_of = {r["source"]: r["split"] for r in clip_rows}
    label_of = {r["source"]: r["labels"] for r in clip_rows}
    iso = {s: sum(r["kind"] == "isolated" and r["split"] == s for r in clip_rows)
           for s in ("train", "validation")}
    for split in ("train", "validation"):
        mine = [r for r in extra if r["split"] == split]
        context = [r for r in mine if r["kind"] == "context"]
        background = [r for r in mine if r["kind"] == "background"]
        assert len(context) == iso[split] and len(mine) == len(context) + len(background)
        assert len(background) == round(mixtures.NEGATIVE_FRACTION * iso[split])
        for r in context:  # the event's own source, class and split: nothing crosses splits
            assert split_of[r["source"]] == split and label_of[r["source"]] == r["labels"]
        for r in background:
            assert r["labels"] == "" and r["source"] not in split_of
    assert not any(r["split"] == "test" for r in extra)
    for r in extra:
        x, sr = sf.read(r["path"])
        lo, hi = mixtures.CONTEXT_SECONDS
        assert sr == SR and lo <= len(x) / SR <= hi
        assert np.abs(x).max() <= 1.0
    # Each context recording holds its source's event: the event's waveform is found in it by
    # normalised cross-correlation (a background-only recording does not match it).
    iso_path = {r["source"]: r["path"] for r in clip_rows if r["kind"] == "isolated"}
    bg = sf.read([r for r in extra if r["kind"] == "background"][0]["path"])[0]
    for r in [r for r in extra if r["kind"] == "context"][:4]:
        w = sf.read(iso_path[r["source"]])[0]
        assert match(sf.read(r["path"])[0], w) > 0.3 > 0.1 > match(bg, w)  # EBR -6 dB: ~0.45
    assert manifest["clip_counts"]["train/context"] == iso["train"]


def test_weak_mixtures_are_long_weakly_labelled_and_made_of_their_splits_events(tmp_path):
    """--train_mixtures adds recordings made as the long test mixtures, from the train and the
    validation split's own isolated events (never a test event), labelled with their classes;
    the default build has none and is otherwise the same."""
    _fake_sased(str(tmp_path / "sased"))
    plain, mixed = str(tmp_path / "plain"), str(tmp_path / "mixed")
    mixtures.build(str(tmp_path / "sased"), plain, num_mixtures=1, train_mixtures=0.0)
    manifest = mixtures.build(str(tmp_path / "sased"), mixed, num_mixtures=1, train_mixtures=0.5)
    rows = {}
    for out in (plain, mixed):
        with open(os.path.join(out, "weak.csv")) as f:
            rows[out] = list(csv.DictReader(f))
    extra = [r for r in rows[mixed] if r["kind"] == "mixture"]
    assert not any(r["kind"] == "mixture" for r in rows[plain])

    def rel(rs: list[dict], out: str) -> list[dict]:
        return [{**r, "path": os.path.relpath(r["path"], out)} for r in rs]

    assert (rel([r for r in rows[mixed] if r["kind"] != "mixture"], mixed)
            == rel(rows[plain], plain))
    iso = [r for r in rows[plain] if r["kind"] == "isolated"]
    for split in ("train", "validation"):
        mine = [r for r in extra if r["split"] == split]
        assert len(mine) == round(0.5 * sum(r["split"] == split for r in iso)) > 0
        assert manifest["clip_counts"][f"{split}/mixture"] == len(mine)
    assert not any(r["split"] == "test" for r in extra)

    # A build from before the option (its manifest does not name it) had no mixtures: it is
    # reused as such, and rebuilt for the default.
    with open(os.path.join(plain, "manifest.json")) as f:
        old = json.load(f)
    del old["params"]["train_mixtures"]
    with open(os.path.join(plain, "manifest.json"), "w") as f:
        json.dump(old, f)
    before = os.stat(os.path.join(plain, "weak.csv")).st_mtime_ns
    mixtures.build(str(tmp_path / "sased"), plain, num_mixtures=1, train_mixtures=0.0)
    assert os.stat(os.path.join(plain, "weak.csv")).st_mtime_ns == before
    assert mixtures.build(str(tmp_path / "sased"), plain, num_mixtures=1)["params"][
        "train_mixtures"] == mixtures.TRAIN_MIXTURES > 0
    with open(os.path.join(plain, "weak.csv")) as f:
        assert any(r["kind"] == "mixture" for r in csv.DictReader(f))
    # Runs trained on a build are never silently paired with another build of the same folder.
    os.makedirs(os.path.join(plain, "runs", "weak"))
    for rebuild in (False, True):
        with pytest.raises(mixtures.BuildMismatch, match="runs trained on another build"):
            mixtures.build(str(tmp_path / "sased"), plain, num_mixtures=1, train_mixtures=0.0,
                     rebuild=rebuild)
    mixtures.build(str(tmp_path / "sased"), plain, num_mixtures=1)  # its own build: reused

    for r in extra[:3]:
        x, sr = sf.read(r["path"])
        assert sr == SR and mixtures.MIX_SECONDS[0] <= len(x) / SR <= mixtures.MIX_SECONDS[1]
        labels = r["labels"].split(";")
        assert 1 <= len(labels) <= mixtures.EVENTS_PER_MIX[1] and labels == sorted(set(labels))
        for k in iso:  # each labelled class is heard from the row's own split, no test event
            if k["split"] == "test":
                assert match(x, sf.read(k["path"])[0]) < 0.1
        for label in labels:
            assert max(match(x, sf.read(k["path"])[0]) for k in iso
                       if k["split"] == r["split"] and k["labels"] == label) > 0.3


def _sweep(path, seeds, overrides=(), methods=("slat", "wler"), offset=0.0):
    """A sweep JSON as `--train` writes it, with made-up figures (wler = slat + 0.1 * seed)."""
    runs = []
    for s in seeds:
        for m in methods:
            v = 0.5 + offset + (0.1 * s if m == "wler" else 0.0)
            runs.append({"method": m, "seed": s, "validation_mAP": v, "test_mAP": v,
                         "long_val_tagging_mAP": v, "long_tagging_mAP": v,
                         "long_localisation": {"segment_f1": v, "psds1": 0.0, "psds2": v},
                         "seconds": 10.0})
    sweep = {"corpus": "c", "size": "cpu", "train_set": "weak", "overrides": list(overrides),
             "build": {"params": {"version": 2, "mix_seed": 0}}, "runs": runs}
    with open(path, "w") as f:
        json.dump(sweep, f)
    return str(path)


def test_merge_joins_seed_ranges_and_refuses_mixed_sweeps(tmp_path):
    a, b = _sweep(tmp_path / "a.json", [0, 1]), _sweep(tmp_path / "b.json", [2])
    out = str(tmp_path / "ab.json")
    merged = real_sweeps.merge([a, b], out)
    assert [(r["method"], r["seed"]) for r in merged["runs"]] == [
        ("slat", 0), ("wler", 0), ("slat", 1), ("wler", 1), ("slat", 2), ("wler", 2)]
    d = merged["summary"]["wler_minus_slat"]["long_tagging_mAP"]
    assert d["seeds"] == [0, 1, 2] and np.allclose(d["values"], [0.0, 0.1, 0.2])
    assert json.load(open(out))["seeds"] == 3
    c = _sweep(tmp_path / "c.json", [3])
    with open(c) as f:  # a fresh fixed-split sweep says folds 0; a merged one has no such key
        fresh = {**json.load(f), "folds": 0}
    with open(c, "w") as f:
        json.dump(fresh, f)
    assert real_sweeps.merge([out, c], str(tmp_path / "abc.json"))["seeds"] == 4
    for other in (_sweep(tmp_path / "dup.json", [1]),  # seed 1 twice
                  _sweep(tmp_path / "ovr.json", [3], overrides=["train.epochs=72"])):
        try:
            real_sweeps.merge([a, other], str(tmp_path / "x.json"))
        except errors.DataError as e:
            assert other in str(e)
        else:
            raise AssertionError(f"merge accepted {other}")


def test_merge_against_a_baseline_pairs_the_same_seeds(tmp_path):
    new = _sweep(tmp_path / "new.json", [0, 1, 2])
    old = _sweep(tmp_path / "old.json", [0, 1, 2, 3], offset=0.05)  # seed 3: no pair
    d = real_sweeps.merge([new], str(tmp_path / "out.json"), baseline=old)["against_baseline"]
    assert d["baseline"] == "old.json" and d["wler"]["seeds"] == [0, 1, 2]
    for m in ("slat", "wler"):  # this recipe is 0.05 under the baseline on every seed
        assert np.allclose(d[m]["test_mAP"]["values"], -0.05)
        assert not d[m]["test_mAP"]["positive_every_seed"]
    cross = d["wler_minus_baseline_slat"]["long_tagging_mAP"]  # new WLER - old SLAT
    assert np.allclose(cross["values"], [-0.05, 0.05, 0.15]) and not cross["positive_every_seed"]
    folds = _sweep(tmp_path / "f.json", [0])
    with open(folds) as f:
        j = json.load(f)
    j["folds"] = 5
    with open(folds, "w") as f:
        json.dump(j, f)
    with pytest.raises(errors.DataError, match="other folds"):
        real_sweeps.merge([new], str(tmp_path / "x.json"), baseline=folds)


def test_paired_long_tagging_aligns_recordings_and_refuses_two_builds(tmp_path):
    """`python -m bench.paired_long_tagging` (wler_jax.analysis.paired) pairs two runs' long
    predictions recording by recording: the same scores listed in another order differ by
    exactly 0, and a run that swaps two classes' scores moves by the mAP computed directly; runs
    of two builds are refused."""
    from wler_jax import evaluate

    rng = np.random.default_rng(0)
    out = tmp_path / "build"
    out.mkdir()
    files = [f"m{i:02d}.wav" for i in range(24)]
    labels = np.zeros((24, len(CLASSES)), np.float32)
    for i in range(24):
        labels[i, rng.choice(len(CLASSES), rng.integers(1, 3), replace=False)] = 1
    for name in ("mixtures_val", "mixtures"):
        with open(out / f"{name}.csv", "w") as f:
            f.write("path,labels\n" + "".join(
                f"{out / n},{';'.join(c for c, y in zip(CLASSES, row) if y)}\n"
                for n, row in zip(files, labels)))
    scores = (labels + rng.uniform(0, 1.2, labels.shape)).astype(np.float32)

    def run(tag, s, order, build=str(out)):
        workdir = tmp_path / tag
        workdir.mkdir()
        pred = {"class_names": list(CLASSES), "failed": [], "results": [
            {"file": files[i], "scores": dict(zip(CLASSES, map(float, s[i])))} for i in order]}
        for name in ("long_val_predictions.json", "long_predictions.json"):
            with open(workdir / name, "w") as f:
                json.dump(pred, f)
        return {"seed": 0, "method": "wler", "workdir": str(workdir), "build_dir": build}

    base = run("base", scores, range(24))
    same = paired.paired_run(run("shuffled", scores, rng.permutation(24)), base, num_resamples=50)
    swapped = scores[:, [1, 0, 2, 3]]
    moved = paired.paired_run(run("swapped", swapped, range(24)), base, num_resamples=50)
    want = (evaluate.average_precision(labels, swapped, CLASSES)["mAP"]
            - evaluate.average_precision(labels, scores, CLASSES)["mAP"])
    for split in ("validation", "test"):
        assert same[split]["diff"] == 0 and same[split]["diff_ci95"] == [0.0, 0.0]
        assert same[split]["num_recordings"] == 24
        assert moved[split]["diff"] == pytest.approx(want) and abs(want) > 0.05
    with pytest.raises(errors.DataError, match="one build"):
        paired.paired_run(run("other", scores, range(24), build=str(tmp_path)), base)
    assert same["trained_params_max_abs_diff"] is None  # no checkpoints in these workdirs

    # With checkpoints: the largest difference of the two runs' last trained weights.
    from wler_jax import checkpoints
    weights = {"conv1": {"kernel": rng.normal(size=(3, 3)).astype(np.float32)},
               "fc2": {"bias": np.zeros(4, np.float32)}}
    for tag, shift in (("base", 0.0), ("shuffled", 0.0), ("swapped", 0.25)):
        ckpt = checkpoints.Checkpointer(str(tmp_path / tag))
        moved_weights = {**weights, "fc2": {"bias": weights["fc2"]["bias"] + shift}}
        ckpt.save_latest(7, {"step": 7, "params": moved_weights}, {"epoch": 1})
        ckpt.save_best(7, moved_weights, {"epoch": 1})
        ckpt.wait()
        ckpt.close()
    read = {tag: paired.trained_params(str(tmp_path / tag)) for tag in ("base", "swapped")}
    assert paired.params_max_abs_diff(read["base"], paired.trained_params(
        str(tmp_path / "shuffled"))) == 0.0
    assert paired.params_max_abs_diff(read["swapped"], read["base"]) == pytest.approx(0.25)
    assert paired.params_max_abs_diff(read["base"], {"other": read["base"]}) is None


def test_override_runs_get_their_own_folder():
    slug = real_sweeps.variant_slug
    assert slug([]) == ""
    assert slug(["train.epochs=72", "model.pooling=a b"]) == "+train.epochs=72+model.pooling=a_b"
    many = [f"model.field_{i}=value_{i}" for i in range(20)]  # 20 overrides: 450 characters
    assert len(slug(many)) <= 193 and slug(many) != slug(many[:-1] + ["model.field_19=other"])


def _recipe(size: str):
    """configs/experiments/real_office.py (the benchmark's default recipe) at `size`."""
    return recipes.load(f"{REAL_OFFICE}:wler,{size}")


def test_cpu_runs_train_the_benchmark_epochs_and_width_unless_overridden():
    run_overrides = real_sweeps.run_overrides
    cpu = _recipe("cpu")
    default = [f"train.epochs={cpu.train.epochs}", f"model.width={cpu.model.width:g}"]
    assert run_overrides(cpu, "cpu", None, []) == default
    # part 12's runs named their folders with exactly these overrides: the default resumes them
    assert default == ["train.epochs=36", "model.width=0.25"]
    assert run_overrides(cpu, "cpu", 10, ["model.width=0.5"]) == [
        "train.epochs=10", "model.width=0.5"]
    assert run_overrides(cpu, "cpu", None, ["train.epochs=8"]) == [default[1], "train.epochs=8"]
    # the preset's own width adds nothing: the folder of the runs before width 0.25
    assert run_overrides(cpu, "cpu", None, [], width=0.125) == [default[0]]
    assert run_overrides(cpu, "cpu", None, [], width=0.5) == [default[0], "model.width=0.5"]
    assert real_sweeps.preset_width("cpu") == 0.125 and real_sweeps.preset_width("full") == 1.0
    # other sizes keep their preset's epochs
    assert run_overrides(_recipe("smoke"), "smoke", None, []) == []
    # the epochs name the folder: a workdir of other epochs is never resumed as this one
    assert real_sweeps.variant_slug(run_overrides(cpu, "cpu", None, [])) != (
        real_sweeps.variant_slug(run_overrides(cpu, "cpu", 72, [])))


def test_other_recipe_files_name_the_folders_their_runs_had():
    """The earlier recipes, now files, give the run folders (and JSON overrides) their sweeps
    were made with, so `--resume` and `--merge` still pair with those runs; a field a recipe
    sets beyond epochs and width names the folder too."""
    for name, want in (("real_office_width0125", ["train.epochs=36"]),
                       ("real_office_72ep", ["train.epochs=72"])):
        recipe = recipes.load(os.path.join(REPO, "configs", "experiments", f"{name}.py:slat"))
        assert real_sweeps.run_overrides(recipe, "cpu", None, []) == want, name
    recipe = _recipe("cpu")
    recipe.train.ema_decay = 0.999
    assert real_sweeps.run_overrides(recipe, "cpu", None, ["input.gain_db=3"]) == [
        "train.epochs=36", "model.width=0.25", "train.ema_decay=0.999", "input.gain_db=3"]


def test_k_fold_splits_test_every_source_once_grouped_and_disjoint(tmp_path):
    _fake_sased(str(tmp_path / "sased"))
    clips, _ = sased.scan_corpus(sased.find_root(str(tmp_path / "sased")))
    folds = [sased.split_sources(clips, seed=3, folds=2, fold=k) for k in range(2)]
    assert folds[0] == sased.split_sources(list(reversed(clips)), seed=3, folds=2, fold=0)
    tested = {}
    for k, splits in enumerate(folds):
        for c in CLASSES:  # 5 sources per class: 3 or 2 test, 1 validation, the rest train
            got = sorted(splits[s] for s in {x.source for x in clips if x.label == c})
            assert got.count("validation") == 1 and got.count("test") == (3, 2)[k]
        for source, split in splits.items():
            if split == "test":
                tested.setdefault(source, []).append(k)
    assert sorted(tested) == sorted({x.source for x in clips})  # every source tested ...
    assert all(len(v) == 1 for v in tested.values())  # ... in exactly one fold
    assert folds[0] != sased.split_sources(clips, seed=4, folds=2, fold=0)  # seeded
    for bad in (dict(folds=2, fold=2), dict(folds=2, fold=0, fraction=0.5)):
        with pytest.raises(ValueError):
            sased.split_sources(clips, seed=0, **bad)


def test_pooled_clip_test_joins_out_of_fold_scores_of_a_complete_round(tmp_path):
    """Every fold's test clips scored by that fold's run: pooled, they are the whole corpus;
    a perfect WLER against a random SLAT wins with an interval above 0; an incomplete round
    is left out."""
    _fake_sased(str(tmp_path / "sased"))
    names = list(sased.CLASSES)
    runs, rng = [], np.random.default_rng(0)
    for fold in range(2):
        out = str(tmp_path / f"fold{fold}")
        mixtures.build(str(tmp_path / "sased"), out, num_mixtures=1, folds=2, fold=fold)
        clips = mixtures.test_clips(out, "weak")
        for method in ("slat", "wler"):
            workdir = str(tmp_path / f"{method}{fold}")
            os.makedirs(workdir)
            results = []
            for c in clips:
                s = ({n: float(n == c["label"]) for n in names} if method == "wler"
                     else {n: float(rng.random()) for n in names})
                results.append({"file": c["path"], "scores": s})
            with open(os.path.join(workdir, "clip_test_predictions.json"), "w") as f:
                json.dump({"class_names": names, "results": results, "failed": []}, f)
            runs.append({"method": method, "seed": fold, "workdir": workdir, "build_dir": out,
                         "train_set": "weak"})
    (r,) = real_sweeps.pooled_clip_test(runs, folds=2)
    clips, _ = sased.scan_corpus(sased.find_root(str(tmp_path / "sased")))
    assert r["seeds"] == [0, 1] and r["num_clips"] == len(clips) and r["num_sources"] == 20
    assert r["wler_mAP"] == 1.0 and r["slat_mAP"] < 0.8
    assert r["wler_minus_slat_ci95"][0] > 0
    assert real_sweeps.pooled_clip_test(runs[:3], folds=2) == []  # SLAT alone on fold 1: no round
