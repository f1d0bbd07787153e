"""The real benchmark's sweeps (`python -m bench.real_mixtures --train`): how a recipe names its
run folders, and the summaries of a sweep's runs (per method, WLER - SLAT paired by seed, against
another recipe's sweep, and k-fold rounds pooled over every source).

A sweep JSON: {"corpus", "size", "train_set", "overrides", "config_file", "folds", "build",
"runs": [{"method", "seed", "fold", "validation_mAP", "test_mAP", "long_val_tagging_mAP",
"long_tagging_mAP", "long_localisation", "seconds", "workdir", "build_dir", ...}], "summary",
"pooled_clip_test" (k-fold sweeps)}.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np

from wler_jax import errors, evaluate
from wler_jax.analysis import stats
from wler_jax.analysis.real_scoring import clip_test_scores
from wler_jax.configs import recipes
from wler_jax.configs.common import base_config

# Fields a run sets itself (not part of a recipe's name).
_RUN_FIELDS = ("seed", "data.path", "data.data_dir", "data.manual_dir", "compile_cache_dir")


# ------------------------------------------------------------------------------ run naming


def preset_width(size: str) -> float:
    """`model.width` of the folder dataset's preset at `size` (wler_jax/configs/common.py)."""
    return float(base_config("wler", f"folder,{size}").model.width)


def run_overrides(recipe, size: str, epochs: int | None, overrides: list[str],
                  width: float | None = None) -> list[str]:
    """The config overrides every run of a sweep names its folder with (and the JSON records):
    how `recipe` (a config file's config at `size`) differs from the preset, `train.epochs`
    first (at size cpu always, as every cpu sweep's folder has it), then `model.width` (none
    when it is the preset's own), then any other field the recipe sets; `--epochs` and
    `--width` (`epochs`, `width`) replace the recipe's; an explicit `overrides` entry replaces
    its field's. So a run of another recipe, epochs or width never resumes this one's workdir,
    and the recipe files give the folders the runs had before them."""
    preset = base_config(recipe.method, f"{recipe.data.name},{size}")
    named = recipes.differences(recipe, preset, skip=_RUN_FIELDS)
    recipe_epochs = named.pop("train.epochs", recipe.train.epochs if size == "cpu" else None)
    width = width if width is not None else named.get("model.width")
    named.pop("model.width", None)
    head = []
    if epochs or recipe_epochs:
        head.append(("train.epochs", epochs or recipe_epochs))
    if width is not None and width != preset.model.width:
        head.append(("model.width", float(width)))
    explicit = {o.split("=", 1)[0] for o in overrides}
    return [recipes.as_override(k, v) for k, v in [*head, *named.items()]
            if k not in explicit] + list(overrides)


def variant_slug(overrides: list[str]) -> str:
    """Run-folder suffix for config overrides ('' for none), so an A/B never reuses or deletes
    the default runs' workdirs: ['train.epochs=72'] -> '+train.epochs=72'."""
    slug = "".join("+" + re.sub(r"[^A-Za-z0-9._=-]", "_", o) for o in overrides)
    if len(slug) > 200:  # a folder name must stay under the file system's 255 bytes
        slug = slug[:180] + "+" + hashlib.sha1(slug.encode()).hexdigest()[:12]
    return slug


# ------------------------------------------------------------------------------- summaries

METRICS = {"validation_mAP": lambda r: r["validation_mAP"], "test_mAP": lambda r: r["test_mAP"],
           "long_val_tagging_mAP": lambda r: r.get("long_val_tagging_mAP", float("nan")),
           "long_tagging_mAP": lambda r: r["long_tagging_mAP"],
           "long_segment_f1": lambda r: r["long_localisation"]["segment_f1"],
           "long_psds1": lambda r: r["long_localisation"]["psds1"],
           "long_psds2": lambda r: r["long_localisation"]["psds2"],
           "seconds": lambda r: r["seconds"]}
_SCORES = {k: f for k, f in METRICS.items() if k != "seconds"}  # what pairs of runs compare


def sweep_folds(sweep: dict) -> int:
    """A sweep JSON's folds; 0 (the fixed split) where the key is absent (sweeps written before
    it, and merged fixed-split sweeps)."""
    return sweep.get("folds") or 0


def runs_by_seed(runs: list[dict], method: str) -> dict[int, dict]:
    """{seed: run} of one method's runs."""
    return {r["seed"]: r for r in runs if r["method"] == method}


def summarize(runs: list[dict]) -> dict:
    """Per method, t-statistics of every metric over seeds; `wler_minus_slat`: paired by seed."""
    out = {}
    for method in ("slat", "wler"):
        mine = sorted((r for r in runs if r["method"] == method), key=lambda r: r["seed"])
        if mine:
            out[method] = {m: stats.t_stats([f(r) for r in mine]) for m, f in METRICS.items()}
    seeds = sorted({r["seed"] for r in runs if r["method"] == "wler"}
                   & {r["seed"] for r in runs if r["method"] == "slat"})
    if seeds:
        by = {m: runs_by_seed(runs, m) for m in ("wler", "slat")}
        out["wler_minus_slat"] = {
            m: {**d, "seeds": seeds}
            for m, d in stats.paired(by["wler"], by["slat"], seeds, _SCORES,
                                     "wler_ge_slat_every_seed").items()}
    return out


def against_baseline(runs: list[dict], baseline: list[dict]) -> dict:
    """This recipe against another sweep's runs of the same seeds (folds): per method, the
    paired difference (this - baseline) of every metric; and this recipe's WLER against the
    baseline's SLAT, so a recipe that helps WLER by handicapping SLAT is seen as such."""
    mine = {m: runs_by_seed(runs, m) for m in ("slat", "wler")}
    base = {m: runs_by_seed(baseline, m) for m in ("slat", "wler")}
    out = {}
    for label, a, b in (("slat", "slat", "slat"), ("wler", "wler", "wler"),
                        ("wler_minus_baseline_slat", "wler", "slat")):
        seeds = sorted(set(mine[a]) & set(base[b]))
        if seeds:
            out[label] = {"seeds": seeds, **stats.paired(mine[a], base[b], seeds, _SCORES,
                                                         "positive_every_seed")}
    return out


def pooled_clip_test(runs: list[dict], folds: int) -> list[dict]:
    """k-fold sweeps: for every complete cross-validation round (seeds r*folds ..
    r*folds+folds-1, seed s on fold s % folds, both methods), each method's out-of-fold clip
    scores pooled over the folds (every source of the corpus tested once) -> mAP, and the
    paired WLER - SLAT difference with a bootstrap interval that resamples whole sources."""
    get = {(r["method"], r["seed"]): r for r in runs}
    rounds = []
    for r0 in sorted({r["seed"] // folds * folds for r in runs}):
        seeds = list(range(r0, r0 + folds))
        if not all((m, s) in get for m in ("slat", "wler") for s in seeds):
            continue
        pooled = {}
        for m in ("slat", "wler"):
            parts = [clip_test_scores(os.path.join(get[m, s]["workdir"],
                                                   "clip_test_predictions.json"),
                                      get[m, s]["build_dir"], get[m, s]["train_set"])
                     for s in seeds]
            pooled[m] = {k: np.concatenate([p[k] for p in parts]) for k in
                         ("labels", "scores", "sources")}
            pooled[m]["paths"] = sum((p["paths"] for p in parts), [])
            names = parts[0]["class_names"]
        if pooled["slat"]["paths"] != pooled["wler"]["paths"]:
            raise RuntimeError(f"seeds {seeds}: the methods' test clips differ")
        labels, sources = pooled["wler"]["labels"], pooled["wler"]["sources"]
        maps = {m: evaluate.average_precision(labels, pooled[m]["scores"], names)
                for m in ("slat", "wler")}
        ci = evaluate.paired_bootstrap_map_ci(labels, pooled["wler"]["scores"],
                                              pooled["slat"]["scores"], groups=sources)
        rounds.append({"seeds": seeds, "num_clips": int(len(labels)),
                       "num_sources": int(len(set(sources.tolist()))),
                       "slat_mAP": maps["slat"]["mAP"], "wler_mAP": maps["wler"]["mAP"],
                       "slat_ci95": ci["b"], "wler_ci95": ci["a"],
                       "wler_minus_slat": maps["wler"]["mAP"] - maps["slat"]["mAP"],
                       "wler_minus_slat_ci95": ci["diff"],
                       "slat_AP": maps["slat"]["AP"], "wler_AP": maps["wler"]["AP"]})
    return rounds


def merge(paths: list[str], out: str, baseline: str | None = None) -> dict:
    """Join sweep JSONs of the same build and overrides (e.g. seeds run by two processes with
    `--first_seed`) into one summary; a method and seed in two of them is an error. With
    `baseline` (another recipe's sweep JSON), also `against_baseline` (paired differences)."""
    runs, meta = {}, None
    for path in paths:
        with open(path) as f:
            sweep = json.load(f)
        key = {k: sweep.get(k) for k in ("size", "train_set", "overrides")}
        key["folds"] = sweep_folds(sweep)
        key["build"] = sweep["build"]["params"]
        if meta is not None and key != meta:
            raise errors.DataError(f"{path}: build, size, train set or overrides differ from "
                                   f"{paths[0]}; merge like with like")
        meta, base = key, sweep
        for r in sweep["runs"]:
            if (r["method"], r["seed"]) in runs:
                raise errors.DataError(f"{path}: {r['method']} seed {r['seed']} is in two "
                                       "sweeps")
            runs[r["method"], r["seed"]] = r
    result = {**{k: base[k] for k in ("corpus", "size", "train_set", "overrides", "build")},
              "seeds": len({s for _, s in runs}),
              "total_seconds": round(sum(r["seconds"] for r in runs.values()), 1),
              "runs": sorted(runs.values(), key=lambda r: (r["seed"], r["method"])),
              "merged_from": [os.path.basename(p) for p in paths]}
    if base.get("config_file"):  # sweeps written before it have none
        result["config_file"] = base["config_file"]
    result["summary"] = summarize(result["runs"])
    folds = meta["folds"]
    if folds:
        result["folds"] = folds
        result["pooled_clip_test"] = pooled_clip_test(result["runs"], folds)
    if baseline:
        with open(baseline) as f:
            other = json.load(f)
        if sweep_folds(other) != folds:
            raise errors.DataError(f"{baseline}: other folds than {paths[0]}; pair like with "
                                   "like")
        result["against_baseline"] = {"baseline": os.path.basename(baseline),
                                      **against_baseline(result["runs"], other["runs"])}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print_table(result["summary"])
    if folds:
        print_pooled(result["pooled_clip_test"])
    if baseline:
        print_against_baseline(result["against_baseline"])
    print(f"wrote {out}")
    return result


# ------------------------------------------------------------------------------- printing


def print_table(summary: dict) -> None:
    """Per metric: SLAT and WLER mean ± std, and the paired difference with its interval."""
    rows = [("clip validation mAP", "validation_mAP"), ("clip test mAP", "test_mAP"),
            ("long val tagging mAP", "long_val_tagging_mAP"),
            ("long tagging mAP", "long_tagging_mAP"), ("long segment F1", "long_segment_f1"),
            ("long PSDS1", "long_psds1"), ("long PSDS2", "long_psds2"), ("seconds", "seconds")]
    fmt = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"  # noqa: E731
    print(f"\n{'metric':22s} {'SLAT':>16s} {'WLER':>16s} {'WLER - SLAT [95% CI]':>30s}  all seeds")
    for title, key in rows:
        cells = [fmt(summary[m][key]) if m in summary else "-" for m in ("slat", "wler")]
        d = summary.get("wler_minus_slat", {}).get(key)
        ci = f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d and d["ci95"] else "[n=1]"
        diff = (f"{d['mean']:+.3f} {ci}  {'yes' if d['wler_ge_slat_every_seed'] else 'no'}"
                if d else "")
        print(f"{title:22s} {cells[0]:>16s} {cells[1]:>16s} {diff:>36s}")


def print_pooled(rounds: list[dict]) -> None:
    """One line per complete cross-validation round: pooled out-of-fold clip test mAP."""
    for r in rounds:
        lo, hi = r["wler_minus_slat_ci95"]
        print(f"pooled clip test, seeds {r['seeds'][0]}-{r['seeds'][-1]} ({r['num_clips']} clips, "
              f"{r['num_sources']} sources): SLAT {r['slat_mAP']:.3f}, WLER {r['wler_mAP']:.3f}, "
              f"WLER - SLAT {r['wler_minus_slat']:+.3f} [{lo:+.3f}, {hi:+.3f}]")


def print_against_baseline(against: dict) -> None:
    """One line per pairing of `against_baseline`: the main metrics' paired differences."""
    for label, d in against.items():
        if isinstance(d, dict):
            print(f"{label} vs {against['baseline']}: " + ", ".join(
                f"{m} {d[m]['mean']:+.3f} [{d[m]['ci95'][0]:+.3f}, {d[m]['ci95'][1]:+.3f}]"
                f" {sum(x >= 0 for x in d[m]['values'])}/{d[m]['n']}"
                for m in ("test_mAP", "long_val_tagging_mAP", "long_tagging_mAP")
                if d[m]["ci95"]))
