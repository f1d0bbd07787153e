"""`conv.Conv` equals `flax.linen.Conv` forward, and its custom-VJP gradients equal autodiff's."""
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_wler_gradients_match, float_atol, run_on_4_cpu_devices
from wler_jax.model import conv

# (name, batch, height, width, c_in, c_out, kernel, padding)
CASES = [
    ("3x3_same", 2, 12, 10, 5, 8, (3, 3), "SAME"),
    ("3x3_same_odd", 3, 7, 5, 3, 6, (3, 3), "SAME"),
    ("3x3_same_one_channel", 2, 9, 16, 1, 8, (3, 3), "SAME"),
    ("4x4_valid", 2, 9, 4, 16, 8, (4, 4), "VALID"),
    ("4x4_valid_odd", 1, 6, 5, 3, 7, (4, 4), "VALID"),
    ("1x1", 2, 11, 1, 8, 5, (1, 1), "SAME"),
    ("2x3_explicit_pads", 2, 6, 7, 4, 3, (2, 3), ((1, 0), (2, 1))),
]


def _setup(b, h, w, cin, cout, ksize, padding, dtype=None):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, h, w, cin)), jnp.float32)
    ref = nn.Conv(cout, ksize, padding=padding, dtype=dtype)
    params = ref.init(jax.random.key(1), x)
    params = jax.tree.map(lambda a: a + 0.1 * jnp.asarray(rng.standard_normal(a.shape),
                                                          a.dtype), params)  # nonzero bias
    return x, ref, params


def _grads(module, params, x):
    out_shape = jax.eval_shape(module.apply, params, x).shape
    probe = jnp.asarray(np.random.default_rng(2).standard_normal(out_shape), jnp.float32)

    def loss(p, x):
        return (module.apply(p, x).astype(jnp.float32) * probe).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_flax_conv(case):
    _, b, h, w, cin, cout, ksize, padding = case
    x, ref, params = _setup(b, h, w, cin, cout, ksize, padding)
    mine = conv.Conv(cout, ksize, padding=padding, impl="matmul_grad")
    # Same parameter tree (names, shapes, dtypes) as nn.Conv.
    mine_params = mine.init(jax.random.key(1), x)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), mine_params) == \
        jax.tree.map(lambda a: (a.shape, a.dtype), params)
    np.testing.assert_allclose(mine.apply(params, x), ref.apply(params, x), rtol=1e-6, atol=1e-6)
    (gp, gx), (rp, rx) = _grads(mine, params, x), _grads(ref, params, x)
    np.testing.assert_allclose(gx, rx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gp["params"]["kernel"], rp["params"]["kernel"], rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(gp["params"]["bias"], rp["params"]["bias"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("chunk_rows", [None, 1, 3, 4, 10, 100])
def test_kernel_grad_chunks_agree(chunk_rows):
    # 10 output rows: chunks of 1, 3 (3 full + a remainder of 1), 4 (2 + 2), 10 / 100 (one).
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 10, 8, 6)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((2, 10, 8, 4)), jnp.float32)
    pads = ((1, 1), (1, 1))
    want = jax.vjp(lambda k: conv._lax_conv(x, k, pads), jnp.zeros((3, 3, 6, 4)))[1](dy)[0]
    got = jax.jit(lambda x, dy: conv.kernel_grad(x, dy, (3, 3), pads, chunk_rows=chunk_rows))(
        x, dy)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute():
    x, _, params = _setup(2, 12, 10, 5, 8, (3, 3), "SAME", dtype=jnp.bfloat16)
    ref = nn.Conv(8, (3, 3), padding="SAME", dtype=jnp.bfloat16)
    mine = conv.Conv(8, (3, 3), padding="SAME", dtype=jnp.bfloat16, impl="matmul_grad")
    y = mine.apply(params, x)
    assert y.dtype == jnp.bfloat16
    want = ref.apply(params, x)
    # Bit-equal on the CPU (the same lax conv); elsewhere two programs may round an output to
    # the neighbouring bfloat16 value (another conv algorithm).
    y_scale = float(jnp.abs(want.astype(jnp.float32)).max())
    np.testing.assert_allclose(y.astype(jnp.float32), want.astype(jnp.float32), rtol=0,
                               atol=float_atol(0.0, bf16=True) * y_scale)
    (gp, gx), (rp, rx) = _grads(mine, params, x), _grads(ref, params, x)
    assert gp["params"]["kernel"].dtype == jnp.float32 and gx.dtype == jnp.float32
    scale = float(jnp.abs(rp["params"]["kernel"]).max())
    np.testing.assert_allclose(gp["params"]["kernel"], rp["params"]["kernel"], atol=2e-2 * scale)
    # The same lax VJP: the same rounding on the CPU; elsewhere bfloat16 ulps of the largest.
    gx_scale = 1.0 if float_atol(0.0) == 0.0 else float(jnp.abs(rx).max())
    np.testing.assert_allclose(gx, rx, rtol=1e-6, atol=float_atol(1e-6, bf16=True) * gx_scale)


def test_vmap_and_impl_choice():
    x, ref, params = _setup(2, 6, 6, 3, 4, (3, 3), "SAME")
    mine = conv.Conv(4, (3, 3), impl="matmul_grad")

    def loss(p, xi, m):
        return (m.apply(p, xi[None]) ** 2).sum()

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, None))
    got, want = per_example(params, x, mine), per_example(params, x, ref)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)
    assert conv.resolve_impl("matmul_grad_wide", 96, 128) == "matmul_grad"
    assert conv.resolve_impl("matmul_grad_wide", 1, 96) == "xla"  # conv1: no measurable gain
    assert conv.resolve_impl("matmul_grad_wide", 16, 32) == "xla"  # thin: XLA's own gradient
    assert conv.resolve_impl("xla", 96, 128) == "xla"
    assert conv.resolve_impl("matmul_grad", 1, 8) == "matmul_grad"
    with pytest.raises(ValueError, match="impl"):
        conv.resolve_impl("cudnn")
    with pytest.raises(ValueError, match="impl"):
        conv.resolve_impl("auto")  # chosen once per run (spec.resolve_ops), never here


def test_wler_train_gradient_matches_plain_conv():
    # attention pooling: its 1x1 conv is covered too.
    assert_wler_gradients_match(dict(num_classes=5, width=0.125, pooling="attention"),
                                dict(conv_impl="matmul_grad"), dict(conv_impl="xla"))


SHARDED_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from wler_jax.model import conv
    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 12, 10, 6)), jnp.float32)
    layer = conv.Conv(8, (3, 3), impl="matmul_grad")
    params = layer.init(jax.random.key(0), x)
    loss = lambda p, x: (layer.apply(p, x) ** 2).sum()
    want = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    ps = jax.device_put(params, NamedSharding(mesh, P()))
    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(ps, xs)
    assert len(got[1].sharding.device_set) == 4
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4), got, want)
    print("OK")
""")


def test_matmul_grad_under_a_data_sharded_mesh():
    run_on_4_cpu_devices(SHARDED_SCRIPT)
