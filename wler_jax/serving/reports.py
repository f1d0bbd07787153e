"""What `python -m wler_jax.predict` writes: per-file JSON records, the long CSV table, DCASE
event lists and score plots (layouts in `wler_jax.predict`'s docstring).
"""
from __future__ import annotations

import csv
import json
import os
from typing import Callable, Sequence

import numpy as np

from wler_jax import geometry
from wler_jax.serving import localisation
from wler_jax.serving.chunked import Prediction


def _segment_spans(prediction: Prediction) -> tuple[np.ndarray, np.ndarray]:
    start, end = geometry.segment_times(prediction.segments.shape[0])
    return start, np.minimum(end, prediction.duration)


def prediction_record(file: str, prediction: Prediction, class_names: Sequence[str],
                      threshold=0.5) -> dict:
    """The JSON object of one file (module docstring): scores, segment scores, merged events."""
    start, end = _segment_spans(prediction)
    r = lambda x: round(float(x), 6)  # noqa: E731  (times, seconds)
    events = localisation.merge_segments(prediction.segments, class_names, threshold)
    return {
        "file": file,
        "duration": r(prediction.duration),
        "scores": {c: score_value(p) for c, p in zip(class_names, prediction.clip)},
        "segment_scores": [{"start": r(s), "end": r(e), "scores": {
            c: score_value(p) for c, p in zip(class_names, row)}}
            for s, e, row in zip(start, end, prediction.segments)],
        "segments": [{"label": ev["label"], "start": r(ev["start"]),
                      "end": r(min(ev["end"], prediction.duration)),
                      "score": score_value(ev["score"])}
                     for ev in events],
    }


def score_value(p) -> float:
    """A probability as written: the shortest decimal that reads back as the same float32.

    Rounding to a fixed number of decimals (6 until Dec 2026) tied every score below 5e-7 at
    0.0, and AP ranks those scores: the real benchmark's test clips, scored from these files,
    gave an mAP up to 0.015 away from the same checkpoint's in-memory mAP. Shortest float32 digits
    keep the order and the value of every score (`float32(json value) == predict_fn's score`).
    """
    return float(str(np.float32(p)))  # numpy prints float32's shortest round-trip digits


def detect_file_events(prediction: Prediction, class_names: Sequence[str], *,
                       threshold=0.5, median_filter: int = 1,
                       reduce: str = "max") -> list[dict]:
    """Events on the 32-frame time line: grid_scores -> median_filter -> detect_events."""
    onsets, offsets, scores = localisation.grid_scores(
        prediction.segments, prediction.num_frames, reduce=reduce, duration=prediction.duration)
    scores = localisation.median_filter(scores, median_filter)
    return localisation.detect_events(onsets, offsets, scores, class_names, threshold=threshold)


def score_table_id(name: str) -> str:
    """The audio id of a file in score tables and ground-truth tables: its name relative to the
    folder it was found in, without the extension, folders joined by "__" ("sub/a.wav" ->
    "sub__a"; sed_scores_eval reads one flat folder of `<id>.tsv`)."""
    return os.path.splitext(str(name))[0].replace("\\", "/").replace("/", "__")


def score_table(prediction: Prediction, reduce: str = "max"
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The file's scores on gapless, non-overlapping rows: (onsets [K], offsets [K], scores
    [K, C]) of `localisation.grid_scores` (32-frame cells, ~0.37 s; each cell reduces the four
    overlapping segments covering it), the last offset at the recording's end. The same time
    line training's segment F1 and PSDS are computed on."""
    return localisation.grid_scores(prediction.segments, prediction.num_frames, reduce=reduce,
                                    duration=prediction.duration)


def write_score_table(path: str, onsets, offsets, scores, class_names: Sequence[str]) -> None:
    """One sed_scores_eval score table (`sed_scores_eval.io.read_sed_scores` reads it): a TSV
    with header `onset offset <class...>`, one row per time-line cell. Times are written as
    the shortest decimals of their float64 values, scores as those of their float32 values
    (`score_value`), so a table reads back as the very numbers it was written from."""

    def write(f):
        f.write("\t".join(["onset", "offset", *map(str, class_names)]) + "\n")
        for on, off, row in zip(onsets, offsets, scores):
            f.write("\t".join([repr(float(on)), repr(float(off)),
                               *(repr(score_value(p)) for p in row)]) + "\n")

    _atomic_write(path, write)


def _atomic_write(path: str, write: Callable) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w", newline="") as f:
        write(f)
    os.replace(path + ".tmp", path)


def write_json(path: str, records: list[dict], failed: list[dict], **header) -> None:
    _atomic_write(path, lambda f: json.dump({**header, "results": records, "failed": failed},
                                            f, indent=1))


def write_csv(path: str, records: list[dict], failed: list[dict]) -> None:
    """The long CSV table (module docstring): clip, segment, event and failed rows."""

    def write(f):
        w = csv.writer(f)
        w.writerow(["file", "level", "label", "start", "end", "score", "reason"])
        for rec in records:
            for c, p in rec["scores"].items():
                w.writerow([rec["file"], "clip", c, 0.0, rec["duration"], p, ""])
            for seg in rec["segment_scores"]:
                for c, p in seg["scores"].items():
                    w.writerow([rec["file"], "segment", c, seg["start"], seg["end"], p, ""])
            for ev in rec["segments"]:
                w.writerow([rec["file"], "event", ev["label"], ev["start"], ev["end"],
                            ev["score"], ""])
        for fail in failed:
            w.writerow([fail["file"], "failed", "", "", "", "", fail["reason"]])

    _atomic_write(path, write)


def write_events_tsv(path: str, events: list[tuple[str, list[dict]]]) -> None:
    """DCASE event list: `filename\\tonset\\toffset\\tevent_label` with a header line."""

    def write(f):
        f.write("filename\tonset\toffset\tevent_label\n")
        for name, evs in events:
            for ev in evs:
                f.write(f"{name}\t{ev['start']:.3f}\t{ev['end']:.3f}\t{ev['label']}\n")

    _atomic_write(path, write)


def plot_prediction(path: str, title: str, prediction: Prediction, class_names: Sequence[str],
                    threshold: float | None = 0.5, top: int = 5) -> None:
    """PNG of segment scores over time: the `top` classes as lines, all classes as a heat map."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    start, end = _segment_spans(prediction)
    centre = start + (geometry.SEGMENT_FRAMES * localisation.FRAME_SECONDS) / 2
    segs, num_classes = prediction.segments, len(class_names)
    fig = Figure(figsize=(11, 3.2 + 0.22 * num_classes), layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[1.2, 0.2 + 0.08 * num_classes])
    for c in np.argsort(-prediction.clip)[:top]:
        ax1.plot(centre, segs[:, c], marker="." if len(centre) < 60 else None,
                 label=f"{class_names[c]} ({prediction.clip[c]:.2f})")
    if threshold is not None:  # None: per-class thresholds, no one line to draw
        ax1.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
    ax1.set(ylim=(0, 1), ylabel="probability", title=title)
    ax1.legend(loc="upper right", fontsize="small")
    hop = geometry.SEGMENT_HOP * localisation.FRAME_SECONDS  # one column per segment, at its centre
    image = ax2.imshow(segs.T, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="magma",
                       interpolation="nearest", extent=(centre[0] - hop / 2, centre[-1] + hop / 2,
                                                        -0.5, num_classes - 0.5))
    ax2.set_xlim(0, max(prediction.duration, centre[-1] + hop / 2))
    ax2.set_yticks(range(num_classes), class_names, fontsize="small")
    ax2.set_xlabel("time (s)")
    fig.colorbar(image, ax=ax2, pad=0.01)
    fig.savefig(path, dpi=100)
