"""The log-mel statistics baseline: its features are librosa's log-mel statistics whatever the
padding, and its classifier learns what band energies hold, choosing C on validation only."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from wler_jax import features
from wler_jax.geometry import N_FFTS, N_MELS
from wler_jax.training import logmel_baseline as lb


def test_statistics_are_librosas_log_mel_mean_std_max_per_band():
    rng = np.random.default_rng(0)
    n = 37 * 512 + 123  # not on a bucket: the padding to the ladder must not count
    x = (0.1 * rng.standard_normal(n) + 0.3 * np.sin(np.arange(n) * 0.05)).astype(np.float32)
    got = lb.waveform_statistics(x).reshape(len(N_FFTS), len(lb.STATISTICS), N_MELS)
    assert lb._bucket(n) > n
    for k, n_fft in enumerate(N_FFTS):
        ref = features.librosa_log_mel(x, n_fft)  # [T, 128] dB
        np.testing.assert_allclose(got[k, 0], ref.mean(0), atol=0.05)
        np.testing.assert_allclose(got[k, 1], ref.std(0), atol=0.05)
        np.testing.assert_allclose(got[k, 2], ref.max(0), atol=0.1)


def _tone(freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(44_100) / 44_100
    return (0.2 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(
        np.float32)


def test_the_classifier_separates_band_energies_and_chooses_c_on_validation(tmp_path):
    rows = ["path,labels,split,source"]
    for i in range(24):
        label, freq = ("low", 300.0) if i % 2 == 0 else ("high", 5000.0)
        split = ("train", "train", "validation", "test")[(i // 2) % 4]  # both labels in each
        path = tmp_path / f"r{i}.wav"
        sf.write(path, _tone(freq * (1 + 0.05 * (i % 5)), i), 44_100)
        rows.append(f"{path.name},{label},{split},s{i}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    table = lb.read_table(str(tmp_path / "t.csv"))
    assert set(table.splits) == {"train", "validation", "test"}
    names = ["high", "low"]
    x = lb.recording_statistics(table.paths)
    y = table.multi_hot(names)
    tr, va, te = (table.select(s) for s in ("train", "validation", "test"))
    model, choice = lb.fit(x[tr], y[tr], x[va], y[va], names)
    assert choice["C"] in lb.C_GRID and set(choice["validation_mAP"]) == {str(c) for c in lb.C_GRID}
    res = lb.score(model, x[te], y[te], names, groups=[table.groups[i] for i in te])
    assert res["mAP"] == 1.0 and res["scores"].shape == (len(te), 2)
    assert res["mAP_ci95"][0] <= res["mAP"] <= res["mAP_ci95"][1]
