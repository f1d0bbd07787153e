"""Does the input pipeline keep up? The full training loop vs the bare step on in-memory batches.

  python -m bench.pipeline_efficiency [--variant=cpu] [--method=wler] [--config=FILE[:arg]]
      [--set model.dtype=bfloat16 ...] [--synthetic TRAIN,VAL,TEST,MIN_S,MAX_S,MEDIAN_S]
      [--data_dir DIR] [--epoch=1] [--epochs=1] [--build_only] [--json PATH]

Same config, data, batches and jitted step (`configs/<method>.py:<variant>`, or the recipe file
`--config` with the method and `--variant` as its argument; then `--set` overrides):
(a) the loop `main` runs, epoch by epoch (grain reading + padding in threads, a fresh pipeline
per epoch, `prefetch_to_device`, the train step), (b) the same batches already on the device,
steps only. Every batch shape is compiled first (a warm-up epoch), so neither side pays for
compilation. Efficiency = loop rate / bare rate. `--synthetic` builds a synthetic set of that
size (e.g. long enough to keep an accelerator busy); `--epochs` times that many passes over the
same epoch's plan on both sides.

Besides steps/s it reports audio-seconds per second two ways: waveform seconds read from disk,
and network seconds (waveform seconds x scales trained per step: each of the four log-mel scales
is an example), plus achieved TFLOP/s (analytic train FLOPs of the real frames; the log-mel is
not counted) against a matmul measured in the same run (MFU).
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bench import common
from wler_jax.configs.common import apply_override, base_config
from wler_jax.data import input_pipeline as ip
from wler_jax.data import splits
from wler_jax.data.datasets import registry, synthetic_audio
from wler_jax.training import steps, train


def apply_overrides(config, pairs: list[str]) -> None:
    """`a.b=v` strings onto a ConfigDict (existing fields only: a typo fails loudly)."""
    for pair in pairs:
        try:
            apply_override(config, pair)
        except KeyError:
            raise KeyError(f"--set {pair}: no config field {pair.partition('=')[0]!r}") from None


def load_sources(config, synthetic: str | None):
    """(sources, class_names): `splits.load(config)`, or a synthetic set of a custom size."""
    if not synthetic:
        sources, class_names, _ = splits.load(config)
        return sources, class_names

    counts = [float(v) for v in synthetic.split(",")]
    if len(counts) != 6:
        raise ValueError("--synthetic wants TRAIN,VAL,TEST,MIN_S,MAX_S,MEDIAN_S")
    preset = synthetic_audio.SizePreset(*(int(c) for c in counts[:3]), *counts[3:])
    data_dir = os.path.expanduser(config.data.data_dir or splits.DEFAULT_DATA_DIR)
    start = time.perf_counter()
    sources, class_names, _ = registry.load_splits("synthetic", data_dir=data_dir,
                                                   manual_dir=None, size=preset, seed=0)
    print(f"synthetic set {preset}: ready in {time.perf_counter() - start:.1f} s")
    return sources, class_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default=None,
                        help="config variant (default cpu; with --config: the file's own)")
    parser.add_argument("--method", default="wler", choices=("wler", "slat"))
    parser.add_argument("--config", default=None, metavar="FILE[:arg]",
                        help="a recipe file (configs/experiments/*.py) instead of "
                             "configs/<method>.py, e.g. configs/experiments/gpu_full_bf16.py")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--synthetic", default=None, metavar="TRAIN,VAL,TEST,MIN,MAX,MEDIAN",
                        help="build and use a synthetic set of this size")
    parser.add_argument("--epoch", type=int, default=1, help="which epoch's plan to time")
    parser.add_argument("--epochs", type=int, default=1, help="timed passes over that plan")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config overrides, e.g. model.dtype=bfloat16 input.num_threads=8")
    parser.add_argument("--build_only", action="store_true",
                        help="build the data set and stop (e.g. on the CPU while a GPU is busy)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    t_start = time.perf_counter()
    if args.config:
        config, config_file = common.load_recipe(args.config, args.method, args.variant)
    else:
        args.variant = args.variant or "cpu"
        config = base_config(args.method, args.variant)
        config_file = f"configs/{args.method}.py:{args.variant}"
    variant = args.variant or {"gpu": "full"}.get(config.data.size, config.data.size)
    apply_overrides(config, args.set)
    if args.data_dir:
        config.data.data_dir = args.data_dir
    sources, class_names = load_sources(config, args.synthetic)
    if args.build_only:
        return
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    batcher = ip.RecordingBatcher(sources["train"], num_classes=len(class_names),
                                  frame_budget=config.input.frame_budget,
                                  num_devices=jax.device_count(), ratio=config.input.bucket_ratio,
                                  seed=config.seed)
    spec = train.create_model(config, len(class_names), devices=mesh.devices.flat)
    tx = steps.make_optimizer(config.train.optimizer, config.train.learning_rate)
    state = steps.TrainState.create(apply_fn=None, params=spec.init(jax.random.key(0)), tx=tx)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = jax.jit(steps.make_train_step(spec, slat_hop=config.input.slat_hop,
                                         base_rng=jax.random.key(1),
                                         scales_per_step=config.train.scales_per_step),
                   donate_argnums=0)

    def run(epochs):
        nonlocal state
        n, t0 = 0, time.perf_counter()
        for batches in epochs:
            for batch in batches:
                state, _ = step(state, batch)
                n += 1
        jax.block_until_ready(state)
        return n, time.perf_counter() - t0

    def pipeline():  # what train.train_and_evaluate does for one epoch
        return ip.prefetch_to_device(ip.train_batches(
            sources["train"], batcher, args.epoch, prefetch=config.input.prefetch,
            num_threads=config.input.num_threads, worker_count=config.input.worker_count),
            config.input.prefetch, sharding)

    start = time.perf_counter()
    run([pipeline()])  # warm-up: compiles every bucket shape
    warmup_s = time.perf_counter() - start
    host = list(ip.train_batches(sources["train"], batcher, args.epoch, prefetch=0))
    in_memory = [jax.device_put(b, sharding) for b in host]
    jax.block_until_ready(in_memory)

    scales = 4 if config.train.scales_per_step == "all" else 1
    audio_s = args.epochs * sum(float(np.sum(b["num_samples"])) for b in host) / 44_100
    # N_W's analytic train FLOPs of every real recording (SLAT windows: the same network cost
    # per frame, so the N_W count at the same frames is used as an estimate there).
    useful_flop = args.epochs * scales * sum(
        common.analytic_flops("wler", int(f), config.model.width, len(class_names))["train"]
        for b in host for f in b["num_frames"][b["weight"] > 0])
    n_full, t_full = run(pipeline() for _ in range(args.epochs))
    n_bare, t_bare = run(in_memory for _ in range(args.epochs))
    dtype = jnp.bfloat16 if config.model.dtype == "bfloat16" else jnp.float32
    on_cpu = jax.devices()[0].platform == "cpu"
    peak = common.jax_matmul(2048 if on_cpu else 8192, dtype, 10)["gflops"] * 1e9
    result = {"device": jax.devices()[0].device_kind, "devices": jax.device_count(),
              "variant": variant, "method": args.method, "overrides": args.set,
              "config_file": config_file,
              "synthetic": args.synthetic, "dtype": config.model.dtype,
              "width": config.model.width, "frame_budget": config.input.frame_budget,
              "num_threads": config.input.num_threads,
              "worker_count": config.input.worker_count, "prefetch": config.input.prefetch,
              "scales_per_step": scales, "epochs": args.epochs, "steps": n_full,
              "batches_per_epoch": len(host), "buckets": len({b["audio"].shape for b in host}),
              "warmup_compile_s": warmup_s, "loop_s": t_full, "bare_s": t_bare,
              "loop_steps_per_s": n_full / t_full, "bare_steps_per_s": n_bare / t_bare,
              "efficiency": t_bare / t_full,
              "loop_audio_s_per_s": audio_s / t_full, "bare_audio_s_per_s": audio_s / t_bare,
              "loop_network_audio_s_per_s": scales * audio_s / t_full,
              "bare_network_audio_s_per_s": scales * audio_s / t_bare,
              "loop_host_gb_per_s": audio_s * 44_100 * 2 / t_full / 1e9,
              "matmul_tflops": peak / 1e12, "useful_tflop": useful_flop / 1e12,
              "loop_tflops": useful_flop / t_full / 1e12, "bare_tflops": useful_flop / t_bare / 1e12,
              "loop_mfu": useful_flop / t_full / peak, "bare_mfu": useful_flop / t_bare / peak,
              "load_average": os.getloadavg(), "cpu_count": os.cpu_count(),
              "jax_version": jax.__version__}
    print(f"\n{result['device']}, {config.model.dtype}, width {config.model.width}, "
          f"{len(host)} batches x {args.epochs} epochs, {scales} scale(s) per step, "
          f"{config.input.num_threads} reading threads")
    print(f"{'':22}{'steps/s':>9}{'wave-s/s':>11}{'net-s/s':>11}{'TFLOP/s':>9}{'MFU':>7}")
    for name, n, t in (("full training loop", n_full, t_full), ("bare step, in memory",
                                                                 n_bare, t_bare)):
        print(f"{name:22}{n / t:9.2f}{audio_s / t:11.1f}{scales * audio_s / t:11.1f}"
              f"{useful_flop / t / 1e12:9.3f}{useful_flop / t / peak:7.1%}")
    print(f"input-pipeline efficiency: {100 * t_bare / t_full:.1f} % of the bare step rate "
          f"(matmul peak {peak / 1e12:.1f} TFLOP/s, {config.model.dtype})")
    slug = result["device"].replace(" ", "_")
    tag = "_".join([variant] + ([config.model.dtype] if config.model.dtype != "float32" else [])
                   + (["synthetic"] if args.synthetic else []))
    out = args.json or os.path.join(common.RESULTS_DIR, f"pipeline_efficiency_{slug}_{tag}.json")
    common.write_json(result, out, time.perf_counter() - t_start)


if __name__ == "__main__":
    main()
