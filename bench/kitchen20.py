"""Second real benchmark: Kitchen20 kitchen sounds, weak long recordings over real backgrounds.

  python -m bench.kitchen20 --source=K20 --backgrounds=DIR[,DIR] --test_backgrounds=DIR[,DIR] \
      --out=BUILD                                                                      # build
  python -m bench.kitchen20 --source=K20 --backgrounds=... --test_backgrounds=... \
      --out=BUILD --train \
      --methods=wler,slat --seeds=3 [--config=configs/experiments/real_office.py] \
      [--override=train.epochs=24] --json=bench/results/kitchen20_....json

`--source` is a local copy of the public GitHub repository `marc-moreaux/kitchen20`;
`--backgrounds` and `--test_backgrounds` are folders of real recordings without kitchen sounds,
the second only ever under the long test recordings (docs/real_benchmark.md lists the ones the
published figures used). Nothing is downloaded and no audio enters the repository. The build:
`wler_jax.data.kitchen20`.

`--train` trains `--methods` x `--seeds` on `weak.csv` (or `--train_set=clips`) with the recipe
`--config` (default: the office benchmark's, `configs/experiments/real_office.py`, so nothing is
tuned on this corpus) and scores the clip test split (results.json) and the long validation and
test recordings (the predict CLI, as users run it: tagging mAP with a bootstrap interval). The
log-mel statistics baseline on the same tables: `python -m bench.baselines`.

  python -m bench.kitchen20 --merge A.json B.json [--baseline=bench/results/baseline_...json] \
      [--train_set=clips] --json=OUT.json

joins the runs of several `--train` JSONs of one recipe (seeds run apart) and adds per method the
mean, std and 95 % t-interval over seeds of every figure, with the baseline's figures for the
same training table beside them and the per-seed differences against it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from bench.common import load_recipe, repo_env
from wler_jax import evaluate
from wler_jax.analysis.real_scoring import long_tags
from wler_jax.analysis.seed_summary import FIGURES, merge
from wler_jax.configs.common import apply_override
from wler_jax.data import kitchen20
from wler_jax.training import config_check, train

DEFAULT_CONFIG = "configs/experiments/real_office.py:folder,cpu"


def long_tagging(workdir: str, out: str, name: str) -> dict:
    """Tagging mAP of the predict CLI (as users run it) on the build's `name` recordings."""
    pred_json = os.path.join(workdir, f"{name}_predictions.json")
    subprocess.run([sys.executable, "-m", "wler_jax.predict", f"--workdir={workdir}",
                    f"--output={pred_json}", "--noprogress", os.path.join(out, name)],
                   check=True, env=repo_env())
    with open(pred_json) as f:
        _, names, labels, scores = long_tags(json.load(f), out, name)
    return {"mAP": evaluate.average_precision(labels, scores, names)["mAP"],
            "mAP_ci95": evaluate.bootstrap_map_ci(labels, scores)}


def train_run(method: str, seed: int, args) -> dict:
    config, config_file = load_recipe(args.config, method)
    config.seed = seed
    config.data.path = os.path.join(args.out, f"{args.train_set}.csv")
    config.data.data_dir = os.path.join(args.out, "tfds")
    for assignment in args.override:
        apply_override(config, assignment)
    config_check.validate(config)
    workdir = os.path.join(args.out, "runs", args.tag, f"{method}_seed{seed}")
    if os.path.isdir(workdir) and not args.resume:
        shutil.rmtree(workdir)
    t0 = time.time()
    results = train.train_and_evaluate(config, workdir)
    run = {"method": method, "seed": seed, "config_file": config_file,
           "best_epoch": results["best_epoch"],
           "validation_mAP": results["validation"]["mAP"], "test_mAP": results["test"]["mAP"],
           "test_mAP_ci95": results["test"].get("mAP_ci95"),
           "train_seconds": round(time.time() - t0, 1), "workdir": workdir}
    run["long_val_tagging"] = long_tagging(workdir, args.out, "mixtures_val")
    run["long_tagging"] = long_tagging(workdir, args.out, "mixtures")
    print(f"[{method} seed {seed}] clip val {run['validation_mAP']:.3f} test "
          f"{run['test_mAP']:.3f}; long val {run['long_val_tagging']['mAP']:.3f} test "
          f"{run['long_tagging']['mAP']:.3f} ({run['train_seconds']:.0f} s)", flush=True)
    return run


def _print_summary(merged: dict) -> None:
    fmt = lambda iv: (f"{iv['mean']:.3f} ± {iv['std']:.3f} [{iv['ci95'][0]:.3f}, "
                      f"{iv['ci95'][1]:.3f}]" if iv["n"] > 1 else f"{iv['mean']:.3f}")
    for method, s in merged["summary"].items():
        print(f"{method} ({len(s['seeds'])} seeds): " + "; ".join(
            f"{name} {fmt(s[name])}" for name in FIGURES))
        for name in ("clip_test", "long_test"):
            if f"{name}_minus_baseline" in s:
                print(f"  {name} - baseline {merged['baseline'][name]:.3f}: "
                      f"{fmt(s[name + '_minus_baseline'])}")


def main() -> None:
    if "--merge" in sys.argv:
        p = argparse.ArgumentParser(description="join --train JSONs of one recipe")
        p.add_argument("--merge", nargs="+", required=True)
        p.add_argument("--baseline", default=None)
        p.add_argument("--train_set", default="weak", choices=("weak", "clips"))
        p.add_argument("--json", required=True)
        args = p.parse_args()
        merged = merge(args.merge, args.baseline, args.train_set)
        _print_summary(merged)
        with open(args.json, "w") as f:
            json.dump(merged, f, indent=1)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="local copy of marc-moreaux/kitchen20")
    p.add_argument("--backgrounds", required=True,
                   help="folders of real background recordings for training and validation")
    p.add_argument("--test_backgrounds", required=True,
                   help="folders of other real background recordings, only under the test ones")
    p.add_argument("--out", required=True, help="build and run folder (outside the repo)")
    p.add_argument("--split_seed", type=int, default=0)
    p.add_argument("--num_weak", type=int, default=240, help="weak training recordings")
    p.add_argument("--train", action="store_true")
    p.add_argument("--train_set", default="weak", choices=("weak", "clips"))
    p.add_argument("--methods", default="wler,slat")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first_seed", type=int, default=0)
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="recipe file[:dataset,size]; the method is added (default: the office "
                        "benchmark's recipe, not tuned on this corpus)")
    p.add_argument("--override", action="append", default=[], help="field=value, repeatable")
    p.add_argument("--tag", default="default", help="run folder name under OUT/runs")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    manifest = kitchen20.build(args.source, args.backgrounds, args.test_backgrounds, args.out,
                               split_seed=args.split_seed, num_weak=args.num_weak)
    print(json.dumps({k: manifest[k] for k in ("clips", "weak")}))
    if not args.train:
        return
    runs = [train_run(m, s, args) for s in range(args.first_seed, args.first_seed + args.seeds)
            for m in args.methods.split(",")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "kitchen20", "config_file": args.config,
                       "overrides": args.override, "manifest": manifest, "args": vars(args),
                       "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
