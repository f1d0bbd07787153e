"""WLER vs SLAT over several seeds: per-seed mAP, mean ± std, and the paired difference.

  python -m bench.compare_wler_slat --seeds=5 --json=bench/results/compare_wler_slat_cpu.json
  python -m bench.compare_wler_slat --config=configs/experiments/synthetic_cpu.py --seeds=5
  python -m bench.compare_wler_slat --variant=smoke --epochs=2 --seeds=2
  python -m bench.compare_wler_slat --variant=urbansound --override=data.manual_dir=/data
  python -m bench.compare_wler_slat --merge a.json b.json --json=both.json   # no training

Sweeps split over processes or machines (e.g. `--methods=wler` on one, `--methods=slat` on
another, or `--first_seed`) are joined with `--merge`: their runs in one summary.

Both methods use the same recipe: `configs/{wler,slat}.py:<variant>`, or with
`--config=FILE[:arg]` a recipe file (configs/experiments/) loaded as `FILE:<method>[,arg]`
(`--variant`, when given, is added to its argument); then `--epochs` and `--override` (ad-hoc
tweaks) on top. Run k uses `config.seed = k` (model init, dropout, data order; the data set
itself is fixed by `data.seed`). Each run trains in its own workdir and evaluates its selected
epoch on the validation and test splits. One run proves nothing: the summary gives, per method,
the mean ± std of validation and test mAP with a t-interval over seeds, and the paired
WLER - SLAT test mAP difference (same seed = same data order) with its 95 % t-interval
(`wler_jax.analysis.compare_sweeps`). JSON: {"config_file", "variant", "epochs", "overrides",
"runs": [{"method", "seed", "config_file", "validation_mAP", "test_mAP", "test_mAP_ci95",
"best_epoch", "seconds"}, ...], "summary": {...}}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from absl import logging

from bench import common
from wler_jax import errors
from wler_jax.analysis.compare_sweeps import merge, report, summarise
from wler_jax.configs.common import apply_override, base_config
from wler_jax.configs.recipes import split_spec
from wler_jax.training import config_check, train


def run_config(args, method: str, seed: int):
    """(config, config file spec) of one run."""
    if args.config:
        config, spec = common.load_recipe(args.config, method, args.variant or None)
    else:
        config = base_config(method, args.variant or None)
        spec = f"configs/{method}.py" + (f":{args.variant}" if args.variant else "")
    config.seed = seed
    if args.epochs:
        config.train.epochs = args.epochs
    for assignment in args.override:
        apply_override(config, assignment)
    config_check.validate(config)
    return config, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="train seeds 0..N-1 per method")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--methods", default="wler,slat")
    parser.add_argument("--config", default=None, metavar="FILE[:arg]",
                        help="recipe file (configs/experiments/*.py) for both methods; default "
                             "configs/{wler,slat}.py")
    parser.add_argument("--variant", default="", help="config variant(s), e.g. smoke or folder,cpu")
    parser.add_argument("--epochs", type=int, default=None, help="same epoch budget for both")
    parser.add_argument("--override", action="append", default=[],
                        help="config field=value applied to both runs (repeatable)")
    parser.add_argument("--workdir", default=os.path.join(common.REPO, "workdirs", "compare"))
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

    logging.set_verbosity(logging.INFO)
    tag = args.variant.replace(",", "_") or "default"
    if args.config:  # a recipe file's runs never reuse the presets' workdirs
        stem = os.path.splitext(os.path.basename(split_spec(args.config)[0]))[0]
        tag = stem if tag == "default" else f"{stem}_{tag}"
    out = args.json or os.path.join(common.RESULTS_DIR, f"compare_wler_slat_{tag}.json")
    config_file = (common.method_template(run_config(args, "wler", 0)[1]) if args.config
                   else "configs/{method}.py" + (f":{args.variant}" if args.variant else ""))
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for method in args.methods.split(","):
            config, spec = run_config(args, method, seed)
            workdir = os.path.join(args.workdir, tag, f"{method}_seed{seed}")
            if not args.resume and os.path.isdir(workdir):
                shutil.rmtree(workdir)
            t0 = time.time()
            res = train.train_and_evaluate(config, workdir)
            runs.append({"method": method, "seed": seed, "config_file": spec,
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
                json.dump({"config_file": config_file, "variant": args.variant or "default",
                           "epochs": args.epochs, "overrides": args.override, "runs": runs,
                           "summary": summary}, f, indent=2)

    report(runs, summary, out)


if __name__ == "__main__":
    with errors.report_user_errors():
        main()
