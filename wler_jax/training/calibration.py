"""Per-class decision thresholds fitted on the validation split, and what a finished workdir
says about itself (docs/design.md §9).

One fixed threshold (0.5) cuts every class whatever its validation scores look like; a class
the model scores low everywhere then never fires. `fit_thresholds` picks, per class, the
threshold that maximises F1 on the validation split: segment-based F1 (1-s segments, on the
time line training's localisation metrics use) for classes with true events there, else clip
F1 on the weak labels; a class without any positive validation clip keeps the fixed threshold.
Thresholds lie midway between two consecutive distinct scores (sed_scores_eval's convention for
segment F1, the same for clip F1), and "score > threshold" is a detection throughout.

`finish_workdir(workdir)` is what training calls at its end and what measures an existing
finished workdir post hoc (no retraining): it scores the validation and test splits with the
best checkpoint (`train.predict_split`, the scores results.json was computed from), fits the
thresholds, writes `thresholds.json` (which `wler_jax.predict` uses by default), adds F1 at the
fitted thresholds beside F1 at the fixed one to each split of `results.json` ("calibration"), and
writes `MODEL_CARD.md` (`model_card`).

    python -m wler_jax.training.calibration --workdir=DIR   # post hoc, on a finished workdir
"""
from __future__ import annotations

import json
import os
import time
from typing import Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np
import sklearn.metrics
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wler_jax import checkpoints, errors, predict
from wler_jax.data import batch_plan, input_pipeline, splits
from wler_jax.evaluate import scoring
from wler_jax.geometry import SAMPLE_RATE, num_frames_for_samples
from wler_jax.serving import localisation as loc
from wler_jax.training import distributed, model_card

FIXED_THRESHOLD = 0.5


def best_clip_threshold(labels, scores) -> tuple[float, float]:
    """(threshold, F1) maximising clip F1 of `scores > threshold` for one class ([N] 0/1 labels,
    [N] scores; at least one positive). The threshold lies midway between the lowest score
    detected and the next lower distinct score (0 below the lowest)."""
    labels = np.asarray(labels, np.int64)
    scores = np.asarray(scores, np.float64)
    precision, recall, cuts = sklearn.metrics.precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(
        precision + recall, 1e-12), 0.0)[:-1]  # the last point has no threshold
    k = int(np.argmax(f1))  # sklearn: detected when score >= cuts[k]
    below = scores[scores < cuts[k]]
    lower = float(below.max()) if below.size else min(0.0, float(cuts[k]) - 1e-6)
    return (float(cuts[k]) + lower) / 2, float(f1[k])


def best_segment_thresholds(time_lines: Mapping, ground_truth: Mapping, durations: Mapping,
                            class_names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """{class: (threshold, segment F1)} maximising sed_scores_eval's segment-based F1 (1-s
    segments), for the classes with a true event in `ground_truth` (the others are absent)."""
    from sed_scores_eval import segment_based  # deferred as in localisation_metrics (seconds)
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    class_names = [str(c) for c in class_names]
    gt = {i: loc._clean_ground_truth(ground_truth[i], float(durations[i]), class_names, i)[0]
          for i in time_lines}
    kept = [c for c in class_names if any(label == c for evs in gt.values()
                                          for _, _, label in evs)]
    if not kept:
        return {}
    cols = [class_names.index(c) for c in kept]
    frames = {}
    for i, (onsets, offsets, scores) in time_lines.items():
        frames[i] = loc._WritableScoreFrame(create_score_dataframe(
            np.asarray(scores)[:, cols], np.concatenate((onsets, offsets[-1:])), kept))
    f, _, _, thresholds, _ = segment_based.best_fscore(
        frames, gt, {i: float(durations[i]) for i in time_lines}, segment_length=1.0)
    return {c: (float(thresholds[c]), float(f[c])) for c in kept}


def fit_thresholds(labels, clip, time_lines: Optional[Mapping], ground_truth: Optional[Mapping],
                   durations: Optional[Mapping], class_names: Sequence[str], *,
                   fixed: float = FIXED_THRESHOLD) -> dict:
    """Per-class thresholds maximising F1 on one split (the validation split).

    Args:
      labels: [N, C] weak labels; clip: [N, C] clip scores.
      time_lines, ground_truth, durations: id-keyed `grid_scores` time lines, true events and
        seconds, or None when the split has no event times.
      class_names: C names; fixed: the threshold of classes nothing can be fitted on.

    Returns:
      {"thresholds": {class: float}, "criterion": {class: "segment_f1" | "clip_f1" | "fixed"},
       "fitted_f1": {class: F1 at its threshold on this split}, "fixed": fixed}.
    """
    class_names = [str(c) for c in class_names]
    labels, clip = np.asarray(labels), np.asarray(clip, np.float64)
    segment = (best_segment_thresholds(time_lines, ground_truth, durations, class_names)
               if time_lines else {})
    thresholds, criterion, fitted = {}, {}, {}
    for k, c in enumerate(class_names):
        if c in segment and np.isfinite(segment[c][0]):
            (thresholds[c], fitted[c]), criterion[c] = segment[c], "segment_f1"
        elif labels[:, k].any():
            (thresholds[c], fitted[c]), criterion[c] = (
                best_clip_threshold(labels[:, k], clip[:, k]), "clip_f1")
        else:
            thresholds[c], criterion[c] = float(fixed), "fixed"
    return {"thresholds": thresholds, "criterion": criterion, "fitted_f1": fitted,
            "fixed": float(fixed)}


def split_tables(table: splits.SplitTable, segments: list, lengths, class_names
                 ) -> tuple[Optional[dict], Optional[dict], Optional[dict]]:
    """(time lines, true events, durations) of a split keyed by recording id, as
    `splits.localisation` builds them; (None, None, None) when it has no event times."""
    if not any(len(e["label"]) for e in table.events):
        return None, None, None
    lines, truth, durations = {}, {}, {}
    for i, rid in enumerate(table.ids):
        durations[rid] = float(lengths[i]) / SAMPLE_RATE
        lines[rid] = loc.grid_scores(segments[i], num_frames_for_samples(int(lengths[i])),
                                     duration=durations[rid])
        truth[rid] = loc.events_to_ground_truth(table.events[i], class_names)
    return lines, truth, durations


def _f1_at(thresholds, labels, clip, lines, truth, durations, class_names) -> dict:
    out = {"clip_f1": scoring.clip_f1_scores(labels, clip, class_names, thresholds)["clip_f1"]}
    if lines:
        m = loc.localisation_metrics(lines, truth, durations, class_names, threshold=thresholds,
                                     event_f1=True)
        out.update(segment_f1=m["segment_f1"], event_f1=m["event_f1"])
    return out


def score_splits(workdir: str, config: ml_collections.ConfigDict, class_names: list,
                 sources: dict, batchers: Optional[dict], names: Sequence[str]) -> dict:
    """{split: (SplitTable, scores {"clip", "segments"}, lengths)} of the best checkpoint."""
    # deferred: train imports this module for its end-of-training call
    from wler_jax.training import train

    model = predict.load_model(workdir)
    if batchers is None or any(s not in batchers for s in names):  # as training plans them
        batchers = {s: input_pipeline.RecordingBatcher(
            sources[s], num_classes=len(class_names), frame_budget=config.input.frame_budget,
            num_devices=jax.device_count(), ratio=config.input.bucket_ratio, seed=config.seed,
            shuffle=False, max_frames=None) for s in names}
    mesh = Mesh(distributed.mesh_devices(), ("data",))
    params = jax.device_put(model.params, NamedSharding(mesh, P()))
    out = {}
    for split in names:
        scores = train.predict_split(model.predict_fn, params, sources[split], batchers[split],
                                     NamedSharding(mesh, P("data")), config)
        out[split] = (splits.read_split_table(sources[split]), scores, batchers[split].lengths)
    return out


def finish_workdir(workdir: str, *, results: Optional[dict] = None,
                   sources: Optional[dict] = None, batchers: Optional[dict] = None,
                   fixed: float = FIXED_THRESHOLD) -> dict:
    """Fit thresholds on validation, report F1 at them, write thresholds.json, results.json and
    MODEL_CARD.md (process 0 writes; every process must call it: the splits are scored on all).

    Works on any finished workdir (results.json and a best checkpoint). Training passes its own
    `results` (updated in place), `sources` and `batchers`, which saves opening the data again.

    Returns the updated results.
    """
    workdir = os.path.abspath(workdir)
    run = checkpoints.read_run_file(workdir)
    results_path = os.path.join(workdir, "results.json")
    if run is None or (results is None and not os.path.exists(results_path)):
        raise errors.NotAWorkdirError(f"{workdir}: no run.json or results.json; give a finished "
                                      "training workdir")
    if results is None:
        with open(results_path) as f:
            results = json.load(f)
    config = ml_collections.ConfigDict(run["config"])
    class_names = list(run["class_names"])
    in_training = sources is not None
    if sources is None:
        sources, _, _ = splits.load(config)
    names = [s for s in ("validation", "test") if s in sources]
    t0 = time.time()
    scored = score_splits(workdir, config, class_names, sources, batchers, names)
    per_split = {}
    for split, (table, scores, lengths) in scored.items():
        labels = splits.multi_hot_labels(table, len(class_names))
        lines, truth, durations = split_tables(table, scores["segments"], lengths, class_names)
        per_split[split] = (labels, scores["clip"], lines, truth, durations)
    fit = fit_thresholds(*per_split["validation"], class_names, fixed=fixed)
    fit["fitted_on"] = "validation"
    for split, args in per_split.items():
        fixed_f1 = _f1_at(fixed, *args, class_names)
        fitted_f1 = _f1_at(fit["thresholds"], *args, class_names)
        results.setdefault(split, {})["calibration"] = {
            "fixed_threshold": fixed, **{f"{k}_fixed": v for k, v in fixed_f1.items()},
            **{f"{k}_fitted": v for k, v in fitted_f1.items()}}
        logging.info("%s: %s", split, ", ".join(
            f"{k} {fixed_f1[k]:.3f} at {fixed:g} -> {fitted_f1[k]:.3f} fitted" for k in fixed_f1))
    results["thresholds"] = fit
    logging.info("thresholds fitted on validation in %.1f s: %s", time.time() - t0,
                 {c: round(t, 3) for c, t in fit["thresholds"].items()})
    if not distributed.is_main():
        return results
    _write_json(os.path.join(workdir, predict.THRESHOLDS_FILE),
                {"class_names": class_names, **fit})
    _write_json(results_path, results)
    if batchers and "train" in batchers:
        train_lengths = batchers["train"].lengths
    else:  # post hoc: one pass over the training split (the card's clip length range)
        train_lengths = batch_plan.scan_lengths(sources["train"]) if "train" in sources else None
    model_card.write(workdir, run, results, {s: t for s, (t, _, _) in scored.items()},
                     train_lengths=train_lengths, in_training=in_training)
    return results


def _write_json(path: str, value) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def main(argv) -> None:
    from absl import flags  # only the command line defines flags

    if len(argv) > 1:
        errors.fail(f"unexpected arguments {argv[1:]}")
    with errors.report_user_errors():
        finish_workdir(flags.FLAGS.workdir)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "A finished training workdir.")
    flags.mark_flag_as_required("workdir")
    app.run(main)
