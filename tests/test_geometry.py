"""Segment geometry: the counts and masks every other module derives from (docs/design.md §2-3)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import geometry

from wler_jax.model.spec import ModelSpec
from conftest import TEST_WIDTH


def test_paper_example_1280_frames_gives_37_segments():
    assert geometry.num_segments(1280) == 37


@pytest.mark.parametrize("t", [128, 129, 159, 160, 161, 200, 255, 256, 300, 1000, 1279, 1281, 4321])
def test_segment_formula(t):
    assert geometry.num_segments(t) == t // 32 - 3


@pytest.mark.parametrize("t", [1, 50, 100, 127])
def test_short_recordings_have_one_segment(t):
    assert geometry.num_segments(t) == 1
    assert geometry.segment_mask([t], 256).sum() == 1


@pytest.mark.filterwarnings("ignore:n_fft=.*is too large")
def test_samples_to_frames_matches_librosa_frame_count():
    """T = 1 + n // 512 is what librosa's centred STFT gives at every scale (docs/design.md §1), and
    what `features.log_mel` returns."""
    import librosa

    from wler_jax import features

    rng = np.random.default_rng(0)
    lengths = (1, 511, 512, 513, 1023, 4097, 44100)
    batch = np.zeros((len(lengths), max(lengths)), np.float32)  # one padded batch, one compile
    for i, n in enumerate(lengths):
        y = rng.standard_normal(n).astype(np.float32)
        batch[i, :n] = y
        t = geometry.num_frames_for_samples(n)
        for n_fft in geometry.N_FFTS:
            spec = librosa.stft(y, n_fft=n_fft, hop_length=geometry.HOP_LENGTH, center=True,
                                pad_mode="constant")
            assert spec.shape[1] == t, (n, n_fft, spec.shape)
    _, num_frames = features.log_mel(batch, np.array(lengths), 1024)
    assert [int(t) for t in num_frames] == [geometry.num_frames_for_samples(n) for n in lengths]


def test_segment_mask_brute_force():
    nf = np.array([0, 100, 128, 129, 160, 191, 192, 700, 1280])
    mask = geometry.segment_mask(nf, 1280)
    assert mask.shape == (len(nf), 37)
    for i, t in enumerate(nf):
        for k in range(37):
            assert mask[i, k] == (32 * k + 128 <= max(t, 128))
    np.testing.assert_array_equal(np.asarray(geometry.segment_mask(jnp.asarray(nf), 1280, xp=jnp)), mask)


def test_segment_times_on_32_frame_grid():
    start, end = geometry.segment_times(3)
    frame = 512 / 44100
    np.testing.assert_allclose(start, [0, 32 * frame, 64 * frame])
    np.testing.assert_allclose(end - start, 128 * frame)


@pytest.mark.parametrize("t", [60, 128, 161, 300, 1280])
@pytest.mark.parametrize("method", ["wler", "slat"])
def test_network_output_has_formula_segment_count(t, method):
    """N_W's segments and SLAT's test windows (hop 32) both follow S = max(T, 128) // 32 - 3."""
    spec = ModelSpec(method, 3, TEST_WIDTH)
    x = jnp.zeros((1, t, 128))
    params = jax.eval_shape(spec.init, jax.random.key(0))
    seg, mask, _ = jax.eval_shape(lambda p: spec.segment_logits(p, x, jnp.array([t])), params)
    assert seg.shape == (1, geometry.num_segments(t), 3)
    assert mask.shape == (1, geometry.num_segments(t))
    clip = jax.eval_shape(lambda p, s, m: spec.clip_logits(p, s, m), params, seg, mask)
    assert clip.shape == (1, 3)


def test_window_mask_brute_force():
    rng = np.random.default_rng(1)
    num_frames = np.concatenate([[0, 1, 127, 128, 129, 255, 256, 257], rng.integers(1, 900, 20)])
    for padded in (128, 192, 448, 1024):
        nf = np.minimum(num_frames, padded)
        for window, hop in ((128, 128), (128, 64), (128, 32), (96, 50)):
            mask = geometry.window_mask(nf, padded, window=window, hop=hop)
            num_windows = (padded - window) // hop + 1
            assert mask.shape == (len(nf), num_windows)
            for b, t in enumerate(nf):
                for s in range(num_windows):
                    assert mask[b, s] == (t > 0 and s * hop + window <= max(t, 128))
            short = (nf > 0) & (nf < 128)
            assert short.any() and (mask[short].sum(1) == 1).all()  # exactly one window
        real = nf > 0
        np.testing.assert_array_equal(geometry.window_mask(nf, padded, hop=32)[real],
                                      geometry.segment_mask(nf, padded)[real])


def test_window_mask_in_jax():
    import jax
    import jax.numpy as jnp

    nf = np.array([0, 50, 300, 700, 1024], np.int32)
    fn = jax.jit(lambda n: geometry.window_mask(n, 1024, hop=64, xp=jnp))
    np.testing.assert_array_equal(np.asarray(fn(nf)), geometry.window_mask(nf, 1024, hop=64))
