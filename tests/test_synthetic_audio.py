"""Tests of the synthetic weakly labelled audio generator (wler_jax/data/datasets/synthetic_audio.py)."""
from __future__ import annotations

import hashlib
import re

import librosa
import numpy as np
import pytest

from wler_jax.data.datasets import synthetic_audio as sa
from wler_jax.geometry import SAMPLE_RATE


@pytest.fixture(scope="module")
def smoke():
    """All three smoke splits, rendered once: {split: [Recording]}."""
    return {split: list(sa.generate_split(split, "smoke", seed=0)) for split in sa.SPLITS}


def _digest(audio: np.ndarray) -> str:
    return hashlib.sha1(audio.tobytes()).hexdigest()


def test_recording_is_a_pure_function_of_its_arguments():
    a = sa.generate_recording(7, 3.0, rng_labels=[2])
    b = sa.generate_recording(7, 3.0, rng_labels=[2])
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.events == b.events and a.labels == b.labels
    c = sa.generate_recording(8, 3.0, rng_labels=[2])
    assert c.audio.shape == a.audio.shape and not np.array_equal(c.audio, a.audio)
    assert 2 in a.labels and 2 in c.labels


def test_split_is_deterministic_and_seed_dependent(smoke):
    again = list(sa.generate_split("validation", "smoke", seed=0))
    assert [r.id for r in again] == [r.id for r in smoke["validation"]]
    for x, y in zip(again, smoke["validation"]):
        np.testing.assert_array_equal(x.audio, y.audio)
        assert x.events == y.events
    other = list(sa.generate_split("validation", "smoke", seed=1))
    assert {_digest(r.audio) for r in other}.isdisjoint(_digest(r.audio) for r in again)


def test_splits_have_expected_ids_and_share_no_recording(smoke):
    preset = sa.SIZES["smoke"]
    digests = []
    for split, recs in smoke.items():
        assert len(recs) == getattr(preset, split)
        assert [r.id for r in recs] == [f"{split}_{i:05d}" for i in range(len(recs))]
        digests += [_digest(r.audio) for r in recs]
    assert len(set(digests)) == len(digests)


def test_labels_are_the_union_of_events_within_the_recording(smoke):
    for recs in smoke.values():
        for r in recs:
            duration = r.audio.size / SAMPLE_RATE
            assert r.labels == sorted({e.label for e in r.events})
            assert 1 <= len(r.labels) <= 4
            assert [e.onset for e in r.events] == sorted(e.onset for e in r.events)
            for e in r.events:
                assert 0 <= e.label < len(sa.CLASSES)
                assert 0.0 <= e.onset < e.offset <= duration + 1e-9
                assert e.offset - e.onset >= 0.05  # no zero-length or vanishing events


def test_audio_is_float32_finite_and_below_full_scale(smoke):
    for recs in smoke.values():
        for r in recs:
            assert r.audio.dtype == np.float32 and r.audio.ndim == 1
            assert np.all(np.isfinite(r.audio))
            peak = float(np.max(np.abs(r.audio)))
            assert 0.05 < peak < 1.0


def test_lengths_span_the_preset_range(smoke):
    preset = sa.SIZES["smoke"]
    for recs in smoke.values():
        seconds = np.array([r.audio.size for r in recs]) / SAMPLE_RATE
        assert abs(seconds.min() - preset.min_seconds) < 1e-3
        assert abs(seconds.max() - preset.max_seconds) < 1e-3
    total = sum(r.audio.size for recs in smoke.values() for r in recs) / SAMPLE_RATE
    assert total < 120.0
    stats = sa.describe("cpu")
    for split, s in stats["splits"].items():
        assert s["min_seconds"] == pytest.approx(1.0) and s["max_seconds"] == pytest.approx(60.0)
        assert s["median_seconds"] == pytest.approx(sa.SIZES["cpu"].median_seconds, rel=0.1)
    # ~26 min of training audio; evaluation splits of 160 and 400 recordings (~88 min in all)
    assert 20 * 60 <= stats["splits"]["train"]["total_seconds"] <= 35 * 60
    assert 75 * 60 <= stats["total_seconds"] <= 100 * 60


def test_every_class_in_every_split(smoke):
    for split, recs in smoke.items():
        assert {c for r in recs for c in r.labels} == set(range(len(sa.CLASSES))), split
    for split, s in sa.describe("cpu")["splits"].items():
        assert min(s["recordings_per_class"].values()) >= 10, split


def test_events_sit_where_they_are_labelled(smoke):
    """Audio inside labelled event spans is louder than audio outside every event."""
    gains = []
    for recs in smoke.values():
        for r in recs:
            power = r.audio.astype(np.float64) ** 2
            outside = np.ones(r.audio.size, bool)
            for e in r.events:
                outside[int(e.onset * SAMPLE_RATE):int(np.ceil(e.offset * SAMPLE_RATE))] = False
            if outside.sum() < 0.2 * SAMPLE_RATE:
                continue
            for e in r.events:
                inside = power[int(e.onset * SAMPLE_RATE):int(e.offset * SAMPLE_RATE)]
                gains.append(10 * np.log10(inside.mean() / power[outside].mean()))
    assert len(gains) >= 20
    assert np.median(gains) > 3.0  # dB; events placed at random times give ~0 dB


def _features(x: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """Level-normalised log-mel summary: mean, temporal std, |d/df| and |d/dt| per band."""
    m = np.log(mel @ np.abs(librosa.stft(x, n_fft=1024, hop_length=512)) ** 2 + 1e-10)
    m -= m.mean()
    return np.concatenate([m.mean(1), m.std(1), np.abs(np.diff(m, axis=0)).mean(1),
                           np.abs(np.diff(m, axis=1)).mean(1)])


def test_class_families_are_distinct():
    """A nearest-centroid classifier on log-mel summaries of isolated events separates classes."""
    rng = np.random.default_rng(0)
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=1024, n_mels=128)
    feats, labels = [], []
    for c in range(len(sa.CLASSES)):
        for j in range(12):
            x = sa.synthesize_event(c, float(rng.uniform(0.5, 2.0)), seed=1000 * c + j)
            assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
            x = (x + 0.03 * rng.standard_normal(x.size).astype(np.float32)) * rng.uniform(0.05, 1)
            feats.append(_features(x, mel))
            labels.append(c)
    feats, labels = np.array(feats), np.array(labels)
    train = np.arange(labels.size) % 2 == 0
    mu, sd = feats[train].mean(0), feats[train].std(0) + 1e-6
    z = (feats - mu) / sd
    centroids = np.stack([z[train & (labels == c)].mean(0) for c in range(len(sa.CLASSES))])
    dist = ((z[~train, None] - centroids[None]) ** 2).sum(-1)
    assert np.mean(dist.argmin(1) == labels[~train]) >= 0.8  # chance is 0.1
    for a in range(len(sa.CLASSES)):  # every pair separable: a duplicated family gives ~0.5
        for b in range(a + 1, len(sa.CLASSES)):
            pair = (labels[~train] == a) | (labels[~train] == b)
            pred = np.where(dist[pair, a] < dist[pair, b], a, b)
            assert np.mean(pred == labels[~train][pair]) >= 0.75, (sa.CLASSES[a], sa.CLASSES[b])


def test_slat_window_labels_on_a_known_layout():
    window_s = 128 * 512 / SAMPLE_RATE
    n = int(3.2 * window_s * SAMPLE_RATE)  # three whole windows, the tail is not a window
    events = [sa.Event(3, 0.1, 0.3), sa.Event(5, window_s + 0.1, 2 * window_s + 0.2)]
    assert sa.slat_window_labels(n, events) == [frozenset({3}), frozenset({5}), frozenset({5})]
    short = [sa.Event(3, 0.0, 0.01), sa.Event(5, 0.015, 0.02)]  # 1000 samples: one padded window
    assert sa.slat_window_labels(1000, short) == [frozenset({3, 5})]
    noise = sa.label_noise([(n, events)])
    assert noise["windows"] == 3 and noise["frac_windows_exact"] == 0.0
    assert noise["frac_pairs_present"] == pytest.approx(3 / 6)


def test_weak_labels_are_wrong_for_most_windows(smoke):
    """Labelling every 1.5-s window with the recording label is mostly wrong (cpu preset)."""
    for split, s in sa.describe("cpu")["splits"].items():
        assert s["frac_windows_exact"] < 0.5, split
        assert s["frac_pairs_present"] < 0.5, split
        assert s["event_time_fraction"] < 0.6, split
    # describe() plans without rendering: it must agree with the rendered recordings.
    described = sa.describe("smoke")["splits"]
    for split, recs in smoke.items():
        rendered = sa.label_noise(recs)
        for key in ("windows", "frac_windows_exact", "frac_pairs_present"):
            assert rendered[key] == pytest.approx(described[split][key]), (split, key)
        assert described[split]["count"] == len(recs)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        next(sa.generate_split("dev", "smoke"))
    with pytest.raises(ValueError, match="size"):
        next(sa.generate_split("train", "huge"))
    with pytest.raises(ValueError, match="rng_labels"):
        sa.generate_recording(0, 1.0, rng_labels=[10])


def test_custom_preset_and_public_constants():
    assert sa.CLASSES[0] == "air_conditioner" and sa.CLASSES[-1] == "street_music"
    assert len(sa.CLASSES) == 10 and set(sa.SIZES) >= {"smoke", "cpu", "gpu"}
    preset = sa.SizePreset(train=3, validation=1, test=1, min_seconds=1.0, max_seconds=2.0,
                           median_seconds=1.5)
    recs = list(sa.generate_split("train", preset, seed=3))
    assert len(recs) == 3 and all(re.fullmatch(r"train_\d{5}", r.id) for r in recs)
    seconds = sorted(r.audio.size / SAMPLE_RATE for r in recs)
    assert seconds[0] == pytest.approx(1.0, abs=1e-4) and seconds[-1] == pytest.approx(2.0, abs=1e-4)
