"""Shared test helpers: small real-valued audio, a narrow network width, gradient comparison,
and the session's shared data directory and JAX compilation cache for end-to-end runs.

As flax's examples/*/train_test.py, the tests compile with XLA's optimisations off
(`JAX_DISABLE_MOST_OPTIMIZATIONS=1`, inherited by every subprocess; set it to 0 to test the
optimised programs): the tests' programs run for milliseconds to seconds after seconds to
minutes of compiling. Measured on the 2-core CPU: test_conv + test_models + test_predict took
193 s of CPU instead of 286 s, a smoke WLER run 64 s instead of 107 s (same mAPs).
"""
import os
import subprocess
import sys

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # before JAX reads its config

import numpy as np
import pytest

SR = 44_100
TEST_WIDTH = 0.25  # narrow network for CPU tests; the paper's widths are width=1.0


def tones_and_noise(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise plus a few tones and a chirp: real-valued test audio with structure at every scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    x = 0.05 * rng.standard_normal(num_samples)
    for f, a in ((220.0, 0.2), (1830.0, 0.1), (6000.0, 0.05)):
        x += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x += 0.1 * np.sin(2 * np.pi * (300 * t + 2000 * t ** 2))
    return (x * np.clip(np.sin(np.pi * t * 3) + 0.5, 0, None)).astype(np.float32)


@pytest.fixture
def audio_factory():
    return tones_and_noise


# Absolute tolerances of two programs that compute the same float32 values (probabilities, logits
# or dB of order 1-100), off the CPU. XLA:CPU runs the same kernels in the same summation order in
# every program and ignores the matmul precision setting, so the CPU tests hold 1e-6. A GPU picks
# convolution algorithms per program (cuDNN autotuning) and fuses differently, so two programs
# differ in summation order by a few float32 ulps through the five conv layers; at JAX's default
# precision its float32 convolutions and matmuls round their inputs to TF32 (GPUs) or bfloat16
# (TPUs). Calibrated on the CPU by rounding every conv input to those formats
# (tests/test_accelerator_paths.py): segment probabilities move by ~6e-3 (TF32) and ~2e-2 (bf16),
# while a conv kernel flipped in time moves them by ~0.7.
ACCELERATOR_ATOL_HIGHEST = 1e-4  # JAX_DEFAULT_MATMUL_PRECISION=highest (float32 semantics)
ACCELERATOR_ATOL_REDUCED = 5e-2  # the default precision (TF32 / one bfloat16 pass)
ACCELERATOR_ATOL_BF16 = 3e-2  # bfloat16 compute dtype: outputs may differ by an ulp (2^-8)


def on_accelerator() -> bool:
    import jax
    return jax.default_backend() != "cpu"


def reduced_matmul_precision() -> bool:
    """True when float32 matmuls/convs run below float32 on this backend (never on the CPU)."""
    import jax
    precision = str(jax.config.jax_default_matmul_precision or "default").lower()
    return on_accelerator() and precision not in ("highest", "float32", "f32_f32_f32")


def float_atol(cpu: float, *, bf16: bool = False) -> float:
    """`cpu` on the CPU; off it, at least the accelerator tolerance of the run's precision (and of a
    bfloat16 compute dtype with `bf16`). Use it wherever a test compares two *different* programs
    (jit vs eager, vmap vs batch, export vs predict_fn, two op implementations)."""
    if not on_accelerator():
        return cpu
    tol = ACCELERATOR_ATOL_REDUCED if reduced_matmul_precision() else ACCELERATOR_ATOL_HIGHEST
    return max(cpu, tol, ACCELERATOR_ATOL_BF16 if bf16 else 0.0)


def compile_cache_env(path: str) -> dict:
    """JAX's persistent compilation cache for subprocesses: a program compiled by one run (e.g.
    the smoke config's train and evaluation steps) is loaded, not compiled again, by the next."""
    return {"JAX_COMPILATION_CACHE_DIR": path, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory) -> dict:
    """What the session's end-to-end runs share: one built-dataset directory (the synthetic smoke
    set is built once) and one persistent compilation cache (`env`, for subprocesses and kernels;
    it also carries this session's JAX_DISABLE_MOST_OPTIMIZATIONS, see the module docstring).
    Used by tests/test_train.py, tests/test_readme.py and tests/test_notebooks.py.

    Under pytest-xdist (pytest.ini runs two workers) the workers share the dataset directory
    (builds are locked per config, `registry._build_lock`) and each keeps its own compilation
    cache (JAX writes cache entries in place, so a reader in another process could see half of
    one)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker else base  # xdist: <basetemp>/popen-gwN per worker
    return {"data_dir": str(shared / "shared_tfds"),
            "env": {**compile_cache_env(str(base / "shared_jax_cache")), "JAX_PLATFORMS": "cpu",
                    "JAX_DISABLE_MOST_OPTIMIZATIONS": os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"]}}


def assert_wler_gradients_match(model_kwargs: dict, variant: dict, reference: dict, *,
                                forward_exact: bool = False) -> None:
    """WLER's train-mode loss gradients with implementation options `variant` (e.g.
    conv_impl="matmul_grad") equal those with `reference` (e.g. the plain XLA graph) on random
    params, a padded batch and dropout; with `forward_exact` the scores must be bit-equal too."""
    import jax
    import jax.numpy as jnp

    from wler_jax.model import networks

    fast = networks.WLER(**model_kwargs, **variant)
    plain = networks.WLER(**model_kwargs, **reference)
    rng = np.random.default_rng(4)
    feats = jnp.asarray(np.clip(rng.normal(-45, 18, (2, 160, 128)), -100, 0), jnp.float32)
    num_frames = jnp.array([160, 90])
    labels = jnp.asarray(rng.random((2, model_kwargs["num_classes"])) < 0.4, jnp.float32)
    shapes = jax.eval_shape(plain.init, jax.random.key(0), feats, num_frames)
    assert jax.eval_shape(fast.init, jax.random.key(0), feats, num_frames) == shapes
    # Random params without compiling init: kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.01).
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))
                              if len(s.shape) > 1 else 0.1 * rng.standard_normal(s.shape),
                              s.dtype), shapes)

    def loss(p, model):
        logits, _ = model.apply(p, feats, num_frames, train=True,
                                rngs={"dropout": jax.random.key(7)})
        return -(labels * jax.nn.log_sigmoid(logits)
                 + (1 - labels) * jax.nn.log_sigmoid(-logits)).mean()

    if forward_exact:
        np.testing.assert_array_equal(fast.apply(params, feats, num_frames)[0],
                                      plain.apply(params, feats, num_frames)[0])
    g_fast = jax.jit(jax.grad(loss), static_argnums=1)(params, fast)
    g_plain = jax.jit(jax.grad(loss), static_argnums=1)(params, plain)
    for path, a in jax.tree_util.tree_leaves_with_path(g_plain):
        b = g_fast
        for key in path:
            b = b[key.key]
        scale = float(jnp.abs(a).max()) + 1e-12
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=jax.tree_util.keystr(path))


def run_on_4_cpu_devices(script: str) -> str:
    """Runs `script` in a fresh Python on a 4-device CPU mesh; it must print OK. Returns stdout."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300,
                         capture_output=True, text=True)
    assert "OK" in out.stdout, out.stdout + out.stderr
    return out.stdout
