"""Live tagging of an audio stream (`StreamTagger`): each segment's scores as soon as its
receptive field has arrived, equal to the offline pass over the whole recording.

When a segment is final. Segment k's probabilities average the four scales' sigmoids
(`inference.finalize`), so it is final once every scale has it; all scales share the network's
receptive field, frames [32k - 31, 32k + 159) (`chunked`), and the widest STFT (n_fft 4096)
reaches 4 hops (2048 samples) past a frame's centre, so the 4096 scale is the last to complete.
Chunks are cut as `chunked` cuts them (start on the 32-frame grid, 4 hops of STFT context in
front, the first segment dropped as left context) but their right edge is placed just past the
newest complete receptive field: a chunk of R frames starting at frame 32a keeps local segments
k with 32k + 159 <= R. R is a rung of `LADDER` (160 + 32 (2^j - 1): 1, 3, 7, ... new segments
per chunk), so a live stream runs the 192-frame chunk once per segment and a burst of audio
runs few large ones. Segment k (k >= 1) is thus reported once 512 (32k + 163) samples at
44.1 kHz have arrived: 35 hops (0.406 s) after its 128-frame window ends, one hop more than
the receptive field needs because chunks are whole multiples of 32 frames (segment 0 comes
with segment 1). At `close` the rest are scored with the recording's true end, as offline.

Resampling. Blocks at another rate go through one `soxr.ResampleStream` (quality "HQ", the
offline route's soxr_hq), flushed at `close` and cut to ceil(n * 44100 / sr) samples as
`librosa.resample` cuts it: the streamed samples equal `audio.to_mono_44k` of the whole
recording up to float rounding, whatever the block sizes (tests/test_stream.py).

Memory: the samples from the current chunk's start on (at most the largest rung, 4.5 MB) plus
the block being pushed, and the resampler's state; nothing grows with the stream's length.
Clip scores need every segment (the global pooling), so the stream reports segments and events
only; score a finished recording with `predict_waveform` for its clip scores.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import jax
import numpy as np

from wler_jax import geometry
from wler_jax.audio import AudioError
from wler_jax.geometry import HOP_LENGTH, SAMPLE_RATE, SEGMENT_FRAMES, SEGMENT_HOP
from wler_jax.model.spec import ModelSpec
from wler_jax.serving import chunked, localisation
from wler_jax.serving.chunked import CONTEXT_HOPS, chunk_logits, chunk_samples

RECEPTIVE_END = 159  # segment k's receptive field ends before frame 32k + 159
LADDER = (192, 256, 384, 640, 1152, 2176)  # chunk frames: 1, 3, 7, 15, 31, 63 new segments
STREAM_NAME = "<stream>"  # how errors name the stream


def ready_samples(segment: int) -> int:
    """44.1 kHz samples a stream must hold before `StreamTagger` reports `segment` (before its
    end; at the end every segment is reported)."""
    k = max(int(segment), 1)  # segment 0 comes with segment 1 (the first chunk starts at 0)
    return (SEGMENT_HOP * (k - 1) + LADDER[0] + CONTEXT_HOPS - 1) * HOP_LENGTH


@dataclasses.dataclass(frozen=True)
class SegmentScores:
    """One final segment of a stream.

    Attributes:
      index: k; the window of frames [32k, 32k + 128).
      start, end: its window in seconds (end cut at the stream's end for the last ones).
      scores: [C] probabilities (the four scales' mean, as `predict_fn`'s "segments").
      ready_sample: 44.1 kHz samples received when it became final.
    """

    index: int
    start: float
    end: float
    scores: np.ndarray
    ready_sample: int


class StreamResampler:
    """Blocks at `sample_rate` -> 44.1 kHz blocks equal (to float rounding) to resampling the
    whole recording at once (`audio.resample`: soxr HQ, length ceil(n * 44100 / sr))."""

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.n_in = self.n_out = 0
        self._soxr = None
        if self.sample_rate != SAMPLE_RATE:
            import soxr

            self._soxr = soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32",
                                             quality="HQ")

    def push(self, mono: np.ndarray) -> np.ndarray:
        self.n_in += mono.size
        out = mono if self._soxr is None else self._soxr.resample_chunk(mono)
        self.n_out += out.size
        return out

    def close(self) -> np.ndarray:
        """The rest: the filter's tail, cut or padded to the offline length."""
        if self._soxr is None:
            return np.zeros(0, np.float32)
        tail = self._soxr.resample_chunk(np.zeros(0, np.float32), last=True)
        target = math.ceil(self.n_in * SAMPLE_RATE / self.sample_rate)
        tail = np.pad(tail[:max(0, target - self.n_out)],
                      (0, max(0, target - self.n_out - tail.size)))
        self.n_out += tail.size
        return tail.astype(np.float32, copy=False)


def to_mono_block(block: np.ndarray, name: str = STREAM_NAME, offset: int = 0) -> np.ndarray:
    """A pushed block ([n] or [n, channels], float or int16) as float32 mono; AudioError on
    non-finite samples (naming the first one's position in the stream)."""
    block = np.asarray(block)
    if block.dtype == np.int16:
        block = geometry.from_int16(block)
    block = np.asarray(block, np.float32)
    if block.ndim == 2:
        block = block.mean(axis=1, dtype=np.float32)
    elif block.ndim != 1:
        raise AudioError(name, f"blocks must be [samples] or [samples, channels], got shape "
                               f"{block.shape}")
    finite = np.isfinite(block)
    if not finite.all():
        raise AudioError(name, f"contains non-finite (NaN/inf) samples (first at sample "
                               f"{offset + int(np.argmin(finite))})")
    return block


class StreamTagger:
    """Scores one live stream segment by segment (module docstring: when, and how exactly).

    Synopsis::

        tagger = StreamTagger(model.spec, model.params, sample_rate=48000)
        for block in blocks:                    # any size, [n] or [n, channels], float or int16
            for seg in tagger.push(block):      # SegmentScores, in order, each once
                ...
        for seg in tagger.close():              # the last ones, scored with the true end
            ...

    Args:
      spec, params: the model (`predict.load_model(...).spec / .params`).
      sample_rate: the blocks' rate; other rates than 44.1 kHz are resampled (soxr HQ).
      max_chunk_frames: the largest chunk (a `LADDER` rung): bounds memory and the compiled
        shapes (at most len(LADDER) + 4).
    """

    def __init__(self, spec: ModelSpec, params: Any, *, sample_rate: int = SAMPLE_RATE,
                 max_chunk_frames: int = LADDER[-1]):
        if max_chunk_frames not in LADDER:
            raise ValueError(f"max_chunk_frames must be one of {LADDER}, got {max_chunk_frames}")
        if spec.method == "slat" and spec.slat_hop != SEGMENT_HOP:
            raise ValueError(f"streaming scores SLAT on the {SEGMENT_HOP}-frame segment grid; "
                             f"this model's slat_hop is {spec.slat_hop}")
        if int(sample_rate) <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.spec, self.params = spec, params
        self.rungs = tuple(r for r in LADDER if r <= max_chunk_frames)
        self.resampler = StreamResampler(sample_rate)
        self.num_samples = 0  # 44.1 kHz samples received
        self.next_segment = 0  # the first segment not yet reported
        self.closed = False
        # _buffer[:_fill]: the front-padded waveform (the STFT's 4 hops of zeros first) from
        # index _start on, in one array reused for the whole stream (grown only for a block
        # larger than a chunk), so a push copies its block once.
        self._buffer = np.zeros(2 * chunk_samples(self.rungs[-1]), np.float32)
        self._fill = CONTEXT_HOPS * HOP_LENGTH
        self._start = 0
        self.shapes_compiled: set[int] = set()

    # -- feeding -----------------------------------------------------------------------------
    def push(self, block: np.ndarray) -> list[SegmentScores]:
        """Add samples; returns the segments that became final (possibly none)."""
        if self.closed:
            raise ValueError("push after close: start a new StreamTagger")
        mono = to_mono_block(block, offset=self.resampler.n_in)
        self._append(self.resampler.push(mono))
        return self._score_ready()

    def close(self) -> list[SegmentScores]:
        """End of stream: the remaining segments, scored with the recording's true end.

        Raises AudioError when the stream held no samples."""
        if self.closed:
            return []
        self.closed = True
        self._append(self.resampler.close())
        if self.num_samples == 0:
            raise AudioError(STREAM_NAME, "contains zero samples")
        out = self._score_ready()
        total = geometry.num_frames_for_samples(self.num_samples)
        num_segs = geometry.num_segments(total)
        if self.next_segment < num_segs:
            a = max(self.next_segment - 1, 0)
            valid = total - a * SEGMENT_HOP
            frames = max(SEGMENT_FRAMES, -(-valid // SEGMENT_HOP) * SEGMENT_HOP)
            out += self._score_chunk(a, frames, valid, num_segs - a)
        self._buffer, self._fill = np.zeros(0, np.float32), 0
        return out

    @property
    def held_samples(self) -> int:
        """Samples held now (the memory bound: at most the largest chunk plus one block)."""
        return self._fill

    @property
    def duration(self) -> float:
        """Seconds received so far (at 44.1 kHz)."""
        return self.num_samples / SAMPLE_RATE

    # -- chunks ------------------------------------------------------------------------------
    def _append(self, samples: np.ndarray) -> None:
        if samples.size:
            end = self._fill + samples.size
            if end > self._buffer.size:
                grown = np.zeros(max(2 * self._buffer.size, end), np.float32)
                grown[:self._fill] = self._buffer[:self._fill]
                self._buffer = grown
            self._buffer[self._fill:end] = samples
            self._fill = end
            self.num_samples += samples.size

    def _score_ready(self) -> list[SegmentScores]:
        """Every chunk whose kept segments are final now (largest rung first)."""
        out: list[SegmentScores] = []
        while True:
            a = max(self.next_segment - 1, 0)
            room = self.num_samples // HOP_LENGTH - (CONTEXT_HOPS - 1) - a * SEGMENT_HOP
            fitting = [r for r in self.rungs if r <= room]
            if not fitting:
                return out
            frames = fitting[-1]
            out += self._score_chunk(a, frames, frames, (frames - RECEPTIVE_END) // SEGMENT_HOP + 1)

    def _score_chunk(self, a: int, frames: int, valid: int, hi: int) -> list[SegmentScores]:
        """Chunk of `frames` frames from frame 32a (`valid` of them real); reports local
        segments [lo, hi) and drops the samples no later chunk needs."""
        offset = a * SEGMENT_HOP * HOP_LENGTH - self._start
        n = chunk_samples(frames)
        piece = self._buffer[offset:min(offset + n, self._fill)]
        length = piece.size
        audio = np.zeros((1, n), np.float32)
        audio[0, :length] = piece
        self.shapes_compiled.add(frames)
        logits, _ = chunk_logits(self.spec, self.params, audio, np.array([length], np.int32),
                                 np.array([valid], np.int32))
        logits = np.asarray(jax.device_get(logits))[:, 0]  # [K, S, C]
        lo = 0 if a == 0 else chunked.LEFT_CONTEXT_SEGMENTS
        probs = (1.0 / (1.0 + np.exp(-logits[:, lo:hi].astype(np.float64)))).mean(0)
        first = a + lo
        starts, ends = geometry.segment_times(a + hi)
        out = [SegmentScores(first + i, float(starts[first + i]),
                             float(min(ends[first + i], self.duration if self.closed else np.inf)),
                             probs[i].astype(np.float32), self.num_samples)
               for i in range(probs.shape[0])]
        self.next_segment = a + hi
        keep_from = max(self.next_segment - 1, 0) * SEGMENT_HOP * HOP_LENGTH
        if keep_from > self._start:
            drop = keep_from - self._start
            self._buffer[:self._fill - drop] = self._buffer[drop:self._fill].copy()
            self._fill -= drop
            self._start = keep_from
        return out


def _start(k: int) -> float:
    """Segment k's start in seconds, computed as `geometry.segment_times` computes it (events
    merge on exact comparisons of these floats, so the stream must use the same values)."""
    return (k * SEGMENT_HOP) * (HOP_LENGTH / SAMPLE_RATE)


def _end(k: int) -> float:
    return _start(k) + SEGMENT_FRAMES * (HOP_LENGTH / SAMPLE_RATE)


class EventTracker:
    """Events from a stream's segments, each reported once: an "onset" when a class's first
    segment above threshold arrives, and the event itself once it can no longer grow.

    Events are `localisation.merge_segments`'s (runs of segments strictly above the class's
    threshold, from the first window's start to the last window's end, runs whose windows
    overlap or touch merged): an event is closed once a segment arrives whose successor's
    window starts after the event's end (nothing later can merge into it; four segments after
    its last active one) or the stream ends. The closed events of a stream equal
    `merge_segments` on all of its segments, ends cut at the stream's end as the file CLI cuts
    them.
    """

    def __init__(self, class_names: Sequence[str], threshold=0.5):
        self.class_names = [str(c) for c in class_names]
        self.thresholds = localisation.class_thresholds(threshold, self.class_names)
        self._open: dict[int, dict] = {}  # class -> {"start", "last", "score"}

    def update(self, segment: SegmentScores) -> list[dict]:
        """Reports this segment causes: {"type": "onset", "label", "start", "score"} and
        {"type": "event", "label", "start", "end", "score"} dicts."""
        out = []
        k = segment.index
        for c, name in enumerate(self.class_names):
            p = float(segment.scores[c])
            ev = self._open.get(c)
            if p > self.thresholds[c]:
                if ev is not None and _start(k) - ev["end"] > 0:  # windows apart: a new event
                    out.append(self._closed(c))
                    ev = None
                if ev is None:
                    ev = self._open[c] = {"start": segment.start, "score": p}
                    out.append({"type": "onset", "label": name, "start": segment.start,
                                "score": p})
                ev["end"], ev["score"] = _end(k), max(ev["score"], p)
            elif ev is not None and _start(k + 1) - ev["end"] > 0:  # nothing later can merge
                out.append(self._closed(c))
        return out

    def close(self, duration: Optional[float] = None) -> list[dict]:
        """The events still open at the end of the stream (ends cut at `duration`)."""
        out = [self._closed(c, duration) for c in sorted(self._open)]
        return sorted(out, key=lambda e: (e["start"], e["label"]))

    def _closed(self, c: int, duration: Optional[float] = None) -> dict:
        ev = self._open.pop(c)
        end = ev["end"] if duration is None else min(ev["end"], duration)
        return {"type": "event", "label": self.class_names[c], "start": ev["start"],
                "end": end, "score": ev["score"]}


def stream_records(tagger: StreamTagger, blocks, class_names: Sequence[str],
                   threshold=0.5):
    """The JSON records of `python -m wler_jax.predict --stream`, as they become known:
    {"type": "segment", "index", "start", "end", "scores": {class: p}} per segment, event
    reports from `EventTracker` ("onset", then "event" when it has ended) and a last
    {"type": "end", "duration", "segments"}. Times in seconds (6 decimals), scores as
    `reports.score_value` writes them."""
    from wler_jax.serving.reports import score_value

    names = [str(c) for c in class_names]
    events = EventTracker(names, threshold)
    r = lambda x: round(float(x), 6)  # noqa: E731

    def emit(segments):
        for seg in segments:
            yield {"type": "segment", "index": seg.index, "start": r(seg.start),
                   "end": r(seg.end), "scores": {c: score_value(p)
                                                 for c, p in zip(names, seg.scores)}}
            for ev in events.update(seg):
                yield _event_record(ev, r, score_value)

    for block in blocks:
        yield from emit(tagger.push(block))
    yield from emit(tagger.close())
    for ev in events.close(tagger.duration):
        yield _event_record(ev, r, score_value)
    yield {"type": "end", "duration": r(tagger.duration), "segments": tagger.next_segment}


def _event_record(ev: dict, r, score_value) -> dict:
    return {k: (score_value(v) if k == "score" else r(v) if k in ("start", "end") else v)
            for k, v in ev.items()}
