"""wler_jax.hear: the HEAR 2021 API on a random-parameter workdir, without the `hear` extra
(NumPy and JAX inputs; PyTorch ones when torch is importable)."""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import geometry, hear
from wler_jax.serving import embeddings
from conftest import tones_and_noise
from test_predict import make_workdir

SR = geometry.SAMPLE_RATE


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return hear.load_model(make_workdir(tmp_path_factory.mktemp("hear_workdir")))


def test_attributes(model):
    assert model.sample_rate == hear.sample_rate == 44100
    assert isinstance(model.scene_embedding_size, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size
    with pytest.raises(ValueError, match="workdir"):
        hear.load_model()


@pytest.mark.parametrize("num_samples", [700, 2 * SR, 3 * SR + 123])
def test_numpy_matches_the_embedder_and_timestamps_are_centred(model, num_samples):
    audio = np.stack([tones_and_noise(num_samples, seed=s) for s in (0, 1)])
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    scene = hear.get_scene_embeddings(audio, model)
    num_segs = geometry.num_segments(geometry.num_frames_for_samples(num_samples))
    d = model.timestamp_embedding_size
    assert type(emb) is np.ndarray and emb.dtype == np.float32 and emb.shape == (2, num_segs, d)
    assert ts.shape == (2, num_segs) and scene.shape == (2, d) and scene.dtype == np.float32
    for b in range(2):  # each row as `embed_waveform` embeds it alone
        ref = embeddings.embed_waveform(model.model, audio[b])
        np.testing.assert_allclose(emb[b], ref.segments, atol=1e-5)
        np.testing.assert_allclose(scene[b], emb[b].mean(0), atol=1e-5)
    assert not np.allclose(emb[0], emb[1])  # rows are not mixed up or broadcast
    # centred: the middle of each segment's 1.49-s window, regular steps of 32 frames
    start, end = geometry.segment_times(num_segs)
    if num_samples >= 128 * 512:
        np.testing.assert_allclose(ts[0], 1000 * (start + end) / 2, atol=1e-3)  # float32 ms
        if num_segs > 1:
            np.testing.assert_allclose(np.diff(ts[0]), 1000 * 32 * 512 / SR, atol=1e-3)
    else:  # shorter than a window: one segment, at the recording's centre
        np.testing.assert_allclose(ts[0], [1000 * num_samples / SR / 2], atol=1e-3)


def test_jax_in_jax_out_and_bad_input(model):
    audio = np.stack([tones_and_noise(SR, seed=3)])
    emb_np, ts_np = hear.get_timestamp_embeddings(audio, model)
    emb, ts = hear.get_timestamp_embeddings(jnp.asarray(audio), model)
    scene = hear.get_scene_embeddings(jnp.asarray(audio), model)
    assert all(isinstance(x, jax.Array) for x in (emb, ts, scene))
    np.testing.assert_array_equal(np.asarray(emb), emb_np)
    np.testing.assert_array_equal(np.asarray(ts), ts_np)
    empty, empty_ts = hear.get_timestamp_embeddings(np.zeros((0, SR), np.float32), model)
    assert empty.shape[0] == 0 and empty_ts.shape[0] == 0
    with pytest.raises(ValueError, match=r"\[n, samples\]"):
        hear.get_scene_embeddings(audio[0], model)
    with pytest.raises(ValueError, match="NaN"):
        hear.get_scene_embeddings(np.full((1, SR), np.nan, np.float32), model)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed")
def test_torch_in_torch_out(model):
    import torch

    audio = np.stack([tones_and_noise(SR, seed=4)])
    assert isinstance(model, torch.nn.Module)  # what the HEAR validator requires
    emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(audio), model)
    scene = hear.get_scene_embeddings(torch.from_numpy(audio), model)
    assert isinstance(emb, torch.Tensor) and emb.dtype == torch.float32
    assert isinstance(scene, torch.Tensor) and scene.shape == (1, model.scene_embedding_size)
    np.testing.assert_array_equal(emb.numpy(), hear.get_timestamp_embeddings(audio, model)[0])
