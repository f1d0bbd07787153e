"""Weak-label augmentation of training batches: mixing gives the union label, gain scales."""
import jax
import jax.numpy as jnp
import numpy as np

from wler_jax.training import steps


def _batch():
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((4, 4096)) * 3000).astype(np.int16)
    n = np.array([4096, 3000, 2000, 0])
    audio[1, 3000:] = 0
    audio[2, 2000:] = 0
    audio[3] = 0
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    return {"audio": jnp.asarray(audio), "num_samples": jnp.asarray(n),
            "num_frames": jnp.asarray(np.where(n > 0, 1 + n // 512, 0).astype(np.int32)),
            "labels": jnp.asarray(labels), "weight": jnp.asarray([1.0, 1.0, 1.0, 0.0])}


def test_mixing_gives_union_labels_and_never_touches_padding_rows():
    batch = _batch()
    out = jax.jit(lambda b, r: steps.augment(b, r, mix_prob=1.0))(batch, jax.random.key(3))
    labels = np.asarray(out["labels"])
    np.testing.assert_array_equal(labels[0], [1, 1, 0])  # 0 + its neighbour 1
    np.testing.assert_array_equal(labels[1], [0, 1, 1])
    np.testing.assert_array_equal(labels[2], [0, 0, 1])  # neighbour is a padding row: unmixed
    np.testing.assert_array_equal(labels[3], [0, 0, 0])
    np.testing.assert_array_equal(out["num_samples"], [4096, 3000, 2000, 0])
    np.testing.assert_array_equal(out["num_frames"], batch["num_frames"])
    a = np.asarray(batch["audio"], np.float32) / 32767.0
    got = np.asarray(out["audio"])
    big = np.abs(a[1]) > 0.01  # where the ratio is well conditioned
    level = (got[0] - a[0])[big] / a[1][big]
    assert np.allclose(level, level[0], rtol=1e-3) and 10 ** (-6 / 20) - 1e-6 <= level[0] <= 1
    np.testing.assert_allclose(got[2], a[2], atol=1e-7)
    np.testing.assert_array_equal(got[3], 0.0)


def test_mixing_takes_the_longer_length_and_gain_only_scales():
    batch = _batch()
    batch = {**batch, "weight": jnp.ones(4)}
    out = steps.augment(batch, jax.random.key(0), mix_prob=1.0)
    np.testing.assert_array_equal(out["num_samples"], [4096, 3000, 2000, 4096])
    np.testing.assert_array_equal(out["num_frames"], 1 + np.array([4096, 3000, 2000, 4096]) // 512)
    g = steps.augment(batch, jax.random.key(0), gain_db=6.0)
    a = np.asarray(batch["audio"], np.float32) / 32767.0
    ratio = np.asarray(g["audio"])[:3, :100] / a[:3, :100]
    assert np.all(np.abs(ratio - ratio[:, :1]) < 1e-4)
    assert np.all((ratio[:, 0] >= 10 ** (-6 / 20) - 1e-6) & (ratio[:, 0] <= 10 ** (6 / 20) + 1e-6))
    np.testing.assert_array_equal(g["labels"], batch["labels"])
    assert steps.augment(batch, jax.random.key(0)) is batch  # off: the batch as it was
