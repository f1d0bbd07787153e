"""Inference throughput (seconds of audio per second) and peak memory of `wler_jax.predict`.

Cases, each timed warm (compilation excluded by a first call on the same shapes):
  * short/predict_fn: 10-s recordings, `--batch_size` per call, through the jitted `predict_fn`
    (the Python API; features computed on the device).
  * short/cli_engine: the same recordings through `chunked.ChunkedScorer` (what the CLI
    runs: chunk padding to the bucket ladder, batching across files, host post-processing).
  * long/cli_engine: one 10-minute recording in chunks of `--chunk_frames` frames.
  * memory: `python -m wler_jax.predict`'s engine on a one-hour 44.1 kHz 16-bit WAV file
    (streamed from disk block by block) in a fresh subprocess: peak resident memory (VmHWM, or
    `resource.getrusage(RUSAGE_SELF).ru_maxrss` off Linux), before scoring (imports, model) and
    after, and, on accelerators, the device's peak bytes in use. The same on 1- and 10-minute
    files shows that it does not grow with the length (Python, JAX, compiled programs, one
    chunk's waveform and activations, two calls in flight).

The model is random (speed and memory do not depend on the weights) at `--width` (0.25 by
default; 1.0 is the paper's), 10 classes. Throughput is per device
(one device is used). Results: a table on stdout and JSON in
bench/results/inference_speed_<device>[_quick].json.

Usage:
  python -m bench.inference_speed [--width 0.25] [--quick] [--chunk_frames 2048]
      [--batch_size N] [--short_count 16] [--long_minutes 10] [--memory_minutes 60] [--reps 5]
      [--cases short,long,memory] [--json PATH]
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import soundfile as sf

from bench import common
from bench.common import NUM_CLASSES, noise_and_tones
from wler_jax import predict
from wler_jax.geometry import SAMPLE_RATE
from wler_jax.model.spec import ModelSpec
from wler_jax.serving import chunked, inference


def random_model(width: float, seed: int = 0) -> predict.Model:
    """A WLER model with numpy-drawn LeCun-normal weights (no training, no init compile)."""
    spec = ModelSpec("wler", NUM_CLASSES, width)
    params = jax.device_put(common.random_params(spec, seed, bias_std=0.0))
    return predict.Model(params, tuple(f"class_{i}" for i in range(NUM_CLASSES)), None,
                         functools.partial(inference.predict, spec), spec)


def timed(fn, reps: int) -> dict:
    """Median seconds of fn() (which must block on its result) after one warm-up call."""
    t = common.time_calls(fn, reps, sync=lambda _: None)
    return {"median_s": float(t["median"]), "times_s": t["times"],
            "first_call_s": t["first_call"]}


def short_cases(model, args) -> list[dict]:
    seconds, batch = 10, args.batch_size
    recordings = [noise_and_tones(seconds * SAMPLE_RATE, seed=i) for i in range(args.short_count)]
    audio = np.stack(recordings[:batch])
    lengths = np.full(batch, audio.shape[1], np.int32)
    dev_audio = jax.device_put(audio)
    fn = lambda: jax.block_until_ready(model.predict_fn(  # noqa: E731
        model.params, {"audio": dev_audio, "num_samples": lengths}))
    t = timed(fn, args.reps)
    cases = [{"case": "short/predict_fn", "recording_s": seconds, "recordings": batch,
              "batch_size": batch, **t, "audio_s_per_s": batch * seconds / t["median_s"]}]

    def engine():
        scorer = chunked.ChunkedScorer(model.spec, model.params, chunk_frames=args.chunk_frames,
                                         batch_size=batch)
        for i, x in enumerate(recordings):
            scorer.add(i, [x])
        assert len(list(scorer.completed()) + list(scorer.flush())) == len(recordings)

    t = timed(engine, max(1, args.reps // 2))
    cases.append({"case": "short/cli_engine", "recording_s": seconds,
                  "recordings": len(recordings), "batch_size": batch, **t,
                  "audio_s_per_s": len(recordings) * seconds / t["median_s"]})
    return cases


def long_case(model, args) -> dict:
    seconds = args.long_minutes * 60
    x = noise_and_tones(seconds * SAMPLE_RATE, seed=99)
    run = lambda: predict.predict_waveform(model, x, chunk_frames=args.chunk_frames,  # noqa
                                           batch_size=args.batch_size)
    t = timed(run, max(1, args.reps // 3))
    return {"case": "long/cli_engine", "recording_s": seconds, "recordings": 1,
            "batch_size": args.batch_size, "chunk_frames": args.chunk_frames, **t,
            "audio_s_per_s": seconds / t["median_s"]}


def write_wav(path: str, seconds: int) -> None:
    """A 16-bit 44.1 kHz WAV of `seconds`, written block by block (little memory)."""
    block = noise_and_tones(60 * SAMPLE_RATE, seed=5)
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        for i in range(0, seconds, 60):
            f.write(block[: min(60, seconds - i) * SAMPLE_RATE] * (0.5 + 0.5 * ((i // 60) % 2)))


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM of /proc/self/status (Linux; reset by exec,
    unlike ru_maxrss, which a child inherits from its parent's size at fork), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(args) -> None:
    """Subprocess body: score one file with the CLI's engine, print peak memory as JSON."""
    model = random_model(args.width)
    before = peak_rss_mb()
    start = time.perf_counter()
    pred = predict.predict_file(model, args.memory_child, chunk_frames=args.chunk_frames,
                                batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    out = {"file_s": pred.duration, "segments": int(pred.segments.shape[0]),
           "seconds": elapsed, "peak_rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20
    print("MEMORY_JSON " + json.dumps(out), flush=True)


def memory_cases(args) -> list[dict]:
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in sorted({1, 10, args.memory_minutes}):
            path = os.path.join(tmp, f"{minutes}min.wav")
            write_wav(path, minutes * 60)
            cmd = [sys.executable, "-m", "bench.inference_speed", "--memory_child", path,
                   "--width", str(args.width), "--chunk_frames", str(args.chunk_frames),
                   "--batch_size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO,
                                  env=common.repo_env())
            line = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_JSON ")]
            if proc.returncode or not line:
                raise RuntimeError(f"memory child failed:\n{proc.stderr[-3000:]}")
            res = json.loads(line[0].split(" ", 1)[1])
            cases.append({"case": f"memory/{minutes}min_file", "recording_s": minutes * 60,
                          "file_mb": os.path.getsize(path) / 2**20, **res,
                          "audio_s_per_s": minutes * 60 / res["seconds"]})
            os.remove(path)
    return cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--quick", action="store_true", help="shorter runs: 3-min long case, "
                   "10-min memory file, fewer repetitions")
    p.add_argument("--chunk_frames", type=int, default=predict.DEFAULT_CHUNK_FRAMES)
    p.add_argument("--batch_size", type=int, default=0, help="0: 1 on CPU, 8 on accelerators")
    p.add_argument("--short_count", type=int, default=16)
    p.add_argument("--long_minutes", type=int, default=10)
    p.add_argument("--memory_minutes", type=int, default=60)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cases", default="short,long,memory", help="comma-separated subset")
    p.add_argument("--json", default=None)
    p.add_argument("--memory_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    backend = jax.default_backend()
    args.batch_size = args.batch_size or (1 if backend == "cpu" else 8)
    if args.memory_child:
        return memory_child(args)
    if args.quick:
        args.long_minutes, args.memory_minutes, args.reps = 3, 10, 3
        args.short_count = min(args.short_count, 8)
    model = random_model(args.width)
    t0 = time.perf_counter()
    wanted = set(args.cases.split(","))
    cases = ((short_cases(model, args) if "short" in wanted else [])
             + ([long_case(model, args)] if "long" in wanted else [])
             + (memory_cases(args) if "memory" in wanted else []))
    device = jax.devices()[0]
    slug = "cpu" if backend == "cpu" else common.device_slug(device.device_kind).lower()
    result = {"device": device.device_kind, "platform": backend, "device_count": 1,
              "width": args.width, "chunk_frames": args.chunk_frames,
              "batch_size": args.batch_size, "quick": args.quick, "cases": cases,
              "total_s": time.perf_counter() - t0, "jax": jax.__version__,
              "python": platform.python_version(), "cpu_count": os.cpu_count(),
              "date": datetime.datetime.now().isoformat(timespec="seconds")}
    print(f"\nwler_jax inference on {device.device_kind} ({backend}), width {args.width}, "
          f"chunk {args.chunk_frames} frames, batch {args.batch_size}")
    print(f"{'case':<22}{'audio':>9}{'time':>10}{'audio s/s':>11}"
          f"{'peak RSS (before->after)':>26}{'dev peak':>10}")
    for c in cases:
        rss = (f"{c['peak_rss_before_mb']:.0f}->{c['peak_rss_mb']:.0f} MB"
               if "peak_rss_mb" in c else "")
        dev = f"{c['device_peak_mb']:.0f} MB" if "device_peak_mb" in c else ""
        secs = c.get("median_s", c.get("seconds"))
        print(f"{c['case']:<22}{c['recording_s'] * c.get('recordings', 1):>8}s{secs:>9.2f}s"
              f"{c['audio_s_per_s']:>11.0f}{rss:>26}{dev:>10}")
    path = args.json or os.path.join(
        common.RESULTS_DIR, f"inference_speed_{slug}{'_quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"total {result['total_s']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
