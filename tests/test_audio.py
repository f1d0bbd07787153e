"""Audio loading: formats, down-mixing, resampling, and a clear error for every bad input."""
import numpy as np
import pytest
import soundfile as sf

from wler_jax import audio


def test_stereo_22k_becomes_mono_44k(tmp_path):
    sr, n = 22_050, 22_050  # 1 s
    t = np.arange(n) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.1 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], 1), sr, subtype="PCM_16")
    y = audio.load(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 44_100) <= 1
    # Mono is the channel mean: amplitude 0.3 at 440 Hz, preserved by resampling.
    mid = y[4410:-4410]
    assert abs(np.abs(mid).max() - 0.3) < 0.01
    spectrum = np.abs(np.fft.rfft(mid))
    assert abs(np.argmax(spectrum) * 44_100 / len(mid) - 440) < 3


@pytest.mark.parametrize("fmt,subtype,ext", [("FLAC", "PCM_24", "flac"), ("OGG", "VORBIS", "ogg"),
                                              ("WAV", "FLOAT", "wav"), ("AIFF", "PCM_16", "aiff")])
def test_decodes_common_formats(tmp_path, fmt, subtype, ext):
    x = 0.2 * np.sin(2 * np.pi * 1000 * np.arange(44_100) / 44_100)
    x = np.stack([x, x, x, x], 1)  # four channels
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 44_100, format=fmt, subtype=subtype)
    y = audio.load(path)
    assert y.shape == (44_100,)
    assert abs(np.abs(y).max() - 0.2) < 0.02


def _expect_error(path, match):
    with pytest.raises(audio.AudioError, match=match) as info:
        audio.load(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.wav", "does not exist")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    _expect_error(p, "empty")


def test_corrupt_file(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    _expect_error(p, "cannot be decoded")


def test_zero_samples(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 1)), 44_100)
    _expect_error(p, "zero samples")


def test_non_finite_samples(tmp_path):
    p = tmp_path / "nan.wav"
    x = np.zeros(1000, np.float32)
    x[10], x[20] = np.nan, np.inf
    sf.write(p, x, 44_100, subtype="FLOAT")
    _expect_error(p, "2 non-finite")


def test_int16_round_trip():
    x = np.linspace(-1.2, 1.2, 101).astype(np.float32)
    q = audio.to_int16(x)
    assert q.dtype == np.int16 and q.max() == 32767 and q.min() == -32767
    np.testing.assert_allclose(audio.from_int16(q), np.clip(x, -1, 1), atol=1 / 32767)
