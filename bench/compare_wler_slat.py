"""WLER vs SLAT over several seeds: per-seed mAP, mean ± std, and the paired difference.

  python bench/compare_wler_slat.py --seeds=5 --json=bench/results/compare_wler_slat_cpu.json
  python bench/compare_wler_slat.py --variant=smoke --epochs=2 --seeds=2
  python bench/compare_wler_slat.py --variant=urbansound --override=data.manual_dir=/data
  python bench/compare_wler_slat.py --merge a.json b.json --json=both.json   # no training

Sweeps split over processes or machines (e.g. `--methods=wler` on one, `--methods=slat` on
another, or `--first_seed`) are joined with `--merge`: their runs in one summary.

Both methods use configs/{wler,slat}.py with the same variant, overrides, epochs and frame
budget; run k uses `config.seed = k` (model init, dropout, data order; the data set itself is
fixed by `data.seed`). Each run trains in its own workdir and evaluates its selected epoch on
the validation and test splits. One run proves nothing: the summary gives, per method, the mean
± std of validation and test mAP with a t-interval over seeds, and the paired WLER - SLAT test
mAP difference (same seed = same data order) with its 95 % t-interval. JSON:
{"runs": [{"method", "seed", "validation_mAP", "test_mAP", "test_mAP_ci95", "best_epoch",
"seconds"}, ...], "summary": {...}, "config": {...}}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import scipy.stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def interval(values, level: float = 0.95) -> dict:
    """Mean, sample std and the t-interval of the mean of `values` (NaN interval for n < 2)."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "std": float("nan"), "ci95": [float("nan")] * 2, "n": len(v)}
    std = float(v.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.5 + level / 2, len(v) - 1) * std / np.sqrt(len(v)))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": len(v)}


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
        for key in ("variant", "epochs", "overrides"):
            if key in meta and meta[key] != sweep.get(key):
                raise SystemExit(f"error: {path}: {key} {sweep.get(key)!r} differs from "
                                 f"{meta[key]!r} of the other sweeps; merge like with like")
            meta[key] = sweep.get(key)
        for r in sweep["runs"]:
            if (r["method"], r["seed"]) in runs:
                raise SystemExit(f"error: {path}: {r['method']} seed {r['seed']} is in two sweeps")
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
    print(f"\n{'method':6} {'seed':>4} {'validation':>10} {'test':>7}  {'test 95% CI':>15} {'s':>6}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="train seeds 0..N-1 per method")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--methods", default="wler,slat")
    parser.add_argument("--variant", default="", help="config variant(s), e.g. smoke or folder,cpu")
    parser.add_argument("--epochs", type=int, default=None, help="same epoch budget for both")
    parser.add_argument("--override", action="append", default=[],
                        help="config field=value applied to both runs (repeatable)")
    parser.add_argument("--workdir", default=os.path.join(REPO, "workdirs", "compare"))
    parser.add_argument("--resume", action="store_true",
                        help="keep existing workdirs (resume / reuse) instead of starting fresh")
    parser.add_argument("--json", default=None)
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="join the runs of earlier sweeps' JSON files and summarise them "
                             "(no training); needs --json")
    args = parser.parse_args()
    if args.merge:
        if not args.json:
            parser.error("--merge needs --json=PATH for the joined result")
        merge(args.merge, args.json)
        return

    from absl import logging
    from wler_jax.configs.common import apply_override, base_config
    from wler_jax.training import config_check
    from wler_jax.training import train

    logging.set_verbosity(logging.INFO)
    tag = args.variant.replace(",", "_") or "default"
    out = args.json or os.path.join(REPO, "bench", "results", f"compare_wler_slat_{tag}.json")
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for method in args.methods.split(","):
            config = base_config(method, args.variant or None)
            config.seed = seed
            if args.epochs:
                config.train.epochs = args.epochs
            for assignment in args.override:
                apply_override(config, assignment)
            config_check.validate(config)
            workdir = os.path.join(args.workdir, tag, f"{method}_seed{seed}")
            if not args.resume and os.path.isdir(workdir):
                shutil.rmtree(workdir)
            t0 = time.time()
            res = train.train_and_evaluate(config, workdir)
            runs.append({"method": method, "seed": seed,
                         "validation_mAP": res["validation"]["mAP"],
                         "test_mAP": res["test"]["mAP"],
                         "test_mAP_ci95": res["test"].get("mAP_ci95"),
                         "best_epoch": res["best_epoch"], "seconds": time.time() - t0,
                         "history": [h["mAP"] for h in res["history"]],
                         "test_AP": res["test"]["AP"]})
            print(f"== {method} seed {seed}: validation mAP {runs[-1]['validation_mAP']:.3f}, "
                  f"test mAP {runs[-1]['test_mAP']:.3f}, {runs[-1]['seconds']:.0f} s", flush=True)
            summary = summarise(runs)
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "w") as f:  # rewritten after every run: a killed sweep keeps its runs
                json.dump({"variant": args.variant or "default", "epochs": args.epochs,
                           "overrides": args.override, "runs": runs, "summary": summary}, f,
                          indent=2)

    report(runs, summary, out)


if __name__ == "__main__":
    main()
