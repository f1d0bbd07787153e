"""Weak-label augmentation of training batches: mixing gives the union label, gain scales,
background excerpts are mixed at the drawn SNR or replace a recording as a negative, SpecAugment
masks stay inside each recording; the background bank and its place in the pipeline."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from wler_jax import errors
from wler_jax.configs import common
from wler_jax.data import input_pipeline
from wler_jax.data.background import BackgroundBank
from wler_jax.training import train
from wler_jax.training.augment import Augmentation, augment_waveforms, spec_augment


def _batch():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((4, 4096)) * 3000).astype(np.int16)
    n = np.array([4096, 3000, 2000, 0])
    audio[1, 3000:] = 0
    audio[2, 2000:] = 0
    audio[3] = 0
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    return {"audio": jnp.asarray(audio), "num_samples": jnp.asarray(n),
            "num_frames": jnp.asarray(np.where(n > 0, 1 + n // 512, 0).astype(np.int32)),
            "labels": jnp.asarray(labels), "weight": jnp.asarray([1.0, 1.0, 1.0, 0.0])}


def test_mixing_gives_union_labels_and_never_touches_padding_rows():
    batch = _batch()
    out = jax.jit(lambda b, r: augment_waveforms(b, r, Augmentation(mix_prob=1.0)))(batch, jax.random.key(3))
    labels = np.asarray(out["labels"])
    np.testing.assert_array_equal(labels[0], [1, 1, 0])  # 0 + its neighbour 1
    np.testing.assert_array_equal(labels[1], [0, 1, 1])
    np.testing.assert_array_equal(labels[2], [0, 0, 1])  # neighbour is a padding row: unmixed
    np.testing.assert_array_equal(labels[3], [0, 0, 0])
    np.testing.assert_array_equal(out["num_samples"], [4096, 3000, 2000, 0])
    np.testing.assert_array_equal(out["num_frames"], batch["num_frames"])
    a = np.asarray(batch["audio"], np.float32) / 32767.0
    got = np.asarray(out["audio"])
    big = np.abs(a[1]) > 0.01  # where the ratio is well conditioned
    level = (got[0] - a[0])[big] / a[1][big]
    assert np.allclose(level, level[0], rtol=1e-3) and 10 ** (-6 / 20) - 1e-6 <= level[0] <= 1
    np.testing.assert_allclose(got[2], a[2], atol=1e-7)
    np.testing.assert_array_equal(got[3], 0.0)


def test_mixing_takes_the_longer_length_and_gain_only_scales():
    batch = _batch()
    batch = {**batch, "weight": jnp.ones(4)}
    out = augment_waveforms(batch, jax.random.key(0), Augmentation(mix_prob=1.0))
    np.testing.assert_array_equal(out["num_samples"], [4096, 3000, 2000, 4096])
    np.testing.assert_array_equal(out["num_frames"], 1 + np.array([4096, 3000, 2000, 4096]) // 512)
    g = augment_waveforms(batch, jax.random.key(0), Augmentation(gain_db=6.0))
    a = np.asarray(batch["audio"], np.float32) / 32767.0
    ratio = np.asarray(g["audio"])[:3, :100] / a[:3, :100]
    assert np.all(np.abs(ratio - ratio[:, :1]) < 1e-4)
    assert np.all((ratio[:, 0] >= 10 ** (-6 / 20) - 1e-6) & (ratio[:, 0] <= 10 ** (6 / 20) + 1e-6))
    np.testing.assert_array_equal(g["labels"], batch["labels"])
    assert augment_waveforms(batch, jax.random.key(0), Augmentation()) is batch  # off: the batch as it was


def _with_background(batch, seed=1):
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(batch["audio"].shape) * 1000).astype(np.int16)
    return {**batch, "background": jnp.asarray(noise)}


def test_negatives_become_the_background_alone_with_an_empty_label():
    batch = _with_background(_batch())
    out = augment_waveforms(batch, jax.random.key(0), Augmentation(negative_prob=1.0))
    np.testing.assert_array_equal(out["labels"], 0.0)
    noise = np.asarray(batch["background"], np.float32) / 32767.0
    got = np.asarray(out["audio"])
    for row, n in enumerate([4096, 3000, 2000]):
        np.testing.assert_allclose(got[row, :n], noise[row, :n], atol=1e-7)
        np.testing.assert_array_equal(got[row, n:], 0.0)  # past the recording's end: silence
    np.testing.assert_array_equal(got[3], 0.0)  # a padding row stays empty
    assert "background" not in out


def test_background_is_mixed_at_the_drawn_snr_inside_each_recording():
    batch = _with_background(_batch())
    aug = Augmentation(background_prob=1.0, background_snr_db=(10.0, 10.0))
    out = jax.jit(lambda b, r: augment_waveforms(b, r, aug))(batch, jax.random.key(0))
    np.testing.assert_array_equal(out["labels"], batch["labels"])  # the events are still there
    a = np.asarray(batch["audio"], np.float32) / 32767.0
    got = np.asarray(out["audio"])
    for row, n in enumerate([4096, 3000, 2000]):
        added = got[row, :n] - a[row, :n]
        snr = 20 * np.log10(np.sqrt(np.mean(a[row, :n] ** 2)) / np.sqrt(np.mean(added ** 2)))
        assert snr == pytest.approx(10.0, abs=1e-3), row
        np.testing.assert_array_equal(got[row, n:], 0.0)
    np.testing.assert_array_equal(got[3], 0.0)


def test_background_without_excerpts_is_a_clear_error():
    with pytest.raises(ValueError, match="data.background"):
        augment_waveforms(_batch(), jax.random.key(0), Augmentation(negative_prob=0.5))


def test_spec_augment_masks_with_the_mean_inside_each_recording_only():
    rng = np.random.default_rng(0)
    feats = jnp.asarray(rng.standard_normal((3, 200, 128)).astype(np.float32) - 50.0)
    num_frames = jnp.asarray([200, 120, 0])
    aug = Augmentation(freq_masks=2, freq_mask_bands=20, time_masks=2, time_mask_frames=30)
    out = np.asarray(jax.jit(lambda f, n, r: spec_augment(f, n, r, aug))(
        feats, num_frames, jax.random.key(4)))
    f = np.asarray(feats)
    changed = out != f
    assert changed[:2].any()
    np.testing.assert_array_equal(out[1, 120:], f[1, 120:])  # padding frames untouched
    np.testing.assert_array_equal(out[2], f[2])  # an empty row too
    for row, n in ((0, 200), (1, 120)):
        fill = f[row, :n].mean()
        np.testing.assert_allclose(out[row][changed[row]], fill, rtol=1e-5)
        rows_masked = changed[row].all(axis=1)  # whole frames: a time mask
        bands_masked = changed[row, :n].all(axis=0)  # whole bands: a frequency mask
        assert rows_masked[:n].sum() <= 2 * 30 and bands_masked.sum() <= 2 * 20
        # every changed value lies in a masked frame or a masked band: masks are rectangles
        np.testing.assert_array_equal(changed[row, :n],
                                      rows_masked[:n, None] | bands_masked[None, :])
    off = spec_augment(feats, num_frames, jax.random.key(4), Augmentation())
    assert off is feats


def _write(path, seconds, sr=22050, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr)


def test_background_bank_skips_bad_and_short_files_and_draws_reproducible_excerpts(tmp_path):
    _write(tmp_path / "street.wav", 2.0)
    os.makedirs(tmp_path / "sub")
    _write(tmp_path / "sub" / "fan.flac", 1.5, seed=1)
    _write(tmp_path / "blip.wav", 0.2)  # too short
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    bank = BackgroundBank(str(tmp_path), seed=3)
    assert len(bank.lengths) == 2 and bank.lengths.sum() == len(bank.samples)
    idx = np.array([5, 9, -1])
    a = bank.excerpts(100_000, idx, epoch=2)  # longer than either recording: looped
    assert a.shape == (3, 100_000) and a.dtype == np.int16
    np.testing.assert_array_equal(a, bank.excerpts(100_000, idx, epoch=2))
    assert not np.array_equal(a, bank.excerpts(100_000, idx, epoch=3))
    short = bank.excerpts(1000, idx, epoch=0)
    for row in short:  # each excerpt is a contiguous piece of the bank's audio
        hits = np.flatnonzero(bank.samples == row[0])
        assert any(np.array_equal(bank.samples[h:h + 1000], row) for h in hits)


def test_background_folder_without_usable_audio_is_a_data_error(tmp_path):
    with pytest.raises(errors.DataError, match="not a folder"):
        BackgroundBank(str(tmp_path / "missing"))
    _write(tmp_path / "blip.wav", 0.1)
    with pytest.raises(errors.DataError, match="no readable recording"):
        BackgroundBank(str(tmp_path))


def test_training_batches_carry_excerpts_of_their_shape_and_evaluation_batches_none(tmp_path):
    _write(tmp_path / "noise.wav", 3.0)
    source = [{"audio": np.full(n, 7, np.int16), "labels": [0], "id": str(k)}
              for k, n in enumerate([30_000, 40_000, 90_000, 20_000])]
    bank = BackgroundBank(str(tmp_path))
    batcher = input_pipeline.RecordingBatcher(source, num_classes=2, frame_budget=400,
                                              background=bank)
    batches = list(input_pipeline.train_batches(source, batcher, 0, prefetch=0))
    assert batches and all(b["background"].shape == b["audio"].shape for b in batches)
    assert all(b["background"].any() for b in batches)
    again = list(input_pipeline.train_batches(source, batcher, 0, prefetch=0))
    for a, b in zip(batches, again):  # a resumed epoch gets the same excerpts
        np.testing.assert_array_equal(a["background"], b["background"])
    assert all("background" not in b
               for b in input_pipeline.eval_batches(source, batcher, prefetch=0))
    # the shapes compiled ahead of the first step carry the excerpts too
    from wler_jax import compile_cache
    shapes = compile_cache.plan_batches(batcher, 2, None, train=True)
    assert all(s["background"].shape == s["audio"].shape for s in shapes)
    assert all("background" not in s
               for s in compile_cache.plan_batches(batcher, 2, None, train=False))


def test_config_turns_background_on_only_with_a_folder_and_warmup_counts_epochs():
    c = common.base_config("wler", "folder,cpu")
    assert not Augmentation.from_config(c).uses_background  # defaults, no folder: off
    c.data.background = "/somewhere"
    aug = Augmentation.from_config(c)
    assert aug.background_prob == 0.5 and aug.negative_prob == 0.1 and aug.uses_background
    # the cpu size warms up over one epoch of the run's own plan
    assert train.warmup_steps(c, [40, 41, 42]) == 41
    c.train.warmup_steps = 5
    c.train.warmup_epochs = 0.5
    assert train.warmup_steps(c, [40, 41, 42]) == 5 + 20


def test_run_batchers_get_the_bank_for_training_only(tmp_path):
    _write(tmp_path / "noise.wav", 2.0)
    source = [{"audio": np.full(20_000, 3, np.int16), "labels": [1], "id": "a"}]
    c = common.base_config("wler", "folder,cpu")
    assert all(b.background is None for b in train.make_batchers(
        c, {"train": source, "validation": source}, 2).values())
    c.data.background = str(tmp_path)
    batchers = train.make_batchers(c, {"train": source, "validation": source}, 2)
    assert isinstance(batchers["train"].background, BackgroundBank)
    assert batchers["validation"].background is None
    c.data.background = str(tmp_path / "nowhere")
    with pytest.raises(errors.DataError, match="nowhere"):
        train.make_batchers(c, {"train": source}, 2)
    # ... and the config check names it before any dataset is built
    from wler_jax.training import config_check
    c.input.negative_prob = 1.5
    with pytest.raises(errors.ConfigError, match="nowhere.*not a folder") as e:
        config_check.validate(c)
    assert "input.negative_prob=1.5" in str(e.value)


def test_class_balanced_plan_draws_rare_classes_as_often_and_keeps_the_batch_shapes():
    from wler_jax.data import batch_plan
    # 90 recordings of class 0, 10 of class 1, 20 without events; two length buckets
    labels = [[0]] * 90 + [[1]] * 10 + [[]] * 20
    lengths = np.where(np.arange(120) % 2, 30_000, 90_000)
    w = batch_plan.class_balance_weights(labels, 2)
    assert w.sum() == pytest.approx(1.0)
    assert w[90] == pytest.approx(9 * w[0]) and w[100] == pytest.approx(4.5 * w[0])
    kw = dict(num_classes=2, frame_budget=1200, lengths=lengths, seed=5)
    plain = batch_plan.RecordingBatcher(**kw)
    balanced = batch_plan.RecordingBatcher(**kw, weights=w)
    counts = np.zeros(3)
    for epoch in range(20):
        a, b = plain.epoch_plan(epoch), balanced.epoch_plan(epoch)
        # the same buckets, batch sizes and batch count as every recording once
        assert sorted((k, len(i)) for k, i in a) == sorted((k, len(i)) for k, i in b)
        drawn = np.concatenate([i[i >= 0] for _, i in b])
        assert len(drawn) == 120
        for k in drawn:  # each drawn recording stays in its own length bucket
            assert any(k in i for bucket, i in b if bucket == min(
                r for r in balanced.bucket_lengths if r >= balanced.train_frames[k]))
        counts += [np.sum(drawn < 90), np.sum((drawn >= 90) & (drawn < 100)), np.sum(drawn >= 100)]
    share = counts / counts.sum()
    assert np.allclose(share, 1 / 3, atol=0.06), share  # was 0.75 / 0.083 / 0.167
    np.testing.assert_array_equal(np.concatenate([i for _, i in balanced.epoch_plan(3)]),
                                  np.concatenate([i for _, i in balanced.epoch_plan(3)]))
    with pytest.raises(ValueError, match="weights"):
        batch_plan.RecordingBatcher(**kw, weights=w[:5])


def test_config_balance_classes_gives_the_training_plan_weights():
    source = [{"audio": np.full(20_000, 3, np.int16), "labels": [k % 2], "id": str(k)}
              for k in range(6)] + [{"audio": np.full(20_000, 3, np.int16), "labels": [0],
                                     "id": "x"}]
    c = common.base_config("wler", "folder,cpu")
    assert train.make_batchers(c, {"train": source}, 2)["train"].weights is None
    c.input.balance_classes = True
    batchers = train.make_batchers(c, {"train": source, "validation": source}, 2)
    w = batchers["train"].weights
    assert w[1] == pytest.approx(4 / 3 * w[0]) and batchers["validation"].weights is None
