"""Where a train step's time goes, per kernel: the N_W model step under `jax.profiler`, summed by
op / kernel name, with the plain conv1 block and with the fused Pallas one side by side.

  python -m bench.kernel_profile [--batch 32] [--frames 1280] [--width 1.0]
      [--dtype bfloat16] [--conv1_impl plain pallas] [--steps 10] [--top 25] [--json PATH]

The step is `bench.train_speed`'s model step (`bench.common`: features precomputed, Adagrad,
dropout 0.5, donated state). After compiling and one warm-up call, `--steps` calls run under
`jax.profiler.trace`; the trace's device planes (GPU / TPU: "XLA Ops" lines if present, else the
stream lines; CPU: the XLA:CPU client threads) are summed by event name. Output: per
implementation the step's wall time, the profiled device time per step and the top kernels (ms
per step, share of the device time), so what bounds the step can be read off (e.g. the conv1
block's ops before and after fusing them).
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench import common

SKIP = ("ThreadpoolListener", "end: ")


def summarize(xplane_path: str, steps: int, top: int) -> dict:
    """Device time per step by event name from a profiler trace (.xplane.pb)."""
    data = jax.profiler.ProfileData.from_file(xplane_path)
    totals: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    used = []
    for plane in data.planes:
        if plane.name.startswith("/device:"):
            lines = list(plane.lines)
            ops = [ln for ln in lines if ln.name == "XLA Ops"]
            lines = ops or [ln for ln in lines if "Stream" in ln.name]
        elif plane.name == "/host:CPU":
            lines = [ln for ln in plane.lines if ln.name.startswith("tf_XLAPjRtCpuClient")
                     or ln.name.startswith("tf_XLAEigen")]
        else:
            continue
        for line in lines:
            used.append(f"{plane.name} | {line.name}")
            for ev in line.events:
                if ev.duration_ns <= 0 or ev.name.startswith(SKIP):
                    continue
                totals[ev.name] += ev.duration_ns
                counts[ev.name] += 1
    total_ns = sum(totals.values())
    rows = [{"name": name, "ms_per_step": ns / 1e6 / steps, "share": ns / max(total_ns, 1),
             "calls_per_step": counts[name] / steps} for name, ns in totals.most_common(top)]
    return {"device_ms_per_step": total_ns / 1e6 / steps, "top": rows, "lines": used[:20]}


def profile(conv1_impl: str, args) -> dict:
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    batch = jax.device_put(common.feature_batch(np.random.default_rng(0), args.batch,
                                                args.frames))
    spec = common.make_model("wler", args.width, dtype, conv1_impl)
    state = common.init_state(spec)
    step, compile_s, _ = common.compile_aot(
        common.make_model_step(common.make_model_loss(spec), jax.random.key(1)), state, batch,
        donate_argnums=0)
    runner = common.Carry(step, state, batch)
    jax.block_until_ready(runner())
    t0 = time.perf_counter()
    for _ in range(args.steps):
        out = runner()
    jax.block_until_ready(out)
    wall = (time.perf_counter() - t0) / args.steps
    trace_dir = tempfile.mkdtemp(prefix="kernel_profile_")
    with jax.profiler.trace(trace_dir):
        for _ in range(args.steps):
            out = runner()
        jax.block_until_ready(out)
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True))[-1]
    summary = summarize(path, args.steps, args.top)
    print(f"\n{conv1_impl}: step {wall * 1e3:.2f} ms wall, {summary['device_ms_per_step']:.2f} "
          f"ms profiled device time per step (compile {compile_s:.1f} s); top kernels:")
    for row in summary["top"]:
        print(f"  {row['ms_per_step']:8.3f} ms {100 * row['share']:5.1f} %  "
              f"x{row['calls_per_step']:.0f}  {row['name'][:110]}")
    return {"conv1_impl": conv1_impl, "step_ms": wall * 1e3, "compile_s": compile_s,
            "final_loss": float(out["loss"]), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=1280)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--conv1_impl", nargs="+", default=["plain", "pallas"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = jax.devices()[0]
    if args.json is None:
        args.json = os.path.join(common.RESULTS_DIR,
                                 f"kernel_profile_{common.device_slug(device.device_kind)}.json")
    start = time.perf_counter()
    runs = []
    for impl in args.conv1_impl:
        try:
            runs.append(profile(impl, args))
        except Exception as e:  # noqa: BLE001 - e.g. the Pallas kernel failing to lower here
            print(f"{impl}: FAILED {type(e).__name__}: {str(e)[:2000]}", flush=True)
            runs.append({"conv1_impl": impl, "error": f"{type(e).__name__}: {str(e)[:4000]}"})
    common.write_json({"device": device.device_kind, "platform": device.platform,
                       "jax": jax.__version__, "batch": args.batch, "frames": args.frames,
                       "width": args.width, "dtype": args.dtype, "steps": args.steps,
                       "runs": runs}, args.json, time.perf_counter() - start)


if __name__ == "__main__":
    main()
