"""train.loss_weighting: 'example' makes every recording (WLER) or window (SLAT) weigh the same
in an epoch, whatever the size of its length bucket's batch."""
import functools

import jax
import numpy as np
import pytest

from wler_jax.model.spec import ModelSpec

from wler_jax.training import steps
from wler_jax.configs.common import base_config
from wler_jax.data.input_pipeline import RecordingBatcher
from wler_jax.training.train import _examples_per_batch


@pytest.mark.parametrize("method", ["wler", "slat"])
def test_example_norm_is_the_sum_over_examples_over_a_constant(method):
    spec = ModelSpec(method=method, num_classes=3, width=0.125, dropout_rate=0.0)
    params = spec.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    frames = np.array([170, 140, 90, 0])  # 3 recordings + a padding row
    feats = rng.normal(-40.0, 10.0, (4, 170, 128)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    weight = (frames > 0).astype(np.float32)

    @functools.partial(jax.jit, static_argnums=4)
    def loss(f, n, y, w, norm):
        return steps.feature_loss(spec, params, f, n, y, w, jax.random.key(1), slat_hop=32,
                                  example_norm=norm)

    def rows(r):  # the same recordings as a batch of their own
        return feats[r], frames[r], labels[r], weight[r]

    alone = [loss(*rows([i]), 0.0) for i in range(3)]  # each recording alone: its own mean
    counts = [float(a[1]["examples"]) for a in alone]
    assert counts == ([1.0] * 3 if method == "wler" else [2.0, 1.0, 1.0])  # windows, hop 32
    total = sum(float(a[0]) * c for a, c in zip(alone, counts))
    value, _ = loss(feats, frames, labels, weight, 2.5)
    np.testing.assert_allclose(float(value), total / 2.5, rtol=1e-5)
    # 'batch' weighting (0): the mean over this batch's examples, a different number here.
    default, _ = loss(feats, frames, labels, weight, 0.0)
    np.testing.assert_allclose(float(default), total / sum(counts), rtol=1e-5)
    assert abs(float(default) - float(value)) > 1e-3


def test_examples_per_batch_counts_recordings_or_windows():
    frames = np.array([100, 128, 300, 1000, 5000])
    source = [{"audio": np.zeros(int(f) * 512, np.int16), "labels": [0]} for f in frames]
    batcher = RecordingBatcher(source, num_classes=1, frame_budget=1280, num_devices=1,
                               ratio=1.5, seed=0, shuffle=True)
    cfg = base_config("wler", "smoke")
    nb = batcher.num_batches(0)
    assert _examples_per_batch(ModelSpec.from_config(cfg, 1), batcher, cfg) == pytest.approx(5 / nb)
    cfg = base_config("slat", "smoke")
    f = np.maximum(np.asarray(batcher.train_frames), 128)
    windows = np.sum(1 + (f - 128) // cfg.input.slat_hop)
    spec = ModelSpec.from_config(cfg, 1)
    assert _examples_per_batch(spec, batcher, cfg) == pytest.approx(windows / nb)
