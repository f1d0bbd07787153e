"""Accelerator code paths, tested on the CPU.

On a GPU or TPU a run takes other code than on the CPU: `resolve_ops` picks the plain XLA
ops ("xla": `nn.Conv`-style convolutions and autodiff of the max pool) instead of the CPU's matmul
kernel gradients and fused pool; float32 convolutions run at the default matmul precision (TF32 on
GPUs, one bfloat16 pass on TPUs) unless told otherwise; runs train in bfloat16; exports target
other platforms. The CPU ignores the precision setting (XLA:CPU computes float32 whatever it is
told), so reduced precision is emulated here by rounding every convolution's inputs
(`lax.reduce_precision`), which also calibrates the tolerances the suite uses off the CPU
(`conftest.float_atol`) and shows that they still catch a real bug.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from wler_jax.model import conv as conv_lib
from wler_jax import export, features, predict
from wler_jax.serving import inference
from wler_jax.model.spec import ModelSpec, OPS, resolve_ops
from wler_jax.training import steps
from wler_jax.geometry import SAMPLE_RATE
from conftest import (ACCELERATOR_ATOL_BF16, ACCELERATOR_ATOL_REDUCED, float_atol,
                      tones_and_noise)

C = 4


def _features(frames=(160, 100), seed=0):
    n = (max(frames) - 1) * 512
    wav = np.zeros((len(frames), n), np.float32)
    for i, f in enumerate(frames):
        wav[i, :(f - 1) * 512] = tones_and_noise((f - 1) * 512, seed=seed + i)
    lengths = np.array([(f - 1) * 512 for f in frames])
    return features.log_mel(wav, lengths, 1024)


def _spec(method, ops, dtype="float32", **kw):
    conv_impl, pool_impl = OPS[ops]
    return ModelSpec(method, C, 0.125, dtype=dtype, dropout_rate=0.0,
                            conv_impl=conv_impl, pool_impl=pool_impl, **kw)


@functools.lru_cache(maxsize=None)
def _loss_and_grads(spec):
    def loss(params, feats, nf, labels):
        value, _ = steps.feature_loss(spec, params, feats, nf, labels, jnp.ones(len(nf)),
                                      jax.random.key(3), slat_hop=128)
        seg, mask, _ = spec.segment_logits(params, feats, nf)
        return value, (seg, mask)
    return jax.jit(jax.value_and_grad(loss, has_aux=True))


# bfloat16 compute: loss gradients of either op implementation are 3-7 % (of the largest
# element) away from float32's (measured at width 0.125); a dropped or mis-cast term is not.
BF16_GRAD_ATOL = 0.1


def _assert_trees_close(got, want, *, rtol, atol_scale):
    for path, a in jax.tree_util.tree_leaves_with_path(want):
        b = got
        for key in path:
            b = b[key.key]
        assert a.dtype == b.dtype == jnp.float32, jax.tree_util.keystr(path)
        s = float(jnp.abs(a).max()) + 1e-12
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol_scale * s,
                                   err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("method", ["wler", "slat"])
def test_accelerator_ops_match_cpu_ops(method, dtype):
    """op_impl "xla" (what GPUs and TPUs run) against "cpu": the same forward and the same loss
    gradients within rounding; in bfloat16 the same forward and both gradients within bfloat16's
    precision of float32's; params, scores and gradients stay float32."""
    feats, nf = _features()
    labels = jnp.asarray([[1, 0, 0, 1], [0, 1, 0, 0]], jnp.float32)
    bf16 = dtype == "bfloat16"
    specs = {ops: _spec(method, ops, dtype) for ops in ("xla", "cpu")}
    params = specs["xla"].init(jax.random.key(0))
    assert resolve_ops("auto", [type("D", (), {"platform": "gpu"})()]) == "xla"
    out = {ops: _loss_and_grads(s)(params, feats, nf, labels) for ops, s in specs.items()}
    (lx, (seg_x, mask_x)), gx = out["xla"]
    (lc, (seg_c, mask_c)), gc = out["cpu"]
    assert seg_x.dtype == jnp.float32 and np.array_equal(mask_x, mask_c)
    scale = float(jnp.abs(seg_x).max())
    np.testing.assert_allclose(seg_c, seg_x, rtol=0,
                               atol=float_atol(0.0 if bf16 else 1e-6, bf16=bf16) * scale)
    np.testing.assert_allclose(lc, lx, rtol=float_atol(1e-5, bf16=bf16))
    if not bf16:
        _assert_trees_close(gc, gx, rtol=1e-4, atol_scale=float_atol(1e-5))
        return
    (l32, (seg32, _)), g32 = _loss_and_grads(_spec(method, "xla"))(params, feats, nf, labels)
    np.testing.assert_allclose(seg_x, seg32, atol=0.05 * float(jnp.abs(seg32).max()))
    for g in (gx, gc):
        _assert_trees_close(g, g32, rtol=0, atol_scale=BF16_GRAD_ATOL)


def _random_params(spec, seed=0):
    """test_predict's random model: kernels 1.5 / sqrt(fan_in), biases 0.1 (spread-out scores)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if "kernel" in jax.tree_util.keystr(path):
            fan_in = int(np.prod(leaf.shape[:-1]))
            return (rng.standard_normal(leaf.shape) * 1.5 / np.sqrt(fan_in)).astype(np.float32)
        return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(spec.init, jax.random.key(0)))


def _predict_with_conv(spec, params, batch, conv_fn):
    """`inference.predict` freshly traced with every convolution replaced by `conv_fn`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_lib, "_lax_conv", conv_fn)
        fn = jax.jit(functools.partial(inference.predict.__wrapped__, spec))
        return jax.device_get(fn(params, batch))


def _rounded_conv(mantissa_bits):
    def conv(x, kernel, padding):  # what a GPU's TF32 / a TPU's bf16 pass does to the inputs
        x, kernel = (lax.reduce_precision(a, exponent_bits=8, mantissa_bits=mantissa_bits)
                     for a in (x, kernel))
        return lax.conv_general_dilated(x, kernel, (1, 1), padding, precision="highest",
                                        dimension_numbers=conv_lib._DIMENSION_NUMBERS)
    return conv


def test_reduced_precision_tolerance_is_calibrated_and_catches_bugs():
    """Scores with every conv input rounded to TF32 / bfloat16 (the accelerators' default float32
    precision) stay within the suite's reduced-precision tolerance; a conv kernel flipped in time
    (a typical hand-written-kernel bug) or a valid-length mask one frame short does not."""
    spec = _spec("wler", "xla")
    params = _random_params(spec)
    n = 3 * SAMPLE_RATE
    wav = np.stack([tones_and_noise(n, 1), tones_and_noise(n, 2)])
    batch = {"audio": wav, "num_samples": np.array([n, n // 2])}
    ref = _predict_with_conv(spec, params, batch, conv_lib._lax_conv)
    mask = ref["segment_mask"]

    def gap(out):
        return max(np.abs(out["clip"] - ref["clip"]).max(),
                   np.abs(out["segments"][mask] - ref["segments"][mask]).max())

    tf32 = gap(_predict_with_conv(spec, params, batch, _rounded_conv(10)))
    bf16 = gap(_predict_with_conv(spec, params, batch, _rounded_conv(7)))
    print(f"score gaps: TF32 {tf32:.2e}, bf16 {bf16:.2e}")
    assert 0 < tf32 < bf16 < ACCELERATOR_ATOL_REDUCED
    plain = conv_lib._lax_conv
    flipped = gap(_predict_with_conv(spec, params, batch,
                                     lambda x, k, p: plain(x, k[::-1], p)))
    assert flipped > 4 * ACCELERATOR_ATOL_REDUCED
    short = jax.device_get(inference.predict(spec, params, {**batch, "num_samples": np.array(
        [n, n // 2 - 512])}))  # the second recording one frame shorter: its masks move
    assert np.abs(short["clip"][1] - ref["clip"][1]).max() > 1e-4


def test_float_atol_follows_platform_and_precision(monkeypatch):
    assert float_atol(1e-6) == 1e-6 or jax.default_backend() != "cpu"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with jax.default_matmul_precision("highest"):
        assert float_atol(1e-6) == 1e-4 and float_atol(1e-3) == 1e-3
        assert float_atol(0.0, bf16=True) == ACCELERATOR_ATOL_BF16
    with jax.default_matmul_precision("tensorfloat32"):
        assert float_atol(1e-6) == ACCELERATOR_ATOL_REDUCED
    with jax.default_matmul_precision("default"):
        assert float_atol(1e-6) == ACCELERATOR_ATOL_REDUCED


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from test_predict import make_workdir
    return predict.load_model(make_workdir(tmp_path_factory.mktemp("accel_workdir"), seed=6))


def test_export_for_accelerators_from_the_cpu(model, tmp_path):
    """An export made here for ("cpu", "cuda", "tpu") lowers for every platform (no CPU-only
    op in the model), records them, and runs here with predict_fn's scores. The default is the
    CPU plus the exporting backend (a GPU session's file runs on its GPU)."""
    path = export.export_model(model, str(tmp_path / "m.jaxexport"),
                               platforms=("cpu", "cuda", "tpu"))
    loaded = export.load_exported(path)
    assert loaded.info["platforms"] == ["cpu", "cuda", "tpu"]
    assert tuple(loaded.exported.platforms) == ("cpu", "cuda", "tpu")
    n = 2 * SAMPLE_RATE
    wav = tones_and_noise(n, seed=60)[None]
    got = jax.device_get(loaded(wav, [n]))
    ref = jax.device_get(model.predict_fn(model.params, {"audio": wav,
                                                         "num_samples": np.array([n])}))
    np.testing.assert_allclose(got["clip"], ref["clip"], atol=float_atol(1e-5))
    default = export.load_exported(export.export_model(model, str(tmp_path / "d.jaxexport")))
    assert default.info["platforms"] == list(dict.fromkeys(
        ["cpu", jax.export.default_export_platform()]))
