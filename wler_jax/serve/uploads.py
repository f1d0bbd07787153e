"""An uploaded recording -> predict's JSON document, within the server's limits.

`UploadScorer` holds the one loaded model, checks an upload (content type, bytes, duration)
and scores it with `wler_jax.predict` (`predict_file`: the chunked engine of the command line)
into the document `python -m wler_jax.predict --output=X.json` writes for one file
(`reports.prediction_record`). `warm_up` compiles, before the first request, every program a
recording within `max_seconds` can need (the chunk-length ladder and the finalize shapes), and
`CompileCounter` counts backend compilations, so a test (and `/api/status`) can show that
requests of any length compile nothing. No web framework here: `wler_jax.serve.app` is the
HTTP layer.
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from typing import Optional

import jax
import numpy as np
import soundfile as sf
from absl import logging

from wler_jax import geometry, predict
from wler_jax.audio import AudioError
from wler_jax.serving import chunked, reports

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax.monitoring, per program
# Containers browsers record or export that libsndfile cannot decode: refused by type, with
# what to send instead (the page converts its microphone recordings to WAV itself).
UNDECODABLE_TYPES = ("audio/webm", "audio/mp4", "audio/aac", "audio/x-m4a", "audio/m4a",
                     "audio/3gpp", "audio/amr", "audio/x-ms-wma")
GENERIC_TYPES = ("application/octet-stream",)  # no type known (curl, a file without extension)


class UploadError(Exception):
    """An upload the server refuses: an HTTP status (4xx/503) and a one-line message."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = " ".join(str(message).split())
        super().__init__(self.message)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one upload may be: bytes on the wire and seconds of audio."""

    max_bytes: int = 64 << 20
    max_seconds: float = 600.0

    def as_dict(self) -> dict:
        return {"max_bytes": self.max_bytes, "max_seconds": self.max_seconds}


def check_content_type(content_type: Optional[str]) -> None:
    """Raise UploadError(415) unless `content_type` is audio/* (not a container libsndfile
    cannot read) or application/octet-stream."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base in UNDECODABLE_TYPES:
        raise UploadError(415, f"{base} cannot be decoded here; send WAV, FLAC, OGG (Vorbis or "
                               "Opus), MP3 or AIFF")
    if not (base.startswith("audio/") or base in GENERIC_TYPES):
        raise UploadError(415, f"expected an audio file (Content-Type audio/* or "
                               f"application/octet-stream), got {base or 'no Content-Type'}; "
                               "with curl: -H 'Content-Type: audio/wav' --data-binary @FILE")


def safe_name(name: Optional[str]) -> str:
    """The base name of an uploaded file as it appears in the record ("upload" when none)."""
    base = os.path.basename(str(name or "").replace("\\", "/")).strip()
    return "".join(ch for ch in base if ch.isprintable())[:200] or "upload"


class CompileCounter:
    """Counts JAX backend compilations (new programs, cache loads included) in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0
        self.names: list[str] = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            with self._lock:
                self.count += 1
                self.names.append(str(kwargs.get("fun_name", "")))

    def close(self) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)


def warmup_lengths(chunk_frames: int, max_seconds: float) -> list[int]:
    """Sample counts whose scoring compiles every program a recording of at most `max_seconds`
    needs: one recording per rung of the chunk-length ladder it can reach (`chunked.
    bucket_ladder`; a recording of exactly that many frames is one chunk of it) and one per
    padded segment count of the final pooling (powers of two from 8, as `ChunkedScorer`
    pads them), each the longest within the limit."""
    max_frames = geometry.num_frames_for_samples(math.ceil(max_seconds * geometry.SAMPLE_RATE))
    frames = set()
    for rung in chunked.bucket_ladder(chunk_frames):
        frames.add(min(rung, max_frames))
        if rung >= max_frames:
            break
    max_segs = geometry.num_segments(max_frames)
    padded = 8
    while True:
        segs = min(padded, max_segs)
        frames.add(min((segs + 3) * geometry.SEGMENT_HOP, max_frames))
        if padded >= max_segs:
            break
        padded *= 2
    return sorted((f - 1) * geometry.HOP_LENGTH + 1 for f in frames)


class UploadScorer:
    """One model scoring uploaded files, from any number of threads.

    Args:
      model: `predict.load_model(workdir)`.
      limits: what an upload may be.
      threshold: one decision threshold for every class, or None for the model's own
        (`Model.decision_thresholds`: the fitted per-class thresholds, else 0.5).
      chunk_frames: frames per chunk of the chunked engine (predict's `--chunk_frames`).
    """

    def __init__(self, model: predict.Model, limits: Limits = Limits(), *,
                 threshold: Optional[float] = None,
                 chunk_frames: int = predict.DEFAULT_CHUNK_FRAMES):
        self.model, self.limits, self.chunk_frames = model, limits, chunk_frames
        self.threshold = model.decision_thresholds(threshold)
        self.compiles = CompileCounter()
        self.compiles_at_warmup: Optional[int] = None
        self.warmup_seconds = 0.0
        self._lock = threading.Lock()
        self.requests = 0

    def info(self) -> dict:
        """What the page shows about the model and the limits."""
        spec = self.model.spec
        return {"workdir": self.model.workdir, "class_names": list(self.model.class_names),
                "threshold": self.threshold, "method": spec.method, "pooling": spec.pooling,
                "width": spec.width, "limits": self.limits.as_dict()}

    def status(self) -> dict:
        """Requests served and compilations: `compiles_since_warmup` stays 0 while every
        request reuses the warmed-up programs."""
        with self.compiles._lock:
            count = self.compiles.count
        since = None if self.compiles_at_warmup is None else count - self.compiles_at_warmup
        return {"requests": self.requests, "compiles": count,
                "compiles_at_warmup": self.compiles_at_warmup, "compiles_since_warmup": since,
                "warmup_seconds": round(self.warmup_seconds, 3)}

    def warm_up(self) -> int:
        """Compile every program a recording within the limits needs (`warmup_lengths`);
        returns the number of programs compiled (or loaded from the persistent cache)."""
        start, before = time.perf_counter(), self.compiles.count
        lengths = warmup_lengths(self.chunk_frames, self.limits.max_seconds)
        for n in lengths:
            predict.predict_waveform(self.model, np.zeros(n, np.float32),
                                     chunk_frames=self.chunk_frames)
        self.warmup_seconds = time.perf_counter() - start
        self.compiles_at_warmup = self.compiles.count
        logging.info("warm-up: %d recordings of %d-%d samples, %d programs, %.1f s",
                     len(lengths), lengths[0], lengths[-1], self.compiles.count - before,
                     self.warmup_seconds)
        return self.compiles.count - before

    def check_duration(self, path: str, name: str) -> float:
        """The file's duration in seconds (from its header); UploadError(413) above the limit,
        (422) when the header cannot be read."""
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise UploadError(422, f"{name}: cannot be decoded as audio "
                                   f"({str(e).replace(path, name)})") from e
        if info.samplerate <= 0 or info.frames <= 0:
            raise UploadError(422, f"{name}: contains zero samples")
        seconds = math.ceil(info.frames * geometry.SAMPLE_RATE / info.samplerate) \
            / geometry.SAMPLE_RATE
        if seconds > self.limits.max_seconds:
            raise UploadError(413, f"{name}: the recording is {_minutes(seconds)} long; this "
                                   f"server scores at most {_minutes(self.limits.max_seconds)} "
                                   "(--max_seconds); cut it, or score it with python -m "
                                   "wler_jax.predict")
        return seconds

    def score_file(self, path: str, name: str) -> dict:
        """Predict's JSON document for one uploaded file saved at `path` (shown as `name`):
        `{"workdir", "class_names", "threshold", "results": [record], "failed": []}`.

        Raises UploadError: 413 too long, 422 unreadable (the one-line reason of
        `audio.AudioError`, naming `name`)."""
        name = safe_name(name)
        self.check_duration(path, name)
        try:
            prediction = predict.predict_file(self.model, path, chunk_frames=self.chunk_frames)
        except AudioError as e:
            raise UploadError(422, f"{name}: {e.reason.replace(path, name)}") from e
        with self._lock:
            self.requests += 1
        record = reports.prediction_record(name, prediction, self.model.class_names,
                                           self.threshold)
        return {"workdir": self.model.workdir, "class_names": list(self.model.class_names),
                "threshold": self.threshold, "results": [record], "failed": []}


def _minutes(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
