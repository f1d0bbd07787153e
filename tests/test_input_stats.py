"""Input normalisation: band statistics of a split, the model's InputNorm, frozen params."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wler_jax import features

from wler_jax.data import input_stats

from wler_jax.model import networks

from wler_jax.training import steps
from wler_jax.audio import to_int16


def _source(audio_factory, lengths=(50_000, 131_072, 20_000)):
    return [{"audio": to_int16(audio_factory(n, seed=i))} for i, n in enumerate(lengths)]


def _reference(source):
    """Mean/std over all valid frames of every whole recording at all four scales."""
    frames = []
    for rec in source:
        a = np.asarray(rec["audio"])
        f, nf = features.multi_scale_log_mel(jnp.asarray(a)[None], jnp.array([len(a)]))
        frames.append(np.asarray(f)[:, 0, :int(nf[0])].reshape(-1, 128))
    x = np.concatenate(frames).astype(np.float64)
    return x.mean(0), x.std(0), len(x)


def test_band_statistics_equal_whole_recording_statistics(audio_factory):
    source = _source(audio_factory)
    mean, std, count = _reference(source)
    stats = input_stats.band_statistics(source, chunk_samples=2 ** 18, batch_size=2)
    assert stats["frames"] == count
    np.testing.assert_allclose(stats["mean"], mean, atol=2e-3)
    np.testing.assert_allclose(stats["std"], np.maximum(std, input_stats.MIN_STD_DB), atol=2e-3)
    assert stats["mean"].min() > -100 and stats["mean"].max() < 60  # dB, not sums
    # Short chunks (one compiled shape for any length) only move the statistics slightly.
    short = input_stats.band_statistics(source, chunk_samples=2 ** 15, batch_size=4)
    assert np.abs(short["mean"] - mean).max() < 1.5
    assert np.abs(short["std"] - np.maximum(std, 1.0)).max() < 1.5


def _norm_params(model, feats, nf, mean, std):
    params = model.init(jax.random.key(0), feats, nf)["params"]
    params = dict(params)
    params["input_norm"] = {"mean": jnp.asarray(mean), "std": jnp.asarray(std)}
    return params


def test_input_norm_equals_normalised_features_and_keeps_padding_invariance():
    rng = np.random.default_rng(0)
    mean = rng.normal(-40, 10, 128).astype(np.float32)
    std = rng.uniform(5, 20, 128).astype(np.float32)
    feats = np.clip(rng.normal(-45, 18, (2, 224, 128)), -100, 30).astype(np.float32)
    nf = np.array([224, 160])
    normed = networks.WLER(5, width=0.125, input_norm=True)
    plain = networks.WLER(5, width=0.125)
    params = _norm_params(normed, feats, nf, mean, std)
    plain_params = {k: v for k, v in params.items() if k != "input_norm"}
    seg_n = normed.apply({"params": params}, feats, nf)[1]["segment_logits"]
    seg_p = plain.apply({"params": plain_params}, (feats - mean) / std, nf)[1]["segment_logits"]
    np.testing.assert_allclose(seg_n, seg_p, rtol=1e-4, atol=1e-4)
    # Recording 1 alone vs. in the batch with garbage in its padded frames: same scores.
    garbage = feats.copy()
    garbage[1, 160:] = 1e4
    clip_b, aux_b = normed.apply({"params": params}, garbage, nf)
    clip_1, aux_1 = normed.apply({"params": params}, feats[1:, :160], nf[1:])
    np.testing.assert_allclose(clip_b[1], clip_1[0], rtol=1e-5, atol=1e-5)
    s = int(aux_1["segment_mask"][0].sum())
    np.testing.assert_allclose(aux_b["segment_logits"][1, :s], aux_1["segment_logits"][0, :s],
                               rtol=1e-5, atol=1e-5)


def test_optimizer_never_changes_frozen_input_norm():
    params = {"input_norm": {"mean": jnp.full((128,), -40.0), "std": jnp.full((128,), 12.0)},
              "fc2": {"kernel": jnp.ones((3, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)  # even a non-zero gradient must not move them
    for name in ("adam", "adagrad"):
        tx = steps.make_optimizer(name, 0.1, frozen=("input_norm",), clip_norm=1.0,
                                  schedule="cosine", warmup_steps=2, total_steps=10)
        state = tx.init(params)
        p = params
        for _ in range(3):
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        np.testing.assert_array_equal(p["input_norm"]["mean"], params["input_norm"]["mean"])
        np.testing.assert_array_equal(p["input_norm"]["std"], params["input_norm"]["std"])
        assert not np.allclose(p["fc2"]["kernel"], 1.0)


def test_ns_to_nt_carries_input_norm():
    ns = networks.SegmentNet(4, width=0.125, input_norm=True)
    x = jnp.asarray(np.random.default_rng(1).normal(-40, 15, (1, 128, 128)), jnp.float32)
    p = dict(ns.init(jax.random.key(0), x)["params"])
    p["input_norm"] = {"mean": jnp.full((128,), -30.0), "std": jnp.full((128,), 9.0)}
    nt = networks.WLER(4, width=0.125, input_norm=True)
    clip, _ = nt.apply({"params": networks.ns_to_nt_params(p)}, x, jnp.array([128]))
    np.testing.assert_allclose(clip, ns.apply({"params": p}, x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_statistics_round_trip_through_the_workdir_to_every_scoring_path(tmp_path, shared_runs):
    """A smoke run with input_norm=per_band keeps the training split's statistics (unchanged by
    the optimiser) in its checkpoint; predict_fn, chunked scoring and export all apply them."""
    from conftest import tones_and_noise
    from wler_jax import export, predict
    from wler_jax.data import splits
    from wler_jax.training import train
    from wler_jax.configs.common import base_config

    config = base_config("wler", "smoke")
    config.model.input_norm = "per_band"
    config.train.epochs = 1
    config.data.data_dir = shared_runs["data_dir"]
    train.train_and_evaluate(config, str(tmp_path / "work"))
    model = predict.load_model(str(tmp_path / "work"))
    assert model.spec.input_norm
    sources, _, _ = splits.load(config)
    want = input_stats.band_statistics(sources["train"])
    np.testing.assert_array_equal(model.params["input_norm"]["mean"], want["mean"])
    np.testing.assert_array_equal(model.params["input_norm"]["std"], want["std"])

    n = 700 * 512 + 100
    x = tones_and_noise(n, seed=5)
    full = jax.device_get(model.predict_fn(model.params, {"audio": x[None],
                                                          "num_samples": np.array([n])}))
    # The statistics change the scores (so every path below really has to apply them).
    plain = {**model.params, "input_norm": {"mean": jnp.zeros(128), "std": jnp.ones(128)}}
    other = jax.device_get(model.predict_fn(plain, {"audio": x[None], "num_samples": np.array([n])}))
    assert np.abs(other["clip"] - full["clip"]).max() > 1e-3
    chunk = predict.predict_waveform(model, x, chunk_frames=256)
    np.testing.assert_allclose(chunk.clip, full["clip"][0], atol=1e-5)
    loaded = export.load_exported(export.export_model(model, str(tmp_path / "m.jaxexport")))
    np.testing.assert_allclose(np.asarray(loaded(x[None], [n])["clip"]), full["clip"], atol=1e-5)


def test_prior_logits_are_the_logits_of_class_frequencies():
    labels = np.zeros((8, 3), np.float32)
    labels[:2, 0] = 1.0  # p = 0.25
    labels[:, 1] = 1.0  # in every recording: clipped to 1 - 1e-3
    got = input_stats.prior_logits(labels)  # class 2 absent: clipped to 1e-3
    lim = np.log(input_stats.PRIOR_CLIP / (1 - input_stats.PRIOR_CLIP))
    np.testing.assert_allclose(got, [np.log(0.25 / 0.75), -lim, lim], rtol=1e-6)


@pytest.mark.slow
def test_head_bias_init_prior_starts_the_output_bias_at_the_training_prior(tmp_path, shared_runs):
    """With model.head_bias_init=prior the run's output bias starts at the logits of the training
    split's class frequencies (a near-zero learning rate keeps it there for the check)."""
    from wler_jax import predict
    from wler_jax.data import splits
    from wler_jax.training import train
    from wler_jax.configs.common import base_config

    config = base_config("wler", "smoke")
    config.model.head_bias_init = "prior"
    config.train.epochs = 1
    config.train.learning_rate = 1e-9
    config.data.data_dir = shared_runs["data_dir"]
    train.train_and_evaluate(config, str(tmp_path / "work"))
    model = predict.load_model(str(tmp_path / "work"))
    sources, class_names, _ = splits.load(config)
    want = input_stats.prior_logits(
        splits.multi_hot_labels(splits.read_split_table(sources["train"]), len(class_names)))
    assert np.ptp(want) > 0.5  # the smoke set's classes differ in frequency
    np.testing.assert_allclose(model.params["fc2"]["bias"], want, atol=1e-5)
