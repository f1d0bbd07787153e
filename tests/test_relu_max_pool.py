"""`relu_max_pool.relu_max_pool_2x2` equals `relu_max_pool.max_pool_2x2(nn.relu(x + bias))`
forward, and its custom-VJP gradient equals autodiff's where no window has tied maxima (first
maximum on ties)."""
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_wler_gradients_match, run_on_4_cpu_devices
from wler_jax.model import relu_max_pool as pool

SHAPES = [(2, 8, 6, 5), (3, 7, 5, 4), (1, 9, 9, 1), (2, 2, 2, 3)]  # odd rows / columns dropped


def _plain(x, bias=None):
    return pool.max_pool_2x2(nn.relu(x if bias is None else x + bias))


def _data(shape, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), dtype)  # continuous: no ties
    bias = jnp.asarray(0.3 * rng.standard_normal(shape[-1]), dtype)
    probe_shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
    probe = jnp.asarray(rng.standard_normal(probe_shape), jnp.float32)
    return x, bias, probe


def _grads(fn, x, bias, probe):
    def loss(x, b):
        return (fn(x, b).astype(jnp.float32) * probe).sum()

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, bias)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_and_gradients_match_autodiff(shape, with_bias):
    x, bias, probe = _data(shape)
    b = bias if with_bias else None
    want = _plain(x, b)
    for impl in pool.IMPLS:  # ("xla", "fused"); the run picks one (spec.resolve_ops)
        np.testing.assert_array_equal(pool.relu_max_pool_2x2(x, b, impl), want)
        np.testing.assert_array_equal(jax.jit(pool.relu_max_pool_2x2, static_argnums=2)(
            x, b, impl), want)
    # The forward rule (used under differentiation) gives the same values too.
    y, _ = jax.vjp(lambda x: pool.relu_max_pool_2x2(x, b, "fused"), x)
    np.testing.assert_array_equal(y, want)
    y, _ = jax.jit(lambda x: pool._forward(x, b))(x)
    np.testing.assert_array_equal(y, want)
    if not with_bias:
        gx = jax.jit(jax.grad(lambda x: (pool.relu_max_pool_2x2(x, None, "fused") * probe).sum()))(x)
        rx = jax.jit(jax.grad(lambda x: (_plain(x) * probe).sum()))(x)
        np.testing.assert_allclose(gx, rx, rtol=1e-6, atol=1e-6)
        return
    got = _grads(lambda x, b: pool.relu_max_pool_2x2(x, b, "fused"), x, bias, probe)
    ref = _grads(_plain, x, bias, probe)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-5, atol=1e-5)


def test_ties_go_to_the_first_maximum():
    # One example, 4 x 4 x 1: four windows.
    x = jnp.array([[3.0, 3.0, -1.0, -2.0],    # window (0, 0): 3, 3 / 1, 3 -> first (0, 0)
                   [1.0, 3.0, -3.0, -4.0],    # window (0, 1): all negative -> no gradient
                   [0.0, 0.0, 2.0, 1.0],      # window (1, 0): max 0 (ReLU cut) -> none
                   [-1.0, 0.0, 5.0, 5.0]])[None, :, :, None]  # (1, 1): 2, 1 / 5, 5 -> (1, 0)
    dy = jnp.array([[10.0, 20.0], [30.0, 40.0]])[None, :, :, None]
    y, vjp = jax.vjp(lambda x: pool.relu_max_pool_2x2(x, None, "fused"), x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[3.0, 0.0], [0.0, 5.0]])
    (dx,) = vjp(dy)
    want = np.zeros((4, 4))
    want[0, 0] = 10.0
    want[3, 2] = 40.0
    np.testing.assert_array_equal(dx[0, :, :, 0], want)
    # Autodiff of the plain version splits tied windows instead; the totals agree.
    (rx,) = jax.vjp(_plain, x)[1](dy)
    np.testing.assert_allclose(rx[0, :2, :2, 0].sum(), 10.0)
    np.testing.assert_allclose(rx[0, 2:, 2:, 0].sum(), 40.0)
    assert float(rx[0, 0, 1, 0]) > 0  # split among the three 3.0s


def test_bias_gradient_counts_live_windows_only():
    x = jnp.array([[-5.0, -6.0], [-7.0, -8.0]])[None, :, :, None]  # max -5
    for b, want in ((1.0, 0.0), (6.0, 2.5)):  # relu(-4) = 0: no gradient; relu(1) = 1
        g = jax.grad(lambda b: (pool.relu_max_pool_2x2(x, b, "fused") * 2.5).sum())(
            jnp.array([b]))
        np.testing.assert_array_equal(g, [want])


def test_bfloat16():
    x, bias, probe = _data((2, 8, 6, 5), seed=1, dtype=jnp.bfloat16)
    y = pool.relu_max_pool_2x2(x, bias, "fused")
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y, _plain(x, bias))
    np.testing.assert_array_equal(jax.vjp(lambda x: pool.relu_max_pool_2x2(x, bias, "fused"),
                                          x)[0], _plain(x, bias))
    got = _grads(lambda x, b: pool.relu_max_pool_2x2(x, b, "fused"), x, bias, probe)
    ref = _grads(_plain, x, bias, probe)
    assert got[0].dtype == got[1].dtype == jnp.bfloat16
    np.testing.assert_array_equal(got[0], ref[0])  # routing only: exact
    np.testing.assert_allclose(np.asarray(got[1], np.float32), np.asarray(ref[1], np.float32),
                               rtol=2e-2, atol=2e-2)


def test_vmap_per_example_gradients():
    x, bias, _ = _data((3, 6, 4, 2), seed=2)

    def loss(b, xi, fn):
        return (fn(xi[None], b) ** 2).sum()

    fused = lambda x, b: pool.relu_max_pool_2x2(x, b, "fused")  # noqa: E731
    got = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0, None))(bias, x, fused)
    want = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, 0, None))(bias, x, _plain)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), got, want)
    # vmap over the op itself (per-example [T, F, C] maps).
    y = jax.vmap(lambda xi: pool.relu_max_pool_2x2(xi[None], bias, "fused")[0])(x)
    np.testing.assert_array_equal(y, _plain(x, bias))


def test_impl_choice():
    assert pool.resolve_impl("xla") == "xla" and pool.resolve_impl("fused") == "fused"
    with pytest.raises(ValueError, match="impl"):
        pool.resolve_impl("cudnn")
    with pytest.raises(ValueError, match="impl"):
        pool.resolve_impl("auto")  # chosen once per run (spec.resolve_ops), never here
    with pytest.raises(ValueError, match="bias"):
        pool.relu_max_pool_2x2(jnp.zeros((1, 2, 2, 3)), jnp.zeros(4))


def test_wler_gradient_matches_plain_pool():
    assert_wler_gradients_match(dict(num_classes=5, width=0.125), dict(pool_impl="fused"),
                                dict(pool_impl="xla"), forward_exact=True)


SHARDED_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from wler_jax.model import relu_max_pool as pool
    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 12, 10, 6)), jnp.float32)
    b = jnp.asarray(rng.standard_normal(6), jnp.float32)
    loss = lambda x, b: (pool.relu_max_pool_2x2(x, b, "fused") ** 2).sum()
    want = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, b)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    bs = jax.device_put(b, NamedSharding(mesh, P()))
    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(xs, bs)
    assert len(got[0].sharding.device_set) == 4
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)
    y = jax.jit(lambda x, b: pool.relu_max_pool_2x2(x, b, "fused"))(xs, bs)
    np.testing.assert_array_equal(y, pool.plain_relu_max_pool_2x2(x, b))
    print("OK")
""")


def test_fused_pool_under_a_data_sharded_mesh():
    run_on_4_cpu_devices(SHARDED_SCRIPT)


def test_max_pool_2x2_equals_flax_max_pool():
    import flax.linen as nn
    x = jax.random.normal(jax.random.key(1), (2, 37, 21, 5))
    np.testing.assert_array_equal(pool.max_pool_2x2(x), nn.max_pool(x, (2, 2), (2, 2)))
