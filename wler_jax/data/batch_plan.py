"""Which recordings go into which batch: length buckets, batch sizes, epoch order (docs/design.md §3-4).

Padding every recording to the longest one would waste most of the compute on web data (0.6 s
to 10 min), so recordings are grouped into a few length buckets; the number of compiled shapes
is bounded by the number of buckets. `wler_jax.data.input_pipeline` reads and pads what this plans.

Geometry. A recording of n samples has T = 1 + n // 512 frames. A bucket of F frames holds
waveforms zero-padded to L = F * 512 - 1 samples (`geometry.max_samples_for_frames`): every
recording of up to F frames fits whole and `log_mel` gives exactly F frames.
Bucket lengths form a geometric ladder of multiples of 32 starting at 128 (`bucket_ladder`);
the top rung is >= the longest recording, so nothing is cropped unless `max_frames` asks for
random training crops (evaluation never crops).

Batch size per bucket: B = max(1, frame_budget // F) rounded down to a multiple of
`num_devices` (at least `num_devices`); the last batch of a bucket is filled up to B with
padding rows, so every bucket has exactly one batch shape.

Epochs. Every recording is seen exactly once per epoch. The order depends only on
(seed, epoch): recordings are shuffled, grouped into buckets, cut into batches and the batch
order is shuffled again; `train_batches(..., start_batch=k)` resumes an epoch at batch k with
identical batches, which a restarted run needs to reproduce an uninterrupted one.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from wler_jax import geometry

PlanItem = tuple[int, np.ndarray]  # (bucket frames F, int32 [B] source indices, -1 = padding)

PADDING_INDEX = -1


def read_records(source, indices: list[int]) -> list:
    """The records `indices` of a data source, in order."""
    # One record at a time, not `source.__getitems__`: array_record's batched read does not run
    # in parallel across reading threads (0.36 -> 0.39 GB/s with 2 threads), single reads do
    # (0.33 -> 0.73 GB/s), so `input.num_threads` scales.
    return [source[i] for i in indices]


def class_balance_weights(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """Sampling weight of each recording so that every class (and "no event", for recordings
    with an empty label) is drawn about equally often: the mean over its classes of
    1 / (recordings with that class). float64 [N], summing to 1."""
    counts = np.zeros(num_classes + 1)
    sets = [np.asarray(ls, np.int64).reshape(-1) for ls in labels]
    for ls in sets:
        counts[ls if ls.size else [num_classes]] += 1
    w = np.array([np.mean(1.0 / counts[ls if ls.size else [num_classes]]) for ls in sets])
    return w / w.sum()


def scan_labels(source) -> list[np.ndarray]:
    """Every record's class indices (one read of each record)."""
    return [np.asarray(r["labels"], np.int64).reshape(-1)
            for r in read_records(source, list(range(len(source))))]


def bucket_ladder(max_frames: int, *, min_frames: int = geometry.SEGMENT_FRAMES,
                  ratio: float = 1.5, multiple: int = geometry.SEGMENT_HOP) -> list[int]:
    """Geometric ladder of bucket lengths (frames) covering recordings up to `max_frames`.

    Each rung is the previous one times `ratio`, rounded up to a multiple of `multiple` (and
    at least one `multiple` longer). The ladder for a smaller `max_frames` is a prefix of the
    ladder for a larger one. With the defaults: 128, 192, 288, 448, 672, 1024, 1536, 2304, ...

    Args:
      max_frames: frames of the longest recording; the top rung is >= this.
      min_frames: the first rung (shorter recordings go to it), rounded up to `multiple`.
      ratio: growth factor between rungs, > 1.
      multiple: every rung is a multiple of this (32 keeps the segment grid aligned).
    Returns:
      Increasing list of bucket lengths in frames.
    """
    if ratio <= 1:
        raise ValueError(f"bucket ratio must be > 1, got {ratio}")
    if multiple < 1 or min_frames < 1:
        raise ValueError(f"min_frames and multiple must be >= 1, got {min_frames}, {multiple}")

    def round_up(x: float) -> int:
        return int(math.ceil(x / multiple - 1e-9)) * multiple

    rungs = [round_up(min_frames)]
    while rungs[-1] < max_frames:
        rungs.append(max(round_up(rungs[-1] * ratio), rungs[-1] + multiple))
    return rungs


def scan_lengths(source, *, cache_path: str | os.PathLike | None = None,
                 chunk_size: int = 64) -> np.ndarray:
    """Number of samples of every recording in `source`, decoding each record once.

    Args:
      source: sequence of examples with an "audio" array (tfds data source or list).
      cache_path: optional `.npy` file: read if it exists and matches `len(source)`, else
        written after the scan.
      chunk_size: records read per `__getitems__` call when the source has it.
    Returns:
      int64 [len(source)] samples per recording.
    """
    n = len(source)
    if cache_path is not None and os.path.exists(cache_path):
        cached = np.load(cache_path)
        if cached.shape == (n,):
            logging.info("Read %d recording lengths from %s", n, cache_path)
            return cached.astype(np.int64)
        logging.warning("Ignoring length cache %s: %s entries for a source of %d",
                        cache_path, cached.shape, n)
    lengths = np.empty(n, np.int64)
    for start in range(0, n, chunk_size):
        idx = list(range(start, min(n, start + chunk_size)))
        for i, record in zip(idx, read_records(source, idx)):
            lengths[i] = np.shape(record["audio"])[0]
        if (start // chunk_size) % 200 == 199:
            logging.info("Scanned lengths of %d / %d recordings", idx[-1] + 1, n)
    logging.info("Scanned lengths of %d recordings (%.1f h of audio)",
                 n, lengths.sum() / geometry.SAMPLE_RATE / 3600)
    if cache_path is not None:
        np.save(cache_path, lengths)
    return lengths


class RecordingBatcher:
    """The batch plan of one split: recording lengths, buckets, batch sizes, per-epoch order.

    Holds no reference to the source (only its lengths), so it pickles cheaply into grain
    workers. Build one per split: `epoch_plan` is the training plan (shuffled, cropped to
    `max_frames`), `eval_plan` every recording once, in order, never cropped.

    Attributes:
      lengths: int64 [N] samples per recording.
      frames: int64 [N] frames per recording, 1 + lengths // 512 (uncropped).
      train_frames: int64 [N] frames after the optional `max_frames` crop.
      bucket_lengths: training bucket lengths (frames).
      eval_bucket_lengths: evaluation bucket lengths (same ladder, extended to the longest
        uncropped recording).
    """

    def __init__(self, source=None, *, num_classes: int, frame_budget: int,
                 num_devices: int = 1, ratio: float = 1.5, seed: int = 0, shuffle: bool = True,
                 max_frames: int | None = None, lengths: Sequence[int] | np.ndarray | None = None,
                 lengths_cache: str | os.PathLike | None = None, background=None,
                 weights: np.ndarray | None = None):
        """Plans batches for `source`.

        Args:
          source: the split's data source; only read (once) to get lengths, and may be None
            when `lengths` is given.
          num_classes: C, width of the multi-hot labels.
          frame_budget: frames per global batch, B * F <= budget (sets memory use), except
            where that leaves fewer than `num_devices` rows: then B = num_devices.
          num_devices: global device count; batch sizes are multiples of it.
          ratio: geometric ratio of the bucket ladder.
          seed: non-negative seed of the per-epoch shuffle and crops.
          shuffle: False keeps source order within buckets and buckets in increasing length.
          max_frames: optional crop for training: longer recordings are cut to a random
            window of exactly this many frames ((max_frames - 1) * 512 samples).
          lengths: samples per recording, if known (skips the scan).
          lengths_cache: optional `.npy` path caching the scanned lengths.
          background: optional `data.background.BackgroundBank`: each training batch then also
            carries one background excerpt per row ("background", `input_pipeline.collate`).
          weights: optional sampling weight per recording (`class_balance_weights`): each
            training epoch then draws every length bucket's recordings with replacement by these
            weights, as many as the bucket holds, so batch shapes and counts stay the plan's.
        """
        if num_classes < 1 or frame_budget < 1 or num_devices < 1 or seed < 0:
            raise ValueError("num_classes, frame_budget, num_devices must be >= 1 and seed >= 0; "
                             f"got {num_classes}, {frame_budget}, {num_devices}, {seed}")
        if max_frames is not None and max_frames < geometry.SEGMENT_FRAMES:
            raise ValueError(f"max_frames must be >= {geometry.SEGMENT_FRAMES}, got {max_frames}")
        if lengths is None:
            if source is None:
                raise ValueError("RecordingBatcher needs a source or its lengths")
            lengths = scan_lengths(source, cache_path=lengths_cache)
        self.lengths = np.asarray(lengths, np.int64).reshape(-1)
        if source is not None and len(source) != len(self.lengths):
            raise ValueError(f"{len(self.lengths)} lengths for a source of {len(source)} records")
        if self.lengths.size == 0:
            raise ValueError("RecordingBatcher: the source is empty")
        if (self.lengths < 0).any():
            raise ValueError("negative recording length")
        self.num_classes = int(num_classes)
        self.frame_budget = int(frame_budget)
        self.num_devices = int(num_devices)
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.background = background
        self.weights = None if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if self.weights is not None and (len(self.weights) != len(self.lengths)
                                         or not (self.weights >= 0).all()):
            raise ValueError(f"weights: {len(self.weights)} non-negative values expected for "
                             f"{len(self.lengths)} recordings")
        self.frames = geometry.num_frames_for_samples(self.lengths)
        self.train_frames = (self.frames if self.max_frames is None
                             else np.minimum(self.frames, self.max_frames))
        self.bucket_lengths = bucket_ladder(int(self.train_frames.max()), ratio=self.ratio)
        self.eval_bucket_lengths = bucket_ladder(int(self.frames.max()), ratio=self.ratio)
        self._log_plan()

    def __len__(self) -> int:
        return len(self.lengths)

    def batch_size(self, bucket_frames: int) -> int:
        """B for a bucket: max(1, budget // F) rounded down to a multiple of num_devices."""
        per_budget = max(1, self.frame_budget // bucket_frames)
        return max(self.num_devices, per_budget // self.num_devices * self.num_devices)

    def epoch_plan(self, epoch: int) -> list[PlanItem]:
        """Training batches of `epoch`: [(bucket frames, int32 [B] indices, -1 = padding)].

        Identical for the same (seed, epoch); every recording appears exactly once (with
        `weights`: each bucket's recordings drawn by weight instead, as many as it holds).
        """
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        order = rng.permutation(len(self)) if self.shuffle else np.arange(len(self))
        if self.weights is not None and self.shuffle:
            order = self._weighted_draw(order, rng)
        plan = self._cut(order, self.train_frames, self.bucket_lengths)
        if self.shuffle:
            plan = [plan[i] for i in rng.permutation(len(plan))]
        return plan

    def eval_plan(self) -> list[PlanItem]:
        """Every recording once, uncropped: buckets by increasing length, source order within."""
        return self._cut(np.arange(len(self)), self.frames, self.eval_bucket_lengths)

    def num_batches(self, epoch: int = 0) -> int:
        """Training batches per epoch (the same for every epoch)."""
        return len(self.epoch_plan(epoch))

    def spans(self, indices: np.ndarray, epoch: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(start, length) in samples of the part of each recording that goes into a batch.

        Args:
          indices: int [B] source indices, -1 for padding rows.
          epoch: training epoch (seeds the random crops), or None for evaluation (no crop).
        Returns:
          int64 [B] starts and int64 [B] lengths (0, 0 for padding rows).
        """
        indices = np.asarray(indices)
        real = indices >= 0
        lengths = np.where(real, self.lengths[np.where(real, indices, 0)], 0)
        starts = np.zeros_like(lengths)
        if epoch is not None and self.max_frames is not None:
            crop = (self.max_frames - 1) * geometry.HOP_LENGTH
            for row in np.flatnonzero(real & (lengths > crop)):
                rng = np.random.default_rng([self.seed, int(epoch), 1, int(indices[row])])
                starts[row] = rng.integers(0, lengths[row] - crop + 1)
                lengths[row] = crop
        return starts, lengths

    def plan_stats(self, plan: Sequence[PlanItem], *, epoch: int | None = 0) -> dict[str, Any]:
        """Padding waste of a plan: padded frames / real frames, batches, shapes, per bucket.

        "padding_row_frames" is the part of "padded_frames" in weight-0 rows (the fill of
        each bucket's last batch); the rest is zeros after recordings' ends.
        """
        per_bucket: dict[int, dict[str, int]] = {}
        real_total = slot_total = row_total = 0
        for bucket, indices in plan:
            _, n = self.spans(indices, epoch)
            real = int(geometry.num_frames_for_samples(n[indices >= 0]).sum())
            slots = bucket * len(indices)
            entry = per_bucket.setdefault(bucket, {"batch_size": len(indices), "batches": 0,
                                                   "recordings": 0, "real_frames": 0})
            entry["batches"] += 1
            entry["recordings"] += int((indices >= 0).sum())
            entry["real_frames"] += real
            real_total += real
            slot_total += slots
            row_total += bucket * int((indices < 0).sum())
        return {
            "batches": len(plan),
            "batch_shapes": len(per_bucket),
            "real_frames": real_total,
            "padded_frames": slot_total - real_total,
            "padding_row_frames": row_total,
            "padding_waste": (slot_total - real_total) / max(real_total, 1),
            "buckets": {b: per_bucket[b] for b in sorted(per_bucket)},
        }

    def _weighted_draw(self, order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`order` with each length bucket's members replaced by a draw with replacement of the
        same size, by `weights` (a bucket whose weights are all 0 keeps its members)."""
        bucket_of = np.searchsorted(self.bucket_lengths, self.train_frames)
        out = order.copy()
        for b in np.unique(bucket_of):
            where = np.flatnonzero(bucket_of[order] == b)
            members = order[where]
            w = self.weights[members]
            if w.sum() > 0:
                out[where] = rng.choice(members, size=len(members), replace=True, p=w / w.sum())
        return out

    def _cut(self, order: np.ndarray, frames: np.ndarray, ladder: list[int]) -> list[PlanItem]:
        bucket_of = np.searchsorted(ladder, frames)  # first rung >= frames
        plan = []
        for b, bucket in enumerate(ladder):
            members = order[bucket_of[order] == b].astype(np.int32)
            size = self.batch_size(bucket)
            for start in range(0, len(members), size):
                chunk = members[start:start + size]
                padded = np.full(size, PADDING_INDEX, np.int32)
                padded[:len(chunk)] = chunk
                plan.append((bucket, padded))
        return plan

    def _log_plan(self) -> None:
        stats = self.plan_stats(self.epoch_plan(0), epoch=0)
        logging.info("Input plan: %d recordings, %d batches per epoch, %d buckets, padding "
                     "waste %.1f%% (padded / real frames), frame budget %d, %d device(s)%s",
                     len(self), stats["batches"], stats["batch_shapes"],
                     100 * stats["padding_waste"], self.frame_budget, self.num_devices,
                     "" if self.max_frames is None else f", crop to {self.max_frames} frames")
        for bucket, entry in stats["buckets"].items():
            logging.info("  bucket %5d frames (%6.1f s): batch %3d, %4d recordings, %4d batches",
                         bucket, bucket * geometry.HOP_LENGTH / geometry.SAMPLE_RATE,
                         entry["batch_size"], entry["recordings"], entry["batches"])
