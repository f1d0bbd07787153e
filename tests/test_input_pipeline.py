"""Tests of wler_jax.data.input_pipeline on an in-memory source of real int16 waveforms.

Recordings have random lengths from 0.2 s to 40 s (log-uniform) and distinct random samples,
so any mix-up of rows, labels or lengths across padding shows up as an array mismatch.
"""
from __future__ import annotations

import numpy as np
import pytest

from wler_jax import geometry
from wler_jax.data import input_pipeline as ip

NUM_CLASSES = 7
NUM_RECORDINGS = 37
FRAME_BUDGET = 4096


class CountingSource(list):
    """A list source that counts record reads (to check that the length scan reads once)."""

    reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def make_source(num=NUM_RECORDINGS, seed=0, min_s=0.2, max_s=40.0):
    rng = np.random.default_rng(seed)
    seconds = np.exp(rng.uniform(np.log(min_s), np.log(max_s), num))
    seconds[:3] = [min_s, max_s, 128 * 512 / geometry.SAMPLE_RATE]  # extremes and T == 129
    source = CountingSource()
    for i, s in enumerate(seconds):
        n = int(s * geometry.SAMPLE_RATE)
        labels = sorted(rng.choice(NUM_CLASSES, rng.integers(0, 4), replace=False).tolist())
        audio = rng.integers(-32768, 32768, n, dtype=np.int16)
        audio[audio == 0] = 1  # so zero padding is distinguishable from real samples
        source.append({"audio": audio, "labels": labels, "id": f"rec{i:03d}.wav".encode()})
    return source


@pytest.fixture(scope="module")
def source():
    return make_source()


@pytest.fixture(scope="module")
def lengths(source):
    return np.array([len(r["audio"]) for r in source])


def brute_force_segment_mask(num_frames, padded_length):
    num_segs = padded_length // 32 - 3
    mask = np.zeros((len(num_frames), num_segs), bool)
    for b, t in enumerate(num_frames):
        if t == 0:
            continue
        for k in range(num_segs):
            mask[b, k] = 32 * k + 128 <= max(t, 128)
    return mask


def check_batch(batch, source, bucket_frames=None, num_devices=1):
    """Every row equals its source recording zero-padded; padding rows are all zero."""
    size, width = batch["audio"].shape
    assert batch["audio"].dtype == np.int16
    frames = width // 512 + 1
    assert width == frames * 512 - 1 and frames % 32 == 0 and frames >= 128
    if bucket_frames is not None:
        assert frames == bucket_frames
    assert size % num_devices == 0
    assert batch["num_samples"].dtype == np.int32 and batch["num_frames"].dtype == np.int32
    assert batch["labels"].dtype == np.float32 and batch["labels"].shape == (size, NUM_CLASSES)
    assert batch["weight"].dtype == np.float32 and batch["index"].dtype == np.int32
    assert "segment_mask" not in batch  # the model derives its masks from num_frames
    segment_mask = geometry.segment_mask(batch["num_frames"], frames)
    assert segment_mask.dtype == bool and segment_mask.shape == (size, frames // 32 - 3)
    window_mask = geometry.window_mask(batch["num_frames"], frames, hop=32)
    for row in range(size):
        i = batch["index"][row]
        if i < 0:
            assert batch["weight"][row] == 0
            assert not batch["audio"][row].any() and not batch["labels"][row].any()
            assert batch["num_samples"][row] == 0 and batch["num_frames"][row] == 0
            assert not window_mask[row].any()  # no valid window (SLAT) on a padding row
            continue
        wave = source[i]["audio"]
        n = len(wave)
        assert batch["weight"][row] == 1
        assert batch["num_samples"][row] == n
        assert batch["num_frames"][row] == 1 + n // 512
        np.testing.assert_array_equal(batch["audio"][row, :n], wave)
        assert not batch["audio"][row, n:].any()
        expected = np.zeros(NUM_CLASSES, np.float32)
        expected[source[i]["labels"]] = 1
        np.testing.assert_array_equal(batch["labels"][row], expected)
    real = batch["index"] >= 0
    np.testing.assert_array_equal(segment_mask[real],
                                  brute_force_segment_mask(batch["num_frames"], frames)[real])
    np.testing.assert_array_equal(window_mask,
                                  brute_force_segment_mask(batch["num_frames"], frames))


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_bucket_ladder():
    ladder = ip.bucket_ladder(3446)
    assert ladder == [128, 192, 288, 448, 672, 1024, 1536, 2304, 3456]
    assert ip.bucket_ladder(100) == [128]
    assert ip.bucket_ladder(128) == [128]
    assert ip.bucket_ladder(129) == [128, 192]
    for ratio in (1.1, 1.25, 1.5, 2.0):
        ladder = ip.bucket_ladder(50_000, ratio=ratio)
        assert all(f % 32 == 0 for f in ladder) and ladder[0] == 128 and ladder[-1] >= 50_000
        assert all(b >= a * ratio - 1e-9 for a, b in zip(ladder, ladder[1:]))
        assert ip.bucket_ladder(5_000, ratio=ratio) == ladder[:len(ip.bucket_ladder(5_000,
                                                                                     ratio=ratio))]
    with pytest.raises(ValueError):
        ip.bucket_ladder(1000, ratio=1.0)


def test_length_scan_reads_once_and_caches(tmp_path, lengths):
    source = make_source()
    cache = tmp_path / "lengths.npy"
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  lengths_cache=cache)
    assert source.reads == len(source)
    np.testing.assert_array_equal(batcher.lengths, lengths)
    np.testing.assert_array_equal(np.load(cache), lengths)
    again = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                lengths_cache=cache)
    assert source.reads == len(source)  # read from the cache
    np.testing.assert_array_equal(again.lengths, lengths)
    assert batcher.bucket_lengths[-1] >= 1 + 40 * 44100 // 512


@pytest.mark.parametrize("num_devices", [1, 3, 4])
def test_every_recording_once_per_epoch(source, lengths, num_devices):
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  num_devices=num_devices, seed=3, lengths=lengths)
    orders = []
    for epoch in range(3):
        batches = list(ip.train_batches(source, batcher, epoch))
        assert len(batches) == batcher.num_batches(epoch)
        seen = np.concatenate([b["index"] for b in batches])
        real = seen[seen >= 0]
        np.testing.assert_array_equal(np.sort(real), np.arange(len(source)))
        assert (seen[seen < 0] == -1).all()
        shapes = {b["audio"].shape for b in batches}
        assert len(shapes) <= len(batcher.bucket_lengths)
        for batch in batches:
            frames = batch["audio"].shape[1] // 512 + 1
            assert frames in batcher.bucket_lengths
            assert len(batch["index"]) == batcher.batch_size(frames)
            # each recording sits in the smallest bucket that holds it
            rungs = [0] + batcher.bucket_lengths
            nf = batch["num_frames"][batch["index"] >= 0]
            pos = batcher.bucket_lengths.index(frames)
            assert (nf <= frames).all() and (nf > rungs[pos]).all()
            check_batch(batch, source, num_devices=num_devices)
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # a new order every epoch


def test_batch_sizes_follow_frame_budget(lengths):
    for num_devices in (1, 3, 4, 8):
        batcher = ip.RecordingBatcher(num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                      num_devices=num_devices, lengths=lengths)
        for frames in batcher.bucket_lengths:
            size = batcher.batch_size(frames)
            assert size % num_devices == 0 and size >= num_devices
            if FRAME_BUDGET // frames >= num_devices:
                assert size * frames <= FRAME_BUDGET
                assert (size + num_devices) * frames > FRAME_BUDGET


def test_deterministic_and_resumable(source, lengths):
    def make():
        return ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                   num_devices=2, seed=11, lengths=lengths)

    first = list(ip.train_batches(source, make(), 4))
    second = list(ip.train_batches(source, make(), 4, prefetch=0))
    assert_batches_equal(first, second)
    resumed = list(ip.train_batches(source, make(), 4, start_batch=5, prefetch=3, num_threads=3))
    assert_batches_equal(first[5:], resumed)
    other_epoch = [b["index"] for b in ip.train_batches(source, make(), 5)]
    assert not all(np.array_equal(a["index"], b) for a, b in zip(first, other_epoch))
    other_seed = ip.RecordingBatcher(num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                     num_devices=2, seed=12, lengths=lengths)
    plan_a, plan_b = make().epoch_plan(4), other_seed.epoch_plan(4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(plan_a, plan_b))


def test_worker_processes_give_the_same_batches(source, lengths):
    """`worker_count` (grain processes, for feeding accelerators) changes who reads, not what."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # grain workers read absl flags; main parses them in app.run
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  num_devices=2, seed=11, lengths=lengths)
    threads = list(ip.train_batches(source, batcher, 3, prefetch=2, num_threads=2))
    workers = list(ip.train_batches(source, batcher, 3, prefetch=2, worker_count=2))
    assert_batches_equal(threads, workers)
    assert_batches_equal(list(ip.eval_batches(source, batcher, prefetch=0)),
                         list(ip.eval_batches(source, batcher, worker_count=2)))


def test_eval_batches_cover_all_in_order(source, lengths):
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  num_devices=3, lengths=lengths)
    batches = list(ip.eval_batches(source, batcher))
    seen = np.concatenate([b["index"] for b in batches])
    real = seen[seen >= 0]
    np.testing.assert_array_equal(np.sort(real), np.arange(len(source)))
    frames = [b["audio"].shape[1] // 512 + 1 for b in batches]
    assert frames == sorted(frames)  # buckets by increasing length
    for f in set(frames):  # source order within a bucket
        idx = np.concatenate([b["index"] for b, g in zip(batches, frames) if g == f])
        idx = idx[idx >= 0]
        assert (np.diff(idx) > 0).all()
    for batch in batches:
        check_batch(batch, source, num_devices=3)
    assert_batches_equal(batches, list(ip.eval_batches(source, batcher, prefetch=0)))


def test_unshuffled_training_equals_eval_plan(lengths):
    batcher = ip.RecordingBatcher(num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  shuffle=False, lengths=lengths)
    for (fa, ia), (fb, ib) in zip(batcher.epoch_plan(0), batcher.eval_plan()):
        assert fa == fb
        np.testing.assert_array_equal(ia, ib)


def test_max_frames_crops_training_only(source, lengths):
    max_frames = 700
    crop = (max_frames - 1) * 512
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  max_frames=max_frames, seed=5, lengths=lengths)
    assert batcher.bucket_lengths[-1] == 1024 and batcher.eval_bucket_lengths[-1] == 3456
    assert batcher.eval_bucket_lengths[:len(batcher.bucket_lengths)] == batcher.bucket_lengths
    batches = list(ip.train_batches(source, batcher, 0))
    starts = {}
    for batch in batches:
        for row in np.flatnonzero(batch["index"] >= 0):
            i = batch["index"][row]
            wave = source[i]["audio"]
            if len(wave) <= crop:
                np.testing.assert_array_equal(batch["audio"][row, :len(wave)], wave)
                continue
            assert batch["num_samples"][row] == crop
            assert batch["num_frames"][row] == max_frames
            got = batch["audio"][row, :crop]
            # locate the crop: the first sample's positions, then check the whole window
            candidates = [s for s in np.flatnonzero(wave[:len(wave) - crop + 1] == got[0])
                          if np.array_equal(wave[s:s + crop], got)]
            assert candidates
            starts[i] = candidates[0]
            assert not batch["audio"][row, crop:].any()
    assert len(starts) == int((lengths > crop).sum()) > 1
    assert len(set(starts.values())) > 1  # random offsets
    again = list(ip.train_batches(source, batcher, 0))
    assert_batches_equal(batches, again)  # deterministic crops
    next_starts, _ = batcher.spans(np.arange(len(source)), 1)
    next_epoch = {i: int(next_starts[i]) for i in range(len(source)) if lengths[i] > crop}
    assert next_epoch != {int(i): int(s) for i, s in starts.items()}
    for batch in ip.eval_batches(source, batcher):  # evaluation is never cropped
        check_batch(batch, source)


def test_process_slices_make_the_global_batch(source, lengths):
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  num_devices=4, seed=2, lengths=lengths)
    full = list(ip.train_batches(source, batcher, 1))
    parts = [list(ip.train_batches(source, batcher, 1, process_index=p, process_count=2))
             for p in range(2)]
    for batch, a, b in zip(full, *parts):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), batch[key])
    with pytest.raises(ValueError):
        ip.train_batches(source, batcher, 1, process_count=3)


def test_bad_inputs_are_named(source, lengths):
    bad = [dict(r) for r in source[:4]]
    bad[2] = dict(bad[2], labels=[NUM_CLASSES])
    batcher = ip.RecordingBatcher(bad, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET)
    with pytest.raises(ValueError, match="rec002.wav"):
        list(ip.eval_batches(bad, batcher))
    stale = ip.RecordingBatcher(num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                lengths=lengths[:4] + 1)
    with pytest.raises(ValueError, match="stale"):
        list(ip.eval_batches(source[:4], stale))
    with pytest.raises(ValueError):
        ip.RecordingBatcher([], num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET)
    with pytest.raises(ValueError):
        ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                            lengths=lengths[:3])


def test_float_audio_is_stored_as_int16():
    wave = np.linspace(-1, 1, 30_000, dtype=np.float32)
    source = [{"audio": wave, "labels": [1], "id": "f"}]
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET)
    (batch,) = list(ip.eval_batches(source, batcher))
    from wler_jax.audio import to_int16

    np.testing.assert_array_equal(batch["audio"][0, :30_000], to_int16(wave))


def test_prefetch_to_device(source, lengths):
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  num_devices=len(devices), lengths=lengths)
    host = list(ip.train_batches(source, batcher, 0))
    on_device = list(ip.prefetch_to_device(ip.train_batches(source, batcher, 0), 2, sharding))
    assert len(on_device) == len(host)
    for h, d in zip(host, on_device):
        for key in h:
            assert isinstance(d[key], jax.Array) and d[key].sharding == sharding
            np.testing.assert_array_equal(np.asarray(d[key]), h[key])


def test_plan_stats(lengths):
    batcher = ip.RecordingBatcher(num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  lengths=lengths)
    stats = batcher.plan_stats(batcher.epoch_plan(0))
    frames = 1 + lengths // 512
    assert stats["real_frames"] == frames.sum()
    slots = sum(f * len(i) for f, i in batcher.epoch_plan(0))
    assert stats["padded_frames"] == slots - frames.sum()
    assert stats["padding_row_frames"] == sum(f * (i < 0).sum() for f, i in batcher.epoch_plan(0))
    assert stats["batches"] == batcher.num_batches()
    assert sum(b["recordings"] for b in stats["buckets"].values()) == len(lengths)


def test_recordings_at_a_bucket_edge_fit_whole():
    """A recording with exactly F frames has up to F * 512 - 1 samples: all must be kept (its
    last frames are computed from its last samples)."""
    rng = np.random.default_rng(3)
    lengths = [288 * 512 - 1, 287 * 512 + 134, 128 * 512 - 1, 129 * 512]
    source = CountingSource([{"id": f"edge{i}", "labels": [i % NUM_CLASSES],
                              "audio": rng.integers(1, 9999, n).astype(np.int16)}
                         for i, n in enumerate(lengths)])
    batcher = ip.RecordingBatcher(source, num_classes=NUM_CLASSES, frame_budget=FRAME_BUDGET,
                                  shuffle=False)
    seen = 0
    for batch in ip.eval_batches(source, batcher, prefetch=0):
        check_batch(batch, source)
        seen += int(batch["weight"].sum())
    assert seen == len(lengths)
    assert sorted(batcher.frames.tolist()) == [128, 130, 288, 288]
