"""The HEAR 2021 common API over a trained workdir (docs/design.md §9).

HEAR (Holistic Evaluation of Audio Representations, Turian et al. 2022) evaluates an audio
representation through three functions and three attributes; this module provides them::

    import wler_jax.hear as hear
    model = hear.load_model("/path/to/workdir")            # model.sample_rate == 44100
    scene = hear.get_scene_embeddings(audio, model)          # [n, model.scene_embedding_size]
    emb, ts = hear.get_timestamp_embeddings(audio, model)    # [n, T, D], [n, T] (ms)

`audio` is [n, samples] at 44.1 kHz in [-1, 1], of any sample count >= 1: a NumPy array, a
JAX array or a PyTorch tensor; the results are of the same kind (float32; a torch result on the
input's device).

What the embeddings are (`wler_jax.serving.embeddings`): the model's FCv1 activations, the
vectors its class scores are a linear read-out of, averaged over the four log-mel scales.
Timestamp embeddings are one per segment on the 32-frame grid (a 1.49-s window every ~372 ms;
T = max(1 + samples // 512, 128) // 32 - 3), each stamped at its window's centre (a recording
shorter than one window has one segment, stamped at the recording's centre). The scene
embedding is the mean of the timestamp embeddings (`clip_mean`); D is the FCv1 width (256 at the
paper's width 1.0). Recordings are embedded in exact chunks in bounded memory, whatever their
length.

Validation: `pip install -e .[hear]` then `hear-validator wler_jax.hear --model WORKDIR`. The
validator accepts only a `torch.nn.Module` (or `tf.Module`) as the model and feeds it torch
tensors, so when PyTorch is importable `load_model` returns a `torch.nn.Module` subclass that
holds no torch parameters; wler_jax itself never needs PyTorch.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import geometry, predict
from wler_jax.serving import embeddings

sample_rate = geometry.SAMPLE_RATE  # 44100: the rate every input must already have


class HearModel:
    """A workdir's model with the HEAR attributes.

    Attributes:
      sample_rate: 44100 Hz; scene_embedding_size, timestamp_embedding_size: D, the FCv1 width;
      model: the `wler_jax.predict.Model` (params, spec, classes, workdir).
    """

    sample_rate = geometry.SAMPLE_RATE

    def __init__(self, model: predict.Model):
        self.model = model
        self.scene_embedding_size = model.spec.embedding_width  # D: the FCv1 width
        self.timestamp_embedding_size = model.spec.embedding_width

    def __repr__(self) -> str:
        return (f"wler_jax.hear model ({self.model.spec.method}, D={self.scene_embedding_size}, "
                f"{self.model.workdir})")


@functools.lru_cache(maxsize=1)
def _model_class() -> type:
    """`HearModel`, made a `torch.nn.Module` when PyTorch is installed (the HEAR validator
    accepts nothing else); imported here, not at the top: PyTorch is an optional extra."""
    try:
        import torch
    except ImportError:
        return HearModel

    class TorchHearModel(torch.nn.Module, HearModel):
        """`HearModel` as a parameter-free `torch.nn.Module` (`.to(device)` changes nothing:
        the JAX model runs on JAX's devices)."""

        def __init__(self, model: predict.Model):
            torch.nn.Module.__init__(self)
            HearModel.__init__(self, model)

        def forward(self, audio):  # the scene embedding, for torch users who call the module
            return get_scene_embeddings(audio, self)

    return TorchHearModel


def load_model(model_file_path: str = "") -> HearModel:
    """The best checkpoint of a training workdir (`model_file_path`: the workdir) as a HEAR
    model."""
    if not model_file_path:
        raise ValueError("wler_jax.hear.load_model needs a training workdir (--model WORKDIR)")
    return _model_class()(predict.load_model(model_file_path))


# -- array kinds ---------------------------------------------------------------------------------
def _from_any(audio) -> tuple[np.ndarray, str, Any]:
    """([n, samples] float32 NumPy, kind "numpy" | "jax" | "torch", the torch device or None)."""
    if type(audio).__module__.split(".")[0] == "torch":  # no torch import needed to tell
        return audio.detach().to("cpu").float().numpy(), "torch", audio.device
    kind = "jax" if isinstance(audio, jax.Array) else "numpy"
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        audio = geometry.from_int16(audio)
    return np.asarray(audio, np.float32), kind, None


def _to_kind(x: np.ndarray, kind: str, device) -> Any:
    x = np.ascontiguousarray(x, np.float32)
    if kind == "jax":
        return jnp.asarray(x)
    if kind == "torch":
        import torch  # the input was a torch tensor, so torch is installed

        return torch.from_numpy(x).to(device)
    return x


def _check(audio: np.ndarray, model) -> None:
    if not isinstance(model, HearModel):
        raise TypeError(f"model must come from wler_jax.hear.load_model, got {type(model)}")
    if audio.ndim != 2:
        raise ValueError(f"audio must be [n, samples] (n recordings at {sample_rate} Hz), got "
                         f"shape {audio.shape}")
    if audio.shape[1] < 1:
        raise ValueError("audio has no samples; HEAR recordings need at least one")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")


def _embed(audio: np.ndarray, model: HearModel) -> list[embeddings.Embedding]:
    batch_size = 1 if jax.default_backend() == "cpu" else 8
    embedder = embeddings.ChunkedEmbedder(model.model.spec, model.model.params,
                                          batch_size=batch_size)
    out: dict[int, embeddings.Embedding] = {}
    for i, row in enumerate(audio):
        embedder.add(i, [row])
        out.update(embedder.completed())
    out.update(embedder.flush())
    return [out[i] for i in range(len(audio))]


def timestamps_ms(num_samples: int) -> np.ndarray:
    """[T] centre of each segment's window in ms, for a recording of `num_samples` samples."""
    num_segs = geometry.num_segments(geometry.num_frames_for_samples(num_samples))
    start, end = geometry.segment_times(num_segs)
    duration = num_samples / sample_rate
    centres = (start + end) / 2 if end[-1] <= duration or num_segs > 1 else np.array(
        [duration / 2])
    return 1000.0 * centres


# -- the API -------------------------------------------------------------------------------------
def get_timestamp_embeddings(audio, model: HearModel):
    """([n, T, D] per-segment embeddings, [n, T] timestamps in ms at each window's centre), of
    the same array kind as `audio` ([n, samples] at 44.1 kHz)."""
    x, kind, device = _from_any(audio)
    _check(x, model)
    d = model.timestamp_embedding_size
    ts = timestamps_ms(x.shape[1])
    emb = np.zeros((len(x), len(ts), d), np.float32)
    for i, e in enumerate(_embed(x, model) if len(x) else []):
        emb[i] = e.segments
    return _to_kind(emb, kind, device), _to_kind(np.tile(ts, (len(x), 1)), kind, device)


def get_scene_embeddings(audio, model: HearModel):
    """[n, D] clip embeddings (mean of the segment embeddings), of the same array kind as
    `audio` ([n, samples] at 44.1 kHz)."""
    x, kind, device = _from_any(audio)
    _check(x, model)
    emb = np.zeros((len(x), model.scene_embedding_size), np.float32)
    for i, e in enumerate(_embed(x, model) if len(x) else []):
        emb[i] = e.clip_mean
    return _to_kind(emb, kind, device)
