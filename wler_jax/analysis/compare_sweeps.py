"""The synthetic WLER-vs-SLAT sweep (`python -m bench.compare_wler_slat`): per-method intervals
over seeds, the paired WLER - SLAT test mAP difference, and joining sweeps run apart.

A sweep JSON: {"variant", "epochs", "overrides", "config_file", "runs": [{"method", "seed",
"validation_mAP", "test_mAP", "test_mAP_ci95", "best_epoch", "seconds", ...}], "summary"}.
"""
from __future__ import annotations

import json
import os

from wler_jax import errors
from wler_jax.analysis.stats import interval

# What two sweeps must share to be merged (config_file only where both record it: sweeps
# written before it existed have none).
MERGE_KEYS = ("variant", "epochs", "overrides", "config_file")


def summarise(runs: list[dict]) -> dict:
    """Per-method intervals and the paired WLER - SLAT difference over shared seeds."""
    out: dict = {}
    for method in sorted({r["method"] for r in runs}):
        rs = [r for r in runs if r["method"] == method]
        out[method] = {k: interval([r[k] for r in rs]) for k in ("validation_mAP", "test_mAP")}
        out[method]["seconds"] = interval([r["seconds"] for r in rs])
    by = {(r["method"], r["seed"]): r for r in runs}
    seeds = sorted(s for m, s in by if m == "wler" and ("slat", s) in by)
    if seeds:
        diff = [by["wler", s]["test_mAP"] - by["slat", s]["test_mAP"] for s in seeds]
        out["wler_minus_slat_test"] = {**interval(diff), "per_seed": diff,
                                       "wler_wins": int(sum(d > 0 for d in diff)),
                                       "seeds": seeds}
    return out


def _fmt(iv: dict) -> str:
    return (f"{iv['mean']:.3f} ± {iv['std']:.3f}  [{iv['ci95'][0]:.3f}, {iv['ci95'][1]:.3f}]"
            if iv["n"] > 1 else f"{iv['mean']:.3f}")


def merge(paths: list[str], out: str) -> dict:
    """Join the runs of several sweep JSONs (one run per method and seed) into one summary."""
    runs, meta = {}, {}
    for path in paths:
        with open(path) as f:
            sweep = json.load(f)
        for key in MERGE_KEYS:
            if key == "config_file" and key not in sweep:
                continue
            if key in meta and meta[key] != sweep.get(key):
                raise errors.DataError(f"{path}: {key} {sweep.get(key)!r} differs from "
                                       f"{meta[key]!r} of the other sweeps; merge like with like")
            meta[key] = sweep.get(key)
        for r in sweep["runs"]:
            if (r["method"], r["seed"]) in runs:
                raise errors.DataError(f"{path}: {r['method']} seed {r['seed']} is in two sweeps")
            runs[r["method"], r["seed"]] = r
    result = {**meta, "runs": sorted(runs.values(), key=lambda r: (r["seed"], r["method"])),
              "merged_from": [os.path.basename(p) for p in paths]}
    result["summary"] = summarise(result["runs"])
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    report(result["runs"], result["summary"], out)
    return result


def report(runs: list[dict], summary: dict, out: str) -> None:
    """The per-run table, per-method intervals and the paired difference, printed."""
    print(f"\n{'method':6} {'seed':>4} {'validation':>10} {'test':>7}  {'test 95% CI':>15} "
          f"{'s':>6}")
    for r in runs:
        ci = r["test_mAP_ci95"] or [float("nan")] * 2
        print(f"{r['method']:6} {r['seed']:4d} {r['validation_mAP']:10.3f} {r['test_mAP']:7.3f}  "
              f"[{ci[0]:.3f}, {ci[1]:.3f}] {r['seconds']:6.0f}")
    for method in sorted({r["method"] for r in runs}):
        s = summary[method]
        print(f"{method}: validation {_fmt(s['validation_mAP'])} | test {_fmt(s['test_mAP'])}")
    if "wler_minus_slat_test" in summary:
        d = summary["wler_minus_slat_test"]
        print(f"WLER - SLAT test mAP (paired): {_fmt(d)}; WLER wins {d['wler_wins']} of "
              f"{len(d['seeds'])} seeds")
    print(f"wrote {out}")
