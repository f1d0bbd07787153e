"""The model (and features) under a 4-device CPU mesh equal the single-device result."""
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from wler_jax import features, models
    assert jax.device_count() == int(sys.argv[2]), jax.devices()
    rng = np.random.default_rng(0)
    lengths = np.array([3000, 64000, 20000, 65000, 100, 40000, 65024, 5000])
    wav = (0.1 * rng.standard_normal((8, 65024))).astype(np.float32)
    model = models.WLER(num_classes=5, width=0.25, pooling="attention")
    def forward(params, wav, lengths):
        feats, nf = features.log_mel(wav, lengths, 1024)
        return model.apply(params, feats, nf)
    feats0, nf0 = features.log_mel(wav[:1], lengths[:1], 1024)
    params = model.init(jax.random.key(0), feats0, nf0)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, P("data"))
    params = jax.device_put(params, NamedSharding(mesh, P()))
    wav, lengths = jax.device_put((wav, lengths), batch)
    clip, aux = jax.jit(forward, out_shardings=(batch, batch))(params, wav, lengths)
    assert len(clip.sharding.device_set) == jax.device_count()
    np.savez(sys.argv[1], clip=np.asarray(clip), seg=np.asarray(aux["segment_logits"]))
""")


def _run(tmp_path, devices):
    out = tmp_path / f"out{devices}.npz"
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(devices)], env=env, check=True,
                   timeout=300)
    return np.load(out)


def test_four_device_mesh_equals_one_device(tmp_path):
    one, four = _run(tmp_path, 1), _run(tmp_path, 4)
    np.testing.assert_allclose(four["clip"], one["clip"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(four["seg"], one["seg"], rtol=1e-5, atol=1e-5)
