"""Tiny copies of the real corpora's layouts (file names, metadata formats), written with soundfile.

Each `make_*` writes a fixture tree under a manual directory and returns what a correct builder
must produce: {"ids": {id: (label names, split)}, "bad": {id: reason substring}, ...}. Audio is
0.5-1.2 s of tones and noise at several sample rates, channel counts and formats; "bad" files
are corrupt bytes, empty files, NaN samples in a float WAV, or listed but absent.
"""
from __future__ import annotations

import os

import numpy as np
import soundfile as sf


def tone(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """[n] or [n, channels] float32: a few tones plus noise, peak ~0.5."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(n)
    x = x.astype(np.float32)
    return x if channels == 1 else np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], 1)


def write_audio(path: str, seconds: float = 0.6, sr: int = 22050, channels: int = 1,
                subtype: str | None = None, seed: int = 0) -> str:
    """Writes a real audio file; the format follows the extension (.wav/.flac/.aiff/.ogg)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, tone(seconds, sr, channels, seed), sr, subtype=subtype)
    return path


def write_corrupt(path: str) -> str:
    """Bytes that start like a WAV header but are not decodable."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(200)))
    return path


def write_empty(path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return path


def write_nan_wav(path: str, sr: int = 16000) -> str:
    """A float32 WAV whose samples include NaN."""
    x = tone(0.5, sr)
    x[100:200] = np.nan
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, x, sr, subtype="FLOAT")
    return path


def _write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ------------------------------------------------------------------------- UrbanSound


def make_urbansound(manual: str, folds: str = "us8k") -> dict:
    """UrbanSound/data/<class>/<fsid>.<ext> + <fsid>.csv (start,end,salience,class).

    Args:
      folds: "us8k" writes UrbanSound8K/metadata/UrbanSound8K.csv (the paper's fold source),
        "file" writes UrbanSound/folds.csv, "none" writes neither (folds are derived).
    """
    root = os.path.join(manual, "UrbanSound")
    data = os.path.join(root, "data")
    _write_text(os.path.join(root, "FREESOUNDCREDITS.txt"),
                "100032 by someone: http://www.freesound.org/people/someone/sounds/100032/\n")
    # fsid: (class folder, ext, sr, channels, seconds, annotation rows, fold)
    recs = {
        "100032": ("dog_bark", ".wav", 22050, 1, 1.0,
                   [(0.1, 0.4, 1, "dog_bark"), (0.2, 0.6, 2, "car_horn"),
                    (0.5, 0.9, 1, "dog_bark")], 1),
        "100648": ("siren", ".flac", 48000, 2, 1.2, [(0.0, 1.2, 1, "siren")], 5),
        "101729": ("air_conditioner", ".wav", 44100, 1, 0.8,
                   [(0.0, 0.8, 2, "air_conditioner")], 7),
        "102103": ("engine_idling", ".aiff", 32000, 1, 0.7,
                   [(0.05, 0.65, 1, "engine_idling")], 2),
        "103074": ("jackhammer", ".wav", 16000, 2, 0.9,
                   [(0.3, 0.8, 1, "jackhammer"), (0.0, 0.2, 2, "children_playing")], 9),
    }
    bad = {  # fsid: (class folder, writer, fold, reason)
        "104000": ("drilling", write_corrupt, 3, "cannot be decoded"),
        "105000": ("gun_shot", write_empty, 6, "empty"),
        "106000": ("street_music", write_nan_wav, 10, "non-finite"),
    }
    ids = {}
    fold_rows = []
    split_of = lambda f: "train" if f <= 4 else "validation" if f <= 6 else "test"
    for i, (fsid, (folder, ext, sr, ch, secs, rows, fold)) in enumerate(recs.items()):
        write_audio(os.path.join(data, folder, fsid + ext), secs, sr, ch, seed=i)
        _write_text(os.path.join(data, folder, fsid + ".csv"),
                    "".join(f"{a},{b},{s},{c}\n" for a, b, s, c in rows))
        ids[f"data/{folder}/{fsid}{ext}"] = (sorted({r[3] for r in rows}), split_of(fold),
                                            sorted((c, a, b) for a, b, _, c in rows))
        fold_rows.append((fsid, fold, folder))
    bad_ids = {}
    for fsid, (folder, writer, fold, reason) in bad.items():
        path = os.path.join(data, folder, fsid + ".wav")
        writer(path)
        _write_text(os.path.join(data, folder, fsid + ".csv"), f"0.0,0.5,1,{folder}\n")
        bad_ids[f"data/{folder}/{fsid}.wav"] = reason
        fold_rows.append((fsid, fold, folder))
    # A recording that UrbanSound8K does not contain: left out (the paper's 1302 -> 1297).
    write_audio(os.path.join(data, "car_horn", "107000.wav"), 0.5, 22050)
    _write_text(os.path.join(data, "car_horn", "107000.csv"), "0.0,0.5,1,car_horn\n")
    no_fold = "data/car_horn/107000.wav"
    if folds == "us8k":
        classes = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
                   "engine_idling", "gun_shot", "jackhammer", "siren", "street_music"]
        lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
        for fsid, fold, folder in fold_rows:
            c = classes.index(folder)
            for k in range(2):  # several slices per recording, all in its fold
                lines.append(f"{fsid}-{c}-0-{k}.wav,{fsid},{k * 0.5},{k * 0.5 + 0.5},1,{fold},"
                             f"{c},{folder}")
        _write_text(os.path.join(manual, "UrbanSound8K", "metadata", "UrbanSound8K.csv"),
                    "\n".join(lines) + "\n")
    elif folds == "file":
        _write_text(os.path.join(root, "folds.csv"),
                    "fsid,fold\n" + "".join(f"{f},{k}\n" for f, k, _ in fold_rows))
    if folds != "none":
        bad_ids[no_fold] = "no fold"
    else:
        ids[no_fold] = (["car_horn"], None, [("car_horn", 0.0, 0.5)])
    return {"ids": ids, "bad": bad_ids}


# ---------------------------------------------------------------------- UrbanSound8K


def make_urbansound8k(manual: str) -> dict:
    """UrbanSound8K/metadata/UrbanSound8K.csv + audio/fold<k>/<fsID>-<classID>-<occ>-<slice>.wav."""
    root = os.path.join(manual, "UrbanSound8K")
    # (slice_file_name, fsID, classID, class, fold, sr, channels, subtype)
    rows = [
        ("100032-3-0-0.wav", 100032, 3, "dog_bark", 5, 44100, 1, "PCM_16"),
        ("100263-2-0-117.wav", 100263, 2, "children_playing", 5, 44100, 2, "PCM_16"),
        ("100648-1-0-0.wav", 100648, 1, "car_horn", 10, 48000, 2, "PCM_24"),
        ("101729-0-0-1.wav", 101729, 0, "air_conditioner", 9, 22050, 1, "PCM_16"),
        ("102103-5-0-0.wav", 102103, 5, "engine_idling", 1, 11025, 1, "PCM_U8"),
        ("103074-7-1-0.wav", 103074, 7, "jackhammer", 10, 96000, 1, "FLOAT"),
    ]
    bad = [("104000-4-0-0.wav", 104000, 4, "drilling", 2, write_corrupt, "cannot be decoded"),
           ("105000-6-0-0.wav", 105000, 6, "gun_shot", 9, None, "does not exist")]
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    ids = {}
    split = lambda f: "test" if f == 10 else "validation" if f == 9 else "train"
    for i, (name, fsid, cid, cls, fold, sr, ch, subtype) in enumerate(rows):
        write_audio(os.path.join(root, "audio", f"fold{fold}", name), 0.5 + 0.1 * i, sr, ch,
                    subtype, seed=i)
        lines.append(f"{name},{fsid},1.5,{2.0 + 0.1 * i},1,{fold},{cid},{cls}")
        ids[f"audio/fold{fold}/{name}"] = ([cls], split(fold), fold)
    bad_ids = {}
    for name, fsid, cid, cls, fold, writer, reason in bad:
        if writer:
            writer(os.path.join(root, "audio", f"fold{fold}", name))
        lines.append(f"{name},{fsid},0.0,0.5,2,{fold},{cid},{cls}")
        bad_ids[f"audio/fold{fold}/{name}"] = reason
    _write_text(os.path.join(root, "metadata", "UrbanSound8K.csv"), "\n".join(lines) + "\n")
    _write_text(os.path.join(root, "FREESOUNDCREDITS.txt"), "credits\n")
    return {"ids": ids, "bad": bad_ids}


# ---------------------------------------------------------------------------- ESC-50


def make_esc50(manual: str) -> dict:
    """ESC-50-master/meta/esc50.csv + audio/<fold>-<src>-<take>-<target>.wav."""
    root = os.path.join(manual, "ESC-50-master")
    rows = [  # filename, fold, target, category, esc10, src_file, take
        ("1-100032-A-0.wav", 1, 0, "dog", True, 100032, "A"),
        ("1-100038-A-14.wav", 1, 14, "chirping_birds", False, 100038, "A"),
        ("2-102414-C-17.wav", 2, 17, "pouring_water", False, 102414, "C"),
        ("3-141240-B-44.wav", 3, 44, "engine", False, 141240, "B"),
        ("4-181286-A-10.wav", 4, 10, "rain", True, 181286, "A"),
        ("5-200334-A-1.wav", 5, 1, "rooster", True, 200334, "A"),
        ("5-9032-A-0.wav", 5, 0, "dog", True, 9032, "A"),
    ]
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    ids = {}
    split = lambda f: "test" if f == 5 else "validation" if f == 4 else "train"
    for i, (fn, fold, target, cat, esc10, src, take) in enumerate(rows):
        write_audio(os.path.join(root, "audio", fn), 0.5, 44100, 1, seed=i)
        lines.append(f"{fn},{fold},{target},{cat},{esc10},{src},{take}")
        ids[f"audio/{fn}"] = ([cat], split(fold), esc10)
    lines.append("2-109505-A-21.wav,2,21,sneezing,False,109505,A")
    write_nan_wav(os.path.join(root, "audio", "2-109505-A-21.wav"), 44100)
    _write_text(os.path.join(root, "meta", "esc50.csv"), "\n".join(lines) + "\n")
    return {"ids": ids, "bad": {"audio/2-109505-A-21.wav": "non-finite"}}


# --------------------------------------------------------------------------- AudioSet

CLASS_INDEX_ROWS = [  # a subset of class_labels_indices.csv, real indices and MIDs
    (0, "/m/09x0r", "Speech"), (71, "/t/dd00013", "Children playing"),
    (74, "/m/0bt9lr", "Dog"), (75, "/m/05tny_", "Bark"),
    (308, "/m/0912c9", "Vehicle horn, car horn, honking"), (352, "/m/07pb8fc", "Idling"),
    (396, "/m/03kmc9", "Siren"), (413, "/m/025wky1", "Air conditioning"),
    (420, "/m/03p19w", "Jackhammer"), (425, "/m/01d380", "Drill"),
    (427, "/m/032s66", "Gunshot, gunfire"), (324, "/m/012n7d", "Ambulance (siren)"),
]


def make_audioset(manual: str) -> dict:
    """AudioSet/eval_segments.csv, class_labels_indices.csv and audio named by a downloader."""
    root = os.path.join(manual, "AudioSet")
    lines = ["index,mid,display_name"]
    for idx, mid, name in sorted(CLASS_INDEX_ROWS):
        lines.append(f'{idx},{mid},"{name}"' if "," in name else f"{idx},{mid},{name}")
    _write_text(os.path.join(root, "class_labels_indices.csv"), "\n".join(lines) + "\n")
    segs = [  # YTID, start, end, MIDs, file name written (None = absent), labels (paper nine)
        ("--4gqARaEJE", 0.0, 10.0, "/m/068hy,/m/07q6cd_,/m/0bt9lr,/m/05tny_",
         "eval_segments/--4gqARaEJE_0.000.wav", ["Bark"]),
        ("-0xZzqtTz1A", 30.0, 40.0, "/m/03kmc9,/m/012n7d", "eval_segments/-0xZzqtTz1A.flac",
         ["Siren"]),
        ("0AbCdEfGhIj", 20.0, 30.0, "/m/025wky1,/m/0912c9,/m/09x0r",
         "audio/Y0AbCdEfGhIj_20.000_30.000.wav",
         ["Air conditioning", "Vehicle horn, car horn, honking"]),
        ("_Abc_defG-h", 5.0, 15.0, "/m/01d380", "audio/_Abc_defG-h_5.wav", ["Drill"]),
        ("-1TgzJl7e9s", 0.0, 10.0, "/m/09x0r", "audio/-1TgzJl7e9s_0.000.wav", None),
        ("7ysB1cz6-sE", 10.0, 20.0, "/m/032s66", None, ["Gunshot, gunfire"]),
        ("Zz9a8B7c6D5", 0.0, 10.0, "/m/03p19w", "audio/Zz9a8B7c6D5_0.000.wav", ["Jackhammer"]),
    ]
    lines = ["# Segments csv created Sun Mar  5 10:54:25 2017",
             f"# num_ytids={len(segs)}, num_segs={len(segs)}, num_unique_labels=12, "
             "num_positive_labels=13",
             "# YTID, start_seconds, end_seconds, positive_labels"]
    ids, bad = {}, {}
    for i, (ytid, start, end, mids, fname, labels) in enumerate(segs):
        lines.append(f'{ytid}, {start:.3f}, {end:.3f}, "{mids}"')
        rec_id = f"{ytid}_{start:.3f}"
        if fname and ytid == "Zz9a8B7c6D5":
            write_empty(os.path.join(root, fname))
            bad[rec_id] = "empty"
        elif fname:
            write_audio(os.path.join(root, fname), 0.6, [16000, 44100, 48000, 32000][i % 4],
                        1 + i % 2, seed=i)
            if labels:
                ids[rec_id] = (labels, "test")
        else:
            bad[rec_id] = "no audio file"
    _write_text(os.path.join(root, "eval_segments.csv"), "\n".join(lines) + "\n")
    return {"ids": ids, "bad": bad, "excluded": ["-1TgzJl7e9s_0.000"]}


# ------------------------------------------------------------------- folder and CSV


def make_label_folders(root: str) -> dict:
    """<root>/<label>/[sub/]<file> with one label per sub-folder, plus ignored files."""
    files = {"dog/bark1.wav": (22050, 1), "dog/park/bark2.flac": (48000, 2),
             "dog/bark3.wav": (44100, 1), "rain/r1.wav": (16000, 1), "rain/r2.ogg": (44100, 1),
             "rain/r3.wav": (8000, 2), "siren/s1.wav": (44100, 2), "siren/s2.aiff": (32000, 1),
             "siren/s3.wav": (22050, 1), "siren/s4.wav": (22050, 1)}
    for i, (rel, (sr, ch)) in enumerate(files.items()):
        write_audio(os.path.join(root, rel), 0.5, sr, ch, seed=i)
    write_corrupt(os.path.join(root, "rain", "broken.wav"))
    _write_text(os.path.join(root, "README.txt"), "not audio\n")
    _write_text(os.path.join(root, "dog", "notes.txt"), "not audio\n")
    ids = {rel: [rel.split("/")[0]] for rel in files}
    return {"ids": ids, "bad": {"rain/broken.wav": "cannot be decoded"},
            "ignored": ["README.txt", "notes.txt"]}


def make_label_csv(root: str, with_split: bool = True) -> tuple[str, dict]:
    """<root>/meta/list.csv (path,labels[,split]; paths relative to the CSV) + audio."""
    rows = [  # path (relative to meta/), labels, split
        ("../clips/a.wav", "dog;siren", "train"), ("../clips/b.flac", "rain", "train"),
        ("../clips/c.wav", "", "train"), ("../clips/sub/d.wav", "siren;rain;dog", "validation"),
        ("../clips/e.wav", "dog", "test"), ("../clips/f.wav", "rain;siren", "test"),
        ("../clips/nan.wav", "dog", "train"), ("../clips/missing.wav", "rain", "validation"),
        ("../clips/g.wav", "siren", "val"),
    ]
    for i, (rel, _, _) in enumerate(rows):
        path = os.path.normpath(os.path.join(root, "meta", rel))
        if rel.endswith("nan.wav"):
            write_nan_wav(path)
        elif not rel.endswith("missing.wav"):
            write_audio(path, 0.5 + 0.05 * i, [44100, 22050, 48000][i % 3], 1 + i % 2, seed=i)
    header = "path,labels,split" if with_split else "path,labels"
    body = [f"{p},{l},{s}" if with_split else f"{p},{l}" for p, l, s in rows]
    csv_path = os.path.join(root, "meta", "list.csv")
    _write_text(csv_path, "\n".join([header] + body) + "\n")
    alias = {"val": "validation"}
    ids = {p: (sorted(x for x in l.split(";") if x), alias.get(s, s)) for p, l, s in rows
           if "nan" not in p and "missing" not in p}
    return csv_path, {"ids": ids, "bad": {"../clips/nan.wav": "non-finite",
                                          "../clips/missing.wav": "does not exist"}}
