"""The fused conv1 block (Pallas, interpret mode on the CPU) equals the plain path: forward,
gradients (first-maximum routing, as the "fused" pool), bfloat16, ties, odd sizes, channel
tiles, and the WLER network with masked recordings and the same parameter tree."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax.model import conv1_pallas

from wler_jax.model import networks
from wler_jax.model.spec import ModelSpec, resolve_conv1
from wler_jax.configs.common import base_config
from conftest import assert_wler_gradients_match, float_atol


def _inputs(b, t, f, c, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(np.clip(rng.normal(-45, 18, (b, t, f)), -100, 0), dtype)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 1, c)) / 3, dtype)
    bias = jnp.asarray(rng.standard_normal(c) * 10, dtype)
    return x, kernel, bias


def _grads(fn, x, kernel, bias, probe):
    def loss(x, k, b):
        return (fn(x, k, b).astype(jnp.float32) * probe).sum()
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, kernel, bias)


def fused(block_rows):
    return lambda x, k, b: conv1_pallas.conv1_block(x, k, b, block_rows, True)


def plain(x, k, b):  # the reference, with the fused pool's gradient semantics (first maximum)
    return conv1_pallas.plain_conv1_block(x, k, b, "xla", "fused")


# (batch, time, mel, channels, pooled rows per program): whole tiles, a partial last tile and
# odd time / mel sizes (trailing row / column dropped by the pool), channels over one block.
CASES = [(2, 32, 16, 8, 8), (1, 37, 15, 12, 4), (1, 20, 8, 136, 8)]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_forward_and_gradients_equal_the_plain_path(case):
    b, t, f, c, rows = case
    x, kernel, bias = _inputs(b, t, f, c)
    want = plain(x, kernel, bias)
    got = jax.jit(fused(rows))(x, kernel, bias)
    assert got.shape == want.shape == (b, t // 2, f // 2, c) and got.dtype == x.dtype
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=float_atol(1e-6) * scale)  # 9-tap order
    probe = jnp.asarray(np.random.default_rng(1).standard_normal(want.shape), jnp.float32)
    for g, r, name in zip(_grads(fused(rows), x, kernel, bias, probe),
                          _grads(plain, x, kernel, bias, probe), ("x", "kernel", "bias")):
        assert g.dtype == r.dtype and g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=float_atol(1e-5) * float(
            jnp.abs(r).max()), err_msg=name)


def test_bfloat16():
    x, kernel, bias = _inputs(2, 32, 16, 8, jnp.bfloat16)
    want, got = plain(x, kernel, bias), jax.jit(fused(8))(x, kernel, bias)
    assert got.dtype == jnp.bfloat16
    scale = float(jnp.abs(want.astype(jnp.float32)).max())
    # Accumulated in float32, rounded once to bfloat16, as XLA's convolution: equal or one ulp.
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), rtol=0,
                               atol=float_atol(2 ** -8, bf16=True) * scale)
    probe = jnp.asarray(np.random.default_rng(2).standard_normal(want.shape), jnp.float32)
    for g, r, name in zip(_grads(fused(8), x, kernel, bias, probe),
                          _grads(plain, x, kernel, bias, probe), ("x", "kernel", "bias")):
        assert g.dtype == jnp.bfloat16, name
        r = r.astype(jnp.float32)
        np.testing.assert_allclose(g.astype(jnp.float32), r, rtol=0,
                                   atol=2e-2 * float(jnp.abs(r).max()), err_msg=name)


def test_ties_route_to_the_first_maximum():
    """A constant input gives equal conv values in every window: each live window's gradient
    goes to its first position (as the fused pool and PyTorch), none where the ReLU cuts."""
    x = jnp.full((1, 16, 8), -20.0)
    _, kernel, _ = _inputs(1, 16, 8, 4)
    bias = jnp.array([300.0, -300.0, 50.0, 0.0])  # live, dead, live, depends on the conv value
    probe = jnp.asarray(np.random.default_rng(3).standard_normal((1, 8, 4, 4)), jnp.float32)
    got = _grads(fused(4), x, kernel, bias, probe)
    want = _grads(plain, x, kernel, bias, probe)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-3)
    assert float(got[2][1]) == 0.0  # the dead channel's bias gradient


def test_wler_with_masked_recordings_matches_plain_conv1():
    """The whole network (lengths 160 and 90: conv inputs masked, dropout on): same parameter
    tree, same scores, loss gradients equal to the plain conv1's."""
    kwargs = dict(num_classes=5, width=0.125)
    assert_wler_gradients_match(kwargs, dict(conv1_impl="pallas_interpret"),
                                dict(conv1_impl="plain", pool_impl="fused"))
    x = jnp.asarray(np.random.default_rng(5).normal(-45, 18, (2, 160, 128)), jnp.float32)
    nf = jnp.array([160, 90])
    pallas_net = networks.WLER(**kwargs, conv1_impl="pallas_interpret")
    plain_net = networks.WLER(**kwargs)
    params = plain_net.init(jax.random.key(0), x, nf)
    assert jax.tree.structure(pallas_net.init(jax.random.key(0), x, nf)) == \
        jax.tree.structure(params)
    a, b = pallas_net.apply(params, x, nf)[1], plain_net.apply(params, x, nf)[1]
    np.testing.assert_allclose(a["segment_logits"], b["segment_logits"], rtol=1e-5,
                               atol=float_atol(1e-5) * float(jnp.abs(b["segment_logits"]).max()))


def test_config_choice():
    class D:
        def __init__(self, platform):
            self.platform = platform
    config = base_config("wler", "smoke")
    assert config.model.conv1_impl == "plain"  # default off until timed on a GPU
    assert ModelSpec.from_config(config, 3, devices=[D("gpu")]).conv1_impl == "plain"
    config.model.conv1_impl = "pallas"
    assert ModelSpec.from_config(config, 3, devices=[D("gpu")]).conv1_impl == "pallas"
    assert ModelSpec.from_config(config, 3, devices=[D("cpu")]).conv1_impl == \
        "pallas_interpret"
    with pytest.raises(ValueError, match="conv1_impl"):
        resolve_conv1("triton")


@pytest.mark.skipif(jax.default_backend() == "cpu", reason="compiled Pallas needs a GPU or TPU")
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_compiled_kernel_on_the_accelerator(dtype):
    """The kernel compiled for this GPU / TPU (not interpreted), at the paper's conv1 width and
    a bucket's length: forward and gradients as the plain path."""
    x, kernel, bias = _inputs(4, 256, 128, 96, dtype)
    want = plain(x, kernel, bias)
    got = jax.jit(lambda x, k, b: conv1_pallas.conv1_block(x, k, b))(x, kernel, bias)
    bf16 = dtype == jnp.bfloat16
    scale = float(jnp.abs(want.astype(jnp.float32)).max())
    np.testing.assert_allclose(got.astype(jnp.float32), want.astype(jnp.float32), rtol=0,
                               atol=float_atol(1e-6, bf16=bf16) * scale)
    probe = jnp.asarray(np.random.default_rng(1).standard_normal(want.shape), jnp.float32)
    compiled = lambda x, k, b: conv1_pallas.conv1_block(x, k, b)
    for g, r, name in zip(_grads(compiled, x, kernel, bias, probe),
                          _grads(plain, x, kernel, bias, probe), ("x", "kernel", "bias")):
        r = r.astype(jnp.float32)
        np.testing.assert_allclose(g.astype(jnp.float32), r, rtol=0, atol=(
            2e-2 if bf16 else float_atol(1e-5)) * float(jnp.abs(r).max()), err_msg=name)
