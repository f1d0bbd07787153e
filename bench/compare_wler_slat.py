"""WLER vs SLAT on the same data and budget: the paper's Table I layout, plus localisation.

  python bench/compare_wler_slat.py                       # synthetic set, CPU size
  python bench/compare_wler_slat.py --variant=smoke --epochs=2
  python bench/compare_wler_slat.py --variant=urbansound --override=data.manual_dir=/data

Both runs use configs/{slat,wler}.py with the same variant, overrides, seed, epochs and frame
budget; each trains in its own workdir (resumable) and evaluates its best-validation epoch on
the test split. Prints the per-class AP table with mAP, segment F1 and PSDS rows, and writes
JSON (default bench/results/compare_wler_slat_<variant>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _override(config, assignment: str) -> None:
    key, value = assignment.split("=", 1)
    node = config
    *path, leaf = key.split(".")
    for part in path:
        node = node[part]
    old = node[leaf]
    node[leaf] = type(old)(value) if old is not None and not isinstance(old, bool) else (
        value.lower() in ("1", "true") if isinstance(old, bool) else value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="", help="config variant(s), e.g. smoke or folder,cpu")
    parser.add_argument("--epochs", type=int, default=None, help="same epoch budget for both")
    parser.add_argument("--override", action="append", default=[],
                        help="config field=value applied to both runs (repeatable)")
    parser.add_argument("--workdir", default=os.path.join(REPO, "workdirs", "compare"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from absl import logging
    from wler_jax import config_check, evaluate, train
    from wler_jax.configs.common import base_config

    logging.set_verbosity(logging.INFO)
    results, seconds = {}, {}
    for method in ("slat", "wler"):
        config = base_config(method, args.variant or None)
        if args.epochs:
            config.train.epochs = args.epochs
        for assignment in args.override:
            _override(config, assignment)
        config_check.validate(config)
        t0 = time.time()
        results[method.upper()] = train.train_and_evaluate(
            config, os.path.join(args.workdir, f"{method}_{args.variant or 'default'}"))
        seconds[method.upper()] = time.time() - t0
    names = results["WLER"]["class_names"]
    table = evaluate.format_table({m: r["test"] for m, r in results.items()}, names,
                                  title=f"Test split, variant {args.variant or 'default'}: "
                                        "SLAT vs WLER (AP per class)")
    print(table)
    out = args.json or os.path.join(REPO, "bench", "results",
                                    f"compare_wler_slat_{args.variant or 'default'}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"variant": args.variant or "default", "epochs": args.epochs,
                   "overrides": args.override, "seconds": seconds,
                   "test": {m: r["test"] for m, r in results.items()},
                   "validation": {m: r["validation"] for m, r in results.items()},
                   "best_epoch": {m: r["best_epoch"] for m, r in results.items()}}, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
