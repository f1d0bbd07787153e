"""Temporal localisation from overlapping segment scores (docs/design.md §6, beyond the paper).

The fully convolutional network scores segment k on the window of frames [32k, 32k + 128)
(~1.49 s, hop ~0.37 s; see `geometry`). Windows overlap four-fold, so a segment score does not
say *where* inside its window the event is. This module turns them into a time line and events,
for evaluation against true event times and for the prediction CLI:

  segment_probs [S, C] --grid_scores--> cells of 32 frames [K, C] --median_filter-->
  --detect_events--> [{"label", "start", "end", "score"}, ...]

`merge_segments` is the CLI's shortcut on the segment grid itself, and `localisation_metrics`
scores time lines against true events with the maintained `sed_scores_eval` package
(segment-based F1 and PSDS), never with hand-written metrics.

Conventions: times are seconds, frame t starts at t * 512 / 44100 s (the same convention as
`geometry.segment_times`); "above threshold" means strictly greater (`score > threshold`), which
is `sed_scores_eval`'s convention too, so events found here match the operating point it scores.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.ndimage
from absl import logging

from wler_jax import geometry

FRAME_SECONDS = geometry.HOP_LENGTH / geometry.SAMPLE_RATE  # one STFT frame, ~11.6 ms
CELL_FRAMES = geometry.SEGMENT_HOP  # one time-line cell = one segment hop (32 frames, ~0.372 s)
_WINDOW_CELLS = geometry.SEGMENT_FRAMES // geometry.SEGMENT_HOP  # a segment spans 4 cells

# DCASE 2021-2023 task 4 PSDS operating scenarios (Bilen et al., ICASSP 2020).
PSDS1 = dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0,
             alpha_st=1.0, max_efpr=100.0)
PSDS2 = dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5,
             alpha_st=1.0, max_efpr=100.0)

# Collar-based event F1 as DCASE task 4 reports it (sed_eval's defaults for the task).
EVENT_COLLARS = dict(onset_collar=0.2, offset_collar=0.2, offset_collar_rate=0.2)

TimeLine = tuple  # (onsets [K], offsets [K], scores [K, C])


def _check_segment_probs(segment_probs) -> np.ndarray:
    probs = np.asarray(segment_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"segment_probs must be [S>=1, C], got shape {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("segment_probs contains non-finite values")
    return probs


def grid_scores(segment_probs, num_frames: int, *, reduce: str = "max",
                duration: Optional[float] = None) -> TimeLine:
    """Segment scores -> scores on non-overlapping cells of one segment hop (32 frames).

    Cell j covers frames [32j, 32j + 32) (the last one ends at the recording's end). Its score
    reduces (max or mean) the scores of all segments whose 128-frame window contains the cell,
    i.e. segments max(0, j-3) .. min(j, S-1). A trailing partial cell after the last window
    (T not a multiple of 32) takes the last segment's score. A recording shorter than 128
    frames has one segment (it was padded to 128): all its cells carry that segment's score.

    Args:
      segment_probs: [S, C] per-segment probabilities of the valid segments of one recording;
        S must equal `geometry.num_segments(num_frames)`.
      num_frames: T, the recording's valid STFT frames (`geometry.num_frames_for_samples`).
      reduce: "max" (a cell is as active as the most active window covering it) or "mean".
        With scores that grow with the part of the window an event fills, "max" widens an
        event by up to two cells (~0.7 s) on each side at threshold 0.5, while "mean" puts
        its edges within one cell of the truth (tests/test_localisation.py measures both).
      duration: recording length in seconds (num_samples / 44100), within one frame of
        T * 512 / 44100 (the default). The last cell's offset is set to it; a last cell that
        would start at it (its only frame starts exactly at the end) is dropped.

    Returns:
      (onsets [K], offsets [K], scores [K, C]): cell times in seconds (contiguous:
      offsets[j] == onsets[j+1]) and cell scores, K = ceil(T / 32) (or one less, see above).
    """
    probs = _check_segment_probs(segment_probs)
    num_frames = int(num_frames)
    _check_grid_args(probs.shape[0], num_frames, reduce)
    scores = _cell_scores(probs, num_frames, reduce)
    end = _recording_end(num_frames, duration)
    cells = np.arange(len(scores))
    onsets = cells * CELL_FRAMES * FRAME_SECONDS
    offsets = np.minimum((cells + 1) * CELL_FRAMES, num_frames) * FRAME_SECONDS
    keep = onsets < end  # only a last cell holding one frame that starts at the end can go
    if not keep.any():
        raise ValueError(f"duration {end} s leaves no time to score")
    onsets, offsets, scores = onsets[keep], offsets[keep], scores[keep]
    offsets[-1] = end
    return onsets, offsets, scores


def _check_grid_args(num_segs: int, num_frames: int, reduce: str) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    expected = geometry.num_segments(num_frames)
    if num_segs != expected:
        raise ValueError(f"{num_segs} segments given but a recording of {num_frames} frames has "
                         f"{expected} (S = max(T, 128) // 32 - 3); pass only the valid segments")
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")


def _cell_scores(probs: np.ndarray, num_frames: int, reduce: str) -> np.ndarray:
    """[K, C] scores of the K = ceil(T / 32) cells: `reduce` over the segments covering each."""
    num_segs = probs.shape[0]
    cells = np.arange(-(-num_frames // CELL_FRAMES))
    # Cell j lies in the windows of segments j-3 .. j (those that exist); cells after the last
    # covered one (cell S+2, T not a multiple of 32) borrow the last segment's score.
    covered = np.minimum(cells, num_segs - 1 + _WINDOW_CELLS - 1)
    idx = covered[:, None] - np.arange(_WINDOW_CELLS)[None, :]  # [K, 4] candidate segments
    valid = (idx >= 0) & (idx < num_segs)
    vals = probs[np.clip(idx, 0, num_segs - 1)]  # [K, 4, C]
    if reduce == "max":
        return np.max(np.where(valid[..., None], vals, -np.inf), axis=1)
    return np.sum(np.where(valid[..., None], vals, 0.0), axis=1) / valid.sum(1)[:, None]


def _recording_end(num_frames: int, duration: Optional[float]) -> float:
    """The recording's end in seconds: `duration`, checked to lie within the last frame, or T
    frames."""
    end = num_frames * FRAME_SECONDS if duration is None else float(duration)
    if not (num_frames - 1) * FRAME_SECONDS - 1e-9 <= end <= num_frames * FRAME_SECONDS + 1e-9:
        raise ValueError(f"duration {end} s does not fit {num_frames} frames (a recording of n "
                         f"samples has T = 1 + n // 512 frames, so duration = n / 44100 lies in "
                         f"[{(num_frames - 1) * FRAME_SECONDS:.6f}, "
                         f"{num_frames * FRAME_SECONDS:.6f}] s)")
    return end


def median_filter(scores, size: int) -> np.ndarray:
    """Median filter of each class's score along time (edges repeat the end values).

    Args:
      scores: [K, C] scores on a time line (e.g. `grid_scores` cells).
      size: filter length in cells (>= 1; 1 is the identity; odd sizes are centred).

    Returns:
      [K, C] filtered scores (float64).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [K, C], got shape {scores.shape}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    if size == 1:
        return scores.copy()
    return scipy.ndimage.median_filter(scores, size=(int(size), 1), mode="nearest")


def class_thresholds(threshold, class_names: Sequence[str]) -> np.ndarray:
    """[C] decision thresholds from one float, a sequence of C floats or a {class: float} dict
    naming every class (e.g. a workdir's fitted thresholds, `wler_jax.training.calibration`)."""
    if isinstance(threshold, Mapping):
        missing = [c for c in class_names if str(c) not in threshold]
        if missing:
            raise ValueError(f"thresholds given for {len(threshold)} classes but not for "
                             f"{missing[:5]}")
        values = np.array([float(threshold[str(c)]) for c in class_names])
    else:
        values = np.broadcast_to(np.asarray(threshold, np.float64), (len(class_names),)).copy()
    if not np.all(np.isfinite(values)):
        raise ValueError(f"thresholds must be finite, got {values}")
    return values


def detect_events(onsets, offsets, scores, class_names: Sequence[str], *,
                  threshold=0.5, min_gap: float = 0.0) -> list[dict]:
    """Threshold a time line into events, one list over all classes.

    Runs of consecutive cells with `score > threshold` become events from the first cell's
    onset to the last cell's offset. Events of one class are then merged when the gap between
    them is <= `min_gap` seconds; with overlapping cells (e.g. the segment grid) this also
    merges events whose windows overlap, so events of one class never overlap.

    Args:
      onsets: [K] cell starts, seconds (non-decreasing).
      offsets: [K] cell ends, seconds.
      scores: [K, C] scores.
      class_names: C names.
      threshold: decision threshold (strictly above counts as active): one for every class,
        or one per class (`class_thresholds`).
      min_gap: merge events of a class separated by at most this many seconds.

    Returns:
      list of {"label": str, "start": float, "end": float, "score": float (max in the event)},
      sorted by start (then label).
    """
    onsets = np.asarray(onsets, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or onsets.shape != (scores.shape[0],) or offsets.shape != onsets.shape:
        raise ValueError(f"need onsets [K], offsets [K], scores [K, C]; got {onsets.shape}, "
                         f"{offsets.shape}, {scores.shape}")
    if len(class_names) != scores.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {scores.shape[1]} score columns")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    thresholds = class_thresholds(threshold, class_names)
    events = []
    for c, name in enumerate(class_names):
        active = scores[:, c] > thresholds[c]
        if not active.any():
            continue
        edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # [start, stop)
        merged: list[dict] = []
        for a, b in zip(starts, stops):
            ev = dict(label=str(name), start=float(onsets[a]), end=float(offsets[b - 1]),
                      score=float(scores[a:b, c].max()))
            if merged and ev["start"] - merged[-1]["end"] <= min_gap:
                prev = merged[-1]
                prev["end"] = max(prev["end"], ev["end"])
                prev["score"] = max(prev["score"], ev["score"])
            else:
                merged.append(ev)
        events.extend(merged)
    events.sort(key=lambda e: (e["start"], e["label"]))
    return events


def merge_segments(segment_probs, class_names: Sequence[str], threshold=0.5) -> list[dict]:
    """Detected events on the segment grid itself (the prediction CLI's "segments").

    Consecutive segments above threshold are merged from the start of the first window to the
    end of the last (`geometry.segment_times`). Runs separated by one or two quiet segments
    still have overlapping windows and are merged too (see `detect_events`).

    Args:
      segment_probs: [S, C] valid segment probabilities of one recording.
      class_names: C names.
      threshold: decision threshold (strictly above counts as detected): one, or one per class
        (`class_thresholds`).

    Returns:
      list of {"label", "start", "end", "score"} (seconds; score = max segment score), by start.
    """
    probs = _check_segment_probs(segment_probs)
    start, end = geometry.segment_times(probs.shape[0])
    return detect_events(start, end, probs, class_names, threshold=threshold, min_gap=0.0)


def events_to_ground_truth(events: Mapping[str, Sequence], class_names: Sequence[str]
                           ) -> list[tuple[float, float, str]]:
    """A dataset example's `events` (dict of lists, label indices) -> [(onset, offset, name)]."""
    labels = list(events.get("label", []))
    onsets, offsets = list(events.get("onset", [])), list(events.get("offset", []))
    if not len(labels) == len(onsets) == len(offsets):
        raise ValueError(f"events lists differ in length: {len(labels)} labels, {len(onsets)} "
                         f"onsets, {len(offsets)} offsets")
    return [(float(on), float(off), str(class_names[int(lab)]))
            for lab, on, off in zip(labels, onsets, offsets)]


class _WritableScoreFrame(pd.DataFrame):
    """A score DataFrame whose `to_numpy()` returns a writable copy.

    Under pandas >= 3 (copy-on-write) `DataFrame.to_numpy()` returns a read-only view, and
    sed_scores_eval 0.0.4's Cython `onset_offset_curves` (PSDS) rejects it with "ValueError:
    buffer source array is read-only". Fixed upstream after 0.0.4 (fgnt/sed_scores_eval PR #17,
    "Ensure that scores array is always writeable"); this subclass keeps the fix local.
    """

    @property
    def _constructor(self):
        return _WritableScoreFrame

    def to_numpy(self, *args, **kwargs):
        return np.array(super().to_numpy(*args, **kwargs))


def _clean_ground_truth(events, duration: float, class_names, rec_id) -> tuple[list, int, int]:
    """Clip events to [0, duration], drop empty ones, merge overlapping/touching ones per class.

    sed_scores_eval rejects overlapping or touching events of one class (an AssertionError);
    the union of such events is the same ground truth for segment-based and intersection-based
    metrics up to the event count. Returns (events, number dropped, number merged away).
    """
    per_class: dict[str, list] = {}
    dropped = 0
    for ev in events:
        if len(ev) != 3:
            raise ValueError(f"{rec_id}: ground-truth events must be (onset, offset, label), "
                             f"got {ev}")
        on, off, label = ev
        if label not in class_names:
            raise ValueError(f"{rec_id}: unknown ground-truth label {label!r}")
        on, off = max(float(on), 0.0), min(float(off), duration)
        if not off > on:
            dropped += 1
            continue
        per_class.setdefault(label, []).append([on, off])
    cleaned, merged_away = [], 0
    for label, spans in per_class.items():
        spans.sort()
        out = [spans[0]]
        for on, off in spans[1:]:
            if on <= out[-1][1]:
                out[-1][1] = max(out[-1][1], off)
                merged_away += 1
            else:
                out.append([on, off])
        cleaned.extend((on, off, label) for on, off in out)
    return sorted(cleaned), dropped, merged_away


def localisation_metrics(predictions: Mapping[str, TimeLine],
                         ground_truth: Mapping[str, Sequence[tuple[float, float, str]]],
                         durations: Mapping[str, float], class_names: Sequence[str], *,
                         threshold=0.5, segment_length: float = 1.0,
                         psds2: bool = False, event_f1: bool = False,
                         time_decimals: int = 6) -> dict:
    """Segment-based F1 and PSDS of time lines against true event times (sed_scores_eval).

    Every recording in `predictions` is evaluated, including those without any true event (their
    detections count as false positives). `ground_truth` must have an entry (possibly an empty
    list) for each of them: include only recordings whose event times are known.

    Classes without any true event in the evaluated set are excluded from both metrics and
    listed under "excluded_classes": sed_scores_eval 0.0.4 raises an AssertionError ("No
    ground truth events for classes [...]") for them in both segment-based F1 and PSDS, and
    their recall is undefined anyway. If no class has an event, the metrics are NaN.

    Args:
      predictions: id -> (onsets [K], offsets [K], scores [K, C]) contiguous time line in
        seconds (e.g. `grid_scores`, optionally `median_filter`ed).
      ground_truth: id -> [(onset_s, offset_s, label_name), ...]. Events are clipped to the
        recording; overlapping or touching events of one class are merged (sed_scores_eval
        rejects them) and counted in "ground_truth_merged".
      durations: id -> recording length in seconds (num_samples / 44100).
      class_names: C names, the column order of the scores.
      threshold: decision threshold of the segment-based (and event-based) F1 (score >
        threshold is active): one, or one per class (`class_thresholds`).
      segment_length: segment-based evaluation segment, seconds (DCASE: 1 s).
      psds2: also compute PSDS scenario 2 (dtc 0.1, gtc 0.1, cttc 0.3, alpha_ct 0.5).
      event_f1: also compute collar-based event F1 ("event_f1", "event_f1_per_class",
        "event_precision", "event_recall"): DCASE task 4's collars (onset 200 ms, offset
        max(200 ms, 20 % of the event's length)).
      time_decimals: rounding of times inside sed_scores_eval.

    Returns:
      {"segment_f1": macro-average F1 over evaluated classes, "segment_f1_per_class": {name: f1},
       "segment_precision", "segment_recall" (macro), "segment_f1_micro",
       "psds1": PSDS scenario 1 (dtc 0.7, gtc 0.7, alpha_st 1, max_efpr 100 per hour),
       "psds1_per_class": {name: psds}, ["psds2"], ["event_f1", ...],
       "evaluated_classes", "excluded_classes",
       "num_recordings", "num_recordings_without_events", "ground_truth_dropped",
       "ground_truth_merged"} — floats are plain Python floats.
    """
    class_names = [str(c) for c in class_names]
    ids = list(predictions)
    _check_entries(ids, ground_truth, durations)
    gt, dropped, merged = _cleaned_ground_truth(ids, ground_truth, durations, class_names)
    kept, excluded = _evaluated_classes(gt, class_names)
    result = dict(evaluated_classes=kept, excluded_classes=excluded, num_recordings=len(ids),
                  num_recordings_without_events=sum(1 for i in ids if not gt[i]),
                  ground_truth_dropped=dropped, ground_truth_merged=merged)
    if not kept:
        result.update(_nan_metrics(psds2=psds2, event_f1=event_f1))
        return result
    frames = _score_frames(predictions, ids, class_names, kept)
    thresholds = class_thresholds(threshold, class_names)
    result.update(_sed_metrics(frames, gt, {i: float(durations[i]) for i in ids},
                               {c: float(thresholds[class_names.index(c)]) for c in kept},
                               kept, segment_length, psds2, event_f1, time_decimals))
    return result


def _check_entries(ids: list, ground_truth: Mapping, durations: Mapping) -> None:
    """Raises unless there are recordings and each has a ground-truth entry and a duration."""
    if not ids:
        raise ValueError("no predictions to evaluate")
    missing_gt = [i for i in ids if i not in ground_truth]
    missing_dur = [i for i in ids if i not in durations]
    if missing_gt or missing_dur:
        raise ValueError(f"recordings without ground truth entry: {missing_gt[:5]} "
                         f"({len(missing_gt)}); without duration: {missing_dur[:5]} "
                         f"({len(missing_dur)}). Give [] for recordings without events.")


def _cleaned_ground_truth(ids: list, ground_truth: Mapping, durations: Mapping,
                          class_names: list[str]) -> tuple[dict, int, int]:
    """({id: `_clean_ground_truth` events}, events dropped, events merged away) over all ids."""
    gt, dropped, merged = {}, 0, 0
    for i in ids:
        gt[i], d, m = _clean_ground_truth(ground_truth[i], float(durations[i]), class_names, i)
        dropped, merged = dropped + d, merged + m
    if dropped or merged:
        logging.warning("localisation: %d empty ground-truth events dropped, %d overlapping ones "
                        "merged", dropped, merged)
    return gt, dropped, merged


def _evaluated_classes(gt: dict, class_names: list[str]) -> tuple[list[str], list[str]]:
    """(classes with a true event in `gt`, those without: excluded, with a warning)."""
    with_events = {label for evs in gt.values() for _, _, label in evs}
    kept = [c for c in class_names if c in with_events]
    excluded = [c for c in class_names if c not in with_events]
    if excluded:
        logging.warning("localisation: classes without ground-truth events excluded: %s", excluded)
    return kept, excluded


def _nan_metrics(*, psds2: bool, event_f1: bool) -> dict:
    """The metrics' keys with NaN (empty per-class dicts), for a set without true events."""
    logging.warning("localisation: no class has a ground-truth event; metrics are NaN")
    nan = float("nan")
    out = dict(segment_f1=nan, segment_f1_per_class={}, segment_precision=nan,
               segment_recall=nan, segment_f1_micro=nan, psds1=nan, psds1_per_class={})
    if psds2:
        out["psds2"] = nan
    if event_f1:
        out.update(event_f1=nan, event_f1_per_class={}, event_precision=nan, event_recall=nan)
    return out


def _score_frames(predictions: Mapping[str, TimeLine], ids: list, class_names: list[str],
                  kept: list[str]) -> dict:
    """{id: sed_scores_eval score DataFrame of the `kept` classes}, each time line checked."""
    # deferred: sed_scores_eval pulls in dcase_util and friends (seconds); only evaluation needs it
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    cols = [class_names.index(c) for c in kept]
    frames = {}
    for i in ids:
        onsets, offsets, scores = (np.asarray(a, dtype=np.float64) for a in predictions[i])
        if scores.ndim != 2 or scores.shape[1] != len(class_names):
            raise ValueError(f"{i}: scores must be [K, {len(class_names)}], got {scores.shape}")
        if onsets.shape != (len(scores),) or offsets.shape != onsets.shape or not len(scores):
            raise ValueError(f"{i}: onsets/offsets must be [K={len(scores)}] with K >= 1")
        if not np.allclose(offsets[:-1], onsets[1:]):
            raise ValueError(f"{i}: time line must be contiguous (offsets[j] == onsets[j+1])")
        timestamps = np.concatenate((onsets, offsets[-1:]))
        frames[i] = _WritableScoreFrame(
            create_score_dataframe(scores[:, cols], timestamps, kept))
    return frames


def _sed_metrics(frames: dict, gt: dict, durs: dict, threshold: dict, kept: list[str],
                 segment_length: float, psds2: bool, event_f1: bool, time_decimals: int) -> dict:
    """Segment F1 and PSDS1 (and PSDS2, event F1 when asked) of the kept classes."""
    # deferred: sed_scores_eval pulls in dcase_util and friends (seconds); only evaluation needs it
    from sed_scores_eval import collar_based, intersection_based, segment_based

    result = {}
    f, p, r, _ = segment_based.fscore(frames, gt, durs, threshold, segment_length=segment_length,
                                      time_decimals=time_decimals)
    result.update(segment_f1=float(f["macro_average"]),
                  segment_f1_per_class={c: float(f[c]) for c in kept},
                  segment_precision=float(p["macro_average"]),
                  segment_recall=float(r["macro_average"]),
                  segment_f1_micro=float(f["micro_average"]))
    value, per_class, *_ = intersection_based.psds(
        frames, gt, durs, unit_of_time="hour", time_decimals=time_decimals, **PSDS1)
    result.update(psds1=float(value), psds1_per_class={c: float(per_class[c]) for c in kept})
    if psds2:
        # One evaluated class has no cross-triggers (their rate is about other classes' true
        # events), so the cross-trigger term is 0; sed_scores_eval 0.0.4 raises a TypeError
        # computing it for one class, so it is left out there (the same value).
        scenario = PSDS2 if len(kept) > 1 else {**PSDS2, "cttc_threshold": None,
                                                 "alpha_ct": 0.0}
        value, *_ = intersection_based.psds(
            frames, gt, durs, unit_of_time="hour", time_decimals=time_decimals, **scenario)
        result["psds2"] = float(value)
    if event_f1:
        f, p, r, _ = collar_based.fscore(frames, gt, threshold, time_decimals=time_decimals,
                                         **EVENT_COLLARS)
        result.update(event_f1=float(f["macro_average"]),
                      event_f1_per_class={c: float(f[c]) for c in kept},
                      event_precision=float(p["macro_average"]),
                      event_recall=float(r["macro_average"]))
    return result
