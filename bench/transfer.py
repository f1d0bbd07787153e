"""Does a pretrained network help on a small real set? Scratch vs fine-tuning vs linear probes.

  python -m bench.real_mixtures --source=/data/sased --out=/data/office_bench  # once
  python -m bench.transfer --clips=/data/office_bench/clips.csv --out=/data/transfer \
      [--config=configs/experiments/transfer_office.py] [--source_workdir=DIR] [--seeds=3]
      [--size=cpu] [--freeze=] [--override=FIELD=VALUE] [--json=bench/results/transfer_cpu.json]

Target: the clips of `bench.real_mixtures` (DCASE 2016 task 2 office events, `clips.csv`:
path,labels,split; 11 classes, whole-source splits, the test split never used for selection).
Four ways to a classifier, each scored by clip mAP on the same test split:

  (a) scratch    WLER trained on the target from random init (`configs/wler.py:folder,<size>`,
                 or the recipe file `--config`, e.g. configs/experiments/transfer_office.py;
                 `config.seed = k`).
  (b) finetune   the same run started from `--source_workdir`'s best checkpoint
                 (`train.init_from`; `train.freeze=--freeze`, "" = everything trains).
  (c) probe      scikit-learn logistic regression (one per class, standardised inputs, C chosen
                 on validation mAP from a small grid) on the source model's clip embeddings
                 (`wler_jax.serving.embeddings`: FCv1 activations, the four scales averaged; masked mean
                 and max over segments concatenated, `--probe_pooling`) of every clip.
  (d) logmel     the same probe on mean and std over time of each mel band of the log-mel, at
                 each of the four scales (1024 numbers per clip): the no-network baseline.

The source (pretraining on *another* data set): `--source_workdir`, or else a WLER run on the
embedded synthetic set (`configs/wler.py:<size>`, seed 0) trained into `<out>/source_synthetic`.
Its width and input normalisation must match the target runs' (`--size` sets both).

Seeds: (a) and (b) train once per seed 0..N-1 (init / dropout / data order); the summary gives
mean, std and a 95 % t-interval over seeds, and the paired (b) - (a) difference. (c) and (d)
are convex fits of fixed features, identical for every seed, so they run once; every run also
carries the bootstrap 95 % interval of its test mAP over test clips (`evaluate.bootstrap_map_ci`),
the interval that says whether two conditions differ on this test set. Times: training seconds
for (a)/(b) (the source's pretraining is not counted, it is reported separately), feature
extraction + fit seconds for (c)/(d).

JSON: {"config_file", "runs": [{"condition", "seed", "test_mAP", "test_mAP_ci95", "validation_mAP",
"seconds", ...}], "summary": {condition: {"test_mAP": {mean, std, ci95, n, values}, ...},
"finetune_minus_scratch": {...}}, "source": {...}, ...}.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
import warnings

import jax
import numpy as np
from absl import logging
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench import common
from wler_jax import audio, evaluate, features
from wler_jax.analysis.stats import interval
from wler_jax.configs.common import apply_override, base_config
from wler_jax.configs.recipes import split_spec
from wler_jax.geometry import N_FFTS
from wler_jax.predict import load_model
from wler_jax.serving import embeddings
from wler_jax.training import config_check, train

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # logistic regression 1 / L2 weight, picked on validation


def read_clips(path: str) -> tuple[list[str], list[list[str]], list[str]]:
    """Absolute paths, label lists and splits of a clips CSV (path,labels[,split,...])."""
    base = os.path.dirname(os.path.abspath(path))
    paths, labels, splits = [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            paths.append(row["path"] if os.path.isabs(row["path"])
                         else os.path.join(base, row["path"]))
            labels.append([x for x in row["labels"].split(";") if x])
            splits.append(row.get("split") or "train")
    return paths, labels, splits


# -- (a) and (b): training ------------------------------------------------------------------------
def target_config(args, seed: int):
    """(config, config file spec) of a target run: the recipe file or the folder preset."""
    if args.config:
        config, spec = common.load_recipe(args.config, "wler",
                                          args.size if args.size != "cpu" else None)
    else:
        config = base_config("wler", f"folder,{args.size}")
        spec = f"configs/wler.py:folder,{args.size}"
    config.seed = seed
    config.data.path = os.path.abspath(args.clips)
    config.data.data_dir = args.data_dir or os.path.join(os.path.dirname(
        os.path.abspath(args.clips)), "tfds")
    for assignment in args.override:
        apply_override(config, assignment)
    return config, spec


def runs_folder(args) -> str:
    """`<out>/runs/<size>[+<recipe file>]`: a recipe file's runs never reuse the preset's."""
    if not args.config:
        return os.path.join(args.out, "runs", args.size)
    stem = os.path.splitext(os.path.basename(split_spec(args.config)[0]))[0]
    return os.path.join(args.out, "runs", f"{args.size}+{stem}")


def train_run(condition: str, seed: int, args, source: str) -> dict:
    config, spec = target_config(args, seed)
    if condition == "finetune":
        config.train.init_from = source
        config.train.freeze = args.freeze
    config_check.validate(config)
    workdir = os.path.join(runs_folder(args), f"{condition}_seed{seed}")
    if os.path.isdir(workdir) and not args.resume:
        shutil.rmtree(workdir)
    t0 = time.time()
    results = train.train_and_evaluate(config, workdir)
    run = {"condition": condition, "seed": seed, "config_file": spec,
           "test_mAP": results["test"]["mAP"],
           "test_mAP_ci95": results["test"].get("mAP_ci95"),
           "validation_mAP": results["validation"]["mAP"], "best_epoch": results["best_epoch"],
           "epochs": int(config.train.epochs), "seconds": round(time.time() - t0, 1),
           "workdir": workdir}
    print(f"[{condition} seed {seed}] test mAP {run['test_mAP']:.3f} (val "
          f"{run['validation_mAP']:.3f}, best epoch {run['best_epoch']}) {run['seconds']:.0f} s",
          flush=True)
    return run


def ensure_source(args) -> tuple[str, dict]:
    """The pretrained source workdir and what it is (trained here on the synthetic set if not
    given)."""
    if args.source_workdir:
        workdir = os.path.abspath(args.source_workdir)
        seconds = None
    else:
        workdir = os.path.join(args.out, f"source_synthetic_{args.size}")
        seconds = None
        if not os.path.exists(os.path.join(workdir, "results.json")):
            config = base_config("wler", args.size)  # configs/wler.py:<size>
            for assignment in args.source_override:
                apply_override(config, assignment)
            t0 = time.time()
            train.train_and_evaluate(config, workdir)
            seconds = round(time.time() - t0, 1)
    run = json.load(open(os.path.join(workdir, "run.json")))
    results_path = os.path.join(workdir, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    info = {"workdir": workdir, "method": run["config"]["method"],
            "data": run["config"]["data"]["name"], "size": run["config"]["data"]["size"],
            "width": run["config"]["model"]["width"], "classes": run["class_names"],
            "epochs": run["config"]["train"]["epochs"],
            "test_mAP_on_its_own_data": results.get("test", {}).get("mAP"),
            "pretraining_seconds_here": seconds}
    print(f"source: {info['method']} on {info['data']} ({info['size']}), width {info['width']}, "
          f"own test mAP {info['test_mAP_on_its_own_data']}", flush=True)
    return workdir, info


# -- (c) and (d): probes ------------------------------------------------------------------------
def embedding_features(source: str, paths: list[str], pooling: str = "both"
                       ) -> tuple[np.ndarray, float]:
    """Clip embeddings of the source model ([N, D] masked mean or max, or [N, 2 D] both), and
    the seconds they took."""
    model = load_model(source)
    t0 = time.time()
    out: dict[int, np.ndarray] = {}
    batch = 1 if jax.default_backend() == "cpu" else 8
    for i, emb, err in embeddings.embed_files(model, paths, batch_size=batch):
        if err is not None:
            raise err
        out[i] = {"mean": emb.clip_mean, "max": emb.clip_max,
                  "both": np.concatenate([emb.clip_mean, emb.clip_max])}[pooling]
    return np.stack([out[i] for i in range(len(paths))]), time.time() - t0


def logmel_features(paths: list[str]) -> tuple[np.ndarray, float]:
    """[N, 4 * 256] mean and std over time of each mel band at each scale, and the seconds."""
    warnings.filterwarnings("ignore", message="Empty filters")  # n_fft 512: 128 mels, as trained
    t0 = time.time()
    rows = []
    for p in paths:
        x = audio.load(p)
        parts = []
        for n_fft in N_FFTS:
            m = features.librosa_log_mel(x, n_fft)
            parts += [m.mean(0), m.std(0)]
        rows.append(np.concatenate(parts))
    return np.stack(rows).astype(np.float32), time.time() - t0


def probe(name: str, x: np.ndarray, y: np.ndarray, splits: np.ndarray, class_names: list[str],
          extract_s: float, seed: int = 0) -> dict:
    """One logistic regression per class on standardised `x`; C picked on validation mAP."""
    t0 = time.time()
    tr, va, te = (splits == s for s in ("train", "validation", "test"))
    best = None
    for c in C_GRID:
        clf = make_pipeline(StandardScaler(), OneVsRestClassifier(
            LogisticRegression(C=c, max_iter=3000, random_state=seed)))
        clf.fit(x[tr], y[tr])
        val = evaluate.average_precision(y[va], clf.decision_function(x[va]), class_names)["mAP"]
        if best is None or val > best[0]:
            best = (val, c, clf)
    val, c, clf = best
    scores = clf.decision_function(x[te])
    test = evaluate.average_precision(y[te], scores, class_names)
    run = {"condition": name, "seed": seed, "test_mAP": test["mAP"],
           "test_mAP_ci95": evaluate.bootstrap_map_ci(y[te], scores),
           "validation_mAP": val, "C": c, "dims": int(x.shape[1]),
           "seconds": round(extract_s + time.time() - t0, 1),
           "extract_seconds": round(extract_s, 1), "fit_seconds": round(time.time() - t0, 1)}
    print(f"[{name}] test mAP {run['test_mAP']:.3f} (val {val:.3f}, C={c}, {x.shape[1]} dims) "
          f"{run['seconds']:.0f} s", flush=True)
    return run


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for cond in ("scratch", "finetune", "probe", "logmel"):
        rs = [r for r in runs if r["condition"] == cond]
        if rs:
            out[cond] = {k: interval([r[k] for r in rs])
                         for k in ("test_mAP", "validation_mAP", "seconds")}
            out[cond]["test_mAP"]["values"] = [r["test_mAP"] for r in rs]
    by = {(r["condition"], r["seed"]): r for r in runs}
    seeds = sorted(s for c, s in by if c == "finetune" and ("scratch", s) in by)
    if seeds:
        diff = [by["finetune", s]["test_mAP"] - by["scratch", s]["test_mAP"] for s in seeds]
        out["finetune_minus_scratch"] = {**interval(diff), "per_seed": diff, "seeds": seeds,
                                         "finetune_wins": int(sum(d > 0 for d in diff))}
    return out


def print_table(summary: dict) -> None:
    print(f"\n{'condition':10s} {'test mAP mean ± std [95% t-CI]':>36s} {'n':>3s} {'seconds':>9s}")
    for cond in ("scratch", "finetune", "probe", "logmel"):
        if cond not in summary:
            continue
        iv, s = summary[cond]["test_mAP"], summary[cond]["seconds"]
        ci = f"[{iv['ci95'][0]:.3f}, {iv['ci95'][1]:.3f}]" if iv["n"] > 1 else "(one fit)"
        print(f"{cond:10s} {iv['mean']:.3f} ± {(iv['std'] if iv['n'] > 1 else 0):.3f} {ci:>18s} "
              f"{iv['n']:>3d} {s['mean']:9.1f}")
    d = summary.get("finetune_minus_scratch")
    if d:
        ci = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["n"] > 1 else ""
        print(f"finetune - scratch: {d['mean']:+.3f} {ci}, finetune better on "
              f"{d['finetune_wins']}/{len(d['seeds'])} seeds")


def _no_nan(x):
    """NaN (no interval from one value) as JSON null."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return None if isinstance(x, float) and x != x else x


def cached(out: str, name: str, resume: bool, compute) -> tuple[np.ndarray, float]:
    """`compute()` -> (features, seconds), kept in `<out>/features_<name>.npz` for --resume."""
    path = os.path.join(out, f"features_{name}.npz")
    if resume and os.path.exists(path):
        z = np.load(path)
        return z["x"], float(z["seconds"])
    x, seconds = compute()
    np.savez(path, x=x, seconds=seconds)
    return x, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", required=True, help="clips.csv of bench/real_mixtures.py "
                        "(or any CSV path,labels,split)")
    parser.add_argument("--out", required=True, help="run folder (outside the repo)")
    parser.add_argument("--data_dir", default=None, help="built tfds data (default: "
                        "<clips folder>/tfds, where real_mixtures.py builds it)")
    parser.add_argument("--source_workdir", default=None, help="pretrained workdir (default: "
                        "train WLER on the synthetic set into <out>/source_synthetic_<size>)")
    parser.add_argument("--source_override", action="append", default=[],
                        help="config field=value for the source's pretraining (repeatable)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", default="cpu", choices=("smoke", "cpu", "full"))
    parser.add_argument("--freeze", default="", help="train.freeze of the fine-tuning runs")
    parser.add_argument("--probe_pooling", default="both", choices=("mean", "max", "both"),
                        help="clip embedding of (c): masked mean, max, or both concatenated")
    parser.add_argument("--conditions", default="scratch,finetune,probe,logmel")
    parser.add_argument("--config", default=None, metavar="FILE[:arg]",
                        help="recipe file of the target runs (e.g. configs/experiments/"
                             "transfer_office.py, the README's transfer figures); default the "
                             "folder dataset's preset, configs/wler.py:folder,<size>")
    parser.add_argument("--override", action="append", default=[],
                        help="config field=value for the target runs (repeatable)")
    parser.add_argument("--resume", action="store_true", help="reuse existing run workdirs and "
                        "probe features (<out>/features_*.npz)")
    parser.add_argument("--verbose", action="store_true", help="training logs")
    parser.add_argument("--json", default=None, help="default bench/results/transfer_<size>.json")
    args = parser.parse_args()
    if not os.path.exists(args.clips):
        sys.exit(f"error: --clips={args.clips} does not exist; build it with "
                 "python -m bench.real_mixtures --source=SASED_COPY --out=DIR")
    logging.set_verbosity(logging.INFO if args.verbose else logging.WARNING)
    conditions = args.conditions.split(",")
    path = args.json or os.path.join(common.RESULTS_DIR, f"transfer_{args.size}.json")
    config_file = target_config(args, 0)[1]
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    source, source_info = ensure_source(args)
    paths, labels, splits = read_clips(args.clips)
    class_names = sorted({c for ls in labels for c in ls})
    y = np.array([[c in ls for c in class_names] for ls in labels], np.float32)
    splits = np.array(splits)
    runs: list[dict] = []

    def save():
        with open(path, "w") as f:
            json.dump(_no_nan({"target": os.path.abspath(args.clips), "size": args.size,
                       "config_file": config_file,
                       "seeds": args.seeds, "freeze": args.freeze, "overrides": args.override,
                       "clips_per_split": {s: int((splits == s).sum())
                                           for s in ("train", "validation", "test")},
                       "source": source_info, "total_seconds": round(time.time() - t_start, 1),
                       "runs": runs, "summary": summarise(runs)}), f, indent=1)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if "probe" in conditions:
        x, s = cached(args.out, f"probe_{args.probe_pooling}", args.resume,
                      lambda: embedding_features(source, paths, args.probe_pooling))
        runs.append(probe("probe", x, y, splits, class_names, s))
        save()
    if "logmel" in conditions:
        x, s = cached(args.out, "logmel", args.resume, lambda: logmel_features(paths))
        runs.append(probe("logmel", x, y, splits, class_names, s))
        save()
    for seed in range(args.seeds):
        for condition in ("scratch", "finetune"):
            if condition in conditions:
                runs.append(train_run(condition, seed, args, source))
                save()  # after every run: a stopped sweep keeps its runs
    save()
    print_table(summarise(runs))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
