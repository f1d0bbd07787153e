"""The paper's networks: parameter counts, N_S -> N_T conversion, masked pooling exactness."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import features, geometry

from wler_jax.model import networks
from wler_jax.model.spec import ModelSpec

from wler_jax.model import pooling
from conftest import TEST_WIDTH, float_atol, tones_and_noise

C = 10
# Measured (seed 0, width 0.25, tones-and-noise input, 1280 frames): the largest gap between N_T's
# segment k and N_S on the isolated window [32k, 32k + 128), relative to the largest |logit|.
# Interior segments differ because N_T's receptive field (190 frames) reaches real neighbours
# where N_S sees zero padding. Documented in docs/results.md, "Exactness".
NT_VS_NS_REL_BOUND = 0.3  # measured 0.257


def realistic_features(num_frames: int, seed: int = 0) -> np.ndarray:
    n = (num_frames - 1) * 512
    feats, _ = features.log_mel(tones_and_noise(n, seed)[None], np.array([n]), 1024)
    assert feats.shape[1] == num_frames
    return np.asarray(feats)


def test_paper_width_parameter_counts():
    """Conv stack + heads at the paper's widths: N_S and N_T have identical parameter counts."""
    x = jnp.zeros((1, 128, 128))
    ns = jax.eval_shape(networks.SegmentNet(C).init, jax.random.key(0), x)
    nt = jax.eval_shape(networks.WLER(C).init, jax.random.key(0), x, jnp.array([128]))
    convs = (9 * 1 * 96 + 96) + (9 * 96 * 128 + 128) + (9 * 128 * 128 + 128) \
        + (9 * 128 * 256 + 256) + (9 * 256 * 256 + 256)
    heads = (16 * 256 * 256 + 256) + (256 * C + C)
    assert networks.num_params(ns) == networks.num_params(nt) == convs + heads == 2_195_914


def test_width_scales_channels():
    params = jax.eval_shape(networks.WLER(C, width=0.25).init, jax.random.key(0),
                            jnp.zeros((1, 128, 128)), jnp.array([128]))
    assert params["params"]["conv_stack"]["conv1"]["kernel"].shape == (3, 3, 1, 24)
    assert params["params"]["conv_stack"]["conv5"]["kernel"].shape == (3, 3, 64, 64)
    assert params["params"]["fc1"]["kernel"].shape == (4, 4, 64, 64)


@pytest.fixture(scope="module")
def ns_and_nt():
    ns = networks.SegmentNet(C, width=TEST_WIDTH)
    ns_params = ns.init(jax.random.key(0), jnp.zeros((1, 128, 128)))
    # Non-zero biases so that the conversion of every tensor is exercised.
    ns_params = jax.tree.map(lambda a: a + 0.01 * jnp.sign(a + 1e-3), ns_params)
    return ns, ns_params, networks.WLER(C, width=TEST_WIDTH), networks.ns_to_nt_params(ns_params)


def test_converted_nt_equals_ns_on_128_frames(ns_and_nt):
    ns, ns_params, nt, nt_params = ns_and_nt
    x = jnp.asarray(np.concatenate([realistic_features(128, s) for s in range(3)]))
    want = ns.apply(ns_params, x)
    clip, aux = nt.apply(nt_params, x, jnp.full((3,), 128))
    assert aux["segment_logits"].shape == (3, 1, C)
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(aux["segment_logits"][:, 0], want, atol=float_atol(1e-5) * scale,
                               rtol=0)
    np.testing.assert_allclose(clip, want, atol=float_atol(1e-5) * scale, rtol=0)


def test_nt_segments_vs_ns_windows_on_1280_frames(ns_and_nt):
    ns, ns_params, nt, nt_params = ns_and_nt
    x = realistic_features(1280)
    _, aux = nt.apply(nt_params, jnp.asarray(x), jnp.array([1280]))
    seg = np.asarray(aux["segment_logits"][0])
    windows = np.stack([x[0, 32 * k: 32 * k + 128] for k in range(37)])
    per_window = np.asarray(ns.apply(ns_params, jnp.asarray(windows)))
    gap = np.abs(seg - per_window).max() / np.abs(per_window).max()
    print(f"N_T vs N_S on 1280 frames: max relative gap {gap:.4f} (first segment "
          f"{np.abs(seg[0] - per_window[0]).max() / np.abs(per_window).max():.4f})")
    assert gap < NT_VS_NS_REL_BOUND
    assert gap > 1e-4  # they are not identical: N_T sees real neighbours (docs/design.md §2)


def test_nt_segment_sees_exactly_its_receptive_field(ns_and_nt):
    """N_T's segment k is N_S's head on the conv stack's view of frames [32k - 31, 32k + 159)
    (the 190-frame receptive field that `chunked` relies on): frames outside it never change
    segment k, frames at either end of it do."""
    _, _, nt, nt_params = ns_and_nt
    x = realistic_features(1280)
    score = jax.jit(lambda f: nt.apply(nt_params, f, jnp.array([1280]))[1]["segment_logits"][0])
    seg = np.asarray(score(jnp.asarray(x)))
    rng = np.random.default_rng(3)
    for k in (5, 17, 30):
        lo, hi = 32 * k - 31, 32 * k + 159
        outside = x.copy()
        outside[0, :lo] = rng.uniform(-100, 0, outside[0, :lo].shape)
        outside[0, hi:] = rng.uniform(-100, 0, outside[0, hi:].shape)
        got = np.asarray(score(jnp.asarray(outside)))
        np.testing.assert_allclose(got[k], seg[k], rtol=1e-5, atol=float_atol(1e-5))
        assert np.abs(got[k - 1] - seg[k - 1]).max() > 1e-3  # its neighbours do see the change
        for edge in (slice(lo, lo + 2), slice(hi - 2, hi)):
            inside = x.copy()
            inside[0, edge] = rng.uniform(-100, 0, inside[0, edge].shape)
            assert np.abs(np.asarray(score(jnp.asarray(inside)))[k] - seg[k]).max() > 1e-6, edge
    # Hence away from the recording's edges a constant input gives identical segments.
    const = np.asarray(score(jnp.full((1, 1280, 128), -30.0)))
    np.testing.assert_allclose(const[1:-1], np.broadcast_to(const[1:-1].mean(0),
                                                            const[1:-1].shape), atol=1e-4)


@pytest.mark.parametrize("name", sorted(pooling.POOLINGS))
def test_padding_values_never_change_scores(name):
    model = networks.WLER(C, width=TEST_WIDTH, pooling=name)
    lengths = np.array([100, 700, 1280, 130])
    x = np.concatenate([realistic_features(1280, s) for s in range(4)])  # [4, 1280, 128]
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]), jnp.array([1280]))
    if name == "auto_pool":
        params = jax.tree.map(lambda a: a, params)
        params["params"]["alpha"] = jnp.linspace(0.5, 4.0, C)
    apply = jax.jit(model.apply)
    clip, aux = apply(params, jnp.asarray(x), jnp.asarray(lengths))
    garbage = x.copy()
    rng = np.random.default_rng(0)
    for i, t in enumerate(lengths):
        garbage[i, t:] = rng.choice([1e6, -1e6, 0.0, 55.0]) + 100 * rng.standard_normal(
            garbage[i, t:].shape)
    clip_g, aux_g = apply(params, jnp.asarray(garbage), jnp.asarray(lengths))
    mask = np.asarray(aux["segment_mask"])
    np.testing.assert_array_equal(mask, geometry.segment_mask(lengths, 1280))
    np.testing.assert_allclose(clip_g, clip, rtol=1e-5, atol=float_atol(1e-5))
    seg, seg_g = np.asarray(aux["segment_logits"]), np.asarray(aux_g["segment_logits"])
    np.testing.assert_allclose(seg_g[mask], seg[mask], rtol=1e-5, atol=float_atol(1e-5))
    # Each recording pools in the batch exactly as it pools alone, at its own length.
    for i, t in enumerate(lengths):
        alone_clip, alone_aux = model.apply(params, jnp.asarray(x[i:i + 1, :t]), jnp.array([t]))
        np.testing.assert_allclose(clip[i], alone_clip[0], rtol=1e-4, atol=float_atol(1e-4))
        s = geometry.num_segments(t)
        np.testing.assert_allclose(seg[i, :s], alone_aux["segment_logits"][0], rtol=1e-4,
                                   atol=float_atol(1e-4))


def test_max_pooling_is_max_of_valid_segments():
    seg = jax.random.normal(jax.random.key(0), (3, 5, 2)) * 5
    mask = jnp.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    out = pooling.max_pool(seg, mask)
    for i in range(3):
        np.testing.assert_allclose(out[i], seg[i][np.asarray(mask[i])].max(0))


def test_pooling_reference_values():
    """Each probability-space pooling against a direct numpy formula on the valid segments."""
    rng = np.random.default_rng(0)
    seg = rng.normal(size=(2, 6, 3)).astype(np.float32) * 3
    att = rng.normal(size=(2, 6, 3)).astype(np.float32)
    alpha = np.array([0.0, 1.0, 5.0], np.float32)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    sig = lambda z: 1 / (1 + np.exp(-z))
    for b in range(2):
        p = sig(seg[b][mask[b]])
        a = att[b][mask[b]]
        sm = lambda s: np.exp(s - s.max(0)) / np.exp(s - s.max(0)).sum(0)
        want = {
            "mean": p.mean(0), "linear_softmax": (p ** 2).sum(0) / p.sum(0),
            "exp_softmax": (p * np.exp(p)).sum(0) / np.exp(p).sum(0),
            "attention": (p * sm(a)).sum(0), "auto_pool": (p * sm(alpha * p)).sum(0),
        }
        for name, w in want.items():
            got = pooling.get(name)(jnp.asarray(seg), jnp.asarray(mask),
                                    attention_logits=jnp.asarray(att), alpha=jnp.asarray(alpha))
            np.testing.assert_allclose(sig(np.asarray(got[b], np.float64)), w, rtol=1e-4, err_msg=name)
    with pytest.raises(ValueError, match="unknown pooling"):
        pooling.get("median")


def test_dropout_only_in_training():
    model = networks.WLER(C, width=TEST_WIDTH)
    x = jnp.asarray(realistic_features(256))
    params = model.init(jax.random.key(0), x, jnp.array([256]))
    a = model.apply(params, x, jnp.array([256]))[0]
    b = model.apply(params, x, jnp.array([256]))[0]
    np.testing.assert_array_equal(a, b)
    c = model.apply(params, x, jnp.array([256]), train=True, rngs={"dropout": jax.random.key(1)})[0]
    assert np.abs(np.asarray(c) - np.asarray(a)).max() > 1e-4


@pytest.mark.parametrize("pooling_name", ["max", "attention", "auto_pool"])
def test_model_spec_serves_wler_and_slat_alike(pooling_name):
    """`ModelSpec` is the family's one entry: init, segment logits (N_W's segments, or N_S on each
    32-hop window), the method's pooling and the training logits, with no caller branching."""
    x = jnp.asarray(np.concatenate([realistic_features(300, s) for s in range(2)]))
    nf = jnp.array([300, 200])
    wler = ModelSpec("wler", C, TEST_WIDTH, pooling=pooling_name)
    slat = ModelSpec("slat", C, TEST_WIDTH)
    for spec in (wler, slat):
        params = spec.init(jax.random.key(0))
        want = spec.module().init(jax.random.key(0), x[:1, :128], jnp.array([128]))["params"] \
            if spec.method == "wler" else spec.module().init(jax.random.key(0), x[:1, :128])["params"]
        jax.tree.map(np.testing.assert_array_equal, params, want)
        seg, mask, extras = spec.segment_logits(params, x, nf)
        assert seg.shape == (2, geometry.num_segments(300), C) and seg.dtype == jnp.float32
        np.testing.assert_array_equal(mask, geometry.segment_mask(nf, 300))
        clip = spec.clip_logits(params, seg, mask, extras)
        logits, valid = spec.training_logits(params, x, nf, rngs={"dropout": jax.random.key(1)},
                                             slat_hop=128)
        if spec.method == "wler":  # N_W's own pooled output
            want_clip, aux = spec.module().apply({"params": params}, x, nf)
            np.testing.assert_allclose(clip, want_clip, rtol=1e-6, atol=float_atol(1e-6))
            assert set(extras) == ({"attention_logits"} if pooling_name == "attention" else set())
            assert logits.shape == (2, 1, C) and valid.all()
        else:  # N_S on each window; the clip is the best valid window
            wins = np.stack([np.asarray(x[1, 32 * k: 32 * k + 128]) for k in range(3)])
            np.testing.assert_allclose(seg[1, :3], spec.module().apply({"params": params}, wins),
                                       rtol=1e-5, atol=float_atol(1e-5))
            np.testing.assert_allclose(clip, np.where(mask[..., None], seg, -np.inf).max(1),
                                       rtol=1e-6, atol=float_atol(0.0))
            assert logits.shape == (2, 2, C)  # hop 128: windows [0, 128), [128, 256)
            np.testing.assert_array_equal(valid, [[True, True], [True, False]])
