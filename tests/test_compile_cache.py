"""Compile once: the persistent compilation cache (`compile_cache.configure`) and the ahead-of-time
compile of every batch shape of a plan (`compile_cache.compile_run`).

Behaviour only, never timings: cache entries are written, '' writes none, a second process
loads instead of compiling, and after the ahead-of-time compile an epoch and an evaluation
compile no train or evaluation program.
"""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wler_jax import audio, compile_cache

from wler_jax.serving import inference

from wler_jax.data import input_pipeline

from wler_jax.model.spec import ModelSpec

from wler_jax.training import steps
from wler_jax.configs.common import base_config
from conftest import tones_and_noise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C = 3
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@pytest.fixture
def restore_jax_cache():
    """Put JAX's cache settings back after a test that re-targets them."""
    saved = {k: getattr(jax.config, k) for k in (
        "jax_compilation_cache_dir", "jax_enable_compilation_cache",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")}
    yield
    from jax.experimental.compilation_cache import compilation_cache as cc

    for k, v in saved.items():
        jax.config.update(k, v)
    cc.reset_cache()
    compile_cache._configured = None


def test_default_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_cache_dir() == str(tmp_path / "wler_jax" / "jax_cache")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.default_cache_dir() == os.path.join(
        os.path.expanduser("~"), ".cache", "wler_jax", "jax_cache")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))  # JAX's own wins
    assert compile_cache.default_cache_dir() == str(tmp_path / "mine")
    assert base_config("wler", "smoke").compile_cache_dir == str(tmp_path / "mine")


def _entries(path) -> list:
    return [f for _, _, files in os.walk(path) for f in files] if os.path.isdir(path) else []


def test_configure_writes_entries_and_empty_turns_it_off(tmp_path, restore_jax_cache):
    on, other = tmp_path / "on", tmp_path / "other"
    assert compile_cache.configure(str(on)) == str(on)
    before = compile_cache.cache_events()
    jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()
    assert _entries(on), "no cache entry written"
    assert compile_cache.cache_events()["misses"] > before["misses"]  # counted as written
    # Re-targeting in the same process works (JAX initialises its cache object once).
    compile_cache.configure(str(other))
    jax.jit(lambda x: jnp.cos(x) * 5.0 - 2.0)(jnp.arange(9.0)).block_until_ready()
    assert _entries(other)
    n_on, n_other = len(_entries(on)), len(_entries(other))
    assert compile_cache.configure("") is None
    assert not jax.config.jax_enable_compilation_cache
    jax.jit(lambda x: jnp.tanh(x) * 7.0)(jnp.arange(11.0)).block_until_ready()
    assert (len(_entries(on)), len(_entries(other))) == (n_on, n_other)
    # A directory that cannot be made (a read-only home, here a file in the way): no cache, a
    # warning, the run goes on.
    (tmp_path / "a_file").write_text("")
    assert compile_cache.configure(str(tmp_path / "a_file" / "cache")) is None
    assert not jax.config.jax_enable_compilation_cache


SECOND_PROCESS = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    from wler_jax import compile_cache
    compile_cache.configure(sys.argv[1])
    f = jax.jit(lambda x: (jnp.fft.rfft(x).real ** 2).sum() + jnp.sin(x).mean())
    f(jnp.linspace(0.0, 1.0, 4096)).block_until_ready()
    print(json.dumps(compile_cache.cache_events()))
""")


def test_second_process_loads_instead_of_compiling(tmp_path):
    import json

    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    cache = str(tmp_path / "cache")
    runs = [json.loads(subprocess.run([sys.executable, "-c", SECOND_PROCESS, cache], env=env,
                                      check=True, capture_output=True, text=True,
                                      timeout=300).stdout.strip().splitlines()[-1])
            for _ in range(2)]
    assert runs[0]["misses"] >= 1 and runs[0]["hits"] == 0
    assert runs[1]["hits"] >= 1 and runs[1]["misses"] == 0  # nothing compiled, all loaded


def _source(frames):
    rng = np.random.default_rng(0)
    return [{"audio": audio.to_int16(tones_and_noise(int(f - 1) * 512 + 100, seed=i)),
             "labels": [int(rng.integers(C))], "id": f"r{i}"} for i, f in enumerate(frames)]


def test_ahead_of_time_covers_every_shape_of_the_plan():
    """After `compile_run`, a whole epoch and an evaluation pass compile no train or evaluation
    program (JAX's backend-compile events, by function name), and the executables compiled
    ahead are the ones called."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    # 100..180 frames: buckets 128 and 192 (train), batch sizes from the frame budget.
    train_src, val_src = _source([100, 120, 130, 150, 180, 90]), _source([110, 170, 60])
    batchers = {split: input_pipeline.RecordingBatcher(
        src, num_classes=C, frame_budget=3 * 192, num_devices=len(mesh.devices.flat), seed=0,
        shuffle=split == "train") for split, src in (("train", train_src), ("validation", val_src))}
    spec = ModelSpec("wler", C, 0.125, dropout_rate=0.0)
    tx = steps.make_optimizer("adam", 1e-3)
    state = jax.jit(lambda r: steps.TrainState.create(apply_fn=None, params=spec.init(r), tx=tx),
                    out_shardings=NamedSharding(mesh, P()))(jax.random.key(0))
    train_step = jax.jit(steps.make_train_step(spec, base_rng=jax.random.key(1),
                                               scales_per_step="one"), donate_argnums=0)
    train, evaluation = compile_cache.compile_run(train_step, inference.predict, spec, state,
                                                  batchers, num_classes=C, sharding=sharding)
    train_shapes = {(b, len(i)) for b, i in batchers["train"].epoch_plan(0)}
    assert len(train.executables) == len(train_shapes) == 2
    assert len(evaluation.executables) == len({(b, len(i)) for b, i in
                                                batchers["validation"].eval_plan()})

    compiled = []

    def listen(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            compiled.append(kwargs.get("fun_name", ""))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        for epoch in range(2):
            for batch in input_pipeline.prefetch_to_device(
                    input_pipeline.train_batches(train_src, batchers["train"], epoch), 2,
                    sharding):
                state, metrics = train(state, batch)
        for batch in input_pipeline.prefetch_to_device(
                input_pipeline.eval_batches(val_src, batchers["validation"]), 2, sharding):
            out = evaluation(state.params, batch)
        jax.block_until_ready((metrics, out))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert not [n for n in compiled if "train_step" in n or "predict" in n], compiled
    assert not train.fallback_shapes and not evaluation.fallback_shapes
    assert np.isfinite(float(metrics["loss"])) and out["clip"].shape[1] == C


def test_shapes_outside_the_plan_fall_back_to_jit():
    f = jax.jit(lambda x, y: x.sum() * 2.0 + y.sum())
    aot = compile_cache.compile_ahead(
        f, [(jnp.ones(3), jax.ShapeDtypeStruct((4,), jnp.float32))], name="f", key_argnum=1)
    assert float(aot(jnp.ones(3), jnp.ones(4))) == 10.0 and not aot.fallback_shapes
    assert float(aot(jnp.ones(3), jnp.ones(5))) == 11.0  # not compiled ahead: jit compiles it
    assert len(aot.fallback_shapes) == 1


def test_predict_cli_uses_its_cache_flag(tmp_path, restore_jax_cache):
    """`python -m wler_jax.predict --compile_cache_dir=DIR` fills DIR; '' leaves it off."""
    import soundfile as sf

    from test_predict import make_workdir
    from wler_jax import predict
    from wler_jax.geometry import SAMPLE_RATE

    workdir = make_workdir(tmp_path / "wd")
    wav = tmp_path / "a.wav"
    sf.write(wav, tones_and_noise(SAMPLE_RATE, seed=9), SAMPLE_RATE, subtype="FLOAT")
    cache = tmp_path / "cache"
    # Programs compiled by earlier tests in this process would be reused from memory and never
    # reach the new cache directory (seen when another test file ran first on the same worker).
    jax.clear_caches()
    assert predict.cli(["predict", f"--workdir={workdir}", f"--output={tmp_path / 'p.json'}",
                        "--noprogress", f"--compile_cache_dir={cache}", str(wav)]) == 0
    assert _entries(cache)
    assert predict.cli(["predict", f"--workdir={workdir}", f"--output={tmp_path / 'q.json'}",
                        "--noprogress", "--compile_cache_dir=", str(wav)]) == 0
    assert not jax.config.jax_enable_compilation_cache
