"""The real benchmark's build: weakly labelled recordings mixed from the office corpus's events.

`build(source, out)` reads a copy of the corpus (`wler_jax.data.sased`) and writes, under `out`
(reused when it already holds the same build):

  * `clips.csv` (path,labels,split,source,kind): every isolated event and every segment, one
    weak label each, split by whole sources (15 % test, 15 % validation, the rest train, or one
    fold of a k-fold split). The test split is never used for model selection.
  * `weak.csv` and `context/`: clips.csv plus weakly labelled recordings of the kind the paper
    trains on (an event somewhere in a longer recording, the time unknown): every train and
    validation isolated event placed at a random time in a 2-6 s background at an
    event-to-background ratio in [-6, +6] dB, and `negative_fraction` as many background-only
    recordings with no label. With `train_mixtures=F`, also round(F x the split's isolated
    events) long recordings per train/validation split (`weak_mixtures/`), made as the long
    test mixtures below from that split's own events, labelled with the union of their classes.
  * `mixtures/mix_NNN.wav`: `num_mixtures` weakly labelled recordings of 10-60 s (seeded,
    `mix_seed`), each mixing 1-4 isolated events drawn from the *test* sources only into a
    background at an event-to-background ratio uniform in [-6, +6] dB (RMS over the event vs the
    background's RMS). The corpus ships no isolated background, so the background is the
    synthetic set's generator (`wler_jax.data.datasets.synthetic_audio`) at -35 dBFS RMS.
    `mixtures.csv` (path,labels,duration) holds the weak labels and `mixtures_events.tsv` the
    event times (DCASE format: filename, onset, offset, event_label).
  * `mixtures_val/`, `mixtures_val.csv`, `mixtures_val_events.tsv`: as many long recordings made
    the same way from the *validation* sources' events (seeds `mix_seed + 10000`), so choices
    about long recordings can be made without the test mixtures.
  * `manifest.json`: the build's parameters and counts.

No test audio is in any training or validation recording.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time

import numpy as np
import soundfile as sf

from wler_jax import audio, errors
from wler_jax.data.datasets import synthetic_audio
from wler_jax.data.sased import (CLASSES, Clip, find_root, scan_corpus, split_sources,
                                 write_clips_csv)

SR = 44_100
EBR_DB = (-6.0, 6.0)
BACKGROUND_DBFS = -35.0
MIX_SECONDS = (10.0, 60.0)
EVENTS_PER_MIX = (1, 4)
BUILD_VERSION = 2
CONTEXT_SECONDS = (2.0, 6.0)  # weakly labelled training recordings: one event in a background
NEGATIVE_FRACTION = 0.15  # background-only recordings (no label), per context recording
# Weakly labelled long recordings in the weak set, per train/validation isolated event: made as
# the long test mixtures (10-60 s, 1-4 events), from that split's own events (0: none). 0.25
# doubles the training audio and raised WLER's long validation tagging on 5 of 5 folds
# (docs/experiments.md, part 9).
TRAIN_MIXTURES = 0.25
TRAIN_MIX_SEED_OFFSET = 20_000  # their seeds, apart from the test and validation mixtures'
VAL_MIX_SEED_OFFSET = 10_000  # validation mixtures' seeds, apart from the test mixtures'


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """The synthetic set's background generator at BACKGROUND_DBFS RMS ([n] float)."""
    return 10 ** (BACKGROUND_DBFS / 20) * synthetic_audio._background(rng, n)


def _add_event(x: np.ndarray, w: np.ndarray, rng: np.random.Generator) -> tuple[int, int, float]:
    """Adds event `w` (cut to fit) into background `x` in place, at a random start and an
    event-to-background ratio uniform in EBR_DB (event RMS vs the background's); returns
    (start, length, ratio in dB)."""
    m = min(len(w), len(x))
    start = int(rng.integers(0, len(x) - m + 1))
    ebr = float(rng.uniform(*EBR_DB))
    x[start:start + m] += 10 ** (BACKGROUND_DBFS / 20) * 10 ** (ebr / 20) / _rms(w[:m]) * w[:m]
    return start, m, ebr


def _fresh_dir(path: str) -> None:
    """Empties (or makes) the folder a builder writes, so no file of an earlier, larger build
    is left beside the new ones."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def _write_wav(path: str, x: np.ndarray) -> None:
    """Writes `x` as 16-bit PCM, scaled down to a 0.99 peak where it would clip."""
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:
        x = x * (0.99 / peak)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")


def isolated_events(clips: list[Clip], splits: dict[str, str], split: str) -> list[Clip]:
    """The isolated events (not scene segments) whose source is in `split`."""
    return [k for k in clips if k.kind == "isolated" and splits[k.source] == split]


def make_mixtures(pool: list[Clip], out_dir: str, num: int, seed: int) -> list[dict]:
    """Writes `num` long recordings mixing 1-4 events of `pool` into a background.

    Returns one dict per recording: {"file", "duration", "labels", "events": [(on, off, label,
    source file, ebr_db)]}.
    """
    if not pool:
        raise ValueError("empty event pool")
    _fresh_dir(out_dir)
    waves = {k.path: audio.load(k.path) for k in pool}
    records = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        n = int(rng.uniform(*MIX_SECONDS) * SR)
        x = _background(np.random.default_rng([seed, i, 1]), n)
        events = []
        for _ in range(int(rng.integers(EVENTS_PER_MIX[0], EVENTS_PER_MIX[1] + 1))):
            clip = pool[int(rng.integers(len(pool)))]
            start, m, ebr = _add_event(x, waves[clip.path], rng)
            events.append((round(start / SR, 4), round((start + m) / SR, 4), clip.label,
                           os.path.basename(clip.path), round(ebr, 2)))
        name = f"mix_{i:03d}.wav"
        _write_wav(os.path.join(out_dir, name), x)
        events.sort()
        records.append({"file": name, "duration": n / SR,
                        "labels": sorted({e[2] for e in events}), "events": events})
    return records


def make_context_recordings(clips: list[Clip], splits: dict[str, str], out_dir: str,
                            seed: int, negative_fraction: float = NEGATIVE_FRACTION,
                            context_seconds: tuple[float, float] = CONTEXT_SECONDS
                            ) -> list[tuple[str, str, str, str, str]]:
    """The weak training set's extra recordings: each train/validation isolated event placed
    at a random time in a 2-6 s background at an event-to-background ratio in [-6, +6] dB
    (label: the event's class, source: the event's), plus background-only recordings with no
    label (15 % as many, their own sources). The backgrounds are draws of the same generator
    as the long test recordings' (seeded apart from them, `[seed, 7, 7, k]`); no test audio.

    Returns (path, label, split, source, kind) rows.
    """
    _fresh_dir(out_dir)
    rows = []
    for split in ("train", "validation"):
        mine = isolated_events(clips, splits, split)
        plan = [(k, "context") for k in mine]
        plan += [(None, "background")] * int(round(negative_fraction * len(mine)))
        for j, (clip, kind) in enumerate(plan):
            key = len(rows)
            rng = np.random.default_rng([seed, 7, 7, key])
            n = int(rng.uniform(*context_seconds) * SR)
            x = _background(np.random.default_rng([seed, 7, 8, key]), n)
            if clip is not None:
                _add_event(x, audio.load(clip.path), rng)
            name = f"{split}_{kind}_{j:03d}.wav"
            _write_wav(os.path.join(out_dir, name), x)
            rows.append((os.path.join(out_dir, name), clip.label if clip else "", split,
                         clip.source if clip else f"background_{split}_{j:03d}", kind))
    return rows


def make_weak_mixtures(clips: list[Clip], splits: dict[str, str], out_dir: str, seed: int,
                       per_event: float) -> list[tuple[str, str, str, str, str]]:
    """The weak set's long recordings: for the train and the validation split, round(per_event
    x its isolated events) recordings made exactly as the long test mixtures (10-60 s, 1-4
    events at [-6, +6] dB in the generator's background) from that split's own isolated events,
    labelled with the union of their classes and nothing else: the paper's setting (a label for
    events somewhere in a long recording). Seeds `seed + TRAIN_MIX_SEED_OFFSET (+1 for
    validation)`; no test audio. Returns (path, labels, split, source, kind) rows."""
    rows = []
    for k, split in enumerate(("train", "validation")):
        pool = isolated_events(clips, splits, split)
        num = int(round(per_event * len(pool)))
        if not num:
            continue
        folder = os.path.join(out_dir, split)
        for r in make_mixtures(pool, folder, num, seed + TRAIN_MIX_SEED_OFFSET + k):
            rows.append((os.path.join(folder, r["file"]), ";".join(r["labels"]), split,
                         f"mixture_{split}_{r['file'][:-4]}", "mixture"))
    return rows


def write_mixture_tables(out: str, records: list[dict], name: str = "mixtures") -> None:
    """`<name>.csv` (path,labels,duration) and `<name>_events.tsv` (DCASE event table)."""
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "labels", "duration"])
        for r in records:
            w.writerow([f"{name}/{r['file']}", ";".join(r["labels"]), f"{r['duration']:.6f}"])
    with open(os.path.join(out, f"{name}_events.tsv"), "w") as f:
        f.write("filename\tonset\toffset\tevent_label\n")
        for r in records:
            for on, off, label, *_ in r["events"]:
                f.write(f"{r['file']}\t{on:.4f}\t{off:.4f}\t{label}\n")


def read_events_tsv(path: str) -> dict[str, list[tuple[float, float, str]]]:
    """{file name: [(onset, offset, label)]} of a DCASE event table."""
    out: dict[str, list] = {}
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    for name, on, off, label in rows[1:]:
        out.setdefault(name, []).append((float(on), float(off), label))
    return out


def test_clips(out: str, train_set: str) -> list[dict]:
    """The clip test split of a build: [{"path", "label", "source"}] in CSV order."""
    with open(os.path.join(out, f"{train_set}.csv")) as f:
        return [{"path": r["path"], "label": r["labels"], "source": r["source"]}
                for r in csv.DictReader(f) if r["split"] == "test"]


test_clips.__test__ = False  # not a pytest test, though its name starts with "test"


def make_validation_mixtures(clips: list[Clip], splits: dict[str, str], out: str,
                             params: dict) -> dict:
    """Writes `mixtures_val/` (+ tables): long recordings made exactly as the test mixtures,
    from the *validation* sources' isolated events, so choices about long recordings can be
    made without the test mixtures. Returns the manifest's "val_mixtures" entry."""
    pool = isolated_events(clips, splits, "validation")
    seed = params["mix_seed"] + VAL_MIX_SEED_OFFSET
    records = make_mixtures(pool, os.path.join(out, "mixtures_val"), params["num_mixtures"], seed)
    write_mixture_tables(out, records, "mixtures_val")
    entry = {"count": len(records), "event_pool": len(pool),
             "seconds": round(sum(r["duration"] for r in records), 1),
             "events": sum(len(r["events"]) for r in records), "seed": seed}
    print(f"built {len(records)} validation mixtures ({entry['seconds']} s) from {len(pool)} "
          "validation events", flush=True)
    return entry


def ensure_validation_mixtures(root: str, out: str, manifest: dict) -> dict:
    """Adds the validation mixtures to a reused build that lacks them (made before they
    existed), leaving its other files untouched; returns the manifest."""
    if "val_mixtures" in manifest and os.path.isfile(os.path.join(out, "mixtures_val.csv")):
        return manifest
    params = manifest["params"]
    clips, _ = scan_corpus(root)
    manifest["val_mixtures"] = make_validation_mixtures(
        clips, split_sources(clips, params["split_seed"], folds=params.get("folds", 0),
                             fold=params.get("fold", 0)), out, params)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


class BuildMismatch(errors.UserError, ValueError):
    """`out` holds runs trained on a build with other parameters."""


def _reuse(out: str, root: str, params: dict, rebuild: bool) -> dict | None:
    """The manifest of the build already in `out` when it has these parameters (else None);
    refuses to rebuild a folder that holds runs trained on another build."""
    manifest_path = os.path.join(out, "manifest.json")
    if not os.path.exists(manifest_path):
        return None
    with open(manifest_path) as f:
        manifest = json.load(f)
    # builds from before these were parameters used these values
    have = {"negative_fraction": NEGATIVE_FRACTION, "context_seconds": list(CONTEXT_SECONDS),
            "folds": 0, "fold": 0, "train_mixtures": 0.0, **manifest.get("params", {})}
    if have == params and not rebuild:
        print(f"reusing the build in {out}", flush=True)
        return ensure_validation_mixtures(root, out, manifest)
    if have != params and os.path.isdir(os.path.join(out, "runs")):  # --rebuild too
        old = {k: have.get(k) for k in params if have.get(k) != params[k]}
        raise BuildMismatch(
            f"{out} holds runs trained on another build (its parameters: {old}); use "
            "another --out for these parameters, or move its runs/ folder away first")
    return None


def build(source: str, out: str, *, split_seed: int = 0, mix_seed: int = 0,
          num_mixtures: int = 48, negative_fraction: float = NEGATIVE_FRACTION,
          context_seconds: tuple[float, float] = CONTEXT_SECONDS, rebuild: bool = False,
          folds: int = 0, fold: int = 0, train_mixtures: float = TRAIN_MIXTURES) -> dict:
    """Builds (or reuses) clips.csv, the mixtures and their tables; returns the manifest.
    `folds`/`fold`: fold `fold` of a k-fold split of the sources (`split_sources`)."""
    root = find_root(os.path.abspath(source))
    params = {"version": BUILD_VERSION, "source": os.path.abspath(source),
              "split_seed": split_seed, "mix_seed": mix_seed, "num_mixtures": num_mixtures,
              "negative_fraction": negative_fraction, "context_seconds": list(context_seconds),
              "folds": folds, "fold": fold, "train_mixtures": train_mixtures}
    reused = _reuse(out, root, params, rebuild)
    if reused is not None:
        return reused
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    clips, facts = scan_corpus(root)
    splits = split_sources(clips, split_seed, folds=folds, fold=fold)
    counts = write_clips_csv(os.path.join(out, "clips.csv"), clips, splits)
    extra = make_context_recordings(clips, splits, os.path.join(out, "context"), mix_seed,
                                    negative_fraction, context_seconds)
    extra += make_weak_mixtures(clips, splits, os.path.join(out, "weak_mixtures"), mix_seed,
                                train_mixtures)
    shutil.copyfile(os.path.join(out, "clips.csv"), os.path.join(out, "weak.csv"))
    with open(os.path.join(out, "weak.csv"), "a", newline="") as f:
        csv.writer(f).writerows(extra)
    for _, _, split, _, kind in extra:
        counts[f"{split}/{kind}"] = counts.get(f"{split}/{kind}", 0) + 1
    pool = isolated_events(clips, splits, "test")
    records = make_mixtures(pool, os.path.join(out, "mixtures"), num_mixtures, mix_seed)
    write_mixture_tables(out, records)
    manifest = {
        "params": params, "classes": list(CLASSES), "clip_counts": counts,
        "clips_per_class": {c: sum(k.label == c for k in clips) for c in CLASSES},
        "num_sources": len(set(k.source for k in clips)),
        "sources_per_split": {s: sum(v == s for v in splits.values())
                              for s in ("train", "validation", "test")},
        "source_matching": facts, "mixture_event_pool": len(pool),
        "mixtures": {"count": len(records),
                     "seconds": round(sum(r["duration"] for r in records), 1),
                     "events": sum(len(r["events"]) for r in records),
                     "ebr_db": list(EBR_DB), "background_dbfs_rms": BACKGROUND_DBFS,
                     "length_s": list(MIX_SECONDS), "events_per_recording": list(EVENTS_PER_MIX)},
        "val_mixtures": make_validation_mixtures(clips, splits, out, params),
        "build_seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"built {out}: {counts}; {len(records)} mixtures "
          f"({manifest['mixtures']['seconds']} s) in {manifest['build_seconds']} s", flush=True)
    return manifest
