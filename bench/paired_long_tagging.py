"""Two recipes' runs of the same seed (fold), tagging the same long recordings: how far apart are
they, against how far one set of 48 recordings lets a figure move?

  python -m bench.paired_long_tagging SWEEP.json --baseline=OLD.json [--method=wler]
      --json=bench/results/paired_long_tagging.json

SWEEP.json, OLD.json: `python -m bench.real_mixtures` sweep JSONs whose runs' workdirs exist here
(their `long_val_predictions.json` and `long_predictions.json`). Runs pair by method and seed, as
`--merge --baseline` pairs them, and must share a build (one set of recordings). For each pair
and each long split (validation, test): both runs' tagging mAP, each one's percentile bootstrap
interval over recordings, and the interval of their difference from the same resamples
(`wler_jax.analysis.paired.paired_run`). Why: a sweep's per-seed spread mixes how
differently runs train with how much one small evaluation set moves a figure; this separates
the second out. Each pair also gets `trained_params_max_abs_diff`: how far apart the two runs'
final trained weights are (their `checkpoints/latest`; 0 when a recipe changes only what is
evaluated, e.g. `train.ema_decay`, so that its pairs differ in nothing else; None without them).
"""
from __future__ import annotations

import argparse
import json
import os

from wler_jax import errors
from wler_jax.analysis.paired import paired_run
from wler_jax.analysis.real_sweeps import runs_by_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", metavar="SWEEP.json")
    parser.add_argument("--baseline", required=True, metavar="OLD.json")
    parser.add_argument("--method", default="wler")
    parser.add_argument("--json", required=True, help="output JSON")
    args = parser.parse_args()
    runs, config_files = {}, {}
    for path in (args.sweep, args.baseline):
        with open(path) as f:
            sweep = json.load(f)
        runs[path] = runs_by_seed(sweep["runs"], args.method)
        config_files[path] = sweep.get("config_file")  # None: a sweep from before it
    seeds = sorted(set(runs[args.sweep]) & set(runs[args.baseline]))
    if not seeds:
        raise errors.DataError(f"no {args.method} seed is in both {args.sweep} and "
                               f"{args.baseline}")
    pairs = {}
    for seed in seeds:
        pairs[seed] = paired_run(runs[args.sweep][seed], runs[args.baseline][seed])
        for split in ("validation", "test"):
            p = pairs[seed][split]
            print(f"seed {seed} long {split:10s} {p['mAP']:.3f} [{p['ci95'][0]:.3f}, "
                  f"{p['ci95'][1]:.3f}]  baseline {p['baseline_mAP']:.3f} "
                  f"[{p['baseline_ci95'][0]:.3f}, {p['baseline_ci95'][1]:.3f}]  diff "
                  f"{p['diff']:+.3f} [{p['diff_ci95'][0]:+.3f}, {p['diff_ci95'][1]:+.3f}]")
        print(f"seed {seed} trained weights, largest difference: "
              f"{pairs[seed]['trained_params_max_abs_diff']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"sweep": os.path.basename(args.sweep),
                   "baseline": os.path.basename(args.baseline), "method": args.method,
                   "config_file": config_files[args.sweep],
                   "baseline_config_file": config_files[args.baseline],
                   "pairs": {str(s): p for s, p in pairs.items()}}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    with errors.report_user_errors():
        main()
