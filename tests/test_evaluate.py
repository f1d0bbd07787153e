"""Tagging metrics against sklearn, and the paper-style results table."""
import numpy as np
import pytest
import sklearn.metrics

from wler_jax import evaluate

CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "siren")


def _random_data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=(n, len(CLASSES))) < 0.3).astype(int)
    labels[:, 1] = 0  # car_horn: no positive recording -> AP undefined
    labels[0, 0] = labels[1, 0] = 1  # make sure the others have positives
    scores = np.clip(labels * 0.3 + rng.uniform(size=labels.shape), 0, 1)
    return labels, scores


def test_average_precision_matches_sklearn_and_skips_undefined_classes():
    labels, scores = _random_data()
    res = evaluate.average_precision(labels, scores, CLASSES)
    assert res["skipped_classes"] == ["car_horn"]
    assert set(res["AP"]) == set(CLASSES) - {"car_horn"}
    expected = {c: sklearn.metrics.average_precision_score(labels[:, i], scores[:, i])
                for i, c in enumerate(CLASSES) if c != "car_horn"}
    for c, ap in expected.items():
        assert res["AP"][c] == pytest.approx(ap, abs=1e-12)
    assert res["mAP"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    assert res["num_examples"] == len(labels)
    # A perfect ranking gives AP 1; all-positive classes are skipped as well.
    labels[:, 1] = 1
    res = evaluate.average_precision(labels, labels.astype(float), CLASSES)
    assert res["skipped_classes"] == ["car_horn"]
    assert all(v == 1.0 for v in res["AP"].values()) and res["mAP"] == 1.0


def test_zero_weight_rows_are_ignored():
    labels, scores = _random_data(seed=1)
    weight = np.ones(len(labels))
    weight[-10:] = 0  # batch padding
    garbage = scores.copy()
    garbage[-10:] = 1.0 - garbage[-10:]  # padded rows hold anything
    res = evaluate.average_precision(labels, garbage, CLASSES, sample_weight=weight)
    ref = evaluate.average_precision(labels[:-10], scores[:-10], CLASSES)
    assert res["AP"] == pytest.approx(ref["AP"]) and res["mAP"] == pytest.approx(ref["mAP"])
    assert res["num_examples"] == len(labels) - 10


def test_average_precision_rejects_bad_input():
    labels, scores = _random_data()
    with pytest.raises(ValueError, match="class names"):
        evaluate.average_precision(labels, scores, CLASSES[:-1])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        evaluate.average_precision(labels, scores[:-1], CLASSES)
    bad = scores.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        evaluate.average_precision(labels, bad, CLASSES)


def test_no_defined_class_gives_nan_map():
    labels = np.zeros((4, len(CLASSES)), int)
    res = evaluate.average_precision(labels, np.random.default_rng(0).uniform(size=labels.shape),
                                     CLASSES)
    assert np.isnan(res["mAP"]) and res["AP"] == {} and len(res["skipped_classes"]) == 5


def _row(table, name):
    rows = [line for line in table.splitlines() if line.startswith(name + "  ")]
    assert len(rows) == 1, (name, table)
    return rows[0].split()[len(name.split()):]


def test_format_table_layout_and_numbers():
    labels, scores = _random_data()
    slat = evaluate.average_precision(labels, scores, CLASSES)
    wler = evaluate.average_precision(labels, np.sqrt(scores), CLASSES)
    wler["localisation"] = {"segment_f1": 0.41234, "psds1": 0.2}
    table = evaluate.format_table({"SLAT": slat, "WLER": wler}, CLASSES, title="US test")
    lines = table.splitlines()
    assert lines[0] == "US test"
    assert lines[1].split() == ["Event", "Name", "SLAT", "WLER"]
    assert _row(table, "Air Conditioner") == [f"{slat['AP']['air_conditioner']:.3f}",
                                              f"{wler['AP']['air_conditioner']:.3f}"]
    assert _row(table, "Children Playing") == [f"{slat['AP']['children_playing']:.3f}",
                                               f"{wler['AP']['children_playing']:.3f}"]
    assert _row(table, "Car Horn") == ["-", "-"]  # skipped: AP undefined
    assert _row(table, "mAP") == [f"{slat['mAP']:.3f}", f"{wler['mAP']:.3f}"]
    assert _row(table, "Segment F1") == ["-", "0.412"]
    assert _row(table, "PSDS") == ["-", "0.200"]
    assert "PSDS2" not in table
    order = [evaluate.display_name(c) for c in CLASSES] + ["mAP", "Segment F1", "PSDS"]
    positions = [table.index("\n" + name + " ") for name in order]
    assert positions == sorted(positions)  # rows in class order, mAP after the classes


def test_format_table_single_column_without_localisation():
    labels, scores = _random_data()
    res = evaluate.average_precision(labels, scores, CLASSES)
    table = evaluate.format_table({"test": res}, CLASSES)
    assert _row(table, "Dog Bark") == [f"{res['AP']['dog_bark']:.3f}"]
    assert _row(table, "mAP") == [f"{res['mAP']:.3f}"]
    assert "Segment F1" not in table and "PSDS" not in table
    assert evaluate.display_name("Vehicle horn, car horn, honking") == (
        "Vehicle horn, car horn, honking")


def test_bootstrap_ap_equals_sklearn_with_ties():
    rng = np.random.default_rng(3)
    for n in (7, 50, 400):
        labels = (rng.random(n) < 0.3).astype(int)
        labels[0] = 1
        scores = np.round(rng.random(n), 1)  # many ties
        assert evaluate._ap_sorted(labels, scores) == pytest.approx(
            sklearn.metrics.average_precision_score(labels, scores), abs=1e-12)


def test_bootstrap_map_ci_brackets_map_and_shrinks_with_more_recordings():
    rng = np.random.default_rng(0)

    def data(n):
        labels = (rng.random((n, 5)) < 0.3).astype(int)
        return labels, labels + rng.normal(0, 0.8, labels.shape)

    small, large = data(60), data(1200)
    lo_s, hi_s = evaluate.bootstrap_map_ci(*small, num_resamples=300)
    lo_l, hi_l = evaluate.bootstrap_map_ci(*large, num_resamples=300)
    m_l = evaluate.average_precision(*large, [f"c{i}" for i in range(5)])["mAP"]
    assert lo_l < m_l < hi_l
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)  # ~1/sqrt(20) in theory
    assert evaluate.bootstrap_map_ci(*small, num_resamples=300) == [lo_s, hi_s]  # seeded


def test_paired_bootstrap_keeps_pairs_and_resamples_whole_groups():
    rng = np.random.default_rng(1)
    labels = (rng.random((80, 4)) < 0.3).astype(int)
    a = labels + rng.normal(0, 0.5, labels.shape)
    b = labels + rng.normal(0, 1.5, labels.shape)
    got = evaluate.paired_bootstrap_map_ci(labels, a, b, num_resamples=200, seed=5)
    # each system's interval is the one-system bootstrap's (same seed, same resamples)
    assert got["a"] == evaluate.bootstrap_map_ci(labels, a, num_resamples=200, seed=5)
    assert got["b"] == evaluate.bootstrap_map_ci(labels, b, num_resamples=200, seed=5)
    assert got["diff"][0] > 0  # a is far better on every resample of this data
    same = evaluate.paired_bootstrap_map_ci(labels, a, a, num_resamples=50)
    assert same["diff"] == [0.0, 0.0]  # paired: a system minus itself is 0 on every resample
    # Every recording 5 times, grouped: a resample draws whole groups, and AP of 5 copies of each
    # item equals AP of the items, so the interval equals the de-duplicated data's. Resampling
    # the 400 copies one by one would give a much narrower one.
    rep = lambda x: np.repeat(x, 5, axis=0)  # noqa: E731
    grouped = evaluate.paired_bootstrap_map_ci(rep(labels), rep(a), rep(b), num_resamples=200,
                                               seed=5, groups=np.repeat(np.arange(80), 5))
    assert np.allclose(grouped["diff"], got["diff"], atol=1e-12)
    loose = evaluate.paired_bootstrap_map_ci(rep(labels), rep(a), rep(b), num_resamples=200,
                                             seed=5)
    assert loose["diff"][1] - loose["diff"][0] < 0.7 * (got["diff"][1] - got["diff"][0])
    with pytest.raises(ValueError, match="groups"):
        evaluate.paired_bootstrap_map_ci(labels, a, b, groups=np.zeros(3))
