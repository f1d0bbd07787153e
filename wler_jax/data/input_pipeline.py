"""Length-bucketed batches of int16 waveforms for the jitted train and eval steps (docs/design.md §3-4).

Features are computed on the device (`wler_jax.features.log_mel`, all four FFT scales from one
waveform transfer), so this module only moves waveforms: it reads the recordings that
`wler_jax.data.batch_plan` assigns to each batch from a data source (a tfds array_record data
source, or any sequence of `{"audio", "labels", "id"}` dicts), pads them, adds masks and puts
the batches on the devices ahead of use. The plan's names are re-exported here.

Synopsis::

    batcher = RecordingBatcher(source, num_classes=C, frame_budget=8 * 1280,
                               num_devices=jax.device_count(), seed=config.seed)
    sharding = NamedSharding(mesh, P("data"))
    for batch in prefetch_to_device(train_batches(source, batcher, epoch), 2, sharding):
        state, metrics = train_step(state, batch)

Batch format (a dict of numpy arrays, B rows, bucket of F frames, C classes):
  "audio":        int16   [B, F * 512 - 1]  waveform, zeros after the recording's end.
  "num_samples":  int32   [B]  valid samples (0 for padding rows).
  "num_frames":   int32   [B]  1 + num_samples // 512 (0 for padding rows).
  "labels":       float32 [B, C] multi-hot weak labels (zeros for padding rows).
  "weight":       float32 [B]  1 for real recordings, 0 for padding rows.
  "index":        int32   [B]  position of the recording in the source, -1 for padding rows.
  "background":   int16   [B, F * 512 - 1]  training batches of a batcher with a background
                  bank only (`data.background`): one excerpt of the site's noise per row.
The model derives its segment and window masks from "num_frames" (`geometry.segment_mask`,
`geometry.window_mask`), so no mask travels with the batch.
"""
from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import grain
import numpy as np

from wler_jax import geometry
from wler_jax.audio import to_int16
from wler_jax.data.batch_plan import (  # noqa: F401  (re-exported: the pipeline's public names)
    PADDING_INDEX,
    PlanItem,
    RecordingBatcher,
    bucket_ladder,
    class_balance_weights,
    read_records,
    scan_labels,
    scan_lengths,
)

Batch = dict[str, np.ndarray]


def collate(source, bucket_frames: int, indices: np.ndarray, *, num_classes: int,
            spans: tuple[np.ndarray, np.ndarray] | None = None,
            expected_samples: np.ndarray | None = None) -> Batch:
    """Reads the recordings `indices` from `source` and pads them into one batch.

    Args:
      source: sequence of {"audio": int16 [n], "labels": list[int], "id": ...} examples.
        Floating-point audio in [-1, 1] is converted with `audio.to_int16`.
      bucket_frames: F; audio is padded to F * 512 - 1 samples.
      indices: int [B] source indices, -1 for padding rows.
      num_classes: C.
      spans: optional (starts, lengths), int [B] each, in samples: the part of each row's
        recording to use (`RecordingBatcher.spans`); default whole recordings.
      expected_samples: optional int [B] stored lengths the plan was made from; a mismatch
        (e.g. a length cache made for another source) raises instead of mixing rows up.
    Returns:
      A batch dict (see the module docstring).
    Raises:
      ValueError: a recording does not fit the bucket, does not match `expected_samples`, or
        has a label outside [0, num_classes); the message names the recording.
    """
    indices = np.asarray(indices, np.int32).reshape(-1)
    size = len(indices)
    width = geometry.max_samples_for_frames(bucket_frames)
    audio = np.zeros((size, width), np.int16)
    num_samples = np.zeros(size, np.int32)
    labels = np.zeros((size, num_classes), np.float32)
    rows = np.flatnonzero(indices >= 0)
    for row, record in zip(rows, read_records(source, [int(indices[r]) for r in rows])):
        wave = _as_int16(record)
        name = _name(record, indices[row])
        if expected_samples is not None and len(wave) != int(expected_samples[row]):
            raise ValueError(f"recording {name} has {len(wave)} samples but the plan expected "
                             f"{int(expected_samples[row])}: is the length cache stale?")
        start, n = (0, len(wave)) if spans is None else (int(spans[0][row]), int(spans[1][row]))
        if start < 0 or start + n > len(wave):
            raise ValueError(f"recording {name}: span [{start}, {start + n}) is outside its "
                             f"{len(wave)} samples")
        if n > width:
            raise ValueError(f"recording {name}: {n} samples do not fit a {bucket_frames}-frame "
                             f"bucket ({width} samples)")
        audio[row, :n] = wave[start:start + n]
        num_samples[row] = n
        classes = np.asarray(record["labels"], np.int64).reshape(-1)
        if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"recording {name} has labels {classes.tolist()} outside "
                             f"[0, {num_classes})")
        labels[row, classes] = 1.0
    real = indices >= 0
    num_frames = np.where(real, geometry.num_frames_for_samples(num_samples), 0).astype(np.int32)
    return {
        "audio": audio,
        "num_samples": num_samples,
        "num_frames": num_frames,
        "labels": labels,
        "weight": real.astype(np.float32),
        "index": indices,
    }


class _PlanReader:
    """Picklable map function: plan item -> batch (this process's rows)."""

    def __init__(self, source, batcher: RecordingBatcher, epoch: int | None,
                 process_index: int, process_count: int):
        self.source, self.batcher, self.epoch = source, batcher, epoch
        self.process_index, self.process_count = process_index, process_count

    def __call__(self, item: PlanItem) -> Batch:
        bucket, indices = item
        rows = len(indices) // self.process_count
        indices = indices[self.process_index * rows:(self.process_index + 1) * rows]
        batch = collate(self.source, bucket, indices, num_classes=self.batcher.num_classes,
                        spans=self.batcher.spans(indices, self.epoch),
                        expected_samples=np.where(indices >= 0,
                                                  self.batcher.lengths[np.maximum(indices, 0)], 0))
        if self.epoch is not None and self.batcher.background is not None:
            batch["background"] = self.batcher.background.excerpts(
                batch["audio"].shape[1], indices, self.epoch)
        return batch


def train_batches(source, batcher: RecordingBatcher, epoch: int, *, start_batch: int = 0,
                  prefetch: int = 2, num_threads: int = 2, worker_count: int = 0,
                  process_index: int = 0, process_count: int = 1) -> Iterator[Batch]:
    """Training batches of `epoch` (shuffled by (seed, epoch), cropped to `max_frames`).

    Reading runs in grain threads (or `worker_count` processes) ahead of the consumer, so
    host decoding overlaps device compute.

    Args:
      source: the split's data source (the one `batcher` was built on).
      batcher: its plan.
      epoch: epoch number (0-based).
      start_batch: skip the first `start_batch` batches (resume after a restart).
      prefetch: batches read ahead (grain prefetch buffer); 0 reads synchronously.
      num_threads: grain read threads (used when prefetch > 0).
      worker_count: > 0 reads in that many processes (`mp_prefetch`; needs absl flags parsed
        and a `__main__` guard, see STACK_NOTES).
      process_index, process_count: multi-host: this process's share of each batch's rows
        (contiguous block), for `jax.make_array_from_process_local_data`.
    Yields:
      Batch dicts; B // process_count rows each.
    """
    plan = batcher.epoch_plan(epoch)[start_batch:]
    return _iterate(plan, _PlanReader(source, batcher, epoch, process_index, process_count),
                    batcher, prefetch, num_threads, worker_count, process_count)


def eval_batches(source, batcher: RecordingBatcher, *, prefetch: int = 2, num_threads: int = 2,
                 worker_count: int = 0, process_index: int = 0,
                 process_count: int = 1) -> Iterator[Batch]:
    """Every recording of `source` once, uncropped, in `batcher.eval_plan()` order.

    Same batch format and arguments as `train_batches`; rows with weight 0 are padding.
    """
    return _iterate(batcher.eval_plan(),
                    _PlanReader(source, batcher, None, process_index, process_count),
                    batcher, prefetch, num_threads, worker_count, process_count)


def _iterate(plan, reader, batcher, prefetch, num_threads, worker_count, process_count):
    if batcher.num_devices % process_count:
        raise ValueError(f"{batcher.num_devices} devices do not split over {process_count} "
                         "processes")
    dataset = grain.MapDataset.source(plan).map(reader)
    threads = num_threads if prefetch > 0 else 0
    iter_ds = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                        prefetch_buffer_size=prefetch))
    if worker_count > 0:
        iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(iter_ds)


def prefetch_to_device(iterator: Iterable[Batch], size: int, sharding) -> Iterator[Any]:
    """Puts batches on the device(s) `size` ahead of the consumer.

    Args:
      iterator: host batches (dicts of numpy arrays).
      size: batches in flight on the device (>= 1).
      sharding: a `jax.sharding.Sharding` for every array, e.g.
        `NamedSharding(mesh, P("data"))` to split the batch axis over the mesh. With several
        processes, each iterator holds its own rows and the global arrays are assembled with
        `jax.make_array_from_process_local_data`.
    Yields:
      The same batches as `jax.Array`s.
    """
    import jax  # deferred: the rest of the pipeline is host-only (grain workers import it)

    if jax.process_count() > 1:
        def put(batch):
            return jax.tree.map(
                lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
    else:
        def put(batch):
            return jax.device_put(batch, sharding)

    iterator = iter(iterator)
    queue = collections.deque()
    for batch in itertools.islice(iterator, max(1, size)):
        queue.append(put(batch))
    while queue:
        yield queue.popleft()
        for batch in itertools.islice(iterator, 1):
            queue.append(put(batch))


def _as_int16(record) -> np.ndarray:
    wave = np.asarray(record["audio"]).reshape(-1)
    if wave.dtype == np.int16:
        return wave
    if np.issubdtype(wave.dtype, np.floating):
        return to_int16(wave)
    raise TypeError(f"recording {_name(record, -1)}: audio dtype {wave.dtype}, expected int16")


def _name(record, index) -> str:
    rid = record.get("id", None) if isinstance(record, dict) else None
    if isinstance(rid, bytes):
        rid = rid.decode("utf-8", "replace")
    return f"{rid!r} (index {int(index)})" if rid is not None else f"at index {int(index)}"
