"""Multi-scale log-mel spectrograms in JAX (docs/design.md §1), jit-able and batched.

One function, `log_mel`, is the project's only feature path: training, evaluation and prediction
all call it on the device. librosa is its reference (tests hold the two together): Hann window,
`center=True` with zero padding (librosa 0.11's default `pad_mode="constant"`), power spectrum,
librosa's Slaney mel basis, `10 * log10(max(mel, 1e-10))`. Because padding is zeros, a recording
zero-padded inside a batch gets exactly the frames it gets alone.
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax.geometry import (
    HOP_LENGTH,
    N_FFTS,
    N_MELS,
    SAMPLE_RATE,
    from_int16,
    num_frames_for_samples,
)

AMIN = 1e-10  # power floor before the log: librosa.power_to_db(amin=1e-10)
FLOOR_DB = float(10.0 * np.log10(AMIN))  # -100 dB: the value of silence and of padding frames


@functools.lru_cache(maxsize=None)
def mel_basis(n_fft: int, sr: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """librosa's Slaney mel filterbank, transposed to [n_fft // 2 + 1, n_mels] float32."""
    import librosa  # deferred: importing librosa costs ~1 s, and only the basis needs it

    with warnings.catch_warnings():  # 128 bands at n_fft=512 leave some filters empty (as in the paper)
        warnings.filterwarnings("ignore", message="Empty filters detected")
        basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    return np.ascontiguousarray(basis.T, dtype=np.float32)


@functools.lru_cache(maxsize=None)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window, as `scipy.signal.get_window('hann', n_fft)` used by librosa."""
    n = np.arange(n_fft)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)).astype(np.float32)


def _frames(padded: jax.Array, n_fft: int, num_frames: int) -> jax.Array:
    """[B, N] -> [B, num_frames, n_fft] frames with hop 512, without a gather.

    n_fft is a multiple of the hop, so frame t is hop-blocks t .. t + n_fft/hop - 1 side by side.
    """
    k = n_fft // HOP_LENGTH
    n_blocks = num_frames + k - 1
    blocks = padded[:, : n_blocks * HOP_LENGTH].reshape(padded.shape[0], n_blocks, HOP_LENGTH)
    return jnp.concatenate([blocks[:, j: j + num_frames] for j in range(k)], axis=-1)


@functools.partial(jax.jit, static_argnames=("n_fft",))
def log_mel(waveforms: jax.Array, lengths: jax.Array, n_fft: int) -> tuple[jax.Array, jax.Array]:
    """Log-mel spectrogram of a batch of zero-padded waveforms.

    Args:
      waveforms: [B, L] float32 in [-1, 1] at 44.1 kHz, or int16 as stored by the datasets.
        Samples at or after each example's length are ignored (treated as zeros).
      lengths: [B] number of valid samples per example.
      n_fft: FFT size, a multiple of 512 (the paper uses 512, 1024, 2048, 4096).
    Returns:
      features: [B, 1 + L // 512, 128] float32 dB; frames at or after `num_frames` hold
        FLOOR_DB (-100 dB).
      num_frames: [B] int32, 1 + length // 512 (librosa's frame count for each recording).
    """
    if n_fft % HOP_LENGTH:
        raise ValueError(f"n_fft must be a multiple of {HOP_LENGTH}, got {n_fft}")
    if waveforms.dtype == jnp.int16:
        waveforms = from_int16(waveforms)
    waveforms = waveforms.astype(jnp.float32)
    batch, length = waveforms.shape
    lengths = jnp.asarray(lengths, jnp.int32)
    valid = jnp.arange(length)[None, :] < lengths[:, None]
    waveforms = jnp.where(valid, waveforms, 0.0)
    num_frames = num_frames_for_samples(length)
    half = n_fft // 2
    # Centre padding plus enough zeros that the last frame's blocks exist.
    total = (num_frames + n_fft // HOP_LENGTH - 1) * HOP_LENGTH
    padded = jnp.pad(waveforms, ((0, 0), (half, max(0, total - length - half))))
    frames = _frames(padded, n_fft, num_frames) * hann_window(n_fft)
    spec = jnp.fft.rfft(frames, axis=-1)
    power = jnp.square(spec.real) + jnp.square(spec.imag)
    mel = jnp.einsum("btf,fm->btm", power, mel_basis(n_fft),
                     precision=jax.lax.Precision.HIGHEST)
    db = 10.0 * jnp.log10(jnp.maximum(mel, AMIN))
    frames_valid = num_frames_for_samples(lengths)
    in_range = jnp.arange(num_frames)[None, :] < frames_valid[:, None]
    return jnp.where(in_range[..., None], db, FLOOR_DB), frames_valid


def multi_scale_log_mel(waveforms: jax.Array, lengths: jax.Array,
                        n_ffts: tuple[int, ...] = N_FFTS) -> tuple[jax.Array, jax.Array]:
    """All scales of one waveform batch: ([len(n_ffts), B, T, 128], num_frames [B])."""
    feats = [log_mel(waveforms, lengths, n) for n in n_ffts]
    return jnp.stack([f for f, _ in feats]), feats[0][1]


def librosa_log_mel(waveform: np.ndarray, n_fft: int) -> np.ndarray:
    """Reference path: librosa's log-mel of one recording, [T, 128] dB (a test oracle only)."""
    import librosa  # deferred: a test oracle; importing librosa costs ~1 s

    mel = librosa.feature.melspectrogram(
        y=np.asarray(waveform, np.float32), sr=SAMPLE_RATE, n_fft=n_fft, hop_length=HOP_LENGTH,
        n_mels=N_MELS, center=True, power=2.0)
    return librosa.power_to_db(mel, ref=1.0, amin=AMIN, top_db=None).T
