"""Segment scores -> time line -> events, and localisation metrics through sed_scores_eval."""
import numpy as np
import pytest

from wler_jax import geometry

from wler_jax.serving import localisation

FRAME_S = 512 / 44100
CELL_S = 32 * FRAME_S  # 0.3715 s


def coverage_scores(num_frames, onset, offset):
    """An ideal segment scorer: the fraction of each segment's window the event fills. [S, 1]"""
    start, end = geometry.segment_times(geometry.num_segments(num_frames))
    overlap = np.clip(np.minimum(end, offset) - np.maximum(start, onset), 0, None)
    return (overlap / (end - start))[:, None]


# ---------------------------------------------------------------- grid_scores

def test_grid_scores_places_segment_scores_on_their_frames():
    num_frames = 1280  # S = 37
    probs = np.full((37, 2), 0.1)
    probs[[5, 6], 0] = 1.0  # windows [160, 288) and [192, 320)
    onsets, offsets, scores = localisation.grid_scores(probs, num_frames)
    assert len(onsets) == 40
    high = (onsets >= 160 * FRAME_S - 1e-9) & (offsets <= 320 * FRAME_S + 1e-9)
    assert np.flatnonzero(high).tolist() == [5, 6, 7, 8, 9]
    np.testing.assert_array_equal(scores[high, 0], 1.0)
    np.testing.assert_array_equal(scores[~high, 0], 0.1)
    np.testing.assert_array_equal(scores[:, 1], 0.1)
    # Time conversion: frame 32 starts at 32 * 512 / 44100 s, the segment grid's start times.
    assert onsets[1] == 32 * 512 / 44100 and onsets[1] == pytest.approx(0.3715, abs=1e-4)
    np.testing.assert_allclose(onsets[:37], geometry.segment_times(37)[0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(offsets[:-1], onsets[1:])  # contiguous
    assert offsets[-1] == pytest.approx(1280 * FRAME_S)
    # Mean: cell j averages segments j-3..j.
    _, _, mean = localisation.grid_scores(probs, num_frames, reduce="mean")
    np.testing.assert_allclose(mean[3:12, 0] - 0.1, 0.9 * np.array([0, 0, 1, 2, 2, 2, 1, 0, 0]) / 4)


def test_grid_scores_trailing_partial_cell_and_duration():
    num_samples = 1300 * 512 + 100  # T = 1301 frames, S = 37: 21 frames after the last window
    num_frames = geometry.num_frames_for_samples(num_samples)
    probs = np.linspace(0, 1, 37)[:, None]
    onsets, offsets, scores = localisation.grid_scores(probs, num_frames,
                                                       duration=num_samples / 44100)
    assert len(onsets) == 41  # ceil(1301 / 32)
    assert scores[-1, 0] == scores[-2, 0] == probs[-1, 0]  # beyond the last window: last segment
    assert offsets[-1] == num_samples / 44100
    with pytest.raises(ValueError, match="does not fit"):
        localisation.grid_scores(probs, num_frames, duration=5.0)
    with pytest.raises(ValueError, match="valid segments"):
        localisation.grid_scores(probs[:-1], num_frames)


def test_grid_scores_short_recording():
    num_samples = 50_000  # 1.13 s, T = 98 < 128: padded, one segment
    num_frames = geometry.num_frames_for_samples(num_samples)
    onsets, offsets, scores = localisation.grid_scores(np.array([[0.7, 0.2]]), num_frames,
                                                       duration=num_samples / 44100)
    assert len(onsets) == 4 and onsets[0] == 0.0
    assert offsets[-1] == num_samples / 44100
    np.testing.assert_array_equal(scores, np.tile([[0.7, 0.2]], (4, 1)))
    # A single frame whose cell would start at the end is not left as a zero-length cell.
    o, f, s = localisation.grid_scores(np.array([[0.3]]), 33, duration=32 * 512 / 44100)
    assert len(o) == 1 and f[-1] > o[-1]


# --------------------------------------------------------------- median_filter

def test_median_filter_removes_single_cell_spike():
    scores = np.zeros((20, 2))
    scores[7, 0] = 1.0  # spike
    scores[12:15, 1] = 1.0  # a 3-cell event survives
    out = localisation.median_filter(scores, 3)
    np.testing.assert_array_equal(out[:, 0], 0.0)
    np.testing.assert_array_equal(out[:, 1], scores[:, 1])
    np.testing.assert_array_equal(localisation.median_filter(scores, 1), scores)
    with pytest.raises(ValueError):
        localisation.median_filter(scores, 0)


# --------------------------------------------------------------- detect_events

@pytest.mark.parametrize("onset,offset", [(3.1, 6.3), (0.2, 2.9), (7.0, 11.9)])
def test_detect_events_recovers_a_known_event(onset, offset):
    duration = 12.0
    num_frames = geometry.num_frames_for_samples(int(duration * 44100))
    probs = coverage_scores(num_frames, onset, offset)
    onsets, offsets, scores = localisation.grid_scores(probs, num_frames, reduce="mean",
                                                       duration=duration)
    events = localisation.detect_events(onsets, offsets, scores, ["siren"])
    assert len(events) == 1  # the event's many cells merged into one
    ev = events[0]
    assert ev["label"] == "siren" and ev["score"] == scores.max() > 0.9
    assert abs(ev["start"] - onset) <= CELL_S and abs(ev["end"] - offset) <= CELL_S
    # Max pooling over windows widens the event, by at most two cells.
    onsets, offsets, scores = localisation.grid_scores(probs, num_frames, duration=duration)
    (ev,) = localisation.detect_events(onsets, offsets, scores, ["siren"])
    assert onset - 2 * CELL_S <= ev["start"] <= onset + 1e-9
    assert offset - 1e-9 <= ev["end"] <= offset + 2 * CELL_S


def test_detect_events_merges_gaps_and_keeps_classes_apart():
    onsets = np.arange(12) * CELL_S
    offsets = onsets + CELL_S
    scores = np.zeros((12, 2))
    scores[[2, 3], 0] = [0.6, 0.9]
    scores[[5, 6], 0] = [0.8, 0.7]  # one quiet cell (0.37 s) later
    scores[9, 0] = 0.5  # exactly at threshold: not above it
    scores[4:8, 1] = 0.95
    events = localisation.detect_events(onsets, offsets, scores, ["dog", "car"])
    assert [(e["label"], e["start"], e["end"]) for e in events] == [
        ("dog", onsets[2], offsets[3]), ("car", onsets[4], offsets[7]),
        ("dog", onsets[5], offsets[6])]
    assert events[0]["score"] == 0.9 and events[2]["score"] == 0.8
    merged = localisation.detect_events(onsets, offsets, scores, ["dog", "car"], min_gap=0.4)
    dogs = [e for e in merged if e["label"] == "dog"]
    assert [(e["start"], e["end"], e["score"]) for e in dogs] == [(onsets[2], offsets[6], 0.9)]
    not_merged = localisation.detect_events(onsets, offsets, scores, ["dog", "car"], min_gap=0.3)
    assert len([e for e in not_merged if e["label"] == "dog"]) == 2


def test_merge_segments_on_the_segment_grid():
    probs = np.zeros((37, 2))
    probs[[5, 6], 0] = [0.7, 0.9]
    probs[20, 1] = 0.6
    start, end = geometry.segment_times(37)
    events = localisation.merge_segments(probs, ["dog", "siren"], 0.5)
    assert events == [dict(label="dog", start=start[5], end=end[6], score=0.9),
                      dict(label="siren", start=start[20], end=end[20], score=0.6)]
    assert localisation.merge_segments(probs, ["dog", "siren"], 0.95) == []


def test_events_to_ground_truth():
    events = {"label": [1, 0], "onset": [0.5, 2.0], "offset": [1.5, 3.0]}
    assert localisation.events_to_ground_truth(events, ["dog", "siren"]) == [
        (0.5, 1.5, "siren"), (2.0, 3.0, "dog")]
    assert localisation.events_to_ground_truth({"label": [], "onset": [], "offset": []},
                                               ["dog"]) == []


# -------------------------------------------------------- localisation_metrics

CLASSES = ["dog", "siren", "drill"]
STEP = 0.01


def _dataset(seed=0, n=6, duration=10.0):
    """Fine-grid perfect time lines; the last two recordings have no event; "drill" has none."""
    rng = np.random.default_rng(seed)
    grid = np.round(np.arange(0, duration + STEP / 2, STEP), 6)
    preds, gt, durations = {}, {}, {}
    for r in range(n):
        scores = np.zeros((len(grid) - 1, len(CLASSES)))
        events = []
        if r < n - 2:
            for c in range(2):
                on = round(rng.uniform(0, 6), 2)
                off = round(on + rng.uniform(0.5, 3), 2)
                events.append((on, off, CLASSES[c]))
                scores[(grid[:-1] >= on - 1e-9) & (grid[1:] <= off + 1e-9), c] = 1.0
        preds[f"rec{r}"] = (grid[:-1], grid[1:], scores)
        gt[f"rec{r}"] = events
        durations[f"rec{r}"] = duration
    return preds, gt, durations


def test_perfect_predictions_score_one_and_worse_ones_lower():
    preds, gt, durations = _dataset()
    res = localisation.localisation_metrics(preds, gt, durations, CLASSES)
    assert res["segment_f1"] == pytest.approx(1.0)
    assert res["segment_f1_per_class"] == {"dog": pytest.approx(1.0), "siren": pytest.approx(1.0)}
    assert res["psds1"] > 0.99
    assert res["evaluated_classes"] == ["dog", "siren"] and res["excluded_classes"] == ["drill"]
    assert res["num_recordings"] == 6 and res["num_recordings_without_events"] == 2

    inverted = {k: (o, f, 1.0 - s) for k, (o, f, s) in preds.items()}
    res_inv = localisation.localisation_metrics(inverted, gt, durations, CLASSES)
    rng = np.random.default_rng(1)
    noise = {k: (o, f, rng.uniform(size=s.shape)) for k, (o, f, s) in preds.items()}
    res_rnd = localisation.localisation_metrics(noise, gt, durations, CLASSES)
    for bad in (res_inv, res_rnd):
        assert bad["segment_f1"] < 0.5 and bad["psds1"] < 0.3


def test_recordings_without_events_count_as_false_positives():
    preds, gt, durations = _dataset()
    o, f, s = preds["rec5"]  # no true event
    s = s.copy()
    s[100:300, 0] = 1.0  # a 2-s false "dog"
    preds["rec5"] = (o, f, s)
    res = localisation.localisation_metrics(preds, gt, durations, CLASSES)
    assert res["segment_f1_per_class"]["siren"] == pytest.approx(1.0)
    assert res["segment_f1_per_class"]["dog"] < 1.0 and res["segment_precision"] < 1.0
    assert res["psds1"] < 1.0
    del preds["rec5"], gt["rec5"]  # dropping it would hide the false positive
    assert localisation.localisation_metrics(preds, gt, durations, CLASSES)["segment_f1"] == (
        pytest.approx(1.0))


def test_ground_truth_is_checked_and_cleaned():
    preds, gt, durations = _dataset(n=3)
    missing = dict(gt)
    del missing["rec0"]
    with pytest.raises(ValueError, match="rec0"):
        localisation.localisation_metrics(preds, missing, durations, CLASSES)
    # Overlapping or touching events of one class (sed_scores_eval asserts on them) are merged;
    # events past the end are clipped.
    on, off, label = gt["rec0"][0]
    gt["rec0"] = gt["rec0"] + [(on + 0.1, off - 0.1, label), (off, off + 0.3, label),
                               (9.5, 12.0, "drill")]
    o, f, s = preds["rec0"]
    s = s.copy()
    s[(o >= off - 1e-9) & (f <= off + 0.3 + 1e-9), 0] = 1.0
    preds["rec0"] = (o, f, s)
    res = localisation.localisation_metrics(preds, gt, durations, CLASSES, psds2=True)
    assert res["ground_truth_merged"] == 2 and res["excluded_classes"] == []
    assert res["segment_f1_per_class"]["dog"] == pytest.approx(1.0)
    assert res["segment_f1_per_class"]["drill"] == 0.0  # never predicted
    assert 0.0 <= res["psds2"] <= 1.0
    # No class with an event at all: NaN, not a crash.
    empty = localisation.localisation_metrics(preds, {k: [] for k in gt}, durations, CLASSES)
    assert np.isnan(empty["segment_f1"]) and np.isnan(empty["psds1"])
    assert empty["excluded_classes"] == CLASSES


def test_grid_time_line_from_segment_scores_end_to_end():
    """Ideal segment scores -> grid_scores -> metrics: the cell time line is accepted and good."""
    preds, gt, durations = {}, {}, {}
    for r, (on, off) in enumerate([(1.2, 4.5), (5.0, 9.0), (0.0, 3.3)]):
        num_samples = int(10.0 * 44100) + 37 * r
        num_frames = geometry.num_frames_for_samples(num_samples)
        probs = np.concatenate([coverage_scores(num_frames, on, off),
                                np.zeros((geometry.num_segments(num_frames), 1))], axis=1)
        preds[r] = localisation.grid_scores(probs, num_frames, reduce="mean",
                                            duration=num_samples / 44100)
        gt[r] = [(on, off, "dog")]
        durations[r] = num_samples / 44100
    res = localisation.localisation_metrics(preds, gt, durations, ["dog", "siren"])
    assert res["excluded_classes"] == ["siren"]
    assert res["segment_f1"] > 0.85
    assert res["psds1"] > 0.5
