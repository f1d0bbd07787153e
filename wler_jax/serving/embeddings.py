"""Embeddings of a trained model: its FCv1 activations, per segment and pooled per clip.

Synopsis::

    model = wler_jax.predict.load_model(workdir)
    out = model.embed_fn(model.params, {"audio": audio, "num_samples": n})   # jitted, pure
    out["segments"] [B, S, D], out["clip_mean"] [B, D], out["clip_max"] [B, D], out["segment_mask"]
    emb = embed_waveform(model, waveform)       # any length, bounded memory (chunks)

What an embedding is. N_T's FCv1 (a 4x4 VALID conv over the conv stack's output, then ReLU)
gives one D-dimensional vector per segment (D = the FCv1 width: 256 at width 1.0, 32 at the
`cpu` size's 0.125); FCv2 is a linear (1x1) classifier on top of it, so these are the features
the class scores are a linear read-out of -- what the first author's follow-up work reused as a
sound-event feature extractor. For SLAT the same vectors are N_S's FC1 activations on each
128-frame window on the segment grid (N_S's FC1 is exactly N_T's FCv1 on one window, paper
§II-C). A clip embedding pools the valid segments: `clip_mean` (masked mean) and `clip_max`
(masked max).

Four scales: averaged, not concatenated. Prediction averages the four scales' scores; the
scales share one network, so their FCv1 vectors live in one space (the same units, the same
read-out FCv2), and their mean keeps D = the FCv1 width, the number the read-out layer was
trained on: a linear probe on the mean is the model's own head shape. Concatenation would give
4 D dimensions that mostly repeat each other (the same network on four views of the same
sound), 4x the size on disk and for any probe, for little gain.

Padding never changes an embedding: `WLER` masks every conv input to the recording's valid
length and SLAT's windows are cut from the same masked input (`networks.prepare_input`), so a
recording's valid-segment embeddings are the same in any batch, at any padding, as alone; the
pooling sees valid segments only. Invalid segments are 0 in `segments`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import audio as audio_lib
from wler_jax import geometry
from wler_jax.audio import AudioError
from wler_jax.model.spec import ModelSpec
from wler_jax.serving import chunked, inference


def scale_embeddings(spec: ModelSpec, params: Any, features: jax.Array, num_frames: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """FCv1 activations averaged over the K scales of `features` [K, B, T, 128]:
    ([B, S, D], mask [B, S]) (`ModelSpec.segment_embeddings` per scale)."""
    segments, mask = inference.each_scale(functools.partial(spec.segment_embeddings, params),
                                          features, num_frames)
    return segments.mean(0), mask[0]


def pool(segments: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Masked mean and max over the segment axis: [..., S, D], [..., S] -> ([..., D], [..., D]).

    Every recording has at least one valid segment (docs/design.md §3)."""
    m = mask[..., None]
    mean = jnp.where(m, segments, 0.0).sum(-2) / jnp.maximum(m.sum(-2), 1)
    return mean, jnp.where(m, segments, -jnp.inf).max(-2)


@functools.partial(jax.jit, static_argnums=0)
def embed(spec: ModelSpec, params: Any, batch: dict) -> dict[str, jax.Array]:
    """Embeddings of a batch (the body of `Model.embed_fn`); batch formats as `inference.predict`.

    Returns:
      {"segments": [B, S, D] FCv1 activations averaged over the scales (0 on invalid segments),
       "clip_mean": [B, D], "clip_max": [B, D] (masked pooling of "segments"),
       "segment_mask": [B, S] bool}; no batch axis when the batch had none.
    """
    feats, num_frames, single = inference.batch_features(batch)
    segments, mask = scale_embeddings(spec, params, feats, num_frames)
    segments = jnp.where(mask[..., None], segments, 0.0)
    clip_mean, clip_max = pool(segments, mask)
    result = {"segments": segments, "clip_mean": clip_mean, "clip_max": clip_max,
              "segment_mask": mask}
    return jax.tree.map(lambda x: x[0], result) if single else result


# -- any length, bounded memory ------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=0)
def chunk_embeddings(spec: ModelSpec, params: Any, audio: jax.Array, audio_lengths: jax.Array,
                     num_frames: jax.Array) -> tuple[jax.Array, dict]:
    """`chunked.chunk_logits` for embeddings: ([1, B, R // 32 - 3, D] scale-averaged, {})."""
    segments, _ = scale_embeddings(spec, params, chunked.chunk_features(audio, audio_lengths),
                                   num_frames)
    return segments[None], {}


@dataclasses.dataclass
class Embedding:
    """Embeddings of one recording.

    Attributes:
      segments: [S, D] per-segment FCv1 activations (segment k: frames [32k, 32k + 128)).
      clip_mean, clip_max: [D] masked mean / max over the segments.
      num_samples: samples at 44.1 kHz.
    """

    segments: np.ndarray
    clip_mean: np.ndarray
    clip_max: np.ndarray
    num_samples: int

    @property
    def duration(self) -> float:
        return self.num_samples / geometry.SAMPLE_RATE

    def segment_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end (seconds) of each segment, the end cut at the recording's end."""
        start, end = geometry.segment_times(self.segments.shape[0])
        return start, np.minimum(end, self.duration)


class ChunkedEmbedder(chunked.ChunkedScorer):
    """`chunked.ChunkedScorer` yielding `Embedding`s: the same exact chunking (a segment's
    FCv1 vector depends on the same receptive field as its logits), the same bounded memory."""

    def _device_call(self, audio, lengths, num_frames):
        return chunk_embeddings(self.spec, self.params, audio, lengths, num_frames)

    def _result(self, logits: np.ndarray, extras: dict, num_segs: int,
                num_samples: int) -> Embedding:
        segments = np.asarray(logits[0], np.float32)  # [S, D]
        return Embedding(segments, segments.mean(0), segments.max(0), num_samples)


def embed_waveform(model, waveform: np.ndarray, *, chunk_frames: int = 2048,
                   batch_size: int = 1) -> Embedding:
    """Embeddings of one in-memory recording of any length ([n] float32 or int16, 44.1 kHz)."""
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        waveform = geometry.from_int16(waveform)
    waveform = waveform.astype(np.float32).reshape(-1)
    embedder = ChunkedEmbedder(model.spec, model.params, chunk_frames=chunk_frames,
                               batch_size=batch_size)
    block = 1 << 20
    embedder.add(0, (waveform[i:i + block] for i in range(0, waveform.size, block)))
    (_, result), = list(embedder.flush())
    return result


def embed_files(model, paths: Sequence[str], *, chunk_frames: int = 2048, batch_size: int = 1,
                on_read: Optional[Callable[[], None]] = None
                ) -> Iterator[tuple[int, Optional[Embedding], Optional[AudioError]]]:
    """Embed files in bounded memory: yields (index in `paths`, Embedding, None) or
    (index, None, AudioError) per file, in completion order (as `predict.predict_files`)."""
    embedder = ChunkedEmbedder(model.spec, model.params, chunk_frames=chunk_frames,
                               batch_size=batch_size)
    for i, path in enumerate(paths):
        try:
            embedder.add(i, audio_lib.stream(path))
        except AudioError as e:
            yield i, None, e
        yield from ((k, e, None) for k, e in embedder.completed())
        if on_read is not None:
            on_read()
    yield from ((k, e, None) for k, e in embedder.flush())
