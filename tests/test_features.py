"""JAX log-mel against librosa at all four scales, and batch independence."""
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import features, geometry
from conftest import tones_and_noise

# Measured max |JAX - librosa| over these lengths and scales: 9.9e-5 dB (float32 STFT).
MAX_DB_DIFF = 1e-3


@pytest.mark.parametrize("n_fft", geometry.N_FFTS)
def test_log_mel_matches_librosa(n_fft):
    lengths = [300, 3000, 44_100 * 2 + 123]  # the first is shorter than every n_fft
    longest = max(lengths) + 1000
    batch = np.zeros((len(lengths), longest), np.float32)
    refs = []
    for i, n in enumerate(lengths):
        batch[i, :n] = tones_and_noise(n, seed=i)
        refs.append(features.librosa_log_mel(batch[i, :n], n_fft))
    out, num_frames = features.log_mel(jnp.asarray(batch), jnp.asarray(lengths), n_fft)
    out = np.asarray(out)
    assert out.shape == (len(lengths), 1 + longest // 512, 128)
    worst = 0.0
    for i, ref in enumerate(refs):
        assert num_frames[i] == ref.shape[0] == 1 + lengths[i] // 512
        worst = max(worst, np.abs(out[i, : ref.shape[0]] - ref).max())
        np.testing.assert_array_equal(out[i, ref.shape[0]:], features.FLOOR_DB)
    print(f"n_fft={n_fft}: max |JAX - librosa| = {worst:.2e} dB")
    assert worst < MAX_DB_DIFF


def test_features_do_not_depend_on_the_batch():
    """Garbage after a recording's end and other batch members never change its frames."""
    x = tones_and_noise(20_000)
    alone, _ = features.log_mel(x[None], np.array([20_000]), 2048)
    batch = np.random.default_rng(0).standard_normal((3, 50_000)).astype(np.float32)
    batch[1, :20_000] = x
    out, nf = features.log_mel(batch, np.array([50_000, 20_000, 7]), 2048)
    np.testing.assert_allclose(out[1, : nf[1]], alone[0], atol=1e-4)


def test_int16_input_matches_float():
    from wler_jax.audio import from_int16, to_int16
    x = tones_and_noise(10_000)
    q = to_int16(x)
    a, _ = features.log_mel(q[None], np.array([10_000]), 1024)
    b, _ = features.log_mel(from_int16(q)[None], np.array([10_000]), 1024)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_multi_scale_stacks_all_four_scales():
    x = tones_and_noise(30_000)[None]
    out, nf = features.multi_scale_log_mel(x, np.array([30_000]))
    assert out.shape == (4, 1, 1 + 30_000 // 512, 128)
    for s, n_fft in enumerate(geometry.N_FFTS):
        np.testing.assert_array_equal(out[s], features.log_mel(x, np.array([30_000]), n_fft)[0])
    assert not np.allclose(out[0], out[3])


def test_rejects_n_fft_not_multiple_of_hop():
    with pytest.raises(ValueError, match="multiple of 512"):
        features.log_mel(np.zeros((1, 4096), np.float32), np.array([4096]), 1000)
