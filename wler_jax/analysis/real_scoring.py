"""Scoring a run of the real benchmark from the predict CLI's JSON output: tagging and
localisation of the long recordings, and the clip test split's scores (what a k-fold sweep
pools). The build's files are `wler_jax.data.mixtures`'."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

from wler_jax import evaluate, geometry
from wler_jax.data.mixtures import read_events_tsv, test_clips
from wler_jax.serving import localisation


def long_tags(pred: dict, out: str, name: str = "mixtures"
              ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """(files, class names, labels [N, C], recording scores [N, C]) of the predict CLI's output
    `pred` on the build's `<name>.csv` recordings, in the order of `pred["results"]`."""
    names = list(pred["class_names"])
    with open(os.path.join(out, f"{name}.csv")) as f:
        truth = {os.path.basename(r["path"]): [x for x in r["labels"].split(";") if x]
                 for r in csv.DictReader(f)}
    if pred["failed"]:
        raise RuntimeError(f"predict failed on {pred['failed']}")
    files = [os.path.basename(r["file"]) for r in pred["results"]]
    if sorted(files) != sorted(truth):
        raise RuntimeError(f"predictions for {len(files)} files, {len(truth)} expected")
    labels = np.zeros((len(files), len(names)), np.float32)
    scores = np.zeros_like(labels)
    for i, (file, r) in enumerate(zip(files, pred["results"])):
        labels[i, [names.index(x) for x in truth[file]]] = 1.0
        scores[i] = [r["scores"][c] for c in names]
    return files, names, labels, scores


def evaluate_long(pred_json: str, out: str, threshold: float, name: str = "mixtures") -> dict:
    """Tagging mAP and localisation of the predict CLI's output against the mixtures."""
    with open(pred_json) as f:
        pred = json.load(f)
    files, names, labels, scores = long_tags(pred, out, name)
    events = read_events_tsv(os.path.join(out, f"{name}_events.tsv"))
    timelines, durations = {}, {}
    for file, r in zip(files, pred["results"]):
        seg = np.array([[s["scores"][c] for c in names] for s in r["segment_scores"]])
        num_samples = int(round(r["duration"] * geometry.SAMPLE_RATE))
        frames = geometry.num_frames_for_samples(num_samples)
        timelines[file] = localisation.grid_scores(
            seg, frames, duration=num_samples / geometry.SAMPLE_RATE)
        durations[file] = num_samples / geometry.SAMPLE_RATE
    tag = evaluate.average_precision(labels, scores, names)
    loc = localisation.localisation_metrics(timelines, {n: events.get(n, []) for n in files},
                                            durations, names, threshold=threshold, psds2=True)
    return {"mAP": tag["mAP"], "AP": tag["AP"], "num_recordings": len(files),
            "localisation": {k: loc[k] for k in ("segment_f1", "segment_precision",
                                                 "segment_recall", "psds1", "psds2")}}


def clip_test_scores(pred_json: str, out: str, train_set: str) -> dict:
    """The predict CLI's scores of the clip test split, aligned with `test_clips`:
    {"paths", "labels" [N, C], "scores" [N, C], "sources", "class_names", "mAP"}."""
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
