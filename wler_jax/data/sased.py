"""The DCASE 2016 task 2 office-event corpus (a local copy of GitHub's `Stevens05/SASED`): its
clips, the isolated recording each one comes from, and splits made of whole sources.

The copy holds 11 office classes, 20 isolated events each under `data/train/sound`, and event
segments cut from the development scenes under `data/val/segments` with their scenes'
annotations and source lists (`data/val/annotation`, `data/val/wav_files`); 44.1 kHz mono.

A segment's *source* is the isolated recording mixed into its scene at that place: in the
monophonic scenes the `wav_files` list is in annotation order; in the polyphonic ones it is
grouped by class, so a segment is matched to the same-class file of equal duration (optimal
assignment; the durations agree to ~10 ms). Where a match is not clear (no file within
`MATCH_TOLERANCE_S`) all same-class files of that scene are merged into one source, so nothing
can leak. Splits are whole sources per class (`split_sources`), so no event recording is heard
on two sides (a development scene reuses each isolated event at three event-to-background
ratios). The real benchmark's build on top of this is `wler_jax.data.mixtures`.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import os
import re

import numpy as np
import soundfile as sf
from scipy.optimize import linear_sum_assignment

from wler_jax import errors

CLASSES = ("clearthroat", "cough", "doorslam", "drawer", "keyboard", "keysDrop", "knock",
           "laughter", "pageturn", "phone", "speech")
_ALIASES = {"keys": "keysDrop"}  # segment names and annotations say "keys"
_SCENE = re.compile(r"^(dev_\d+_ebr_-?\d+_nec_\d+_poly_\d)_([A-Za-z]+)_(\d+)\.wav$")
MATCH_TOLERANCE_S = 0.05


def class_of(name: str) -> str:
    """Class of an isolated file name ('keysDrop014.wav') or a label ('keys')."""
    stem = re.sub(r"\d+$", "", os.path.splitext(os.path.basename(name))[0])
    stem = _ALIASES.get(stem, stem)
    if stem not in CLASSES:
        raise ValueError(f"{name}: unknown class {stem!r} (expected one of {CLASSES})")
    return stem


def _duration(path: str) -> float:
    info = sf.info(path)
    return info.frames / info.samplerate


def find_root(source: str) -> str:
    """The folder holding train/sound and val/segments (the repository root or its data/)."""
    for root in (os.path.join(source, "data"), source):
        if os.path.isdir(os.path.join(root, "train", "sound")):
            need = [os.path.join(root, "val", d) for d in ("segments", "annotation",
                                                           "wav_files")]
            missing = [p for p in need if not os.path.isdir(p)]
            if missing:
                raise errors.MissingDataError(
                    f"{source}: missing {missing}; expected a copy of the Stevens05/SASED "
                    "repository (data/train/sound, data/val/...)")
            return root
    raise errors.MissingDataError(f"{source} holds no data/train/sound; expected a local copy of "
                                  "the public GitHub repository Stevens05/SASED")


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


def _match_scene(scene: str, root: str, iso_dur: dict[str, float], uf: _Union,
                 facts: dict) -> tuple[list[tuple[float, float, str]], dict[int, str]]:
    """(annotated events, {event index: isolated file}) of one development scene."""
    with open(os.path.join(root, "val", "annotation", scene + ".txt")) as f:
        ann = [line.split() for line in f if line.strip()]
    with open(os.path.join(root, "val", "wav_files", scene + ".txt")) as f:
        files = [line.strip() for line in f if line.strip()]
    if len(ann) != len(files):
        raise errors.DataError(f"{scene}: {len(ann)} annotated events but {len(files)} files "
                               "listed")
    events = [(float(a[0]), float(a[1]), class_of(a[2])) for a in ann]
    assigned: dict[int, str] = {}
    if all(class_of(w) == e[2] for w, e in zip(files, events)):  # same order (monophonic)
        for k, w in enumerate(files):
            err = abs((events[k][1] - events[k][0]) - iso_dur[w])
            facts["max_match_error_s"] = max(facts["max_match_error_s"], err)
            assigned[k] = w
            facts["matched_by_order"] += 1
        return events, assigned
    for c in CLASSES:  # grouped by class (polyphonic): match durations within each class
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
                facts["max_match_error_s"] = max(facts["max_match_error_s"], float(cost[r, c_]))
            facts["matched_by_duration"] += len(ks)
        else:  # not clear: one source for all of them
            for w in ws[1:]:
                uf.union(os.path.splitext(ws[0])[0], os.path.splitext(w)[0])
            for k in ks:
                assigned[k] = ws[0]
            facts["merged_ambiguous"] += len(ks)
    return events, assigned


def scan_corpus(root: str) -> tuple[list[Clip], dict]:
    """Every clip with its class and source, plus facts about the matching."""
    isolated = sorted(glob.glob(os.path.join(root, "train", "sound", "*.wav")))
    if not isolated:
        raise errors.MissingDataError(f"no WAV files in {root}/train/sound")
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
            raise errors.DataError(f"unexpected segment name {p}")
        by_scene.setdefault(m.group(1), []).append((int(m.group(3)), class_of(m.group(2)), p))
    for scene, segs in sorted(by_scene.items()):
        facts["scenes"] += 1
        events, assigned = _match_scene(scene, root, iso_dur, uf, facts)
        for k, label, p in segs:
            if k >= len(events) or events[k][2] != label:
                raise errors.DataError(f"{p}: index {k} is not a {label} event of {scene}")
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
    """`path,labels,split,source,kind` rows of every clip; returns {"<split>/<kind>": count}."""
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
