"""Exact chunked scoring of any-length audio in bounded memory (`ChunkedScorer`).

Recordings of any length, fed as a stream of sample blocks, are scored in fixed-size chunks of
`chunk_frames` frames, several recordings or chunks per device call. The chunks' segment
scores equal those of one pass over the whole recording (`inference.predict`).

Why chunks can be exact. Segment k of N_W depends on frames [32k - 31, 32k + 159) (the 190-frame
receptive field of five 3x3 conv + 2x2 pool blocks and the 4x4 FCv1), and frame t on samples
[512 t - n_fft/2, 512 t + n_fft/2) (at most 4 hops either side for n_fft = 4096). A chunk that
starts at frame 32a is computed from the waveform padded in front with 4 hops of zeros (the
STFT's own centre padding) and sliced at sample 512 * 32a, so its frames equal the whole file's
frames; its first segment (left context) and last two (right context) see the chunk's SAME
zero padding instead of real neighbours and are dropped, except at the recording's true start
and end, where the whole-file pass sees the same zeros. Chunk starts are multiples of 32, so the
2x2 pools and the per-block length masks of the model line up with the whole-file pass.
Consecutive chunks overlap by 160 frames (~1.9 s); each keeps chunk_frames // 32 - 5 segments.

Shapes. A chunk is `chunk_frames` frames; a recording (or a last chunk) shorter than that is
padded up to a rung of a geometric ladder (`bucket_ladder`), so the number of compiled shapes
is bounded by the ladder's length (8 rungs for 2048 frames) whatever the input lengths.
Memory for one recording is one chunk's waveform (plus one decoded block) and its segment scores
(C floats per scale and segment): bounded whatever the recording's length.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import features as features_lib
from wler_jax import geometry
from wler_jax.geometry import HOP_LENGTH, N_FFTS, SEGMENT_FRAMES, SEGMENT_HOP
from wler_jax.model.spec import ModelSpec
from wler_jax.serving.inference import finalize, scale_logits

CONTEXT_HOPS = max(N_FFTS) // 2 // HOP_LENGTH  # 4: the widest STFT reaches 4 hops either side
LEFT_CONTEXT_SEGMENTS = 1  # segments dropped at a chunk's start (31 frames of context needed)
RIGHT_CONTEXT_SEGMENTS = 2  # dropped at its end, beyond the last segment of its window grid
MIN_CHUNK_FRAMES = 256  # smallest chunk that advances (keeps chunk_frames // 32 - 5 >= 3)


def chunk_samples(frames: int) -> int:
    """Waveform samples of a chunk of `frames` frames: its frames, 4 hops each side, less one."""
    return (frames + 2 * CONTEXT_HOPS - 1) * HOP_LENGTH


@functools.partial(jax.jit, static_argnums=0)
def chunk_logits(spec: ModelSpec, params: Any, audio: jax.Array, audio_lengths: jax.Array,
                 num_frames: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Segment logits of a batch of chunks, every scale.

    Args:
      audio: [B, chunk_samples(R)] float32: the recording with 4 hops of zeros in front, sliced
        from sample 512 * start_frame (zero-padded past its end).
      audio_lengths: [B] valid samples of each slice.
      num_frames: [B] valid frames of each chunk (R, or fewer where the recording ends).
    Returns:
      segment_logits [K, B, R // 32 - 3, C] and the pooling's extras of the same shape
      (`ModelSpec.segment_logits`; {} unless the pooling needs them).
    """
    logits, _, extras = scale_logits(spec, params, chunk_features(audio, audio_lengths),
                                     num_frames)
    return logits, extras


def chunk_features(audio: jax.Array, audio_lengths: jax.Array) -> jax.Array:
    """The four scales' log-mel of a batch of chunks cut as in `chunk_logits`, without the
    context hops: [K, B, R, 128] for chunks of R frames."""
    frames = audio.shape[1] // HOP_LENGTH - 2 * CONTEXT_HOPS + 1
    feats, _ = features_lib.multi_scale_log_mel(audio, audio_lengths)
    return feats[:, :, CONTEXT_HOPS:CONTEXT_HOPS + frames]


@functools.partial(jax.jit, static_argnums=0)
def _finalize_padded(spec: ModelSpec, params: Any, logits, num_segs, extras):
    mask = jnp.arange(logits.shape[2])[None, :] < num_segs
    out = finalize(spec, params, logits, mask, extras)
    return out["clip"][0], out["segments"][0]


@dataclasses.dataclass
class Prediction:
    """Scores of one recording.

    Attributes:
      clip: [C] class probabilities.
      segments: [S, C] probabilities of its S valid segments (segment k: frames [32k, 32k + 128)).
      num_samples: samples at 44.1 kHz.
    """

    clip: np.ndarray
    segments: np.ndarray
    num_samples: int

    @property
    def num_frames(self) -> int:
        return int(geometry.num_frames_for_samples(self.num_samples))

    @property
    def duration(self) -> float:
        return self.num_samples / geometry.SAMPLE_RATE


def bucket_ladder(chunk_frames: int, ratio: float = 1.5) -> list[int]:
    """Frame lengths a chunk is padded to: 128, 192, 288, ... (multiples of 32), chunk_frames."""
    rungs = [SEGMENT_FRAMES]
    while rungs[-1] < chunk_frames:
        grown = math.ceil(rungs[-1] * ratio / SEGMENT_HOP) * SEGMENT_HOP
        rungs.append(min(chunk_frames, max(rungs[-1] + SEGMENT_HOP, grown)))
    return rungs


@dataclasses.dataclass
class _Job:
    key: Any
    start_seg: int  # a: the chunk starts at frame 32a
    keep: tuple[int, int]  # local segments kept, [lo, hi)
    audio: np.ndarray  # [chunk_samples(frames)] float32
    audio_length: int
    num_frames: int


class _Recording:
    """One recording in flight: its stream position and the segment logits received so far."""

    def __init__(self, key, capacity: int):
        self.key = key
        # A fixed buffer (grown only if a block is larger than expected): buffer[:fill] holds
        # the front-padded waveform from index buffer_start on. It starts with the STFT's front
        # zeros. Reusing one array keeps the allocator from fragmenting on hour-long files.
        self.buffer = np.zeros(capacity, np.float32)
        self.fill = CONTEXT_HOPS * HOP_LENGTH
        self.buffer_start = 0
        self.num_samples = 0
        self.start_seg = 0  # a: next chunk starts at frame 32a
        self.pending = 0  # jobs not yet returned
        self.done_reading = False
        self.pieces: list = []  # (first global segment, logits [K, n, C], extras {name: [K, n, C]})


class ChunkedScorer:
    """Scores streams of 44.1 kHz sample blocks in chunks, batching chunks across recordings.

    Synopsis::

        scorer = ChunkedScorer(spec, params, chunk_frames=2048, batch_size=1)
        for key, blocks in recordings:          # blocks: iterable of float32 [n] arrays
            scorer.add(key, blocks)             # AudioError etc. propagate; the key is dropped
            for key, prediction in scorer.completed():
                ...
        for key, prediction in scorer.flush():  # the rest
            ...

    Args:
      spec, params: the model.
      chunk_frames: frames per chunk, a multiple of 32 and >= 256. Larger chunks waste less on
        overlap (160 frames each) but take more memory (activations grow linearly).
      batch_size: chunks per device call (padding rows fill a partial batch).
      bucket_ratio: growth of the ladder of shorter chunk lengths.
    """

    def __init__(self, spec: ModelSpec, params: Any, *, chunk_frames: int = 2048,
                 batch_size: int = 1, bucket_ratio: float = 1.5):
        if chunk_frames % SEGMENT_HOP or chunk_frames < MIN_CHUNK_FRAMES:
            raise ValueError(f"chunk_frames must be a multiple of {SEGMENT_HOP} and >= "
                             f"{MIN_CHUNK_FRAMES}, got {chunk_frames}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec, self.params = spec, params
        self.chunk_frames, self.batch_size = chunk_frames, batch_size
        self.ladder = bucket_ladder(chunk_frames, bucket_ratio)
        self._queues: dict[int, list[_Job]] = {}
        self._in_flight: list = []  # (jobs, device outputs), oldest first
        self._recordings: dict[Any, _Recording] = {}
        self._done: list[tuple[Any, Prediction]] = []
        self.shapes_compiled: set[int] = set()

    # -- feeding ---------------------------------------------------------------------------
    def add(self, key, blocks: Iterable[np.ndarray]) -> None:
        """Read a whole stream of mono 44.1 kHz float32 blocks and queue its chunks.

        An exception from `blocks` (e.g. `AudioError` for a non-finite sample mid-file) drops
        everything of this recording and propagates; other recordings are unaffected.
        """
        if key in self._recordings:
            raise ValueError(f"recording {key!r} is already being scored")
        rec = self._recordings[key] = _Recording(key, 2 * chunk_samples(self.chunk_frames))
        try:
            for block in blocks:
                block = np.asarray(block, np.float32).reshape(-1)
                rec.num_samples += block.size
                if rec.fill + block.size > rec.buffer.size:
                    grown = np.zeros(max(2 * rec.buffer.size, rec.fill + block.size), np.float32)
                    grown[:rec.fill] = rec.buffer[:rec.fill]
                    rec.buffer = grown
                rec.buffer[rec.fill:rec.fill + block.size] = block
                rec.fill += block.size
                while self._has_full_chunk(rec):
                    self._cut(rec, last=False)
            if rec.num_samples == 0:
                raise ValueError(f"recording {key!r} has no samples")
            self._cut_rest(rec)
            rec.done_reading = True
        except BaseException:
            self._drop(key)
            raise
        self._maybe_complete(rec)

    def _has_full_chunk(self, rec: _Recording) -> bool:
        offset = rec.start_seg * SEGMENT_HOP * HOP_LENGTH - rec.buffer_start
        return rec.fill - offset >= chunk_samples(self.chunk_frames)

    def _cut_rest(self, rec: _Recording) -> None:
        total = geometry.num_frames_for_samples(rec.num_samples)
        while True:
            remaining = total - rec.start_seg * SEGMENT_HOP
            if remaining <= self.chunk_frames:
                return self._cut(rec, last=True)
            self._cut(rec, last=False)

    def _cut(self, rec: _Recording, last: bool) -> None:
        a = rec.start_seg
        total = geometry.num_frames_for_samples(rec.num_samples)
        if last:
            valid = total - a * SEGMENT_HOP  # >= 161 frames unless a == 0 (then any T >= 1)
            frames = next(r for r in self.ladder if r >= valid)
            keep = (0 if a == 0 else LEFT_CONTEXT_SEGMENTS, geometry.num_segments(total) - a)
        else:
            valid = frames = self.chunk_frames
            keep = (0 if a == 0 else LEFT_CONTEXT_SEGMENTS,
                    frames // SEGMENT_HOP - 3 - RIGHT_CONTEXT_SEGMENTS)
        offset = a * SEGMENT_HOP * HOP_LENGTH - rec.buffer_start
        n = chunk_samples(frames)
        audio_length = max(0, min(n, rec.fill - offset))
        piece = np.zeros(n, np.float32)
        piece[:audio_length] = rec.buffer[offset:offset + audio_length]
        rec.pending += 1
        self._queue(_Job(rec.key, a, keep, piece, audio_length, valid))
        if not last:
            rec.start_seg = a + keep[1] - LEFT_CONTEXT_SEGMENTS
            drop = rec.start_seg * SEGMENT_HOP * HOP_LENGTH - rec.buffer_start
            keep = rec.fill - drop
            rec.buffer[:keep] = rec.buffer[drop:rec.fill].copy()
            rec.fill, rec.buffer_start = keep, rec.buffer_start + drop

    # -- device calls ----------------------------------------------------------------------
    def _queue(self, job: _Job) -> None:
        frames = job.audio.size // HOP_LENGTH - 2 * CONTEXT_HOPS + 1
        queue = self._queues.setdefault(frames, [])
        queue.append(job)
        if len(queue) >= self.batch_size:
            self._run(frames)

    def _run(self, frames: int) -> None:
        jobs, self._queues[frames] = self._queues[frames][:self.batch_size], \
            self._queues[frames][self.batch_size:]
        if not jobs:
            return
        pad = self.batch_size - len(jobs)
        audio = np.stack([j.audio for j in jobs] + [np.zeros_like(jobs[0].audio)] * pad)
        lengths = np.array([j.audio_length for j in jobs] + [0] * pad, np.int32)
        nf = np.array([j.num_frames for j in jobs] + [frames] * pad, np.int32)
        self.shapes_compiled.add(frames)
        out = self._device_call(audio, lengths, nf)  # dispatched async
        self._in_flight.append((jobs, out))
        if len(self._in_flight) > 1:  # keep one call in flight while the host reads on
            self._collect()

    def _device_call(self, audio, lengths, num_frames):
        """The per-chunk device computation: ([K, B, S, X] per-segment values, extras). Scoring
        returns logits (`chunk_logits`); `wler_jax.serving.embeddings` returns embeddings here."""
        return chunk_logits(self.spec, self.params, audio, lengths, num_frames)

    def _collect(self) -> None:
        jobs, out = self._in_flight.pop(0)
        logits, extras = jax.device_get(out)
        for row, job in enumerate(jobs):
            rec = self._recordings.get(job.key)
            if rec is None:  # the recording failed after this chunk was queued
                continue
            lo, hi = job.keep
            rec.pieces.append((job.start_seg + lo, logits[:, row, lo:hi],
                               {n: e[:, row, lo:hi] for n, e in extras.items()}))
            rec.pending -= 1
            self._maybe_complete(rec)

    def _drop(self, key) -> None:
        self._recordings.pop(key, None)
        for frames, queue in self._queues.items():
            self._queues[frames] = [j for j in queue if j.key != key]

    def _maybe_complete(self, rec: _Recording) -> None:
        if not rec.done_reading or rec.pending:
            return
        del self._recordings[rec.key]
        rec.pieces.sort(key=lambda p: p[0])
        logits = np.concatenate([p[1] for p in rec.pieces], axis=1)
        num_segs = geometry.num_segments(geometry.num_frames_for_samples(rec.num_samples))
        starts = [p[0] for p in rec.pieces]
        ends = [p[0] + p[1].shape[1] for p in rec.pieces]
        if logits.shape[1] != num_segs or starts[0] != 0 or starts[1:] != ends[:-1]:
            raise AssertionError(f"{rec.key}: chunks cover segments {list(zip(starts, ends))}, "
                                 f"expected [0, {num_segs})")  # a bug here, never bad input
        extras = {n: np.concatenate([p[2][n] for p in rec.pieces], axis=1)
                  for n in rec.pieces[0][2]}
        self._done.append((rec.key, self._result(logits, extras, num_segs, rec.num_samples)))

    def _result(self, logits: np.ndarray, extras: dict, num_segs: int, num_samples: int):
        """A whole recording's result from its [K, S, X] per-segment values (`_device_call`)."""
        padded = 1 << max(3, (num_segs - 1).bit_length())  # a few finalize shapes only
        pad = ((0, 0), (0, padded - num_segs), (0, 0))
        clip, segs = _finalize_padded(
            self.spec, self.params, np.pad(logits, pad)[:, None], num_segs,
            {n: np.pad(e, pad)[:, None] for n, e in extras.items()})
        return Prediction(np.asarray(clip), np.asarray(segs)[:num_segs], num_samples)

    # -- results ---------------------------------------------------------------------------
    def completed(self) -> Iterator[tuple[Any, Prediction]]:
        """(key, Prediction) of the recordings finished so far (each once)."""
        done, self._done = self._done, []
        return iter(done)

    def flush(self) -> Iterator[tuple[Any, Prediction]]:
        """Run every queued chunk and return the remaining results."""
        for frames in list(self._queues):
            while self._queues[frames]:
                self._run(frames)
        while self._in_flight:
            self._collect()
        return self.completed()


def score_waveform(spec: ModelSpec, params: Any, waveform: np.ndarray, *,
                   chunk_frames: int = 2048, batch_size: int = 1,
                   block_samples: int = 1 << 20) -> Prediction:
    """One in-memory waveform ([n] float32 or int16 at 44.1 kHz) scored in chunks."""
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        waveform = geometry.from_int16(waveform)
    waveform = waveform.astype(np.float32).reshape(-1)
    scorer = ChunkedScorer(spec, params, chunk_frames=chunk_frames, batch_size=batch_size)
    scorer.add(0, (waveform[i:i + block_samples]
                   for i in range(0, waveform.size, block_samples)))
    (_, prediction), = list(scorer.flush())
    return prediction
