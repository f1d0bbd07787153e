"""Segment geometry: the counts and masks every other module derives from (DESIGN §2-3)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import geometry, models
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


def test_samples_to_frames_matches_librosa_frame_count():
    for n in (1, 511, 512, 513, 44100, 44100 * 15):
        assert geometry.num_frames_for_samples(n) == 1 + n // 512


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
def test_network_output_has_formula_segment_count(t):
    model = models.WLER(num_classes=3, width=TEST_WIDTH)
    x = jnp.zeros((1, t, 128))
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, jnp.array([t])))
    out = jax.eval_shape(lambda p: model.apply(p, x, jnp.array([t])), params)
    assert out[1]["segment_logits"].shape == (1, geometry.num_segments(t), 3)
    assert out[0].shape == (1, 3)
