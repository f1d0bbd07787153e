"""The matrix of bad inputs (docs/reliability.md): every case through every route that reads
audio (the `folder` dataset build, `python -m wler_jax.predict`, `python -m wler_jax.embed`)
and every CSV oddity through the build. Each case is either used (built / scored, with the
length it must have) or left out with its reason, and one bad file or row never stops the
others: each route reads all cases in one go (one build, one predict run, one embed run).
"""
import contextlib
import json
import os
import struct

import numpy as np
import pytest
import soundfile as sf

from wler_jax import audio, embed, predict
from wler_jax.data.datasets import common, registry
from wler_jax.geometry import SAMPLE_RATE
from test_predict import make_workdir

HALF = SAMPLE_RATE // 2  # samples of 0.5 s at 44.1 kHz: what most cases decode to
ROOT_USER = os.geteuid() == 0


def _tone(n: int, sr: int, channels: int = 1) -> np.ndarray:
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, 1)


def _write(subtype=None, sr=SAMPLE_RATE, channels=1, n=None, fmt=None, dtype=np.float32):
    def make(path):
        sf.write(path, _tone(HALF * sr // SAMPLE_RATE if n is None else n, sr,
                             channels).astype(dtype), sr, subtype=subtype, format=fmt)
    return make


def _non_finite(value):
    def make(path):
        x = _tone(HALF, SAMPLE_RATE)
        x[100] = value
        sf.write(path, x, SAMPLE_RATE, subtype="FLOAT")
    return make


def _wav_header(num_frames: int, sr: int = SAMPLE_RATE) -> bytes:
    """A 44-byte PCM_16 mono WAV header declaring `num_frames` frames."""
    data = 2 * num_frames
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16) + b"data" +
            struct.pack("<I", data))


def _truncated_header(path):
    with open(path, "wb") as f:
        f.write(_wav_header(HALF)[:30])


def _declares_more(path):
    """A header declaring 0.5 s over 1000 frames of data (a cut download)."""
    with open(path, "wb") as f:
        f.write(_wav_header(HALF) + (np.ones(1000, np.int16) * 9000).tobytes())


def _declares_less(path):
    """A header declaring 1000 frames over 0.5 s of data (bytes after the data chunk)."""
    with open(path, "wb") as f:
        f.write(_wav_header(1000) + (np.ones(HALF, np.int16) * 9000).tobytes())


def _directory(path):
    os.makedirs(path)
    sf.write(os.path.join(path, "inside.wav"), _tone(HALF, SAMPLE_RATE), SAMPLE_RATE)


def _unreadable(path):
    _write()(path)
    os.chmod(path, 0)  # as root this does not stop reading: simulated in `_no_read_access`


def _symlink_loop(path):
    other = path + ".other.wav"
    os.symlink(os.path.basename(other), path)
    os.symlink(os.path.basename(path), other)


TWO_HOURS = 2 * 3600 * SAMPLE_RATE


def _two_hours(path):
    """Two hours of digital silence, 16-bit: a sparse file (635 MB long, no blocks written)."""
    with open(path, "wb") as f:
        f.write(_wav_header(TWO_HOURS))
        f.truncate(44 + 2 * TWO_HOURS)


# case -> (file name, writer, outcome): outcome is the decoded length in samples at 44.1 kHz
# (used: built, scored and embedded) or the reason it is left out (the same on every route).
CASES = {
    "zero_samples": ("zero.wav", _write(n=0), "contains zero samples"),
    "one_sample": ("one.wav", _write(n=1), 1),
    "digital_silence": ("silence.wav", _write(dtype=np.float32, n=HALF, subtype="PCM_16",
                                              sr=SAMPLE_RATE), HALF),
    "nan_float_wav": ("nan.wav", _non_finite(np.nan), "non-finite"),
    "inf_float_wav": ("inf.wav", _non_finite(np.inf), "non-finite"),
    "8_channels": ("ch8.wav", _write(channels=8), HALF),
    "8_bit_int_wav": ("u8.wav", _write(subtype="PCM_U8"), HALF),
    "24_bit_int_wav": ("i24.wav", _write(subtype="PCM_24"), HALF),
    "32_bit_int_wav": ("i32.wav", _write(subtype="PCM_32"), HALF),
    "64_bit_float_wav": ("f64.wav", _write(subtype="DOUBLE", dtype=np.float64), HALF),
    "8_khz": ("sr8k.wav", _write(sr=8000), HALF),
    "192_khz": ("sr192k.wav", _write(sr=192000), HALF),
    "flac": ("a.flac", _write(), HALF),
    "ogg_vorbis": ("a.ogg", _write(), HALF),
    "mp3": ("a.mp3", _write(), HALF),
    "truncated_header": ("trunc.wav", _truncated_header, "cannot be decoded"),
    "header_declares_more_than_the_data": ("more.wav", _declares_more, 1000),
    "header_declares_less_than_the_data": ("less.wav", _declares_less, 1000),
    "directory_named_x_wav": ("dir.wav", _directory, "is a directory"),
    "unreadable_file": ("noread.wav", _unreadable, "cannot be read (Permission denied)"),
    "symlink_loop": ("loop.wav", _symlink_loop, "is a loop of symbolic links"),
    "missing_file": ("missing.wav", None, "file does not exist"),
    "two_hour_file": ("two_hours.wav", _two_hours, "over the 1:00:00"),
}
# Where a route does something else than the table above, and why.
PREDICT_DIFFERS = {
    # named on the command line, a directory is searched for audio like any folder
    "directory_named_x_wav": "scored as a folder",
    # predict and embed score any length in chunks (checked below without scoring two hours,
    # which a CPU takes minutes for; bench.inference_speed times long files)
    "two_hour_file": "read in blocks",
}
# For the build, a header saying a recording is longer than MAX_RECORDING_SECONDS is enough.
assert common.MAX_RECORDING_SECONDS == 3600


@contextlib.contextmanager
def _no_read_access(path):
    """Reading `path` fails with EACCES as chmod 000 makes it for a non-root user."""
    if not ROOT_USER:
        yield
        return
    real_open = open

    def fake_open(file, *args, **kwargs):
        if os.fspath(file) == path:
            raise PermissionError(13, "Permission denied", path)
        return real_open(file, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(audio, "open", fake_open, raising=False)
        yield


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """case -> path of every audio case, all in one folder."""
    d = tmp_path_factory.mktemp("bad_audio")
    out = {}
    for case, (name, make, _) in CASES.items():
        path = str(d / name)
        if make is not None:
            make(path)
        out[case] = path
    return out


# ---------------------------------------------------------------------- build (folder CSV)

GOOD = {"good_train.wav": "train", "good_val.wav": "validation", "good_test.wav": "test"}


def _csv_dataset(root: str, files: dict) -> str:
    """A CSV listing every audio case (train split) and every CSV oddity, written with a
    byte order mark and CRLF line ends."""
    os.makedirs(root, exist_ok=True)
    for name in GOOD:
        sf.write(os.path.join(root, name), _tone(HALF, SAMPLE_RATE), SAMPLE_RATE)
    for name in ("a, b.wav", "negative.wav", "Dog_upper.wav", "spaced.wav", "absolute.wav"):
        sf.write(os.path.join(root, name), _tone(HALF, SAMPLE_RATE), SAMPLE_RATE)
    lines = ["path,labels,split"]
    lines += [f"{name},dog,{split}" for name, split in GOOD.items()]
    lines += [f"{path},dog,train" for path in files.values()]  # absolute paths
    lines += ['"a, b.wav",dog;rain,train',       # a quoted path with a comma, two labels
              "negative.wav,,train",              # an empty label cell: a negative
              "Dog_upper.wav,Dog,train",          # another case of a label
              "spaced.wav, rain ,validation",     # spaces around a label
              f"{os.path.join(root, 'absolute.wav')},rain,test",
              "good_train.wav,dog,train",         # listed twice
              "good_val.wav,rain,holdout",        # listed twice, with an unknown split
              "unknown_split.wav,dog,holdout",    # an unknown split
              ",dog,train"]                       # no path
    with open(os.path.join(root, "list.csv"), "w", encoding="utf-8-sig", newline="") as f:
        f.write("\r\n".join(lines) + "\r\n")
    return os.path.join(root, "list.csv")


@pytest.fixture(scope="module")
def built(tmp_path_factory, files):
    """(ids -> (labels, split, samples), skipped id -> reason, warnings) of one build."""
    root = str(tmp_path_factory.mktemp("csv_data"))
    path = _csv_dataset(root, files)
    with _no_read_access(files["unreadable_file"]):
        sources, names, info = registry.load_splits(
            "folder", data_dir=str(tmp_path_factory.mktemp("tfds")), path=path)
    got = {}
    for split, src in sources.items():
        for i in range(len(src)):
            ex = src[i]
            rid = ex["id"].decode() if isinstance(ex["id"], bytes) else ex["id"]
            got[rid] = ([names[k] for k in ex["labels"]], split, len(ex["audio"]))
    skipped = {s["id"]: s["reason"] for s in info["skipped"]}
    return got, skipped, info["warnings"], names


@pytest.mark.parametrize("case", sorted(CASES))
def test_build(case, files, built):
    got, skipped, warnings, _ = built
    rid, outcome = files[case], CASES[case][2]
    if isinstance(outcome, int):
        assert rid in got and rid not in skipped, skipped.get(rid)
        assert got[rid][2] == outcome and got[rid][0] == ["dog"]
    else:
        assert rid not in got and outcome in skipped[rid], skipped.get(rid)


def test_build_digital_silence_and_one_sample_are_stored_as_read(files, built):
    got = built[0]
    assert got[files["one_sample"]][2] == 1
    assert got[files["digital_silence"]][2] == HALF
    warnings = built[2]
    assert any(files["header_declares_more_than_the_data"] in w
               and "header does not match its size" in w for w in warnings), warnings


CSV_CASES = {
    # case -> (id, outcome: (labels, split) when built, else the reason it is left out)
    "bom_and_crlf": ("good_train.wav", (["dog"], "train")),
    "quoted_path_with_comma": ("a, b.wav", (["dog", "rain"], "train")),
    "empty_label_cell": ("negative.wav", ([], "train")),
    "label_in_another_case": ("Dog_upper.wav", (["Dog"], "train")),
    "label_with_spaces": ("spaced.wav", (["rain"], "validation")),
    "relative_path": ("good_test.wav", (["dog"], "test")),
    "absolute_path": (None, (["rain"], "test")),
    "duplicate_row": ("good_train.wav", "listed again (first on line 2"),
    "duplicate_row_with_other_split": ("good_val.wav", "listed again (first on line 3"),
    "unknown_split": ("unknown_split.wav", "unknown split 'holdout'"),
    "empty_path": (None, "empty path"),
    "missing_file": ("missing", "file does not exist"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv(case, built, files, tmp_path_factory):
    got, skipped, warnings, names = built
    rid, outcome = CSV_CASES[case]
    if case == "absolute_path":
        rid = next(k for k in got if k.endswith("absolute.wav"))
        assert os.path.isabs(rid)
    if case == "missing_file":
        rid = files["missing_file"]
    if case == "empty_path":  # named by its line in the skip report
        rid = next(k for k, v in skipped.items() if v == "empty path")
        assert rid.startswith("line ")
    if isinstance(outcome, tuple):
        assert got[rid][:2] == outcome
    else:
        assert outcome in skipped[rid], skipped
    if case == "label_in_another_case":
        assert {"Dog", "dog"} <= set(names)
        assert any("['Dog', 'dog'] differ only in case" in w for w in warnings), warnings
    if case == "duplicate_row":  # the first listing is the one built
        assert got["good_train.wav"][1] == "train"
        assert got["good_val.wav"][:2] == (["dog"], "validation")


def test_csv_with_only_bad_rows_is_one_line(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("path,labels,split\na.wav,dog,holdout\n,dog,train\n")
    with pytest.raises(ValueError, match=r"no usable row; line 2: unknown split 'holdout' "
                                         r"\(expected .*\) \(and 1 more\)"):
        registry.build("folder", data_dir=str(tmp_path / "tfds"), path=str(path))


# -------------------------------------------------------------------------- predict, embed

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("bad_inputs_workdir"))


def _inputs(files):
    return [p for c, p in sorted(files.items()) if c != "two_hour_file"]


@pytest.fixture(scope="module")
def predicted(workdir, files, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred") / "out.json"
    with _no_read_access(files["unreadable_file"]):
        code = predict.cli(["predict", f"--workdir={workdir}", f"--output={out}",
                            "--noprogress", "--chunk_frames=256", *_inputs(files)])
    result = json.loads(out.read_text())
    return code, {r["file"]: r for r in result["results"]}, {
        f["file"]: f["reason"] for f in result["failed"]}


@pytest.fixture(scope="module")
def embedded(workdir, files, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "out.npz"
    with _no_read_access(files["unreadable_file"]):
        code = embed.cli(["embed", f"--workdir={workdir}", f"--output={out}", "--noprogress",
                          "--chunk_frames=256", *_inputs(files)])
    z = np.load(out)
    return code, {f: (d, z["clip"][k]) for k, (f, d) in enumerate(zip(z["files"],
                                                                      z["duration"]))}, dict(
        zip(z["failed_files"], z["failed_reasons"]))


def _check_scored(case, files, done, failed, duration_of):
    path, outcome = files[case], CASES[case][2]
    if case == "directory_named_x_wav":  # searched as a folder: its file is scored
        assert os.path.join(path, "inside.wav") in done and path not in failed
        return
    if isinstance(outcome, int):
        assert path in done and path not in failed, failed.get(path)
        assert duration_of(done[path]) == pytest.approx(outcome / SAMPLE_RATE, abs=1e-3)
    else:
        assert path not in done and outcome in failed[path], failed


@pytest.mark.parametrize("case", sorted(set(CASES) - {"two_hour_file"}))
def test_predict(case, files, predicted):
    code, done, failed = predicted
    assert code == 1  # some files failed; every other one is written
    _check_scored(case, files, done, failed, lambda r: r["duration"])
    if case in done:
        assert all(0.0 <= p <= 1.0 for p in done[files[case]]["scores"].values())


@pytest.mark.parametrize("case", sorted(set(CASES) - {"two_hour_file"}))
def test_embed(case, files, embedded):
    code, done, failed = embedded
    assert code == 1
    _check_scored(case, files, done, failed, lambda d: d[0])
    if files[case] in done:
        assert np.isfinite(done[files[case]][1]).all()


def test_two_hour_file_is_read_in_blocks_of_bounded_memory(files):
    """The predict and embed route (`audio.stream`, then chunks): two hours pass through
    blocks of ~1 MB; the whole file as float32 would be 1.27 GB."""
    import psutil

    process = psutil.Process()
    start = peak = process.memory_info().rss
    total = 0
    for block in audio.stream(files["two_hour_file"]):
        total += block.size
        peak = max(peak, process.memory_info().rss)
    assert total == TWO_HOURS
    assert peak - start < 100e6, (start, peak)


def test_every_case_is_a_row_of_the_docs_table():
    doc = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "docs", "reliability.md")).read()
    for case in list(CASES) + list(CSV_CASES):
        assert f"`{case}`" in doc, case
