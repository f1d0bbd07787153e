"""Real-recording benchmark: DCASE 2016 task 2 office events, WLER vs SLAT over seeds.

  python -m bench.real_mixtures --source=/data/sased --out=/data/office_bench
  python -m bench.real_mixtures --source=... --out=... --train --seeds=5 [--size=cpu]
      [--config=configs/experiments/real_office.py] [--epochs=72] [--width=0.125]
      [--override=train.ema_decay=0.999 ...] [--json=PATH]
  python -m bench.real_mixtures ... --train --first_seed=3 --seeds=2 --json=b.json  # more seeds
  python -m bench.real_mixtures --merge a.json b.json --json=ab.json  # one summary, no training
  python -m bench.real_mixtures ... --train --folds=5 --seeds=5  # 5-fold cross-validation

`--source` is a local copy of the public GitHub repository `Stevens05/SASED` (the DCASE 2016
task 2 development material: 11 office classes, 20 isolated events each, 594 event segments cut
from 18 development scenes, with their annotations and source lists; 44.1 kHz mono). Nothing is
downloaded.

Build (always; reused when `--out` already holds the same build; `wler_jax.data.mixtures`, whose
docstring describes every file): `clips.csv` (every clip, split by whole source recordings),
`weak.csv` (clips plus events in 2-6 s backgrounds, background-only recordings and, with
`--train_mixtures=F`, long weakly labelled mixtures of the split's own events), 48 long test
mixtures of unseen test events (`mixtures/`, `mixtures.csv`, `mixtures_events.tsv`) and as many
validation mixtures (`mixtures_val/`), over the synthetic set's background generator.

Train (`--train`): for SLAT and WLER and `--seeds` seeds from `--first_seed`,
`wler_jax.training.train.train_and_evaluate` on the recipe `--config=FILE[:arg]` (default
`configs/experiments/real_office.py`, loaded as `FILE:<method>[,arg][,<size>]`) with
`data.path=<train_set>.csv` (`--train_set=weak`, the default, or `clips`; clip validation/test
mAP), then `python -m wler_jax.predict` on the mixtures: tagging mAP of the long recordings
(per-class AP of the clip scores over recordings; the validation mixtures' too, as
`long_val_tagging_mAP`), and localisation from the segment scores against the TSV (segment-based
F1 at the threshold and PSDS 1/2, `wler_jax.serving.localisation`). `--epochs`, `--width` and
`--override=field=value` change the recipe for every run. Writes JSON (`config_file`, `runs`,
`summary` with mean, std and a 95 % t-interval per method, and the paired WLER - SLAT
difference; `wler_jax.analysis.real_sweeps`) and prints a table. Workdirs are
`<out>/runs/<train_set>/<size><+override...>/<method>_seed<k>`, named by how the recipe differs
from the preset (`train.epochs` first, then `model.width`, then other fields and `--override`s;
`real_sweeps.run_overrides`), so the recipe files give the folders their runs had before; they
are retrained from scratch unless `--resume` (a finished run is then only evaluated again).
`--merge` joins sweep JSONs into one summary (`--baseline`: paired against another recipe's).

Cross-validation (`--folds=K`): each class's sources (in the `--split_seed` order) are cut into
K chunks; seed s tests on chunk s % K, validates on the 15 % of sources after it and trains on
the rest, from its own build under `<out>/folds<K>/fold<s % K>`. Every run also scores its clip
test split through the predict CLI, and every complete round of K seeds pools those out-of-fold
scores: every source of the corpus tested exactly once, one mAP per method, and the paired
WLER - SLAT difference with a bootstrap interval over whole sources (`pooled_clip_test`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from absl import logging

from bench import common
from wler_jax import errors
from wler_jax.analysis import real_sweeps
from wler_jax.analysis.real_scoring import clip_test_scores, evaluate_long
from wler_jax.configs.common import apply_override
from wler_jax.data import mixtures
from wler_jax.training import config_check, train

DEFAULT_CONFIG = "configs/experiments/real_office.py"
_BUILD_KEYS = ("params", "clip_counts", "sources_per_split", "source_matching", "mixtures",
               "val_mixtures")


def recipe(args, method: str):
    """(config, spec loaded) of `--config` for `method` at `--size`, on the folder dataset (a
    recipe file whose own default dataset is another is loaded with `folder` added)."""
    size = args.size if args.size != "cpu" else None
    config, spec = common.load_recipe(args.config, method, size)
    if config.data.name != "folder":
        config, spec = common.load_recipe(args.config, method, "folder", size)
    return config, spec


def predict(workdir: str, output: str, inputs: list[str], *flags: str) -> float:
    """`python -m wler_jax.predict`, as users run it, on `inputs`; returns its seconds."""
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "wler_jax.predict", f"--workdir={workdir}",
                    f"--output={output}", *flags, "--noprogress", *inputs], check=True,
                   env=common.repo_env())
    return time.time() - t0


def train_one(method: str, seed: int, args, out: str) -> dict:
    """Trains one run on the build in `out`, scores it through the predict CLI, returns its
    record."""
    config, spec = recipe(args, method)
    config.seed = seed
    config.data.path = os.path.join(out, f"{args.train_set}.csv")
    config.data.data_dir = os.path.join(out, "tfds")
    for assignment in args.override:
        apply_override(config, assignment)
    config_check.validate(config)
    workdir = os.path.join(out, "runs", args.train_set,
                           args.size + real_sweeps.variant_slug(args.override),
                           f"{method}_seed{seed}")
    if os.path.isdir(workdir) and not args.resume:
        shutil.rmtree(workdir)
    t0 = time.time()
    results = train.train_and_evaluate(config, workdir)
    train_s = time.time() - t0
    long, predict_s = {}, 0.0
    for name, tag in (("mixtures_val", "long_val"), ("mixtures", "long")):
        # on the validation then the test long recordings
        pred_json = os.path.join(workdir, f"{tag}_predictions.json")
        predict_s += predict(workdir, pred_json, [os.path.join(out, name)],
                             f"--threshold={config.eval.threshold}",
                             f"--events_tsv={os.path.join(workdir, f'{tag}_events.tsv')}")
        long[tag] = evaluate_long(pred_json, out, config.eval.threshold, name)
    long_val, long = long["long_val"], long["long"]
    # the clip test split through the CLI too: its scores are what a k-fold sweep pools
    clip_json = os.path.join(workdir, "clip_test_predictions.json")
    predict_s += predict(workdir, clip_json,
                         [c["path"] for c in mixtures.test_clips(out, args.train_set)])
    clip_cli = clip_test_scores(clip_json, out, args.train_set)
    run = {"method": method, "seed": seed, "size": args.size, "train_set": args.train_set,
           "config_file": spec, "overrides": args.override,
           "fold": args.fold_of_seed.get(seed),
           "best_epoch": results["best_epoch"], "epochs": int(config.train.epochs),
           "validation_mAP": results["validation"]["mAP"], "test_mAP": results["test"]["mAP"],
           "test_mAP_cli": clip_cli["mAP"], "build_dir": out,
           "validation_curve": [[h["epoch"], h["mAP"]] for h in results.get("history", [])],
           "long_val_tagging_mAP": long_val["mAP"],
           "long_tagging_mAP": long["mAP"], "long_AP": long["AP"],
           "long_localisation": long["localisation"],
           "seconds": round(train_s + predict_s, 1), "train_seconds": round(train_s, 1),
           "predict_seconds": round(predict_s, 1), "workdir": workdir}
    print(f"[{method} seed {seed}] clip val mAP {run['validation_mAP']:.3f}, clip test mAP "
          f"{run['test_mAP']:.3f}, long val tagging mAP {run['long_val_tagging_mAP']:.3f}, long "
          f"tagging mAP {run['long_tagging_mAP']:.3f}, segment F1 "
          f"{long['localisation']['segment_f1']:.3f}, PSDS1 {long['localisation']['psds1']:.3f}"
          f" ({run['seconds']:.0f} s)", flush=True)
    return run


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="local copy of Stevens05/SASED (required unless --merge)")
    parser.add_argument("--out",
                        help="build and run folder (outside the repo; required unless --merge)")
    parser.add_argument("--split_seed", type=int, default=0, help="clip split (fixes the test)")
    parser.add_argument("--folds", type=int, default=0,
                        help="k-fold cross-validation over sources (0: the one fixed split): "
                             "seed s trains on fold s %% folds, each fold built under "
                             "<out>/folds<k>/fold<i>, and every complete round of folds pools "
                             "its out-of-fold clip test scores (every source tested once)")
    parser.add_argument("--mix_seed", type=int, default=0, help="long mixtures")
    parser.add_argument("--num_mixtures", type=int, default=48)
    parser.add_argument("--negative_fraction", type=float, default=mixtures.NEGATIVE_FRACTION,
                        help="weak set: background-only recordings per context recording")
    parser.add_argument("--context_seconds",
                        default=",".join(str(x) for x in mixtures.CONTEXT_SECONDS),
                        help="weak set: shortest,longest context recording in seconds")
    parser.add_argument("--train_mixtures", type=float, default=mixtures.TRAIN_MIXTURES,
                        help="weak set: long weakly labelled recordings (made as the test "
                             "mixtures, from the split's own events) per train/validation "
                             "isolated event")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--train", action="store_true", help="train and evaluate SLAT and WLER")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per method")
    parser.add_argument("--first_seed", type=int, default=0,
                        help="run seeds first_seed..first_seed+seeds-1 (split a sweep over "
                             "processes, then join the JSONs with --merge)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="join these sweep JSONs into --json and print the table; no build")
    parser.add_argument("--baseline", default=None, metavar="JSON",
                        help="with --merge: another recipe's sweep of the same seeds; adds "
                             "paired differences (against_baseline)")
    parser.add_argument("--methods", default="slat,wler")
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="FILE[:arg]",
                        help="the recipe: a config file loaded as FILE:<method>[,arg][,<size>] "
                             f"(default {DEFAULT_CONFIG}: the cpu preset at width 0.25, 36 "
                             "epochs; configs/experiments/ holds the earlier recipes)")
    parser.add_argument("--size", default="cpu", choices=("smoke", "cpu", "full"))
    parser.add_argument("--train_set", default="weak", choices=("weak", "clips"),
                        help="weak: clips plus events in 2-6 s backgrounds and background-only "
                             "recordings (weak.csv); clips: the corpus clips only (clips.csv)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the recipe's; real_office.py: 36 at "
                             "--size=cpu, else the preset's)")
    parser.add_argument("--width", type=float, default=None,
                        help="model.width (default: the recipe's; real_office.py: 0.25 at "
                             "--size=cpu, else the preset's)")
    parser.add_argument("--override", action="append", default=[],
                        help="config field=value for every run (repeatable), "
                             "e.g. train.ema_decay=0.999")
    parser.add_argument("--resume", action="store_true", help="reuse existing run workdirs")
    parser.add_argument("--verbose", action="store_true", help="training logs (epochs, mAP)")
    parser.add_argument("--json", default=None,
                        help="default bench/results/real_mixtures_<size>[_<K>fold].json")
    args = parser.parse_args()
    if args.merge and not args.json:
        parser.error("--merge needs --json=PATH for the joined result")
    if not args.merge and (not args.source or not args.out):
        parser.error("--source and --out are required (unless --merge)")
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds must be 0 (one fixed split) or at least 2")
    return args


def main() -> None:
    args = parse_args()
    if args.merge:
        real_sweeps.merge(args.merge, args.json, args.baseline)
        return
    args.override = real_sweeps.run_overrides(recipe(args, "wler")[0], args.size, args.epochs,
                                              args.override, args.width)
    context_seconds = tuple(float(x) for x in args.context_seconds.split(","))
    builds: dict[int, tuple[str, dict]] = {}

    def build_for(fold: int) -> tuple[str, dict]:
        """(folder, manifest) of the build a seed trains on: `--out`, or its fold's folder."""
        if fold not in builds:
            out = (os.path.join(args.out, f"folds{args.folds}", f"fold{fold}") if args.folds
                   else args.out)
            builds[fold] = out, mixtures.build(
                args.source, out, split_seed=args.split_seed, mix_seed=args.mix_seed,
                num_mixtures=args.num_mixtures, negative_fraction=args.negative_fraction,
                context_seconds=context_seconds, rebuild=args.rebuild, folds=args.folds,
                fold=fold, train_mixtures=args.train_mixtures)
        return builds[fold]

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    args.fold_of_seed = {s: s % args.folds for s in seeds} if args.folds else {}
    if not args.train:
        for fold in sorted(set(args.fold_of_seed.values())) or [0]:
            print(json.dumps({k: build_for(fold)[1][k] for k in _BUILD_KEYS[1:]}, indent=1))
        return
    logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
    suffix = f"_{args.folds}fold" if args.folds else ""
    path = args.json or os.path.join(common.RESULTS_DIR, f"real_mixtures_{args.size}{suffix}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    config_file = common.method_template(recipe(args, "wler")[1])
    runs, t0 = [], time.time()
    for seed in seeds:
        out, manifest = build_for(args.fold_of_seed.get(seed, 0))
        for method in args.methods.split(","):
            runs.append(train_one(method, seed, args, out))
            summary = real_sweeps.summarize(runs)  # after every run: a stopped sweep keeps them
            build_meta = {k: manifest[k] for k in _BUILD_KEYS}
            if args.folds:  # the fold differs between runs; the run records say which
                build_meta["params"] = {**build_meta["params"], "fold": None}
            result = {"corpus": "DCASE 2016 task 2 (Stevens05/SASED)", "size": args.size,
                      "train_set": args.train_set, "seeds": args.seeds,
                      "config_file": config_file, "overrides": args.override,
                      "folds": args.folds, "build": build_meta,
                      "total_seconds": round(time.time() - t0, 1),
                      "runs": runs, "summary": summary}
            if args.folds:
                result["pooled_clip_test"] = real_sweeps.pooled_clip_test(runs, args.folds)
            with open(path, "w") as f:
                json.dump(result, f, indent=1)
    real_sweeps.print_table(summary)
    if args.folds:
        real_sweeps.print_pooled(result["pooled_clip_test"])
    print(f"wrote {path}")


if __name__ == "__main__":
    with errors.report_user_errors():  # a missing corpus, a build of other parameters, ...
        main()
