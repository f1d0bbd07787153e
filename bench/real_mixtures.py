"""Real-recording benchmark: DCASE 2016 task 2 office events, WLER vs SLAT over seeds.

  python bench/real_mixtures.py --source=/work/realdata/sased --out=/work/realdata/bench
  python bench/real_mixtures.py --source=... --out=... --train --seeds=5 [--size=cpu]
      [--epochs=72] [--width=0.125] [--override=train.ema_decay=0.999 ...] [--json=PATH]
  python bench/real_mixtures.py ... --train --first_seed=3 --seeds=2 --json=b.json  # more seeds
  python bench/real_mixtures.py --merge a.json b.json --json=ab.json  # one summary, no training
  python bench/real_mixtures.py ... --train --folds=5 --seeds=5  # 5-fold cross-validation

`--source` is a local copy of the public GitHub repository `Stevens05/SASED` (the DCASE 2016
task 2 "sound event detection in synthetic audio" development material: 11 office classes, 20
isolated events each under `data/train/sound`, 594 event segments cut from the 18 development
scenes under `data/val/segments`, their scenes' annotations and source lists under
`data/val/annotation` and `data/val/wav_files`, 44.1 kHz mono). Nothing is downloaded.

Build (always; reused when `--out` already holds the same build):
  * `clips.csv` (path,labels,split,source,kind): every isolated event and every segment, one
    weak label each. `source` is the isolated recording a clip comes from: an isolated file is
    its own source; a segment's source is found from its scene's `wav_files` list (the isolated
    files mixed into that scene): in the monophonic scenes the list is in annotation order, in
    the polyphonic ones it is grouped by class, so a segment is matched to the same-class file
    of equal duration (optimal assignment; the durations agree to ~10 ms). Where a match is not
    clear (no file within 50 ms) all same-class files of that scene are merged into one source,
    so nothing can leak. Splits are made of whole sources, per class (15 % test, 15 %
    validation, the rest train, `--split_seed`), so no event recording is heard on two sides
    (a development scene reuses each isolated event at three event-to-background ratios).
    The test split is never used for model selection (the best epoch is chosen on validation).
  * `weak.csv` and `context/`: clips.csv plus weakly labelled recordings of the kind the paper
    trains on (an event somewhere in a longer recording, the time unknown): every train and
    validation isolated event placed at a random time in a 2-6 s background at an
    event-to-background ratio in [-6, +6] dB, and 15 % as many background-only recordings with
    no label (`--negative_fraction`). Their backgrounds are other draws of the generator the
    long test recordings use (below); no test audio is in them, and the clip test split is the
    same as clips.csv's. With `--train_mixtures=F`, also round(F x the split's isolated events)
    long recordings per train/validation split (`weak_mixtures/`), made exactly as the long
    test mixtures below but from that split's own events, labelled with the union of their
    classes: the paper's setting, a label for events somewhere in a long recording.
  * `mixtures/mix_NNN.wav`: `--num_mixtures` weakly labelled recordings of 10-60 s (seeded,
    `--mix_seed`), each mixing 1-4 isolated events drawn from the *test* sources only (no
    training or validation audio in them) into a background at an event-to-background ratio
    uniform in [-6, +6] dB (RMS over the event vs the background's RMS; DCASE 2016 task 2 used
    -6, 0 and +6 dB). The corpus ships no isolated background, so the background is the
    synthetic set's generator (`wler_jax.data.datasets.synthetic_audio`: coloured noise, optional
    hum and babble, unlabelled clicks/beeps/thuds) at -35 dBFS RMS. `mixtures.csv`
    (path,labels,duration) holds the weak labels and `mixtures_events.tsv` the event times
    (DCASE format: filename, onset, offset, event_label).
  * `mixtures_val/`, `mixtures_val.csv`, `mixtures_val_events.tsv`: as many long recordings made
    the same way from the *validation* sources' isolated events (seeds `mix_seed + 10000`), so
    choices about long recordings can be made without looking at the test mixtures (added to an
    existing build without touching its other files).

Train (`--train`): for SLAT and WLER and `--seeds` seeds from `--first_seed`,
`wler_jax.training.train.train_and_evaluate` on `configs/{slat,wler}.py:folder,<size>` with
`data.path=<train_set>.csv` (`--train_set=weak`, the default, or `clips`; clip validation/test
mAP), then
`python -m wler_jax.predict` on the mixtures (a subprocess, the CLI users run): tagging mAP of
the long recordings (per-class AP of the clip scores over recordings, as `wler_jax.evaluate`;
the validation mixtures' too, as `long_val_tagging_mAP`),
and localisation from the segment scores against the TSV (segment-based F1 at the threshold and
PSDS 1/2, `wler_jax.serving.localisation`). Writes JSON (`runs`, `summary` with mean, std and a 95 %
t-interval per method, and the paired WLER - SLAT difference) and prints a table.
Workdirs are `<out>/runs/<train_set>/<size><+override...>/<method>_seed<k>` (the overrides,
`--epochs` first, name the folder); they are retrained from scratch unless `--resume` (a
finished run is then only evaluated again). `--merge` joins sweep JSONs into one summary.

Cross-validation (`--folds=K`): the fixed split tests 3 sources per class, so one odd source
weighs on every seed. With `--folds=K` each class's sources (in the `--split_seed` order) are cut
into K chunks; seed s tests on chunk s % K, validates on the 15 % of sources after it and trains
on the rest, from its own build under `<out>/folds<K>/fold<s % K>` (its long mixtures are made
from that fold's test and validation sources). Every run also scores its clip test split
through the predict CLI, and every complete round of K seeds pools those out-of-fold scores:
every source of the corpus tested exactly once, one mAP per method, and the paired
WLER - SLAT difference with a bootstrap interval over whole sources (`pooled_clip_test` in the
JSON).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

SR = 44_100
CLASSES = ("clearthroat", "cough", "doorslam", "drawer", "keyboard", "keysDrop", "knock",
           "laughter", "pageturn", "phone", "speech")
_ALIASES = {"keys": "keysDrop"}  # segment names and annotations say "keys"
_SCENE = re.compile(r"^(dev_\d+_ebr_-?\d+_nec_\d+_poly_\d)_([A-Za-z]+)_(\d+)\.wav$")
MATCH_TOLERANCE_S = 0.05
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
# (bench/README.md, "Learning, part 9").
TRAIN_MIXTURES = 0.25
TRAIN_MIX_SEED_OFFSET = 20_000  # their seeds, apart from the test and validation mixtures'
# Training epochs at --size=cpu. On the clips and short context recordings alone the preset's
# 36 left clip and long validation mAP rising and 72 raised both (bench/README.md, part 5); the
# weak mixtures double the audio per epoch, so 36 epochs now take about the time 72 took
# (3,744 optimiser steps instead of 4,896 on fold 0 of part 9, longer recordings packing better).
CPU_EPOCHS = 36
# Channel width at --size=cpu. The preset's 0.125 (16 conv1 channels) left 2 of 10 WLER runs
# near chance for 12 epochs on this corpus, with 7-8 of conv1's channels linear at
# initialisation (raw dB input); at 0.25 (24) every run started and long validation tagging
# rose from 0.667 +- 0.072 to 0.700 +- 0.033 over 8 runs, for ~10-15 % more training time
# (bench/README.md, "Learning, part 12"). The synthetic default keeps 0.125.
CPU_WIDTH = 0.25


def class_of(name: str) -> str:
    """Class of an isolated file name ('keysDrop014.wav') or a label ('keys')."""
    stem = re.sub(r"\d+$", "", os.path.splitext(os.path.basename(name))[0])
    stem = _ALIASES.get(stem, stem)
    if stem not in CLASSES:
        raise ValueError(f"{name}: unknown class {stem!r} (expected one of {CLASSES})")
    return stem


def _duration(path: str) -> float:
    import soundfile as sf

    return sf.info(path).frames / sf.info(path).samplerate


def find_root(source: str) -> str:
    """The folder holding train/sound and val/segments (the repository root or its data/)."""
    for root in (os.path.join(source, "data"), source):
        if os.path.isdir(os.path.join(root, "train", "sound")):
            need = [os.path.join(root, "val", d) for d in ("segments", "annotation",
                                                           "wav_files")]
            missing = [p for p in need if not os.path.isdir(p)]
            if missing:
                raise SystemExit(f"error: {source}: missing {missing}; expected a copy of the "
                                 "Stevens05/SASED repository (data/train/sound, data/val/...)")
            return root
    raise SystemExit(f"error: {source} holds no data/train/sound; expected a local copy of the "
                     "public GitHub repository Stevens05/SASED")


class _Union:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclasses.dataclass
class Clip:
    path: str
    label: str
    source: str  # isolated recording it comes from (a union-find representative)
    kind: str  # "isolated" | "segment"


def scan_corpus(root: str) -> tuple[list[Clip], dict]:
    """Every clip with its class and source, plus facts about the matching."""
    from scipy.optimize import linear_sum_assignment

    isolated = sorted(glob.glob(os.path.join(root, "train", "sound", "*.wav")))
    if not isolated:
        raise SystemExit(f"error: no WAV files in {root}/train/sound")
    iso_dur = {os.path.basename(p): _duration(p) for p in isolated}
    uf = _Union()
    for name in iso_dur:
        uf.find(os.path.splitext(name)[0])
    seg_source: dict[str, str] = {}  # segment file -> isolated stem
    facts = {"scenes": 0, "matched_by_order": 0, "matched_by_duration": 0, "merged_ambiguous": 0,
             "max_match_error_s": 0.0}
    segments = sorted(glob.glob(os.path.join(root, "val", "segments", "*.wav")))
    by_scene: dict[str, list[tuple[int, str, str]]] = {}
    for p in segments:
        m = _SCENE.match(os.path.basename(p))
        if not m:
            raise SystemExit(f"error: unexpected segment name {p}")
        by_scene.setdefault(m.group(1), []).append((int(m.group(3)), class_of(m.group(2)), p))
    for scene, segs in sorted(by_scene.items()):
        facts["scenes"] += 1
        ann_path = os.path.join(root, "val", "annotation", scene + ".txt")
        list_path = os.path.join(root, "val", "wav_files", scene + ".txt")
        with open(ann_path) as f:
            ann = [l.split() for l in f if l.strip()]
        with open(list_path) as f:
            files = [l.strip() for l in f if l.strip()]
        if len(ann) != len(files):
            raise SystemExit(f"error: {scene}: {len(ann)} annotated events but {len(files)} "
                             "files listed")
        events = [(float(a[0]), float(a[1]), class_of(a[2])) for a in ann]
        assigned: dict[int, str] = {}
        if all(class_of(w) == e[2] for w, e in zip(files, events)):  # same order (monophonic)
            for k, w in enumerate(files):
                err = abs((events[k][1] - events[k][0]) - iso_dur[w])
                facts["max_match_error_s"] = max(facts["max_match_error_s"], err)
                assigned[k] = w
                facts["matched_by_order"] += 1
        else:  # grouped by class (polyphonic): match durations within each class
            for c in CLASSES:
                ks = [k for k, e in enumerate(events) if e[2] == c]
                ws = [w for w in files if class_of(w) == c]
                if not ks:
                    continue
                cost = np.array([[abs((events[k][1] - events[k][0]) - iso_dur[w]) for w in ws]
                                 for k in ks])
                rows, cols = linear_sum_assignment(cost)
                if len(ks) == len(ws) and cost[rows, cols].max() <= MATCH_TOLERANCE_S:
                    for r, c_ in zip(rows, cols):
                        assigned[ks[r]] = ws[c_]
                        facts["max_match_error_s"] = max(facts["max_match_error_s"],
                                                         float(cost[r, c_]))
                    facts["matched_by_duration"] += len(ks)
                else:  # not clear: one source for all of them
                    for w in ws[1:]:
                        uf.union(os.path.splitext(ws[0])[0], os.path.splitext(w)[0])
                    for k in ks:
                        assigned[k] = ws[0]
                    facts["merged_ambiguous"] += len(ks)
        for k, label, p in segs:
            if k >= len(events) or events[k][2] != label:
                raise SystemExit(f"error: {p}: index {k} is not a {label} event of {scene}")
            seg_source[p] = os.path.splitext(assigned[k])[0]
    clips = [Clip(p, class_of(p), uf.find(os.path.splitext(os.path.basename(p))[0]), "isolated")
             for p in isolated]
    clips += [Clip(p, class_of(_SCENE.match(os.path.basename(p)).group(2)),
                   uf.find(seg_source[p]), "segment") for p in segments]
    return clips, facts


def split_sources(clips: list[Clip], seed: int, fraction: float = 0.15, *, folds: int = 0,
                  fold: int = 0) -> dict[str, str]:
    """{source: split}: per class, whole sources in a seeded order: test, validation, train.

    With `folds` (k-fold cross-validation), the seeded order is cut into `folds` near-equal
    chunks: chunk `fold` is the test split (so over the folds every source is tested exactly
    once), the `fraction` of the class's sources that follow it (cyclically) validation, the
    rest train.
    """
    if folds and not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is not in 0..{folds - 1}")
    out = {}
    for c in CLASSES:
        sources = sorted({k.source for k in clips if k.label == c})
        if not sources:
            continue
        n = max(1, int(round(fraction * len(sources)))) if len(sources) >= 3 else 0
        order = np.random.default_rng([seed, CLASSES.index(c)]).permutation(len(sources))
        if folds:
            chunks = np.array_split(np.arange(len(sources)), folds)
            if len(sources) - len(chunks[fold]) - n < 1:
                raise ValueError(f"class {c}: {len(sources)} sources, too few for {folds} folds "
                                 "with a validation and a train split")
            test = set(chunks[fold].tolist())
            after = [(chunks[fold][-1] + 1 + j) % len(sources) for j in range(n)]
            rank_split = {r: "test" for r in test} | {r: "validation" for r in after}
            for rank, i in enumerate(order):
                out[sources[i]] = rank_split.get(rank, "train")
            continue
        for rank, i in enumerate(order):
            out[sources[i]] = "test" if rank < n else "validation" if rank < 2 * n else "train"
    return out


def write_clips_csv(path: str, clips: list[Clip], splits: dict[str, str]) -> dict:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "labels", "split", "source", "kind"])
        for k in clips:
            w.writerow([os.path.abspath(k.path), k.label, splits[k.source], k.source, k.kind])
    counts = {}
    for k in clips:
        key = f"{splits[k.source]}/{k.kind}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """The synthetic set's background generator at BACKGROUND_DBFS RMS ([n] float)."""
    from wler_jax.data.datasets import synthetic_audio

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
    import soundfile as sf

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
    from wler_jax import audio

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
    from wler_jax import audio

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
    out: dict[str, list] = {}
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))
    for name, on, off, label in rows[1:]:
        out.setdefault(name, []).append((float(on), float(off), label))
    return out


VAL_MIX_SEED_OFFSET = 10_000  # validation mixtures' seeds, apart from the test mixtures'


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


class BuildMismatch(ValueError):
    """`--out` holds runs trained on a build with other parameters."""


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
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path):
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
    per_class = {c: sum(k.label == c for k in clips) for c in CLASSES}
    manifest = {
        "params": params, "classes": list(CLASSES), "clip_counts": counts,
        "clips_per_class": per_class, "num_sources": len(set(k.source for k in clips)),
        "sources_per_split": {s: sum(v == s for v in splits.values())
                              for s in ("train", "validation", "test")},
        "source_matching": facts, "mixture_event_pool": len(pool),
        "mixtures": {"count": len(records), "seconds": round(sum(r["duration"]
                                                                 for r in records), 1),
                     "events": sum(len(r["events"]) for r in records),
                     "ebr_db": list(EBR_DB), "background_dbfs_rms": BACKGROUND_DBFS,
                     "length_s": list(MIX_SECONDS), "events_per_recording": list(EVENTS_PER_MIX)},
        "val_mixtures": make_validation_mixtures(clips, splits, out, params),
        "build_seconds": round(time.time() - t0, 1),
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"built {out}: {counts}; {len(records)} mixtures "
          f"({manifest['mixtures']['seconds']} s) in {manifest['build_seconds']} s", flush=True)
    return manifest


# --------------------------------------------------------------------------------- training


def long_tags(pred: dict, out: str, name: str = "mixtures"
              ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(files, class names, labels [N, C], recording scores [N, C]) of the predict CLI's output
    `pred` on the build's `<name>.csv` recordings, in the order of `pred["results"]`."""
    names = list(pred["class_names"])
    with open(os.path.join(out, f"{name}.csv")) as f:
        truth = {os.path.basename(r["path"]): [l for l in r["labels"].split(";") if l]
                 for r in csv.DictReader(f)}
    if pred["failed"]:
        raise RuntimeError(f"predict failed on {pred['failed']}")
    files = [os.path.basename(r["file"]) for r in pred["results"]]
    if sorted(files) != sorted(truth):
        raise RuntimeError(f"predictions for {len(files)} files, {len(truth)} expected")
    labels = np.zeros((len(files), len(names)), np.float32)
    scores = np.zeros_like(labels)
    for i, (file, r) in enumerate(zip(files, pred["results"])):
        labels[i, [names.index(l) for l in truth[file]]] = 1.0
        scores[i] = [r["scores"][c] for c in names]
    return files, names, labels, scores


def evaluate_long(pred_json: str, out: str, threshold: float, name: str = "mixtures") -> dict:
    """Tagging mAP and localisation of the predict CLI's output against the mixtures."""
    from wler_jax import evaluate, geometry
    from wler_jax.serving import localisation

    with open(pred_json) as f:
        pred = json.load(f)
    files, names, labels, scores = long_tags(pred, out, name)
    events = read_events_tsv(os.path.join(out, f"{name}_events.tsv"))
    timelines, durations = {}, {}
    for file, r in zip(files, pred["results"]):
        seg = np.array([[s["scores"][c] for c in names] for s in r["segment_scores"]])
        num_samples = int(round(r["duration"] * SR))
        frames = geometry.num_frames_for_samples(num_samples)
        timelines[file] = localisation.grid_scores(seg, frames, duration=num_samples / SR)
        durations[file] = num_samples / SR
    tag = evaluate.average_precision(labels, scores, names)
    loc = localisation.localisation_metrics(timelines, {n: events.get(n, []) for n in files},
                                            durations, names, threshold=threshold, psds2=True)
    return {"mAP": tag["mAP"], "AP": tag["AP"], "num_recordings": len(files),
            "localisation": {k: loc[k] for k in ("segment_f1", "segment_precision",
                                                 "segment_recall", "psds1", "psds2")}}


def preset_width(size: str) -> float:
    """`model.width` of the folder dataset's preset at `size` (configs/common.py)."""
    from wler_jax.configs.common import base_config

    return float(base_config("wler", f"folder,{size}").model.width)


def run_overrides(size: str, epochs: int | None, overrides: list[str],
                  width: float | None = None) -> list[str]:
    """The config overrides of every run: `--epochs` (default CPU_EPOCHS at size cpu), then
    `--width` (default CPU_WIDTH at size cpu; none when it is the preset's own, so such runs keep
    the folder they had before `--width`), each unless an explicit `train.epochs=` /
    `model.width=` override is given. They also name the run folder, so a run with other epochs
    or width never resumes from this one's workdir."""
    epochs = epochs or (CPU_EPOCHS if size == "cpu" else None)
    width = width if width is not None else (CPU_WIDTH if size == "cpu" else None)
    head = []
    if epochs and not any(o.startswith("train.epochs=") for o in overrides):
        head.append(f"train.epochs={epochs}")
    if (width is not None and width != preset_width(size)
            and not any(o.startswith("model.width=") for o in overrides)):
        head.append(f"model.width={width:g}")
    return [*head, *overrides]


def variant_slug(overrides: list[str]) -> str:
    """Run-folder suffix for config overrides ('' for none), so an A/B never reuses or deletes
    the default runs' workdirs: ['train.epochs=72'] -> '+train.epochs=72'."""
    slug = "".join("+" + re.sub(r"[^A-Za-z0-9._=-]", "_", o) for o in overrides)
    if len(slug) > 200:  # a folder name must stay under the file system's 255 bytes
        slug = slug[:180] + "+" + hashlib.sha1(slug.encode()).hexdigest()[:12]
    return slug


def train_one(method: str, seed: int, args, out: str) -> dict:
    from wler_jax.configs.common import apply_override, base_config
    from wler_jax.training import config_check
    from wler_jax.training import train

    config = base_config(method, f"folder,{args.size}")
    config.seed = seed
    config.data.path = os.path.join(out, f"{args.train_set}.csv")
    config.data.data_dir = os.path.join(out, "tfds")
    for assignment in args.override:
        apply_override(config, assignment)
    config_check.validate(config)
    workdir = os.path.join(out, "runs", args.train_set, args.size + variant_slug(args.override),
                           f"{method}_seed{seed}")
    if os.path.isdir(workdir) and not args.resume:
        shutil.rmtree(workdir)
    t0 = time.time()
    results = train.train_and_evaluate(config, workdir)
    train_s = time.time() - t0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    long, predict_s = {}, 0.0
    for name, tag in (("mixtures_val", "long_val"), ("mixtures", "long")):
        # the predict CLI, as users run it, on the validation then the test long recordings
        pred_json = os.path.join(workdir, f"{tag}_predictions.json")
        t1 = time.time()
        subprocess.run([sys.executable, "-m", "wler_jax.predict", f"--workdir={workdir}",
                        f"--output={pred_json}", f"--threshold={config.eval.threshold}",
                        f"--events_tsv={os.path.join(workdir, f'{tag}_events.tsv')}",
                        "--noprogress", os.path.join(out, name)], check=True, env=env)
        predict_s += time.time() - t1
        long[tag] = evaluate_long(pred_json, out, config.eval.threshold, name)
    long_val, long = long["long_val"], long["long"]
    # the clip test split through the CLI too: its scores are what a k-fold sweep pools
    clip_json = os.path.join(workdir, "clip_test_predictions.json")
    t1 = time.time()
    subprocess.run([sys.executable, "-m", "wler_jax.predict", f"--workdir={workdir}",
                    f"--output={clip_json}", "--noprogress",
                    *[c["path"] for c in test_clips(out, args.train_set)]], check=True, env=env)
    predict_s += time.time() - t1
    clip_cli = clip_test_scores(clip_json, out, args.train_set)
    run = {"method": method, "seed": seed, "size": args.size, "train_set": args.train_set,
           "overrides": args.override, "fold": args.fold_of_seed.get(seed),
           "best_epoch": results["best_epoch"], "epochs": int(config.train.epochs),
           "validation_mAP": results["validation"]["mAP"], "test_mAP": results["test"]["mAP"],
           "test_mAP_cli": clip_cli["mAP"], "build_dir": out,
           "validation_curve": [[h["epoch"], h["mAP"]] for h in results.get("history", [])],
           "long_val_tagging_mAP": long_val["mAP"],
           "long_tagging_mAP": long["mAP"], "long_AP": long["AP"],
           "long_localisation": long["localisation"],
           "seconds": round(train_s + predict_s, 1), "train_seconds": round(train_s, 1),
           "predict_seconds": round(predict_s, 1), "workdir": workdir}
    print(f"[{method} seed {seed}] clip val mAP {run['validation_mAP']:.3f}, clip test mAP "
          f"{run['test_mAP']:.3f}, long val tagging mAP {run['long_val_tagging_mAP']:.3f}, long "
          f"tagging mAP {run['long_tagging_mAP']:.3f}, segment F1 "
          f"{long['localisation']['segment_f1']:.3f}, PSDS1 {long['localisation']['psds1']:.3f}"
          f" ({run['seconds']:.0f} s)", flush=True)
    return run


def test_clips(out: str, train_set: str) -> list[dict]:
    """The clip test split of a build: [{"path", "label", "source"}] in CSV order."""
    with open(os.path.join(out, f"{train_set}.csv")) as f:
        return [{"path": r["path"], "label": r["labels"], "source": r["source"]}
                for r in csv.DictReader(f) if r["split"] == "test"]


def clip_test_scores(pred_json: str, out: str, train_set: str) -> dict:
    """The predict CLI's scores of the clip test split, aligned with `test_clips`:
    {"paths", "labels" [N, C], "scores" [N, C], "sources", "mAP"}."""
    from wler_jax import evaluate

    with open(pred_json) as f:
        pred = json.load(f)
    if pred["failed"]:
        raise RuntimeError(f"predict failed on {pred['failed']}")
    names = list(pred["class_names"])
    by_path = {os.path.abspath(r["file"]): r["scores"] for r in pred["results"]}
    clips = test_clips(out, train_set)
    missing = [c["path"] for c in clips if os.path.abspath(c["path"]) not in by_path]
    if missing:
        raise RuntimeError(f"{pred_json}: no scores for {len(missing)} test clips, e.g. "
                           f"{missing[0]}")
    labels = np.zeros((len(clips), len(names)), np.float32)
    for i, c in enumerate(clips):
        labels[i, names.index(c["label"])] = 1.0
    scores = np.array([[by_path[os.path.abspath(c["path"])][n] for n in names] for c in clips],
                      np.float64)
    return {"paths": [c["path"] for c in clips], "labels": labels, "scores": scores,
            "sources": [c["source"] for c in clips], "class_names": names,
            "mAP": evaluate.average_precision(labels, scores, names)["mAP"]}


def pooled_clip_test(runs: list[dict], folds: int) -> list[dict]:
    """k-fold sweeps: for every complete cross-validation round (seeds r*folds ..
    r*folds+folds-1, seed s on fold s % folds, both methods), each method's out-of-fold clip
    scores pooled over the folds (every source of the corpus tested once) -> mAP, and the
    paired WLER - SLAT difference with a bootstrap interval that resamples whole sources."""
    from wler_jax import evaluate

    get = {(r["method"], r["seed"]): r for r in runs}
    rounds = []
    for r0 in sorted({r["seed"] // folds * folds for r in runs}):
        seeds = list(range(r0, r0 + folds))
        if not all((m, s) in get for m in ("slat", "wler") for s in seeds):
            continue
        pooled = {}
        for m in ("slat", "wler"):
            parts = [clip_test_scores(os.path.join(get[m, s]["workdir"],
                                                   "clip_test_predictions.json"),
                                      get[m, s]["build_dir"], get[m, s]["train_set"])
                     for s in seeds]
            pooled[m] = {k: np.concatenate([p[k] for p in parts]) for k in
                         ("labels", "scores", "sources")}
            pooled[m]["paths"] = sum((p["paths"] for p in parts), [])
            names = parts[0]["class_names"]
        if pooled["slat"]["paths"] != pooled["wler"]["paths"]:
            raise RuntimeError(f"seeds {seeds}: the methods' test clips differ")
        labels, sources = pooled["wler"]["labels"], pooled["wler"]["sources"]
        maps = {m: evaluate.average_precision(labels, pooled[m]["scores"], names)
                for m in ("slat", "wler")}
        ci = evaluate.paired_bootstrap_map_ci(labels, pooled["wler"]["scores"],
                                              pooled["slat"]["scores"], groups=sources)
        rounds.append({"seeds": seeds, "num_clips": int(len(labels)),
                       "num_sources": int(len(set(sources.tolist()))),
                       "slat_mAP": maps["slat"]["mAP"], "wler_mAP": maps["wler"]["mAP"],
                       "slat_ci95": ci["b"], "wler_ci95": ci["a"],
                       "wler_minus_slat": maps["wler"]["mAP"] - maps["slat"]["mAP"],
                       "wler_minus_slat_ci95": ci["diff"],
                       "slat_AP": maps["slat"]["AP"], "wler_AP": maps["wler"]["AP"]})
    return rounds


METRICS = {"validation_mAP": lambda r: r["validation_mAP"], "test_mAP": lambda r: r["test_mAP"],
           "long_val_tagging_mAP": lambda r: r.get("long_val_tagging_mAP", float("nan")),
           "long_tagging_mAP": lambda r: r["long_tagging_mAP"],
           "long_segment_f1": lambda r: r["long_localisation"]["segment_f1"],
           "long_psds1": lambda r: r["long_localisation"]["psds1"],
           "long_psds2": lambda r: r["long_localisation"]["psds2"],
           "seconds": lambda r: r["seconds"]}


def _stats(values: list[float]) -> dict:
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    if len(v) < 2:  # no interval from one run (null in the JSON)
        return {"mean": mean, "std": std, "ci95": None, "n": len(v), "values": [mean]}
    half = float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v)))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": len(v),
            "values": [float(x) for x in v]}


def sweep_folds(sweep: dict) -> int:
    """A sweep JSON's folds; 0 (the fixed split) where the key is absent (sweeps written before
    it, and merged fixed-split sweeps)."""
    return sweep.get("folds") or 0


def runs_by_seed(runs: list[dict], method: str) -> dict[int, dict]:
    """{seed: run} of one method's runs."""
    return {r["seed"]: r for r in runs if r["method"] == method}


def _paired(a: dict, b: dict, seeds: list[int], flag: str) -> dict:
    """{metric: stats of a[s] - b[s] over `seeds`, with `flag`: every difference >= 0} for
    every metric but seconds; `a`, `b`: {seed: run}."""
    out = {}
    for m, f in METRICS.items():
        if m != "seconds":
            d = [f(a[s]) - f(b[s]) for s in seeds]
            out[m] = {**_stats(d), flag: bool(all(x >= 0 for x in d))}
    return out


def summarize(runs: list[dict]) -> dict:
    out = {}
    for method in ("slat", "wler"):
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        if mine:
            out[method] = {m: _stats([f(r) for r in mine]) for m, f in METRICS.items()}
    seeds = sorted({r["seed"] for r in runs if r["method"] == "wler"}
                   & {r["seed"] for r in runs if r["method"] == "slat"})
    if seeds:
        by = {m: runs_by_seed(runs, m) for m in ("wler", "slat")}
        out["wler_minus_slat"] = {
            m: {**d, "seeds": seeds}
            for m, d in _paired(by["wler"], by["slat"], seeds, "wler_ge_slat_every_seed").items()}
    return out


def merge(paths: list[str], out: str, baseline: str | None = None) -> dict:
    """Join sweep JSONs of the same build and overrides (e.g. seeds run by two processes with
    `--first_seed`) into one summary; a method and seed in two of them is an error. With
    `baseline` (another recipe's sweep JSON), also `against_baseline` (paired differences)."""
    runs, meta = {}, None
    for path in paths:
        with open(path) as f:
            sweep = json.load(f)
        key = {k: sweep.get(k) for k in ("size", "train_set", "overrides")}
        key["folds"] = sweep_folds(sweep)
        key["build"] = sweep["build"]["params"]
        if meta is not None and key != meta:
            raise SystemExit(f"error: {path}: build, size, train set or overrides differ from "
                             f"{paths[0]}; merge like with like")
        meta, base = key, sweep
        for r in sweep["runs"]:
            if (r["method"], r["seed"]) in runs:
                raise SystemExit(f"error: {path}: {r['method']} seed {r['seed']} is in two sweeps")
            runs[r["method"], r["seed"]] = r
    result = {**{k: base[k] for k in ("corpus", "size", "train_set", "overrides", "build")},
              "seeds": len({s for _, s in runs}),
              "total_seconds": round(sum(r["seconds"] for r in runs.values()), 1),
              "runs": sorted(runs.values(), key=lambda r: (r["seed"], r["method"])),
              "merged_from": [os.path.basename(p) for p in paths]}
    result["summary"] = summarize(result["runs"])
    folds = meta["folds"]
    if folds:
        result["folds"] = folds
        result["pooled_clip_test"] = pooled_clip_test(result["runs"], folds)
    if baseline:
        with open(baseline) as f:
            other = json.load(f)
        if sweep_folds(other) != folds:
            raise SystemExit(f"error: {baseline}: other folds than {paths[0]}; pair like with like")
        result["against_baseline"] = {"baseline": os.path.basename(baseline),
                                      **against_baseline(result["runs"], other["runs"])}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print_table(result["summary"])
    if folds:
        print_pooled(result["pooled_clip_test"])
    if baseline:
        for label, d in result["against_baseline"].items():
            if isinstance(d, dict):
                print(f"{label} vs {os.path.basename(baseline)}: " + ", ".join(
                    f"{m} {d[m]['mean']:+.3f} [{d[m]['ci95'][0]:+.3f}, {d[m]['ci95'][1]:+.3f}]"
                    f" {sum(x >= 0 for x in d[m]['values'])}/{d[m]['n']}"
                    for m in ("test_mAP", "long_val_tagging_mAP", "long_tagging_mAP")
                    if d[m]["ci95"]))
    print(f"wrote {out}")
    return result


def against_baseline(runs: list[dict], baseline: list[dict]) -> dict:
    """This recipe against another sweep's runs of the same seeds (folds): per method, the
    paired difference (this - baseline) of every metric; and this recipe's WLER against the
    baseline's SLAT, so a recipe that helps WLER by handicapping SLAT is seen as such."""
    mine = {m: runs_by_seed(runs, m) for m in ("slat", "wler")}
    base = {m: runs_by_seed(baseline, m) for m in ("slat", "wler")}
    out = {}
    for label, a, b in (("slat", "slat", "slat"), ("wler", "wler", "wler"),
                        ("wler_minus_baseline_slat", "wler", "slat")):
        seeds = sorted(set(mine[a]) & set(base[b]))
        if seeds:
            out[label] = {"seeds": seeds, **_paired(mine[a], base[b], seeds,
                                                    "positive_every_seed")}
    return out


def print_table(summary: dict) -> None:
    rows = [("clip validation mAP", "validation_mAP"), ("clip test mAP", "test_mAP"),
            ("long val tagging mAP", "long_val_tagging_mAP"),
            ("long tagging mAP", "long_tagging_mAP"), ("long segment F1", "long_segment_f1"),
            ("long PSDS1", "long_psds1"), ("long PSDS2", "long_psds2"), ("seconds", "seconds")]
    fmt = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    print(f"\n{'metric':22s} {'SLAT':>16s} {'WLER':>16s} {'WLER - SLAT [95% CI]':>30s}  all seeds")
    for title, key in rows:
        cells = [fmt(summary[m][key]) if m in summary else "-" for m in ("slat", "wler")]
        d = summary.get("wler_minus_slat", {}).get(key)
        ci = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d and d["ci95"] else "[n=1]"
        diff = (f"{d['mean']:+.3f} {ci}  {'yes' if d['wler_ge_slat_every_seed'] else 'no'}"
                if d else "")
        print(f"{title:22s} {cells[0]:>16s} {cells[1]:>16s} {diff:>36s}")


def print_pooled(rounds: list[dict]) -> None:
    """One line per complete cross-validation round: pooled out-of-fold clip test mAP."""
    for r in rounds:
        lo, hi = r["wler_minus_slat_ci95"]
        print(f"pooled clip test, seeds {r['seeds'][0]}-{r['seeds'][-1]} ({r['num_clips']} clips, "
              f"{r['num_sources']} sources): SLAT {r['slat_mAP']:.3f}, WLER {r['wler_mAP']:.3f}, "
              f"WLER - SLAT {r['wler_minus_slat']:+.3f} [{lo:+.3f}, {hi:+.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="local copy of Stevens05/SASED (required unless --merge)")
    parser.add_argument("--out",
                        help="build and run folder (outside the repo; required unless --merge)")
    parser.add_argument("--split_seed", type=int, default=0, help="clip split (fixes the test)")
    parser.add_argument("--folds", type=int, default=0,
                        help="k-fold cross-validation over sources (0: the one fixed split): "
                             "seed s trains on fold s %% folds, each fold built under "
                             "<out>/folds<k>/fold<i>, and every complete round of folds pools "
                             "its out-of-fold clip test scores (every source tested once)")
    parser.add_argument("--mix_seed", type=int, default=0, help="long mixtures")
    parser.add_argument("--num_mixtures", type=int, default=48)
    parser.add_argument("--negative_fraction", type=float, default=NEGATIVE_FRACTION,
                        help="weak set: background-only recordings per context recording")
    parser.add_argument("--context_seconds", default=",".join(str(x) for x in CONTEXT_SECONDS),
                        help="weak set: shortest,longest context recording in seconds")
    parser.add_argument("--train_mixtures", type=float, default=TRAIN_MIXTURES,
                        help="weak set: long weakly labelled recordings (made as the test "
                             "mixtures, from the split's own events) per train/validation "
                             "isolated event")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--train", action="store_true", help="train and evaluate SLAT and WLER")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method")
    parser.add_argument("--first_seed", type=int, default=0,
                        help="run seeds first_seed..first_seed+seeds-1 (split a sweep over "
                             "processes, then join the JSONs with --merge)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="join these sweep JSONs into --json and print the table; no build")
    parser.add_argument("--baseline", default=None, metavar="JSON",
                        help="with --merge: another recipe's sweep of the same seeds; adds "
                             "paired differences (against_baseline)")
    parser.add_argument("--methods", default="slat,wler")
    parser.add_argument("--size", default="cpu", choices=("smoke", "cpu", "full"))
    parser.add_argument("--train_set", default="weak", choices=("weak", "clips"),
                        help="weak: clips plus events in 2-6 s backgrounds and background-only "
                             "recordings (weak.csv); clips: the corpus clips only (clips.csv)")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"training epochs (default {CPU_EPOCHS} at --size=cpu, about the "
                             "time 72 took before the weak mixtures; else the preset's)")
    parser.add_argument("--width", type=float, default=None,
                        help=f"model.width (default {CPU_WIDTH:g} at --size=cpu, where the "
                             "preset's own width started 2 of 10 WLER runs slowly; else the "
                             "preset's)")
    parser.add_argument("--override", action="append", default=[],
                        help="config field=value for every run (repeatable), "
                             "e.g. train.ema_decay=0.999")
    parser.add_argument("--resume", action="store_true", help="reuse existing run workdirs")
    parser.add_argument("--verbose", action="store_true", help="training logs (epochs, mAP)")
    parser.add_argument("--json", default=None,
                        help="default bench/results/real_mixtures_<size>.json")
    args = parser.parse_args()
    if args.merge:
        if not args.json:
            parser.error("--merge needs --json=PATH for the joined result")
        merge(args.merge, args.json, args.baseline)
        return
    if not args.source or not args.out:
        parser.error("--source and --out are required (unless --merge)")

    args.override = run_overrides(args.size, args.epochs, args.override, args.width)
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds must be 0 (one fixed split) or at least 2")
    context_seconds = tuple(float(x) for x in args.context_seconds.split(","))
    builds: dict[int, tuple[str, dict]] = {}

    def build_for(fold: int) -> tuple[str, dict]:
        """(folder, manifest) of the build a seed trains on: `--out`, or its fold's folder."""
        if fold not in builds:
            out = (os.path.join(args.out, f"folds{args.folds}", f"fold{fold}") if args.folds
                   else args.out)
            try:
                builds[fold] = out, build(
                    args.source, out, split_seed=args.split_seed, mix_seed=args.mix_seed,
                    num_mixtures=args.num_mixtures, negative_fraction=args.negative_fraction,
                    context_seconds=context_seconds, rebuild=args.rebuild, folds=args.folds,
                    fold=fold, train_mixtures=args.train_mixtures)
            except BuildMismatch as e:  # a user error: one line
                sys.exit(f"error: {e}")
        return builds[fold]

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    args.fold_of_seed = {s: s % args.folds for s in seeds} if args.folds else {}
    if not args.train:
        for fold in sorted(set(args.fold_of_seed.values())) or [0]:
            print(json.dumps({k: build_for(fold)[1][k] for k in (
                "clip_counts", "sources_per_split", "source_matching", "mixtures",
                "val_mixtures")}, indent=1))
        return
    from absl import logging

    logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
    suffix = f"_{args.folds}fold" if args.folds else ""
    path = args.json or os.path.join(REPO, "bench", "results",
                                     f"real_mixtures_{args.size}{suffix}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    runs, t0 = [], time.time()
    for seed in seeds:
        out, manifest = build_for(args.fold_of_seed.get(seed, 0))
        for method in args.methods.split(","):
            runs.append(train_one(method, seed, args, out))
            summary = summarize(runs)  # written after every run: a stopped sweep keeps its runs
            build_meta = {k: manifest[k] for k in (
                "params", "clip_counts", "sources_per_split", "source_matching", "mixtures",
                "val_mixtures")}
            if args.folds:  # the fold differs between runs; the run records say which
                build_meta["params"] = {**build_meta["params"], "fold": None}
            result = {"corpus": "DCASE 2016 task 2 (Stevens05/SASED)", "size": args.size,
                      "train_set": args.train_set, "seeds": args.seeds,
                      "overrides": args.override, "folds": args.folds, "build": build_meta,
                      "total_seconds": round(time.time() - t0, 1),
                      "runs": runs, "summary": summary}
            if args.folds:
                result["pooled_clip_test"] = pooled_clip_test(runs, args.folds)
            with open(path, "w") as f:
                json.dump(result, f, indent=1)
    print_table(summary)
    if args.folds:
        print_pooled(result["pooled_clip_test"])
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
