"""The second real benchmark's build: Kitchen20's kitchen sounds in weak long recordings over
real backgrounds, long test recordings over backgrounds never heard in training.

`build(source, backgrounds, test_backgrounds, out)` reads a local copy of the public repository
`marc-moreaux/kitchen20` (1,070 real clips of 20 kitchen classes, <= 5 s; `kitchen20.csv` names
each clip's source recording, `usr_id`) and folders of real recordings without those sounds, and
writes under `out` (reused when its manifest matches):

  * `clips.csv` (path,labels,split,source): every clip, one label; whole sources to test (15 %),
    validation (15 %) and train, so no source is heard on two sides.
  * `weak.csv`: the paper's setting. `num_weak` training and a fifth as many validation
    recordings of 8-30 s (`weak_train/`, `weak_validation/`), each 0-3 events of its split at
    random times in an excerpt of a `backgrounds` recording (15 % background only: an empty
    label cell), labelled per recording; plus the clip test split as its test split.
  * `mixtures/` (+ `mixtures.csv`, `mixtures_events.tsv`): `num_mixtures` (60) long test
    recordings of 10-60 s, 1-3 *test* events over a `test_backgrounds` recording;
    `mixtures_val*`: half as many from validation
    events over training backgrounds, for choices made on validation.
Events are cut to their active part and mixed as the office benchmark's (`mixtures._add_event`:
event-to-background ratio uniform in [-6, +6] dB, the background at -35 dBFS RMS).
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from wler_jax import audio, errors
from wler_jax.data.mixtures import (BACKGROUND_DBFS, SR, _add_event, _fresh_dir, _rms, _write_wav,
                                    write_mixture_tables)

WEAK_SECONDS, WEAK_EVENTS, NEGATIVE_FRACTION = (8.0, 30.0), (0, 3), 0.15
MIX_SECONDS, MIX_EVENTS = (10.0, 60.0), (1, 3)
NUM_TEST_MIXTURES = 60  # and half as many validation ones
SEED_OFFSETS = {"weak_train": 0, "weak_validation": 10_000, "mixtures": 20_000,
                "mixtures_val": 30_000}
BUILD_VERSION = 1


def read_corpus(source: str) -> list[dict]:
    """Kitchen20's clips: {"path", "label", "source"} from its kitchen20.csv."""
    table = os.path.join(source, "kitchen20.csv")
    if not os.path.isfile(table):
        raise errors.DataError(f"{table}: not found; --source must be a copy of the public "
                               "repository marc-moreaux/kitchen20 (kitchen20.csv and audio/)")
    with open(table, newline="") as f:
        clips = [{"path": os.path.join(source, r["path"]), "label": r["category"],
                  "source": r["usr_id"]} for r in csv.DictReader(f)]
    missing = [c["path"] for c in clips if not os.path.isfile(c["path"])]
    if missing:
        raise errors.DataError(f"{len(missing)} clips listed in {table} are missing, e.g. "
                               f"{missing[0]}")
    return clips


def split_groups(groups: list[str], seed: int, fractions=(0.15, 0.15)) -> dict[str, str]:
    """{group: split}: whole groups, shuffled, to test then validation until each holds about
    its fraction of the items; the rest to train."""
    order = sorted(set(groups))
    np.random.default_rng(seed).shuffle(order)
    filled = {"test": 0, "validation": 0}
    out = {}
    for g in order:
        split = next((s for s, f in zip(filled, fractions) if filled[s] < f * len(groups)),
                     "train")
        filled[split] = filled.get(split, 0) + groups.count(g)
        out[g] = split
    return out


def active(x: np.ndarray, floor_db: float = -40.0, frame: int = 1024) -> np.ndarray:
    """`x` without its leading and trailing quiet: frames below `floor_db` of the loudest
    (the clips are padded with silence to 5 s, which would dilute an event's RMS)."""
    n = len(x) // frame * frame
    if n == 0:
        return x
    level = np.sqrt(np.mean(np.square(x[:n].reshape(-1, frame)), 1) + 1e-20)
    on = np.flatnonzero(level > level.max() * 10 ** (floor_db / 20))
    return x[on[0] * frame:(on[-1] + 1) * frame]


def background_excerpt(bg: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of a background from a random start (looped if shorter), at -35 dBFS RMS."""
    start = int(rng.integers(0, len(bg)))
    x = np.tile(bg, (n + start) // len(bg) + 1)[start:start + n].astype(np.float64)
    return x * 10 ** (BACKGROUND_DBFS / 20) / _rms(x)


def make_recordings(events: list[dict], backgrounds: list[np.ndarray], out_dir: str, num: int,
                    seed: int, seconds: tuple, per_recording: tuple,
                    negative_fraction: float = 0.0, prefix: str = "mix") -> list[dict]:
    """Writes `num` recordings of `events` ({"label", "wave"}) over `backgrounds` into
    `out_dir`; returns {"file", "duration", "labels", "events": [(on, off, label)]} each."""
    _fresh_dir(out_dir)
    records = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        n = int(rng.uniform(*seconds) * SR)
        x = background_excerpt(backgrounds[int(rng.integers(len(backgrounds)))], n, rng)
        k = 0 if rng.random() < negative_fraction else int(
            rng.integers(max(per_recording[0], 1), per_recording[1] + 1))
        placed = []
        for _ in range(k):
            ev = events[int(rng.integers(len(events)))]
            start, m, _ = _add_event(x, ev["wave"], rng)
            placed.append((round(start / SR, 4), round((start + m) / SR, 4), ev["label"]))
        name = f"{prefix}_{i:03d}.wav"
        _write_wav(os.path.join(out_dir, name), x)
        records.append({"file": name, "duration": n / SR,
                        "labels": sorted({e[2] for e in placed}), "events": sorted(placed)})
    return records


def audio_files(folders: str) -> list[str]:
    """The audio files directly inside comma-separated `folders`, sorted."""
    return sorted(os.path.join(d, f) for d in folders.split(",") for f in os.listdir(d)
                  if audio.is_audio_file(f) and os.path.isfile(os.path.join(d, f)))


def _write_table(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "labels", "split", "source"])
        w.writeheader()
        for r in rows:
            w.writerow({"path": r["path"], "labels": ";".join(r["labels"]), "split": r["split"],
                        "source": r.get("source", r["path"])})


def build(source: str, backgrounds: str, test_backgrounds: str, out: str, *,
          split_seed: int = 0, num_weak: int = 240, num_mixtures: int = NUM_TEST_MIXTURES
          ) -> dict:
    """Writes the benchmark under `out` (see the module docstring); returns its manifest."""
    params = {"version": BUILD_VERSION, "split_seed": split_seed, "num_weak": num_weak,
              "backgrounds": backgrounds, "test_backgrounds": test_backgrounds}
    if num_mixtures != NUM_TEST_MIXTURES:  # the published build's manifest stays as it was
        params["num_mixtures"] = num_mixtures
    manifest_path = os.path.join(out, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["params"] == params:
            return manifest
    bg = {"train": audio_files(backgrounds), "test": audio_files(test_backgrounds)}
    if not bg["train"] or not bg["test"] or set(bg["train"]) & set(bg["test"]):
        raise errors.DataError("the training and the test backgrounds must each hold audio "
                               "files, and none of the same file")
    os.makedirs(out, exist_ok=True)
    clips = read_corpus(source)
    side = split_groups([c["source"] for c in clips], split_seed)
    for c in clips:
        c["split"], c["labels"] = side[c["source"]], [c["label"]]
    _write_table(os.path.join(out, "clips.csv"), clips)
    waves = {s: [audio.load(p) for p in files] for s, files in bg.items()}
    events = {s: [{"label": c["label"], "wave": active(audio.load(c["path"]))}
                  for c in clips if c["split"] == s] for s in ("train", "validation", "test")}
    weak = []
    for split, num in (("train", num_weak), ("validation", num_weak // 5)):
        name = f"weak_{split}"
        for r in make_recordings(events[split], waves["train"], os.path.join(out, name), num,
                                 split_seed + SEED_OFFSETS[name], WEAK_SECONDS, WEAK_EVENTS,
                                 NEGATIVE_FRACTION, prefix=name):
            weak.append({"path": f"{name}/{r['file']}", "labels": r["labels"], "split": split})
    _write_table(os.path.join(out, "weak.csv"),
                 weak + [c for c in clips if c["split"] == "test"])
    for name, split, bgs, num in (("mixtures", "test", waves["test"], num_mixtures),
                                  ("mixtures_val", "validation", waves["train"],
                                   num_mixtures // 2)):
        records = make_recordings(events[split], bgs, os.path.join(out, name), num,
                                  split_seed + SEED_OFFSETS[name], MIX_SECONDS, MIX_EVENTS)
        write_mixture_tables(out, records, name)
    manifest = {"params": params, "backgrounds": bg,
                "clips": {s: sum(c["split"] == s for c in clips)
                          for s in ("train", "validation", "test")},
                "weak": {s: sum(r["split"] == s for r in weak) for s in ("train", "validation")}}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest
