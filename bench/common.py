"""What the bench scripts share: paths and result files, recipes from config files, timing,
FLOP counts, test signals and the bare N_W / N_S model step (`python -m bench.train_speed`'s,
also profiled by `bench.kernel_profile` and counted by `bench.pipeline_efficiency`).

Every script runs from the repository root as `python -m bench.<name>`; nothing here edits
`sys.path`. What a test checks lives in the package (`wler_jax.analysis`, `wler_jax.data`).
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wler_jax import geometry
from wler_jax.configs import recipes
from wler_jax.model import networks
from wler_jax.model.spec import OPS, ModelSpec, resolve_conv1, resolve_ops
from wler_jax.training import steps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "bench", "results")
NUM_CLASSES = 10  # of the timing benchmarks' random models
LEARNING_RATE = 1e-3  # the paper's Adagrad rate, of the bare model step


# ----------------------------------------------------------------------- files and processes


def write_json(out: dict, path: str, total_s: float) -> None:
    """Write a bench result (creating its folder) and say where, with the run's total time."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\ntotal {total_s:.1f} s; wrote {path}")


def repo_env(**extra: str) -> dict:
    """This process's environment with the repository first on PYTHONPATH: what a subprocess
    (`python -m bench.x`, `python -m wler_jax.predict`) needs from any working directory."""
    path = [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **extra}


def device_slug(kind: str) -> str:
    """The file-name form of a device kind: 'NVIDIA H100 80GB HBM3' -> 'NVIDIA_H100_80GB_HBM3'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", kind).strip("_") or "device"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------- recipes


def _resolve(path: str) -> tuple[str, str]:
    """(absolute path, the path to show) of a config file: a relative one is found from the
    working directory, else from the repository root, and shown relative to the repository
    when it is inside it."""
    if not os.path.isfile(path) and not os.path.isabs(path):
        path = os.path.join(REPO, path)
    full = os.path.abspath(path)
    return full, (os.path.relpath(full, REPO) if full.startswith(REPO + os.sep) else full)


def load_recipe(spec: str, *parts: str | None):
    """(config, spec loaded) of a config file `FILE[:arg]` with `parts` (e.g. the method, a
    size) put before `arg`: `load_recipe('configs/experiments/real_office.py', 'slat')` loads
    `real_office.py:slat`. The spec returned is what result JSONs record as "config_file"."""
    path, arg = recipes.split_spec(spec)
    full, shown = _resolve(path)
    return (recipes.load(recipes.join_spec(full, *parts, arg)),
            recipes.join_spec(shown, *parts, arg))


def method_template(spec: str) -> str:
    """What a sweep of several methods records as its "config_file": the spec one method's runs
    loaded with the method (the first part of its argument) as `{method}`:
    'configs/x.py:wler,smoke' -> 'configs/x.py:{method},smoke' (each run records its own)."""
    path, arg = recipes.split_spec(spec)
    method, _, rest = (arg or "").partition(",")
    if method not in recipes.METHODS:
        raise ValueError(f"{spec}: its argument does not start with a method")
    return recipes.join_spec(path, "{method}", rest)


# --------------------------------------------------------------------------------- timing


def time_calls(fn, reps: int, sync=jax.block_until_ready, min_time: float = 0.0,
               max_reps: int = 200) -> dict:
    """Median wall time of `fn()` (awaited with `sync`) after one warm-up call (excluded).

    Runs `reps` times, then more (up to `max_reps`) until the timed calls add up to `min_time`
    seconds, so cheap cases get enough samples for a stable median.
    Returns {"median", "times", "first_call"} in seconds.
    """
    start = time.perf_counter()
    sync(fn())
    first = time.perf_counter() - start
    times = []
    while len(times) < reps or (sum(times) < min_time and len(times) < max_reps):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "times": times, "first_call": first}


def _xla_gflop(compiled) -> float | None:
    """XLA's GFLOP count of a compiled program (None where the backend gives none)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - cost analysis is optional information
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"]) / 1e9


def compile_aot(fn, *args, donate_argnums=()):
    """jit + lower + compile once: (compiled, seconds, XLA GFLOP or None)."""
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile()
    return compiled, time.perf_counter() - start, _xla_gflop(compiled)


def xla_flops(jitted, *args) -> float | None:
    """XLA's FLOP count of one call of a jitted function (None where the backend gives none)."""
    try:
        gflop = _xla_gflop(jitted.lower(*args).compile())
    except Exception:  # noqa: BLE001 - cost analysis is optional information
        return None
    return None if gflop is None else gflop * 1e9


def jax_matmul(n: int, dtype, reps: int) -> dict:
    """The device's matmul rate: a jitted `jnp.dot` of two n x n matrices in `dtype`."""
    key1, key2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key1, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(key2, (n, n), jnp.float32).astype(dtype)
    fn = jax.jit(jnp.dot)
    timing = time_calls(lambda: fn(a, b), max(reps, 10))
    return {"n": n, "dtype": str(jnp.dtype(dtype)), "gflops": 2.0 * n ** 3 / timing["median"] / 1e9,
            **timing}


def fmt_s(x: float | None) -> str:
    """Seconds as '12.34 ms' under a second, else '1.234 s' ('-' for None)."""
    if x is None:
        return "-"
    return f"{x * 1e3:.2f} ms" if x < 1.0 else f"{x:.3f} s"


# ------------------------------------------------------------------------------ FLOP counts


def conv_stack_layer_flops(frames: int, width: float) -> list[float]:
    """Forward FLOPs of each 3x3 SAME conv of the stack on one [frames, 128] input."""
    chans = [1] + [networks.scaled(f, width) for f in networks.PAPER_FILTERS]
    t, m, out = frames, geometry.N_MELS, []
    for cin, cout in zip(chans[:-1], chans[1:]):
        out.append(2.0 * 3 * 3 * cin * cout * t * m)
        t, m = t // 2, m // 2
    return out


def analytic_flops(kind: str, frames: int, width: float, num_classes: int = NUM_CLASSES) -> dict:
    """Analytic FLOPs of one example: {"forward", "train"}. A conv costs 2 K K Cin Cout Hout
    Wout, a dense layer 2 In Out; a train step is forward + weight gradients (= forward) +
    input gradients (= forward minus the first layer). `kind`: "wler" (N_W on `frames`) or
    "slat" (N_S on one 128 x 128 window)."""
    c5 = networks.scaled(networks.PAPER_FILTERS[-1], width)
    hidden = networks.scaled(networks.PAPER_HIDDEN, width)
    h = networks.HEAD_SIZE
    if kind == "wler":
        frames = geometry.padded_frames(frames)
        convs = conv_stack_layer_flops(frames, width)
        segments = frames // 32 - (h - 1)
        head = [2.0 * h * h * c5 * hidden * segments, 2.0 * hidden * num_classes * segments]
    else:
        convs = conv_stack_layer_flops(geometry.SEGMENT_FRAMES, width)
        head = [2.0 * h * h * c5 * hidden, 2.0 * hidden * num_classes]
    layers = convs + head
    forward = sum(layers)
    return {"forward": forward, "train": forward + forward + (forward - layers[0])}


# --------------------------------------------------------------------------- test inputs


def noise_and_tones(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise, three tones and a chirp under a slow envelope: float32 [num_samples] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / geometry.SAMPLE_RATE
    x = 0.05 * rng.standard_normal(num_samples)
    for f, a in ((220.0, 0.2), (1830.0, 0.1), (6000.0, 0.05)):
        x += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x += 0.1 * np.sin(2 * np.pi * (300 * t + 50 * t ** 2))
    return (x * np.clip(np.sin(np.pi * t / 3) + 0.5, 0, None)).astype(np.float32)


def fake_log_mel(rng: np.random.Generator, shape) -> np.ndarray:
    """Log-mel-like values in dB (about -100 .. 0), float32."""
    return np.clip(rng.normal(-45.0, 18.0, size=shape), -100.0, 0.0).astype(np.float32)


def multi_hot(rng: np.random.Generator, n: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    labels = (rng.random((n, num_classes)) < 0.2).astype(np.float32)
    labels[np.arange(n), rng.integers(0, num_classes, n)] = 1.0
    return labels


def feature_batch(rng: np.random.Generator, examples: int, frames: int) -> dict:
    """A model-step batch of precomputed features: {"features", "num_frames", "labels",
    "weight"} of `examples` feature maps of `frames` frames."""
    return {"features": fake_log_mel(rng, (examples, frames, geometry.N_MELS)),
            "num_frames": np.full(examples, frames, np.int32),
            "labels": multi_hot(rng, examples), "weight": np.ones(examples, np.float32)}


# ---------------------------------------------------------------------- the bare model step


def make_model(kind: str, width: float, dtype, conv1_impl: str = "plain") -> ModelSpec:
    """N_W ("wler") or N_S ("slat") as training builds it: a `ModelSpec`, ops for this process's
    devices (`resolve_ops("auto")`, `resolve_conv1(conv1_impl)`), dropout 0.5."""
    conv_impl, pool_impl = OPS[resolve_ops("auto")]
    return ModelSpec(kind, NUM_CLASSES, width, dtype=jnp.dtype(dtype).name,
                     conv_impl=conv_impl, pool_impl=pool_impl,
                     conv1_impl=resolve_conv1(conv1_impl))


def random_params(spec: ModelSpec, seed: int = 0, *, bias_std: float = 0.01):
    """Params of `spec` drawn with numpy (no init compile): LeCun-normal kernels, biases
    normal with `bias_std` (0: zeros, drawing nothing)."""
    shapes = jax.eval_shape(spec.init, jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if "kernel" in jax.tree_util.keystr(path):
            return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
                    ).astype(np.float32)
        if bias_std == 0:
            return np.zeros(leaf.shape, np.float32)
        return (bias_std * rng.standard_normal(leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def init_state(spec: ModelSpec, seed: int = 0):
    """Float32 params (`spec.init`, as training) in a TrainState with the paper's Adagrad."""
    params = jax.jit(spec.init)(jax.random.key(seed))
    tx = steps.make_optimizer("adagrad", LEARNING_RATE)
    return steps.TrainState.create(apply_fn=None, params=params, tx=tx)


def make_model_loss(spec: ModelSpec):
    """loss(params, batch, rng) on precomputed features: `steps.feature_loss`, the training loss
    minus the log-mel (SLAT: each 128-frame feature map is one window)."""

    def loss_fn(params, batch, rng):
        value, _ = steps.feature_loss(spec, params, batch["features"], batch["num_frames"],
                                      batch["labels"], batch["weight"], rng,
                                      slat_hop=geometry.SEGMENT_FRAMES)
        return value

    return loss_fn


def make_model_step(loss_fn, base_rng):
    """(state, batch) -> (state, metrics), the shape of `steps.make_train_step`'s step."""

    def train_step(state, batch):
        rng = jax.random.fold_in(base_rng, state.step)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, rng)
        state = state.apply_gradients(grads=grads)
        return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

    return train_step


class Carry:
    """Runs a donated (state, batch) -> (state, metrics) step, keeping the new state."""

    def __init__(self, step, state, batch):
        self.step, self.state, self.batch = step, state, batch

    def __call__(self):
        self.state, metrics = self.step(self.state, self.batch)
        return metrics
