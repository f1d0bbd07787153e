"""Speed of N_W (one pass) against per-window N_S, and of the JAX log-mel against librosa.

Part 1 (fcn), the paper's efficiency claim (§II-C): one forward pass of N_W over a 1280-frame
recording (~15 s) gives the scores of all 37 segments, against N_S run on those 37 windows
[32k, 32k + 128). Both start from the same recording features [1, 1280, 128] already on the
device:
  * "N_S batch": the 37 windows cut out inside the same jitted function and scored as one
    batch of 37 (the strongest per-window baseline);
  * "N_S loop": the naive route, the 37 windows (pre-cut on the device, not timed) scored one
    by one in a Python loop by a jitted N_S on [1, 128, 128], all 37 outputs awaited at the end.
The networks' convolutions cover 1280 frames against 37 * 128 = 4736, so ~3.7x fewer FLOPs is
the ideal; the FLOP counts come from XLA's cost analysis. It also checks N_S -> N_T parameter
conversion: N_W on a single 128-frame window must equal N_S (~1e-6 in float32), while N_W's
segment logits on the whole recording differ from N_S's window logits (non-zero by design: N_T's
convolutions see the real neighbouring frames where N_S sees zero padding at window edges).

Part 2 (log_mel): `features.log_mel` (jitted, B=1, warm) against librosa's
`melspectrogram` + `power_to_db` (`features.librosa_log_mel`, one call, CPU) on 60 s of noise and
tones, for each n_fft and all four scales (`multi_scale_log_mel`, four jitted calls; librosa:
four calls). librosa's first call compiles numba code and is excluded as warm-up.

Every time is the median over `--reps` repetitions after one warm-up call (which includes
compilation) and ends with `jax.block_until_ready`. Weights are random (timing and the
conversion check do not need trained ones). Results go to a readable table on stdout and to JSON.

Usage:
  python -m bench.fcn_speed [--width 1.0 0.25] [--reps N] [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import os
import platform
import time
import warnings

import flax
import jax
import jax.numpy as jnp
import librosa
import numpy as np

from bench import common
from bench.common import noise_and_tones
from wler_jax import features, geometry
from wler_jax.model import networks
from wler_jax.model.spec import ModelSpec

SR = geometry.SAMPLE_RATE


def _timed(fn, args) -> dict:
    """`common.time_calls` with at least `--reps` calls, more until `--min_time` seconds."""
    return common.time_calls(fn, args.reps, min_time=args.min_time)


def fcn_cases(width: float, args, recording: jax.Array) -> list[dict]:
    """N_W vs N_S (batch of windows, and one by one) at one width; plus the conversion check."""
    dtype = jnp.dtype(args.dtype)
    frames = recording.shape[1]
    num_segs = geometry.num_segments(frames)
    starts = [geometry.SEGMENT_HOP * k for k in range(num_segs)]
    ns_spec = ModelSpec("slat", args.num_classes, width, dtype=dtype.name)
    ns, nw = ns_spec.module(), dataclasses.replace(ns_spec, method="wler").module()
    window0 = recording[:, : geometry.SEGMENT_FRAMES]
    ns_params = {"params": jax.jit(ns_spec.init)(jax.random.key(args.seed))}
    nw_params = networks.ns_to_nt_params(ns_params)
    num_frames = jnp.array([frames], jnp.int32)

    @jax.jit
    def nw_fn(params, x, n):
        return nw.apply(params, x, n)

    @jax.jit
    def ns_batch_fn(params, x):
        windows = jnp.concatenate([x[:, s: s + geometry.SEGMENT_FRAMES] for s in starts])
        return ns.apply(params, windows)

    ns_one_fn = jax.jit(ns.apply)
    windows = [jax.device_put(recording[:, s: s + geometry.SEGMENT_FRAMES]) for s in starts]
    jax.block_until_ready(windows)

    # Conversion check (float32 exact up to rounding on one window; different on the recording).
    one_nw = nw_fn(nw_params, window0, jnp.array([geometry.SEGMENT_FRAMES], jnp.int32))[1]
    single_diff = float(jnp.max(jnp.abs(one_nw["segment_logits"][0, 0] - ns_one_fn(ns_params,
                                                                                 window0)[0])))
    seg = nw_fn(nw_params, recording, num_frames)[1]["segment_logits"][0]  # [S, C]
    win = ns_batch_fn(ns_params, recording)  # [S, C]
    diff = np.abs(np.asarray(seg) - np.asarray(win))
    check = {"segments": num_segs, "single_window_max_abs_diff": single_diff,
             "max_abs_diff": float(diff.max()),
             "max_abs_diff_interior": float(diff[1:-1].max()) if num_segs > 2 else None,
             "max_abs_logit": float(np.abs(np.asarray(win)).max())}

    flops_nw = common.xla_flops(nw_fn, nw_params, recording, num_frames)
    flops_ns = common.xla_flops(ns_batch_fn, ns_params, recording)
    flops_one = common.xla_flops(ns_one_fn, ns_params, window0)
    t_nw = _timed(lambda: nw_fn(nw_params, recording, num_frames), args)
    t_batch = _timed(lambda: ns_batch_fn(ns_params, recording), args)
    t_loop = _timed(lambda: [ns_one_fn(ns_params, w) for w in windows], args)

    def gflop(f):
        return None if f is None else f / 1e9

    shared = {"part": "fcn", "width": width, "frames": frames, "windows": num_segs,
              "num_classes": args.num_classes, "dtype": args.dtype,
              "params": networks.num_params(ns_params), "nw_s": t_nw["median"],
              "nw_times": t_nw["times"], "nw_first_call_s": t_nw["first_call"],
              "nw_gflop": gflop(flops_nw), "check": check}
    return [
        {"name": f"N_S batch of {num_segs} vs N_W, width {width:g}", "ns_mode": "batch",
         **shared, "ns_s": t_batch["median"], "ns_times": t_batch["times"],
         "ns_first_call_s": t_batch["first_call"], "ns_gflop": gflop(flops_ns),
         "speedup": t_batch["median"] / t_nw["median"],
         "flop_ratio": None if not (flops_ns and flops_nw) else flops_ns / flops_nw},
        {"name": f"N_S loop of {num_segs} x 1 vs N_W, width {width:g}", "ns_mode": "loop",
         **shared, "ns_s": t_loop["median"], "ns_times": t_loop["times"],
         "ns_first_call_s": t_loop["first_call"],
         "ns_gflop": None if flops_one is None else num_segs * flops_one / 1e9,
         "speedup": t_loop["median"] / t_nw["median"],
         "flop_ratio": None if not (flops_one and flops_nw) else num_segs * flops_one / flops_nw},
    ]


def log_mel_cases(args) -> list[dict]:
    """JAX log-mel (jitted, warm, on the device) vs librosa (CPU), each n_fft and all four."""
    num_samples = int(round(args.audio_seconds * SR))
    wave = noise_and_tones(num_samples, seed=args.seed)
    wave_dev = jax.device_put(wave[None])
    lengths = jnp.array([num_samples], jnp.int32)
    n_ffts = tuple(args.n_ffts)
    cases = []

    def add(name, jax_fn, librosa_fn, extra):
        t_jax = _timed(jax_fn, args)
        # The warm-up call compiles librosa's numba code.
        t_lib = _timed(librosa_fn, args)
        cases.append({"name": name, "part": "log_mel", "audio_s": args.audio_seconds,
                      "frames": int(geometry.num_frames_for_samples(num_samples)), **extra,
                      "jax_s": t_jax["median"], "jax_times": t_jax["times"],
                      "jax_first_call_s": t_jax["first_call"], "librosa_s": t_lib["median"],
                      "librosa_times": t_lib["times"],
                      "librosa_first_call_s": t_lib["first_call"],
                      "speedup": t_lib["median"] / t_jax["median"]})

    for n_fft in n_ffts:
        ours = np.asarray(features.log_mel(wave_dev, lengths, n_fft)[0][0])
        ref = features.librosa_log_mel(wave, n_fft)
        add(f"log_mel n_fft={n_fft}",
            lambda n=n_fft: features.log_mel(wave_dev, lengths, n),
            lambda n=n_fft: features.librosa_log_mel(wave, n),
            {"n_fft": [n_fft], "max_abs_diff_db": float(np.abs(ours - ref).max())})
    if len(n_ffts) < 2:
        return cases
    add(f"log_mel all {len(n_ffts)} scales",
        lambda: features.multi_scale_log_mel(wave_dev, lengths, n_ffts),
        lambda: [features.librosa_log_mel(wave, n) for n in n_ffts],
        {"n_fft": list(n_ffts)})
    return cases


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1e3:9.2f} ms" if x < 1.0 else f"{x:9.3f} s "


def print_tables(cases: list[dict]) -> None:
    fcn = [c for c in cases if c["part"] == "fcn"]
    if fcn:
        print("\nN_W (one pass) vs N_S (per window), B=1, "
              f"{fcn[0]['frames']} frames, {fcn[0]['windows']} windows, {fcn[0]['dtype']}")
        head = (f"{'width':>5} {'N_S mode':<14} {'N_S':>12} {'N_W':>12} {'speed-up':>8} "
                f"{'GFLOP N_S':>9} {'GFLOP N_W':>9} {'FLOP ratio':>10}")
        print(head)
        print("-" * len(head))
        for c in fcn:
            n = c["windows"]
            mode = f"batch of {n}" if c["ns_mode"] == "batch" else f"loop {n} x 1"
            g_ns = "-" if c["ns_gflop"] is None else f"{c['ns_gflop']:.2f}"
            g_nw = "-" if c["nw_gflop"] is None else f"{c['nw_gflop']:.2f}"
            ratio = "-" if c["flop_ratio"] is None else f"{c['flop_ratio']:.2f}x"
            print(f"{c['width']:>5g} {mode:<14} {fmt_s(c['ns_s']):>12} {fmt_s(c['nw_s']):>12} "
                  f"{c['speedup']:>7.2f}x {g_ns:>9} {g_nw:>9} {ratio:>10}")
        print("\nN_S -> N_T conversion check (max |logit difference|):")
        for c in fcn:
            if c["ns_mode"] != "batch":
                continue
            k = c["check"]
            interior = ("-" if k["max_abs_diff_interior"] is None
                        else f"{k['max_abs_diff_interior']:.3g}")
            print(f"  width {c['width']:g}: one 128-frame window N_W vs N_S "
                  f"{k['single_window_max_abs_diff']:.2e} (expected ~0); recording segments vs "
                  f"windows {k['max_abs_diff']:.3g} (interior {interior}; logits up to "
                  f"{k['max_abs_logit']:.3g}; non-zero expected: N_T sees real neighbours)")
    mel = [c for c in cases if c["part"] == "log_mel"]
    if mel:
        print(f"\nlog-mel of {mel[0]['audio_s']:g} s ({mel[0]['frames']} frames), B=1: "
              "JAX (jitted, warm) vs librosa (CPU, one call)")
        head = f"{'case':<24} {'JAX':>12} {'librosa':>12} {'speed-up':>8} {'max |dB diff|':>13}"
        print(head)
        print("-" * len(head))
        for c in mel:
            d = "-" if "max_abs_diff_db" not in c else f"{c['max_abs_diff_db']:.2e}"
            print(f"{c['name']:<24} {fmt_s(c['jax_s']):>12} {fmt_s(c['librosa_s']):>12} "
                  f"{c['speedup']:>7.2f}x {d:>13}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, nargs="+", default=None,
                        help="network widths (1.0 = the paper's); default 1.0 0.25 (--quick: 0.25)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions after warm-up; default 3 on CPU, 10 on "
                             "accelerators, 1 with --quick")
    parser.add_argument("--min_time", type=float, default=None,
                        help="keep repeating a case until its timed calls add up to this many "
                             "seconds (at most 200 calls); default 1.0, 0 with --quick")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 rep, width 0.25 and 10 s of audio unless given")
    parser.add_argument("--parts", nargs="+", choices=("fcn", "log_mel"),
                        default=["fcn", "log_mel"])
    parser.add_argument("--frames", type=int, default=1280, help="recording length in frames")
    parser.add_argument("--num_classes", type=int, default=10)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="network compute dtype")
    parser.add_argument("--audio_seconds", type=float, default=None,
                        help="log-mel audio length; default 60 (--quick: 10)")
    parser.add_argument("--n_ffts", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None,
                        help="output path; default bench/results/fcn_speed_<device>[_quick].json")
    args = parser.parse_args()
    # librosa warns on every call that some of the 128 bands are empty at n_fft=512 (as in the
    # paper).
    warnings.filterwarnings("ignore", message="Empty filters detected")

    device = jax.devices()[0]
    kind = device.device_kind
    if args.width is None:
        args.width = [0.25] if args.quick else [1.0, 0.25]
    if args.reps is None:
        args.reps = 1 if args.quick else (3 if device.platform == "cpu" else 10)
    if args.min_time is None:
        args.min_time = 0.0 if args.quick else 1.0
    if args.audio_seconds is None:
        args.audio_seconds = 10.0 if args.quick else 60.0
    if args.json is None:
        args.json = os.path.join(
            common.RESULTS_DIR,
            f"fcn_speed_{common.device_slug(kind)}{'_quick' if args.quick else ''}.json")
    if args.frames < geometry.SEGMENT_FRAMES:
        parser.error(f"--frames must be at least {geometry.SEGMENT_FRAMES}")

    print(f"device: {kind} ({device.platform}, {jax.device_count()} device(s)), jax "
          f"{jax.__version__}, {os.cpu_count()} CPU threads, median of {args.reps} rep(s)"
          f" (more until {args.min_time:g} s per case){' [quick]' if args.quick else ''}")
    start = time.perf_counter()
    cases = []
    if "fcn" in args.parts:
        # Real log-mel features of a 1280-frame recording (n_fft 1024), already on the device.
        num_samples = (args.frames - 1) * geometry.HOP_LENGTH
        wave = jnp.asarray(noise_and_tones(num_samples, seed=args.seed + 1)[None])
        recording, _ = features.log_mel(wave, jnp.array([num_samples]), 1024)
        recording = jax.block_until_ready(recording)
        assert recording.shape == (1, args.frames, geometry.N_MELS), recording.shape
        for width in args.width:
            print(f"  timing N_W / N_S at width {width:g} ...", flush=True)
            cases += fcn_cases(width, args, recording)
    if "log_mel" in args.parts:
        print("  timing log-mel ...", flush=True)
        cases += log_mel_cases(args)
    total = time.perf_counter() - start
    print_tables(cases)

    out = {"device": kind, "platform": device.platform, "device_count": jax.device_count(),
           "jax_version": jax.__version__, "jaxlib_version": importlib.metadata.version("jaxlib"),
           "flax_version": flax.__version__,
           "librosa_version": librosa.__version__, "numpy_version": np.__version__,
           "python": platform.python_version(), "cpu_threads": os.cpu_count(),
           "cpu": platform.processor() or platform.machine(), "reps": args.reps,
           "min_time_s": args.min_time, "quick": args.quick,
           "statistic": "median wall seconds after 1 warm-up call",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "total_s": total, "cases": cases}
    common.write_json(out, args.json, total)


if __name__ == "__main__":
    main()
