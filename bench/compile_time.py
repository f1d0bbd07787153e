"""Compile once: start-up of a training run with a fresh vs a warm compilation cache.

  python -m bench.compile_time [--config configs/wler.py:smoke] [--set field=value ...]
      [--data_dir DIR] [--json bench/results/compile_time_cpu.json]

Runs `python -m wler_jax.main` as a user would, in subprocesses, side by side on the same
machine (so a noisy, shared CPU affects all alike; compare ratios, not seconds):

  first   fresh compilation cache, new workdir (what every start cost before the cache);
  rerun   same cache, another new workdir (a rerun, or a new experiment with the same programs);
  resume  same cache, the first run's workdir with one more epoch (resumes from its checkpoint);
  lazy    no cache, no ahead-of-time compile (`compile_cache_dir=''`, `compile_ahead=False`):
          the previous behaviour, each shape compiled at its first batch.

For each: seconds from process start to the first progress line (after `log_every_steps`
steps), the ahead-of-time compile (its own log line) and the whole run, and the persistent cache
hits / writes the run logged. Ratios are against `first`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import jax

from bench import common

AOT_RE = re.compile(r"compiled (\d+) program\(s\) ahead in ([\d.]+) s \(persistent cache: (\d+) "
                    r"loaded, (\d+) written\)")
PROGRESS_RE = re.compile(r"epoch \d+/\d+ step \d+/\d+ loss")


def run(args, workdir: str, cache_dir: str, extra: list[str]) -> dict:
    """One `wler_jax.main` process; times measured from its start as lines arrive."""
    cmd = [sys.executable, "-m", "wler_jax.main", f"--config={args.config}",
           f"--workdir={workdir}", f"--config.compile_cache_dir={cache_dir}",
           *(f"--config.{s}" for s in args.set), *extra]
    if args.data_dir:
        cmd.append(f"--config.data.data_dir={args.data_dir}")
    env = common.repo_env()
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the config field decides
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=common.REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: dict = {"first_progress_s": None, "aot_compile_s": None, "cache_loaded": None,
                 "cache_written": None, "resumed": False}
    tail = []
    for line in proc.stdout:
        now = time.perf_counter() - t0
        tail = (tail + [line])[-30:]
        if out["first_progress_s"] is None and PROGRESS_RE.search(line):
            out["first_progress_s"] = round(now, 2)
        m = AOT_RE.search(line)
        if m:
            out.update(aot_compile_s=float(m.group(2)), cache_loaded=int(m.group(3)),
                       cache_written=int(m.group(4)), aot_programs=int(m.group(1)))
        if "resuming from step" in line:
            out["resumed"] = True
    proc.wait()
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["returncode"] = proc.returncode
    out["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    results = os.path.join(workdir, "results.json")
    if os.path.exists(results):  # the scores: the same whatever the cache and compile order
        with open(results) as f:
            res = json.load(f)
        out.update({f"{s}_mAP": res[s]["mAP"] for s in ("validation", "test") if s in res})
    if proc.returncode:
        print("".join(tail), file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/wler.py:smoke")
    parser.add_argument("--set", nargs="*", default=[], help="field=value overrides")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--runs", default="first,rerun,resume,lazy")
    parser.add_argument("--json", default=os.path.join(common.RESULTS_DIR,
                                                       "compile_time_cpu.json"))
    args = parser.parse_args()
    t_start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="compile_time_")
    cache = os.path.join(tmp, "jax_cache")
    epochs = None
    for s in args.set:
        if s.startswith("train.epochs="):
            epochs = int(s.split("=", 1)[1])
    results: dict = {}
    try:
        for name in args.runs.split(","):
            if name == "first":
                r = run(args, os.path.join(tmp, "wd_first"), cache, [])
            elif name == "rerun":
                r = run(args, os.path.join(tmp, "wd_rerun"), cache, [])
            elif name == "resume":  # one more epoch on the first run's workdir
                more = (epochs or 2) + 1
                r = run(args, os.path.join(tmp, "wd_first"), cache,
                        [f"--config.train.epochs={more}"])
            elif name == "lazy":
                r = run(args, os.path.join(tmp, "wd_lazy"), "", ["--config.compile_ahead=false"])
            else:
                raise SystemExit(f"unknown run {name!r}")
            results[name] = r
            print(name, json.dumps(r), flush=True)
        cache_files = sum(len(f) for _, _, f in os.walk(cache))
        cache_bytes = sum(os.path.getsize(os.path.join(d, x)) for d, _, f in os.walk(cache)
                          for x in f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = results.get("first", {})
    ratios = {}
    for name, r in results.items():
        if name == "first":
            continue
        for key in ("aot_compile_s", "first_progress_s", "total_s"):
            if r.get(key) is not None and first.get(key):
                ratios[f"{name}/{key}"] = round(r[key] / first[key], 3)
    out = {"config": args.config, "config_file": args.config, "set": args.set,
           "device": jax.devices()[0].device_kind,
           "jax": jax.__version__, "cpu_count": os.cpu_count(),
           "load_avg_at_end": os.getloadavg(), "runs": results, "ratios_vs_first": ratios,
           "cache_files": cache_files, "cache_bytes": cache_bytes}
    print(json.dumps(ratios, indent=1))
    common.write_json(out, args.json, time.perf_counter() - t_start)


if __name__ == "__main__":
    main()
