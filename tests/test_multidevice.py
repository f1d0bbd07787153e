"""The model (and features) under a 4-device CPU mesh equal the single-device result.

One fresh process per device count (the count is fixed at JAX start-up) runs both the forward
and the train-step script; the two processes run side by side.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from wler_jax import features
    from wler_jax.model.spec import ModelSpec, OPS, resolve_ops
    assert jax.device_count() == int(sys.argv[2]), jax.devices()
    out = {}
    rng = np.random.default_rng(0)
    lengths = np.array([3000, 64000, 20000, 65000, 100, 40000, 65024, 5000])
    wav = (0.1 * rng.standard_normal((8, 65024))).astype(np.float32)
    spec = ModelSpec("wler", 5, 0.25, pooling="attention")
    def forward(params, wav, lengths):
        feats, nf = features.log_mel(wav, lengths, 1024)
        seg, mask, extras = spec.segment_logits(params, feats, nf)
        return spec.clip_logits(params, seg, mask, extras), seg
    params = spec.init(jax.random.key(0))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, P("data"))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    wav, lengths = jax.device_put((wav, lengths), batch)
    clip, seg = jax.jit(forward, out_shardings=(batch, batch))(params, wav, lengths)
    assert len(clip.sharding.device_set) == jax.device_count()
    out.update(clip=np.asarray(clip), seg=np.asarray(seg))
""")


TRAIN_SCRIPT = textwrap.dedent("""
    from wler_jax.training import steps
    from wler_jax.geometry import max_samples_for_frames
    rng = np.random.default_rng(0)
    width = max_samples_for_frames(192)
    lengths = np.array([width, 40000, 70000, 0], np.int32)
    wav = (rng.integers(-3000, 3000, (4, width)) * (np.arange(width) < lengths[:, None])).astype(np.int16)
    nf = np.where(lengths > 0, 1 + lengths // 512, 0).astype(np.int32)
    batch = {"audio": wav, "num_samples": lengths, "num_frames": nf,
             "labels": np.eye(4, 3, dtype=np.float32), "weight": np.array([1, 1, 1, 0], np.float32),
             "index": np.array([0, 1, 2, -1], np.int32)}
    conv_impl, pool_impl = OPS[resolve_ops("auto", mesh.devices.flat)]  # CPU ops
    spec = ModelSpec("wler", 3, 0.125, conv_impl=conv_impl, pool_impl=pool_impl)
    params = spec.init(jax.random.key(0))
    state = steps.TrainState.create(apply_fn=None, params=params, tx=steps.make_optimizer("adagrad", 1e-2))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = jax.jit(steps.make_train_step(spec, base_rng=jax.random.key(1)), donate_argnums=0)
    losses = []
    for _ in range(3):
        state, m = step(state, jax.device_put(batch, NamedSharding(mesh, P("data"))))
        losses.append(float(m["loss"]))
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(state.params))])
    out.update(losses=np.array(losses), params=flat)
    np.savez(sys.argv[1], **out)
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{devices: outputs of SCRIPT + TRAIN_SCRIPT} for 1 and 4 CPU devices (two processes)."""
    tmp = tmp_path_factory.mktemp("multidevice")
    procs = {}
    for devices in (1, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   JAX_PLATFORMS="cpu")
        procs[devices] = subprocess.Popen(
            [sys.executable, "-c", SCRIPT + TRAIN_SCRIPT, str(tmp / f"out{devices}.npz"),
             str(devices)], env=env)
    for devices, proc in procs.items():
        assert proc.wait(timeout=300) == 0, f"{devices}-device script failed"
    return {devices: np.load(tmp / f"out{devices}.npz") for devices in procs}


@pytest.mark.slow
def test_four_device_mesh_equals_one_device(runs):
    one, four = runs[1], runs[4]
    np.testing.assert_allclose(four["clip"], one["clip"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(four["seg"], one["seg"], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_four_device_train_steps_equal_one_device(runs):
    """Data-parallel training over a 4-device mesh (dropout included) matches one device."""
    runs = [runs[1], runs[4]]
    np.testing.assert_allclose(runs[1]["losses"], runs[0]["losses"], rtol=1e-5)
    assert runs[0]["losses"][-1] != runs[0]["losses"][0]
    # Adagrad's first steps move every weight by ~lr * sign(g), so a gradient that rounds
    # differently near 0 moves a weight by up to ~1e-2 * 1e-3; 1e-4 is 1% of the learning rate.
    np.testing.assert_allclose(runs[1]["params"], runs[0]["params"], rtol=1e-4, atol=1e-4)
