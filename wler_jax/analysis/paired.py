"""Two recipes' runs of the same seed (fold), tagging the same long recordings: their difference
with a bootstrap interval over recordings, and how far apart their trained weights are
(`python -m bench.paired_long_tagging`).

A sweep's per-seed spread mixes how differently runs train with how much one small evaluation
set moves a figure; pairing two runs on the same recordings separates the second out.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from wler_jax import checkpoints, errors, evaluate
from wler_jax.analysis.real_scoring import long_tags

SPLITS = (("validation", "long_val_predictions.json", "mixtures_val"),
          ("test", "long_predictions.json", "mixtures"))


def trained_params(workdir: str):
    """The weights of a run's last train state, or None when it has no checkpoints."""
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
    if a is None or b is None or jax.tree.structure(a) != jax.tree.structure(b):
        return None
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def paired_run(run: dict, base: dict, num_resamples: int = 1000) -> dict:
    """Per long split: {"mAP": this, "baseline_mAP", "ci95", "baseline_ci95", "diff",
    "diff_ci95"} of one pair of runs on the same build, and `trained_params_max_abs_diff`."""
    if run["build_dir"] != base["build_dir"]:
        raise errors.DataError(f"seed {run['seed']}: the runs were built in {run['build_dir']} "
                               f"and {base['build_dir']}; pair runs of one build")
    out = {}
    for split, pred_file, name in SPLITS:
        tags = []
        for r in (run, base):
            with open(os.path.join(r["workdir"], pred_file)) as f:
                tags.append(long_tags(json.load(f), r["build_dir"], name))
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
