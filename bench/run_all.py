"""Run every benchmark on the present device and print one summary table.

  python -m bench.run_all [--quick] [--only NAME ...] [--skip NAME ...]
      [--extra NAME:ARG ...] [--timeout SECONDS] [--results_dir DIR] [--json PATH]

Runs, each as `python -m bench.<name>` in its own subprocess (so each gets the device to
itself), with `--quick` passed on to those that have it:

  train_speed          training step time: audio-s/s, FLOP/s against the device's matmul rate,
                       speed-up vs PyTorch (when torch is installed)
  inference_speed      predict_fn / CLI-engine throughput, peak memory
  fcn_speed            one N_W pass vs N_S per window; JAX log-mel vs librosa
  padding_waste        length bucketing vs padding to the longest
  pipeline_efficiency  the full training loop vs the bare step (input pipeline)

Each writes its own JSON (passed as `--json bench/results/<name>_<device>[_quick].json`;
padding_waste, which does not depend on the device, `padding_waste.json`); this script reads
them and writes the summary, with the path and exit status of every run, to
`bench/results/all_<device>[_quick].json`. A benchmark that fails is reported as failed and the
others still run; the exit code is then 1.

Audio-seconds per second of a training step = examples x frames x 512 / 44100 / step time: the
audio the step's feature maps cover (each of a recording's four log-mel scales is one example,
as in the paper's 4x data). For the full step (waveforms in, log-mel on the device), the
recording audio per second is also given: recordings x frames x 512 / 44100 / step time.
`--extra train_speed:--dtype=bfloat16` passes further arguments to one benchmark (repeatable).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time

from bench import common

SECONDS_PER_FRAME = 512 / 44100
# name (the module bench.<name>) -> (takes --quick, JSON named by device)
BENCHMARKS = {
    "train_speed": (True, True),
    "inference_speed": (True, True),
    "fcn_speed": (True, True),
    "padding_waste": (False, False),
    "pipeline_efficiency": (False, True),
}
PROBE = ("import json, jax; d = jax.devices()[0]; print('DEVICE ' + json.dumps({'platform': "
         "d.platform, 'device_kind': d.device_kind, 'device_count': jax.device_count()}))")


def probe_device() -> dict:
    """The default JAX device, asked in a subprocess: this process never holds the device."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env=common.repo_env()).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("DEVICE ")][-1]
    return json.loads(line.split(" ", 1)[1])


def run_benchmark(name: str, json_path: str, quick: bool, extra: list[str],
                  timeout: float | None) -> dict:
    """Runs one benchmark (its output goes to this process's stdout) and returns its status."""
    has_quick, _ = BENCHMARKS[name]
    json_path = os.path.abspath(json_path)
    command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if quick and has_quick
                                                         else []),
               "--json", json_path, *extra]
    shown = shlex.join(["python"] + [os.path.relpath(a) if os.path.isabs(a) else a
                                      for a in command[1:]])
    print(f"\n=== {name}: {shown}", flush=True)
    if os.path.exists(json_path):
        os.remove(json_path)  # never summarise a stale result
    start = time.perf_counter()
    status = {"command": shown, "json": json_path}
    try:
        proc = subprocess.run(command, env=common.repo_env(), timeout=timeout)
        status["returncode"] = proc.returncode
    except subprocess.TimeoutExpired:
        status["returncode"] = None
        status["error"] = f"timed out after {timeout:g} s"
    status["seconds"] = round(time.perf_counter() - start, 1)
    if status["returncode"] not in (0, None):
        status["error"] = f"exit code {status['returncode']}"
    if not os.path.exists(json_path):
        status.setdefault("error", "wrote no JSON")
    print(f"=== {name}: {'failed: ' + status['error'] if 'error' in status else 'done'} "
          f"({status['seconds']:.0f} s)", flush=True)
    return status


# ------------------------------------------------------------------------------ summary


def _fmt(x: float | None) -> str:
    """3 significant digits without exponents; thousands separated."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def summarise_train(r: dict) -> list[tuple[str, str, str]]:
    rows = []
    matmul = r.get("matmul_gflops")
    width = r.get("width")
    tag = f"width {width:g}, {r.get('dtype', 'float32')}" if width is not None else ""
    for c in r.get("cases", []):
        jax_s, frames, examples = c.get("jax_s"), c.get("frames"), c.get("examples")
        if not (jax_s and frames and examples):
            continue
        audio = examples * frames * SECONDS_PER_FRAME
        name = c.get("name", "?")
        if c.get("group") == "inference":
            label = f"N_W forward on features ({name})"
        elif c.get("group") == "full_step":
            label = f"train step, waveforms -> 4 log-mels ({name})"
        else:
            label = f"train step on features ({name})"
        detail = [tag, f"step {_fmt(jax_s * 1e3)} ms"]
        if c.get("recordings"):
            detail.append(f"{_fmt(c['recordings'] * frames * SECONDS_PER_FRAME / jax_s)} "
                          "recording-s/s")
        if c.get("torch_s"):
            detail.append(f"PyTorch {_fmt(audio / c['torch_s'])} audio-s/s: speed-up vs "
                          f"PyTorch {c['torch_s'] / jax_s:.2f}x")
        rows.append((label, f"{_fmt(audio / jax_s)} audio-s/s", ", ".join(d for d in detail if d)))
    for c in r.get("cases", []):
        if c.get("gflops") is not None:
            frac = c.get("fraction_of_matmul")
            torch = (f"; PyTorch {_fmt(c['torch_gflops'])} GFLOP/s = "
                     f"{100 * c['torch_fraction_of_matmul']:.0f}% of its matmul"
                     if c.get("torch_gflops") and c.get("torch_fraction_of_matmul") else "")
            rows.append((f"FLOP/s vs matmul ({c.get('name', '?')})",
                         f"{_fmt(c['gflops'])} GFLOP/s = "
                         f"{'-' if frac is None else f'{100 * frac:.0f}%'}",
                         f"of {_fmt(matmul)} GFLOP/s (jnp.dot {r.get('matmul', {}).get('n', '?')}"
                         f"^2, {r.get('dtype', 'float32')}){torch}"))
    return rows


def summarise_inference(r: dict) -> list[tuple[str, str, str]]:
    rows = []
    for c in r.get("cases", []):
        name = c.get("case", "?")
        if name.startswith("memory/"):
            rows.append((f"peak memory ({name})",
                         f"{_fmt(c.get('peak_rss_mb'))} MB RSS",
                         f"{_fmt(c.get('audio_s_per_s'))} audio-s/s incl. start-up; "
                         f"{_fmt(c.get('peak_rss_before_mb'))} MB before scoring"
                         + (f"; device peak {_fmt(c['device_peak_mb'])} MB"
                            if c.get("device_peak_mb") else "")))
        elif c.get("audio_s_per_s") is not None:
            rows.append((f"inference ({name})", f"{_fmt(c['audio_s_per_s'])} audio-s/s",
                         f"width {r.get('width', '?')}, batch {c.get('batch_size', '?')}, "
                         f"{c.get('recordings', 1)} x {c.get('recording_s', '?')} s"))
    return rows


def summarise_fcn(r: dict) -> list[tuple[str, str, str]]:
    rows = []
    for c in r.get("cases", []):
        if c.get("part") == "fcn" and c.get("speedup"):
            rows.append((f"FCN vs per-window N_S ({c.get('ns_mode', '?')}, width "
                         f"{c.get('width', '?')})", f"{c['speedup']:.2f}x faster",
                         f"{c.get('windows', '?')} windows of 128 frames vs one "
                         f"{c.get('frames', '?')}-frame pass; FLOP ratio "
                         f"{_fmt(c.get('flop_ratio'))}; N_W {_fmt(c.get('nw_s', 0) * 1e3)} ms"))
        elif c.get("part") == "log_mel" and c.get("speedup"):
            diff = c.get("max_abs_diff_db")
            rows.append((f"log-mel JAX vs librosa ({c.get('name', '?').replace('log_mel ', '')})",
                         f"{c['speedup']:.2f}x faster",
                         f"{c.get('audio_s', '?')} s of audio; JAX {_fmt(c.get('jax_s', 0) * 1e3)}"
                         f" ms vs librosa {_fmt(c.get('librosa_s', 0) * 1e3)} ms"
                         + (f"; max diff {diff:.1e} dB" if diff is not None else "")))
    return rows


def summarise_padding(r: dict) -> list[tuple[str, str, str]]:
    rows = []
    for dist in r.get("results", []):
        by_method = {row.get("method"): row for row in dist.get("rows", [])}
        longest = by_method.get("pad to longest")
        for method, row in by_method.items():
            if method == "pad to longest" or longest is None:
                continue
            rows.append((f"padding waste, {method} ({dist.get('distribution', '?').split()[0]})",
                         f"{100 * row['padding_waste']:.1f}%",
                         f"pad to longest: {100 * longest['padding_waste']:.0f}%; "
                         f"{row.get('batch_shapes', '?')} shapes; {dist.get('distribution', '')}; "
                         f"frame budget "
                         f"{r.get('frame_budget', '?')}"))
    return rows


def summarise_pipeline(r: dict) -> list[tuple[str, str, str]]:
    detail = (f"{r.get('variant', '?')} config, {r.get('dtype', '?')}, width {r.get('width', '?')}, "
              f"{r.get('scales_per_step', '?')} scale(s) per step, "
              f"{r.get('num_threads', '?')} reading threads")
    return [
        ("full training loop vs bare step", f"{100 * r['efficiency']:.1f}%",
         f"{_fmt(r['loop_steps_per_s'])} vs {_fmt(r['bare_steps_per_s'])} steps/s; {detail}"),
        ("full training loop", f"{_fmt(r['loop_network_audio_s_per_s'])} audio-s/s",
         f"network input (x scales); {_fmt(r['loop_audio_s_per_s'])} s of waveform/s, "
         f"MFU {100 * r['loop_mfu']:.1f}% of {_fmt(r['matmul_tflops'])} TFLOP/s"),
    ]


SUMMARISERS = {"train_speed": summarise_train, "inference_speed": summarise_inference,
               "fcn_speed": summarise_fcn, "padding_waste": summarise_padding,
               "pipeline_efficiency": summarise_pipeline}


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(benchmark, metric, value, detail) rows from the benchmarks' JSON results."""
    rows = []
    for name, result in results.items():
        try:
            rows += [(name, *row) for row in SUMMARISERS[name](result)]
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            rows.append((name, "summary", "-", f"unexpected JSON layout ({type(e).__name__}: {e})"))
    return rows


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("benchmark", "metric", "value", "detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    line = lambda r: "  ".join(  # noqa: E731
        [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip()
    rule = "-" * min(160, len(line(header)) + 40)
    return "\n".join([line(header), rule, *map(line, rows)])


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick to the benchmarks that have it (smaller, 1 rep)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None,
                        help="run only these benchmarks")
    parser.add_argument("--skip", nargs="+", choices=sorted(BENCHMARKS), default=[],
                        help="leave these out")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME:ARG",
                        help="an extra argument for one benchmark, e.g. "
                             "train_speed:--dtype=bfloat16 (repeatable)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed to each benchmark (default: no limit)")
    parser.add_argument("--results_dir", default=common.RESULTS_DIR,
                        help="where the JSON files go (default bench/results)")
    parser.add_argument("--json", default=None,
                        help="summary path (default <results_dir>/all_<device>[_quick].json)")
    args = parser.parse_args(argv)
    extra: dict[str, list[str]] = {name: [] for name in BENCHMARKS}
    for item in args.extra:
        name, sep, arg = item.partition(":")
        if not sep or name not in BENCHMARKS:
            parser.error(f"--extra {item!r}: expected NAME:ARG with NAME in {sorted(BENCHMARKS)}")
        extra[name].append(arg)
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]

    device = probe_device()
    slug = "cpu" if device["platform"] == "cpu" else common.device_slug(device["device_kind"])
    suffix = "_quick" if args.quick else ""
    print(f"device: {device['device_kind']} ({device['platform']}, {device['device_count']} "
          f"device(s)); benchmarks: {', '.join(names)}{' [quick]' if args.quick else ''}",
          flush=True)
    os.makedirs(args.results_dir, exist_ok=True)
    statuses, results = {}, {}
    start = time.perf_counter()
    for name in names:
        by_device = BENCHMARKS[name][1]
        path = os.path.join(args.results_dir,
                            f"{name}_{slug}{suffix}.json" if by_device else f"{name}.json")
        statuses[name] = run_benchmark(name, path, args.quick, extra[name], args.timeout)
        if os.path.exists(path) and "error" not in statuses[name]:
            with open(path) as f:
                results[name] = json.load(f)

    rows = summary_rows(results)
    rows += [(n, "run", "FAILED", s["error"]) for n, s in statuses.items() if "error" in s]
    table = format_table(rows)
    total = time.perf_counter() - start
    print(f"\nSummary: {device['device_kind']} ({device['platform']}), "
          f"{'quick' if args.quick else 'full'} runs, {total:.0f} s\n{table}")
    out = args.json or os.path.join(args.results_dir, f"all_{slug}{suffix}.json")
    with open(out, "w") as f:
        json.dump({"device": device, "quick": args.quick, "total_s": round(total, 1),
                   "date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "benchmarks": statuses,
                   "summary": [dict(zip(("benchmark", "metric", "value", "detail"), r))
                               for r in rows]}, f, indent=1)
    print(f"wrote {out}")
    return 1 if any("error" in s for s in statuses.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
