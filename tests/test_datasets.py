"""tfds builders: real fixture trees in each corpus' layout, real audio files, no mocks."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import corpus_fixtures as cf
from wler_jax import audio
from wler_jax.data.datasets import common
from wler_jax.data.datasets import registry
from wler_jax.data.datasets import synthetic_audio
from wler_jax.geometry import SAMPLE_RATE


def read_all(sources, class_names):
    """{id: (label names, split, example)} over every split."""
    out = {}
    for split, src in sources.items():
        for i in range(len(src)):
            ex = src[i]
            rid = ex["id"].decode()
            assert rid not in out, f"{rid} in two splits"
            out[rid] = (sorted(class_names[l] for l in ex["labels"]), split, ex)
    return out


def check_skips(info, bad):
    """Every bad id is in the skip report with its reason; nothing else is skipped."""
    skipped = {s["id"]: s["reason"] for s in info["skipped"]}
    assert set(skipped) == set(bad), (skipped, bad)
    for rid, reason in bad.items():
        assert reason in skipped[rid], (rid, skipped[rid])
    report = common.read_json(info["skip_report"])
    assert {s["id"] for s in report["skipped"]} == set(bad)
    assert os.path.dirname(info["skip_report"]) == info["data_dir"]


def check_audio(ex):
    x = ex["audio"]
    assert x.dtype == np.int16 and x.ndim == 1 and x.size > 0
    assert np.abs(x).max() > 1000  # real signal, not silence


# --------------------------------------------------------------------------- synthetic


def test_synthetic_deterministic_labels_match_events(tmp_path):
    sources, names, info = registry.load_splits("synthetic", data_dir=str(tmp_path),
                                                size="smoke", seed=0)
    assert names == list(synthetic_audio.CLASSES)
    preset = synthetic_audio.SIZES["smoke"]
    assert info["num_examples"] == {"train": preset.train, "validation": preset.validation,
                                    "test": preset.test}
    assert info["config"] == "smoke-seed0" and info["skipped"] == []
    got = read_all(sources, names)
    for split in ("train", "validation", "test"):
        for rec in synthetic_audio.generate_split(split, "smoke", seed=0):
            labels, s, ex = got[rec.id]
            assert s == split
            np.testing.assert_array_equal(ex["audio"], audio.to_int16(rec.audio))
            assert list(ex["labels"]) == rec.labels
            ev = ex["events"]
            np.testing.assert_allclose(ev["onset"], [e.onset for e in rec.events], atol=1e-6)
            np.testing.assert_allclose(ev["offset"], [e.offset for e in rec.events], atol=1e-6)
            # weak labels are exactly the classes of the stored events, inside the recording
            assert sorted(set(ev["label"])) == list(ex["labels"])
            dur = ex["audio"].size / SAMPLE_RATE
            assert all(0 <= a < b <= dur + 1e-6 for a, b in zip(ev["onset"], ev["offset"]))
    # Same options again: reused (same directory), identical data read back.
    again, _, info2 = registry.load_splits("synthetic", data_dir=str(tmp_path), size="smoke",
                                           seed=0)
    assert info2["data_dir"] == info["data_dir"]
    ex0 = sources["train"][0]
    np.testing.assert_array_equal(again["train"][0]["audio"], ex0["audio"])


def test_split_larger_than_tfds_memory_buffer_builds_without_tensorflow(tmp_path, monkeypatch):
    """tfds spills a split over 1 GB to disk through tf.io.gfile; with the buffer limit set to 0
    every split takes that path (before tfds_compat: `No module named 'tensorflow'`)."""
    from tensorflow_datasets.core import shuffle

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 0)
    sources, names, info = registry.load_splits("synthetic", data_dir=str(tmp_path),
                                                size="smoke", seed=0)
    got = read_all(sources, names)
    expected = list(synthetic_audio.generate_split("validation", "smoke", seed=0))
    assert info["num_examples"]["validation"] == len(expected)
    for rec in expected:
        np.testing.assert_array_equal(got[rec.id][2]["audio"], audio.to_int16(rec.audio))
    assert not [p for p in os.listdir(info["data_dir"]) if p.endswith(".tmp")]


def test_records_are_written_uncompressed(tmp_path):
    """Noisy int16 audio would shrink ~27 % under array_record's default zstd, which reads 3x
    slower; the builders write uncompressed records, and tfds' own default is left as it was."""
    from tensorflow_datasets.core import file_adapters

    default_writer = file_adapters.ArrayRecordFileAdapter.__dict__["write_examples"]
    sources, _, info = registry.load_splits("synthetic", data_dir=str(tmp_path), size="smoke",
                                            seed=0)
    audio_bytes = sum(2 * sources["train"][i]["audio"].size for i in range(len(sources["train"])))
    files = [f for f in os.listdir(info["data_dir"]) if "train.array_record" in f]
    on_disk = sum(os.path.getsize(os.path.join(info["data_dir"], f)) for f in files)
    assert on_disk >= audio_bytes, (on_disk, audio_bytes)
    assert file_adapters.ArrayRecordFileAdapter.__dict__["write_examples"] is default_writer


def test_synthetic_options_do_not_reuse_stale_builds(tmp_path):
    tiny = synthetic_audio.SizePreset(2, 1, 1, min_seconds=1.0, max_seconds=2.0,
                                      median_seconds=1.5)
    dirs, audios = [], []
    for seed in (1, 2, 1):
        b = registry.build("synthetic", data_dir=str(tmp_path), size=tiny, seed=seed)
        dirs.append(os.fspath(b.data_dir))
        ex = b.as_data_source("train")
        audios.append({ex[i]["id"]: ex[i]["audio"] for i in range(len(ex))})
    assert dirs[0] != dirs[1] and dirs[0] == dirs[2]
    assert not any(np.array_equal(audios[0][k], audios[1].get(k, [])) for k in audios[0])
    for k in audios[0]:  # a fresh directory with the same seed reproduces the data
        np.testing.assert_array_equal(audios[0][k], audios[2][k])
    other = registry.build("synthetic", data_dir=str(tmp_path / "fresh"), size=tiny, seed=1)
    ex = other.as_data_source("train")
    for i in range(len(ex)):
        np.testing.assert_array_equal(ex[i]["audio"], audios[0][ex[i]["id"]])


# ------------------------------------------------------------------------- UrbanSound


@pytest.mark.parametrize("folds", ["us8k", "file", "none"])
def test_urbansound(tmp_path, folds):
    manual = str(tmp_path / "manual")
    want = cf.make_urbansound(manual, folds=folds)
    sources, names, info = registry.load_splits("urbansound", data_dir=str(tmp_path / "tfds"),
                                                manual_dir=manual)
    assert names == list(synthetic_audio.CLASSES)
    assert info["config"].endswith("-" + ("derived" if folds == "none" else folds))
    got = read_all(sources, names)
    assert set(got) == set(want["ids"])
    for rid, (labels, split, events) in want["ids"].items():
        g_labels, g_split, ex = got[rid]
        assert g_labels == labels
        # paper split from the UrbanSound8K folds; derived folds put each class' first
        # recording in fold 1 (train)
        assert g_split == (split if folds != "none" else "train")
        ev = ex["events"]
        stored = sorted((names[l], round(float(a), 4), round(float(b), 4))
                        for l, a, b in zip(ev["label"], ev["onset"], ev["offset"]))
        assert stored == sorted((c, round(a, 4), round(b, 4)) for c, a, b in events)
        check_audio(ex)
    check_skips(info, want["bad"])
    if folds == "none":
        assert any("derived" in w for w in info["warnings"])


# ----------------------------------------------------------------- UrbanSound8K, ESC-50


def test_urbansound8k_folds_and_bad_files(tmp_path):
    manual = str(tmp_path / "manual")
    want = cf.make_urbansound8k(manual)
    data_dir = str(tmp_path / "tfds")
    sources, names, info = registry.load_splits("urbansound8k", data_dir=data_dir,
                                                manual_dir=manual)
    got = read_all(sources, names)
    assert {k: (v[0], v[1]) for k, v in got.items()} == {
        k: (v[0], v[1]) for k, v in want["ids"].items()}
    for _, _, ex in got.values():
        check_audio(ex)
        assert ex["events"] == [] or len(ex["events"]["label"]) == 0
    check_skips(info, want["bad"])
    # Decoded audio equals the library's decoder (any rate/channels -> mono 44.1 kHz int16).
    rid = "audio/fold10/100648-1-0-0.wav"
    ref = audio.to_int16(audio.load(os.path.join(manual, "UrbanSound8K", rid)))
    np.testing.assert_array_equal(got[rid][2]["audio"], ref)
    # Another fold choice is another config and another directory.
    s2, _, info2 = registry.load_splits("urbansound8k", data_dir=data_dir, manual_dir=manual,
                                        validation_fold=1, test_fold=5)
    assert info2["data_dir"] != info["data_dir"]
    got2 = read_all(s2, names)
    assert {k for k, v in got2.items() if v[1] == "test"} == {
        k for k, v in want["ids"].items() if v[2] == 5}
    assert {k for k, v in got2.items() if v[1] == "validation"} == {
        k for k, v in want["ids"].items() if v[2] == 1}
    with pytest.raises(ValueError, match="must differ"):
        registry.build("urbansound8k", data_dir=data_dir, manual_dir=manual,
                       validation_fold=3, test_fold=3)
    with pytest.raises(ValueError, match="unknown option"):
        registry.build("urbansound8k", data_dir=data_dir, manual_dir=manual, test_folds=3)


def test_esc50_and_esc10(tmp_path):
    manual = str(tmp_path / "manual")
    want = cf.make_esc50(manual)
    sources, names, info = registry.load_splits("esc50", data_dir=str(tmp_path / "tfds"),
                                                manual_dir=manual)
    assert len(names) == 50 and names[0] == "dog" and names[49] == "hand_saw"
    got = read_all(sources, names)
    assert {k: (v[0], v[1]) for k, v in got.items()} == {
        k: (v[0], v[1]) for k, v in want["ids"].items()}
    check_skips(info, want["bad"])
    s10, names10, _ = registry.load_splits("esc50", data_dir=str(tmp_path / "tfds"),
                                           manual_dir=manual, esc10=True)
    assert len(names10) == 10
    got10 = read_all(s10, names10)
    assert {k: (v[0], v[1]) for k, v in got10.items()} == {
        k: (v[0], v[1]) for k, v in want["ids"].items() if v[2]}


# --------------------------------------------------------------------------- AudioSet


def test_audioset_eval(tmp_path):
    manual = str(tmp_path / "manual")
    want = cf.make_audioset(manual)
    sources, names, info = registry.load_splits("audioset", data_dir=str(tmp_path / "tfds"),
                                                manual_dir=manual)
    assert list(sources) == ["test"]  # AudioSet eval has no train/validation of its own
    assert names[1] == "Vehicle horn, car horn, honking" and len(names) == 9
    got = read_all(sources, names)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want["ids"].items()}
    for _, _, ex in got.values():
        check_audio(ex)
    check_skips(info, want["bad"])
    assert not set(want["excluded"]) & {s["id"] for s in info["skipped"]}
    # Other classes: another config; a typo names close matches.
    s2, n2, _ = registry.load_splits("audioset", data_dir=str(tmp_path / "tfds"),
                                     manual_dir=manual, classes=["Siren", "Speech"])
    assert n2 == ["Siren", "Speech"]
    assert {k: v[0] for k, v in read_all(s2, n2).items()} == {
        "-0xZzqtTz1A_30.000": ["Siren"], "0AbCdEfGhIj_20.000": ["Speech"],
        "-1TgzJl7e9s_0.000": ["Speech"]}
    with pytest.raises(ValueError, match="Siren"):
        registry.build("audioset", data_dir=str(tmp_path / "tfds"), manual_dir=manual,
                       classes=["Sirens"])


# ---------------------------------------------------------------------- folder and CSV


def test_folder_label_subfolders_seeded_split(tmp_path):
    root = str(tmp_path / "mydata")
    want = cf.make_label_folders(root)
    sources, names, info = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"),
                                                path=root, seed=3)
    assert names == ["dog", "rain", "siren"]
    got = read_all(sources, names)
    assert {k: v[0] for k, v in got.items()} == want["ids"]
    assert {v[1] for v in got.values()} == {"train", "validation", "test"}
    check_skips(info, want["bad"])
    assert all(any(name in w for w in info["warnings"]) for name in want["ignored"])
    # The seeded split is recorded next to the data, file by file, broken file included.
    record = common.read_json(info["split_file"])
    assert os.path.dirname(info["split_file"]) == info["data_dir"]
    assert record["seed"] == 3 and record["source"] == os.path.abspath(root)
    placed = {rid: s for s, ids in record["splits"].items() for rid in ids}
    assert set(placed) == set(want["ids"]) | set(want["bad"])
    assert all(placed[k] == v[1] for k, v in got.items())
    assert record["counts"] == {"train": 7, "validation": 2, "test": 2}  # 11 files, 70/15/15
    # Same source and seed: reused. Another seed: another split. A changed source: rebuilt.
    _, _, same = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"), path=root,
                                      seed=3)
    assert same["data_dir"] == info["data_dir"]
    _, _, other = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"), path=root,
                                       seed=4)
    assert other["data_dir"] != info["data_dir"]
    cf.write_audio(os.path.join(root, "rain", "r4.wav"), 0.5, 44100)
    s3, n3, changed = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"),
                                           path=root, seed=3)
    assert changed["data_dir"] != info["data_dir"]
    assert "rain/r4.wav" in read_all(s3, n3)


def test_folder_csv_multilabel_and_split_column(tmp_path):
    csv_path, want = cf.make_label_csv(str(tmp_path / "web"))
    sources, names, info = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"),
                                                path=csv_path)
    assert names == ["dog", "rain", "siren"]
    got = read_all(sources, names)
    assert {k: (v[0], v[1]) for k, v in got.items()} == want["ids"]
    assert got["../clips/sub/d.wav"][0] == ["dog", "rain", "siren"]
    assert got["../clips/c.wav"][0] == []  # a recording with none of the classes
    check_skips(info, want["bad"])
    record = common.read_json(info["split_file"])
    assert record["from_split_column"] == 9
    # Without the split column: seeded 70/15/15 split, every split non-empty.
    csv2, _ = cf.make_label_csv(str(tmp_path / "web2"), with_split=False)
    s2, n2, info2 = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"), path=csv2,
                                         seed=0)
    assert set(s2) == {"train", "validation", "test"}
    assert sum(info2["num_examples"].values()) == len(want["ids"])


def test_folder_bad_options_and_rows(tmp_path):
    with pytest.raises(ValueError, match="required"):
        registry.build("folder", data_dir=str(tmp_path / "tfds"))
    path = tmp_path / "list.csv"
    path.write_text("path,labels,split\na.wav,dog,holdout\n")
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        registry.build("folder", data_dir=str(tmp_path / "tfds"), path=str(path))
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        registry.build("folder", data_dir=str(tmp_path / "tfds"),
                       path=str(tmp_path / "does_not_exist"))


# ---------------------------------------------------------------- missing manual copies


@pytest.mark.parametrize("name, expected", [
    ("urbansound", os.path.join("UrbanSound", "data")),
    ("urbansound8k", os.path.join("UrbanSound8K", "metadata", "UrbanSound8K.csv")),
    ("esc50", os.path.join("ESC-50-master", "meta", "esc50.csv")),
    ("audioset", os.path.join("AudioSet", "eval_segments.csv")),
])
def test_missing_or_incomplete_manual_dir(tmp_path, name, expected):
    manual = tmp_path / "nowhere"
    with pytest.raises(common.ManualDataError) as e:  # does not exist at all
        registry.build(name, data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    assert str(manual) in str(e.value) and isinstance(e.value, FileNotFoundError)
    manual.mkdir()
    (manual / "unrelated.txt").write_text("x")  # exists, but not the corpus
    with pytest.raises(common.ManualDataError) as e:
        registry.build(name, data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    assert str(manual / expected) in str(e.value)


def test_metadata_without_audio_is_incomplete(tmp_path):
    manual = str(tmp_path / "manual")
    cf.make_urbansound8k(manual)
    shutil.rmtree(os.path.join(manual, "UrbanSound8K", "audio"))
    with pytest.raises(common.ManualDataError, match=os.path.join("UrbanSound8K", "audio")):
        registry.build("urbansound8k", data_dir=str(tmp_path / "tfds"), manual_dir=manual)


def test_all_files_of_a_split_bad_is_a_clear_error(tmp_path):
    root = tmp_path / "d"
    cf.write_audio(str(root / "a" / "ok.wav"))
    cf.write_empty(str(root / "a" / "empty.wav"))
    csv_path = root / "list.csv"
    csv_path.write_text("path,labels,split\na/ok.wav,x,train\na/empty.wav,x,test\n")
    with pytest.raises(common.EmptySplitError, match="empty.wav"):
        registry.build("folder", data_dir=str(tmp_path / "tfds"), path=str(csv_path))


def test_validation_and_test_folds_must_be_disjoint_everywhere():
    from wler_jax.data.datasets import esc50, urbansound
    with pytest.raises(ValueError, match="must differ; both contain \\[2\\]"):
        esc50.WlerEsc50.config_from_options(validation_fold=2, test_fold=2)
    with pytest.raises(ValueError, match="must differ; both contain \\[6\\]"):
        urbansound.WlerUrbansound.config_from_options(validation_folds=(5, 6),
                                                      test_folds=(6, 7))
    with pytest.raises(ValueError, match="folds must be in 1..5"):
        esc50.WlerEsc50.config_from_options(validation_fold=6, test_fold=5)
