"""Two recipes' runs of the same seed (fold), tagging the same long recordings: how far apart are
they, against how far one set of 48 recordings lets a figure move?

  python bench/paired_long_tagging.py SWEEP.json --baseline=OLD.json [--method=wler]
      --json=bench/results/paired_long_tagging.json

SWEEP.json, OLD.json: `real_mixtures.py` sweep JSONs whose runs' workdirs exist here (their
`long_val_predictions.json` and `long_predictions.json`). Runs pair by method and seed, as
`--merge --baseline` pairs them, and must share a build (one set of recordings). For each pair
and each long split (validation, test): both runs' tagging mAP, each one's percentile bootstrap
interval over recordings, and the interval of their difference from the same resamples
(`wler_jax.evaluate.paired_bootstrap_map_ci`). Why: a sweep's per-seed spread mixes how
differently runs train with how much one small evaluation set moves a figure; this separates
the second out. Each pair also gets `trained_params_max_abs_diff`: how far apart the two runs'
final trained weights are (their `checkpoints/latest`; 0 when a recipe changes only what is
evaluated, e.g. `train.ema_decay`, so that its pairs differ in nothing else; None without them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
import real_mixtures  # noqa: E402

SPLITS = (("validation", "long_val_predictions.json", "mixtures_val"),
          ("test", "long_predictions.json", "mixtures"))


def trained_params(workdir: str):
    """The weights of a run's last train state, or None when it has no checkpoints."""
    from wler_jax import checkpoints

    root = os.path.join(workdir, "checkpoints")
    if not all(os.path.isdir(os.path.join(root, d)) for d in ("latest", "best")):
        return None
    ckpt = checkpoints.Checkpointer(workdir)
    try:
        state = ckpt.read_latest()
    finally:
        ckpt.close()
    return None if state is None else state["params"]


def params_max_abs_diff(a, b) -> float | None:
    """Largest absolute difference between two weight trees (None if either is missing or
    they are not the same model)."""
    import jax
    import numpy as np

    if a is None or b is None or jax.tree.structure(a) != jax.tree.structure(b):
        return None
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def paired_run(run: dict, base: dict, num_resamples: int = 1000) -> dict:
    """Per long split: {"mAP": this, "baseline_mAP", "ci95", "baseline_ci95", "diff",
    "diff_ci95"} of one pair of runs on the same build."""
    from wler_jax import evaluate

    if run["build_dir"] != base["build_dir"]:
        raise SystemExit(f"error: seed {run['seed']}: the runs were built in {run['build_dir']} and "
                         f"{base['build_dir']}; pair runs of one build")
    out = {}
    for split, pred_file, name in SPLITS:
        tags = []
        for r in (run, base):
            with open(os.path.join(r["workdir"], pred_file)) as f:
                tags.append(real_mixtures.long_tags(json.load(f), r["build_dir"], name))
        (files, names, labels, scores), (files_b, _, _, scores_b) = tags
        order = [files_b.index(f) for f in files]  # the baseline's rows in this run's order
        ci = evaluate.paired_bootstrap_map_ci(labels, scores, scores_b[order],
                                              num_resamples=num_resamples)
        a = evaluate.average_precision(labels, scores, names)["mAP"]
        b = evaluate.average_precision(labels, scores_b[order], names)["mAP"]
        out[split] = {"num_recordings": len(files), "mAP": a, "baseline_mAP": b,
                      "ci95": ci["a"], "baseline_ci95": ci["b"], "diff": a - b,
                      "diff_ci95": ci["diff"]}
    out["trained_params_max_abs_diff"] = params_max_abs_diff(
        trained_params(run["workdir"]), trained_params(base["workdir"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", metavar="SWEEP.json")
    parser.add_argument("--baseline", required=True, metavar="OLD.json")
    parser.add_argument("--method", default="wler")
    parser.add_argument("--json", required=True, help="output JSON")
    args = parser.parse_args()
    runs = {}
    for path in (args.sweep, args.baseline):
        with open(path) as f:
            runs[path] = real_mixtures.runs_by_seed(json.load(f)["runs"], args.method)
    seeds = sorted(set(runs[args.sweep]) & set(runs[args.baseline]))
    if not seeds:
        raise SystemExit(f"error: no {args.method} seed is in both {args.sweep} and {args.baseline}")
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
                   "pairs": {str(s): p for s, p in pairs.items()}}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
