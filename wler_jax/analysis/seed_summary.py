"""Runs of one recipe trained apart (seeds in several `python -m bench.kitchen20 --train` JSONs)
joined and summarised over seeds, beside the log-mel baseline trained on the same table."""
from __future__ import annotations

import json
import os

from wler_jax import errors
from wler_jax.analysis import stats
from wler_jax.analysis.real_scoring import long_tags
from wler_jax.evaluate import scoring

FIGURES = {"clip_test": lambda r: r["test_mAP"], "clip_validation": lambda r: r["validation_mAP"],
           "long_test": lambda r: r["long_tagging"]["mAP"],
           "long_validation": lambda r: r["long_val_tagging"]["mAP"]}


def merge(paths: list[str], baseline: str | None, train_set: str) -> dict:
    """The runs of several `--train` JSONs of one recipe, summarised over seeds per method,
    beside the log-mel baseline trained on the same table (`python -m bench.baselines`)."""
    runs, meta = {}, None
    for path in paths:
        with open(path) as f:
            sweep = json.load(f)
        key = (sweep["config_file"], sweep["overrides"], sweep["args"]["train_set"])
        if meta is not None and key != meta:
            raise errors.DataError(f"{path}: recipe {key} differs from {meta}; merge like with like")
        meta = key
        for r in sweep["runs"]:
            if (r["method"], r["seed"]) in runs:
                raise errors.DataError(f"{path}: {r['method']} seed {r['seed']} is in two files")
            runs[r["method"], r["seed"]] = r
    if meta[2] != train_set:
        raise errors.DataError(f"the runs trained on {meta[2]!r}, not --train_set={train_set!r}")
    summary = {}
    base = None
    if baseline:
        with open(baseline) as f:
            setting = json.load(f)["settings"]["clips" if train_set == "clips" else "weak"]
        base = {"clip_test": setting["clip_test"]["mAP"], "long_test": setting["long_tagging"]["mAP"],
                "clip_test_ci95": setting["clip_test"]["mAP_ci95"],
                "long_test_ci95": setting["long_tagging"]["mAP_ci95"]}
    for method in sorted({m for m, _ in runs}):
        mine = [runs[k] for k in sorted(runs) if k[0] == method]
        summary[method] = {"seeds": [r["seed"] for r in mine],
                           **{name: stats.t_stats([f(r) for r in mine])
                              for name, f in FIGURES.items()}}
        if base:
            for name in ("clip_test", "long_test"):
                diff = [FIGURES[name](r) - base[name] for r in mine]
                summary[method][f"{name}_minus_baseline"] = {
                    **stats.t_stats(diff), "per_seed": diff,
                    "above_every_seed": bool(min(diff) > 0)}
    return {"benchmark": "kitchen20", "config_file": meta[0], "overrides": meta[1],
            "train_set": train_set, "merged_from": [os.path.basename(p) for p in paths],
            "baseline": base, "runs": [runs[k] for k in sorted(runs, key=lambda k: (k[1], k[0]))],
            "summary": summary}


def calibration_effect(workdir: str, build: str | None = None, name: str = "mixtures") -> dict:
    """What the thresholds fitted on validation (`thresholds.json`) change against the fixed
    0.5 on one run: clip F1 on the test split (results.json), and, given the benchmark's build
    folder, F1 of the tags of its long test recordings (`<name>_predictions.json`)."""
    with open(os.path.join(workdir, "results.json")) as f:
        calib = json.load(f)["test"]["calibration"]
    out = {"workdir": workdir, "clip_f1_fixed": calib["clip_f1_fixed"],
           "clip_f1_fitted": calib["clip_f1_fitted"]}
    if build:
        with open(os.path.join(workdir, "thresholds.json")) as f:
            fitted = json.load(f)["thresholds"]
        with open(os.path.join(workdir, f"{name}_predictions.json")) as f:
            _, names, labels, scores = long_tags(json.load(f), build, name)
        for key, cut in (("fixed", 0.5), ("fitted", fitted)):
            out[f"long_f1_{key}"] = scoring.clip_f1_scores(labels, scores, names, cut)["clip_f1"]
    return out


def calibration_ab(workdirs: list[str], build: str | None = None) -> dict:
    """`calibration_effect` of several seeds' runs, with the paired fitted - fixed difference
    of each F1 over them (mean, std, t-interval, per seed)."""
    runs = [calibration_effect(w, build) for w in workdirs]
    summary = {}
    for figure in ("clip_f1", "long_f1"):
        if f"{figure}_fixed" in runs[0]:
            diff = [r[f"{figure}_fitted"] - r[f"{figure}_fixed"] for r in runs]
            summary[figure] = {
                "fixed": stats.t_stats([r[f"{figure}_fixed"] for r in runs]),
                "fitted": stats.t_stats([r[f"{figure}_fitted"] for r in runs]),
                "fitted_minus_fixed": {**stats.t_stats(diff), "per_seed": diff,
                                       "better_every_seed": bool(min(diff) > 0)}}
    return {"runs": runs, "summary": summary}
