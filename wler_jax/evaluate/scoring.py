"""Score tables against ground truth: what `python -m wler_jax.evaluate` computes.

Inputs are the field's tables (DCASE task 4 / sed_scores_eval formats):

* a folder of score tables, one `<id>.tsv` per file (`python -m wler_jax.predict
  --scores_dir=DIR` writes them): header `onset offset <class...>`, gapless rows in seconds;
* ground-truth events, TSV `filename onset offset event_label` (a row with an empty label
  declares a file without events);
* optionally durations, TSV `filename duration` (default: each table's last offset), weak labels
  (CSV or TSV: `filename` or `path`, and `labels`/`event_labels` separated by `;` or `,`;
  default: the classes of each file's true events) and clip scores (predict's JSON output, whose
  "scores" are the model's clip probabilities; default: each class's highest row of the score
  table, which for the four-scale WLER is the maximum of the scale-averaged time line, not the
  average of each scale's maximum the model reports).

File ids are file names without extension, folders joined by "__" (`reports.score_table_id`).
The evaluated files are those named by the ground truth, the durations or the weak labels; a
score table no table names is ignored with a warning, a named file without a score table is an
error naming it, and so is a class outside the score tables' columns.

Metrics (sed_scores_eval and scikit-learn; the only formula here is d' from the AUC):
PSDS1 and PSDS2 (DCASE 2021-23 task 4 scenarios), segment-based F1 (1-s segments) and
collar-based event F1 (200 ms / 20 %) at the operating thresholds, on the time line; clip-level
AP/mAP with a bootstrap interval (`average_precision`, `bootstrap_map_ci`: the same functions and
the same seed as training's results.json), ROC AUC, d' = sqrt(2) * Phi^-1(AUC) (the AudioSet
convention, from the macro AUC) and lwlrap (label-weighted label-ranking average precision:
sklearn's LRAP with each file weighted by its number of labels), and clip F1 at the thresholds.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import sklearn.metrics
from absl import logging

from wler_jax import errors
from wler_jax.evaluate import average_precision, bootstrap_map_ci
from wler_jax.serving import localisation
from wler_jax.serving.reports import score_table_id

TimeLine = tuple  # (onsets [K], offsets [K], scores [K, C])


class EvaluationInputError(errors.UserError, ValueError):
    """A score folder, ground truth, durations or labels table that cannot be evaluated."""


# -- reading -------------------------------------------------------------------------------------
def read_score_tables(scores_dir: str) -> tuple[dict[str, TimeLine], list[str]]:
    """({id: (onsets, offsets, scores)}, class names) of every `<id>.tsv` under `scores_dir`.

    Every table must have the same columns (`onset`, `offset`, then the classes) and gapless rows.
    """
    if not os.path.isdir(scores_dir):
        raise EvaluationInputError(f"--scores_dir {scores_dir} is not a folder; give the folder "
                                   "python -m wler_jax.predict --scores_dir wrote")
    names = sorted(f for f in os.listdir(scores_dir) if f.endswith(".tsv"))
    if not names:
        raise EvaluationInputError(f"no .tsv score tables in {scores_dir}")
    tables, class_names = {}, None
    for name in names:
        path = os.path.join(scores_dir, name)
        frame = pd.read_csv(path, sep="\t")
        columns = [str(c) for c in frame.columns]
        if columns[:2] != ["onset", "offset"] or len(columns) < 3 or not len(frame):
            raise EvaluationInputError(f"{path}: not a score table (header must be onset, offset, "
                                       f"<class...> with at least one row); got {columns[:4]}")
        if class_names is None:
            class_names = columns[2:]
        elif columns[2:] != class_names:
            raise EvaluationInputError(f"{path}: classes {columns[2:]} differ from the other "
                                       f"tables' {class_names}")
        values = frame.to_numpy(dtype=np.float64)
        onsets, offsets, scores = values[:, 0], values[:, 1], values[:, 2:]
        if not np.all(np.isfinite(values)) or np.any(offsets <= onsets) or not np.allclose(
                offsets[:-1], onsets[1:]):
            raise EvaluationInputError(f"{path}: rows must be finite and gapless (each offset "
                                       "after its onset and equal to the next row's onset)")
        tables[name[:-len(".tsv")]] = (onsets, offsets, scores)
    return tables, class_names


def _read_table(path: str, flag: str) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise EvaluationInputError(f"{flag} {path} does not exist")
    sep = "," if path.lower().endswith(".csv") else "\t"
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _column(frame: pd.DataFrame, path: str, options: Sequence[str]) -> str:
    for name in options:
        if name in frame.columns:
            return name
    raise EvaluationInputError(f"{path}: needs a column {' or '.join(options)}; has "
                               f"{list(frame.columns)}")


def read_ground_truth(path: str) -> dict[str, list[tuple[float, float, str]]]:
    """{id: [(onset, offset, label), ...]} from a DCASE TSV `filename onset offset event_label`;
    rows with an empty label declare files without events."""
    frame = _read_table(path, "--ground_truth")
    for col in ("filename", "onset", "offset", "event_label"):
        _column(frame, path, [col])
    truth: dict[str, list] = {}
    for k, row in enumerate(frame.itertuples(index=False), start=2):
        rid = score_table_id(row.filename)
        events = truth.setdefault(rid, [])
        if not row.event_label.strip():
            continue
        try:
            onset, offset = float(row.onset), float(row.offset)
        except ValueError:
            raise EvaluationInputError(f"{path} line {k}: onset/offset {row.onset!r}, "
                                       f"{row.offset!r} are not numbers") from None
        if not offset > onset >= 0:
            raise EvaluationInputError(f"{path} line {k}: needs 0 <= onset < offset, got "
                                       f"{onset}, {offset}")
        events.append((onset, offset, row.event_label.strip()))
    return truth


def read_durations(path: str) -> dict[str, float]:
    """{id: seconds} from a TSV `filename duration`."""
    frame = _read_table(path, "--durations")
    _column(frame, path, ["filename"])
    _column(frame, path, ["duration"])
    try:
        return {score_table_id(f): float(d) for f, d in zip(frame["filename"], frame["duration"])}
    except ValueError as e:
        raise EvaluationInputError(f"{path}: a duration is not a number ({e})") from None


def read_weak_labels(path: str) -> dict[str, list[str]]:
    """{id: [labels]} from a CSV/TSV with `filename` (or `path`) and `labels` (or
    `event_labels`/`event_label`), labels separated by `;` or `,` (empty: no event)."""
    frame = _read_table(path, "--weak_labels")
    file_col = _column(frame, path, ["filename", "path", "file"])
    label_col = _column(frame, path, ["labels", "event_labels", "event_label"])
    out: dict[str, list[str]] = {}
    for f, labels in zip(frame[file_col], frame[label_col]):
        parts = [x.strip() for x in labels.replace(";", ",").split(",") if x.strip()]
        out.setdefault(score_table_id(f), []).extend(parts)
    return out


def read_clip_scores(path: str, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """{path id: [C] clip probabilities} from predict's JSON output ("results": "file" and
    "scores"); the key is the whole "file" path as an id (`score_table_id`), which
    `evaluate_tables` matches to a table's id by its end ("data/sub/a.wav" -> "sub__a" or "a")."""
    if not os.path.isfile(path):
        raise EvaluationInputError(f"--clip_scores {path} does not exist")
    with open(path) as f:
        records = json.load(f).get("results", [])
    out = {}
    for rec in records:
        rid = score_table_id(os.path.normpath(rec["file"]).lstrip(os.sep))
        missing = [c for c in class_names if c not in rec["scores"]]
        if missing:
            raise EvaluationInputError(f"{path}: {rec['file']} has no clip score for {missing[:5]}")
        out[rid] = np.array([rec["scores"][c] for c in class_names], np.float64)
    return out


# -- metrics -------------------------------------------------------------------------------------
def clip_metrics(labels, scores, class_names: Sequence[str], *, thresholds=0.5,
                 bootstrap_seed: int = 0) -> dict:
    """Clip-level tagging metrics of [N, C] weak labels and clip scores.

    Returns `average_precision`'s dict (mAP, AP, skipped_classes, num_examples) plus "mAP_ci95"
    (as results.json), "roc_auc" (macro over classes with a positive and a negative) and
    "roc_auc_per_class", "d_prime", "lwlrap", "clip_f1" (macro over classes with a positive)
    and "clip_f1_per_class" at `thresholds` (score > threshold is a detection).
    """
    labels = np.asarray(labels, np.int64)
    scores = np.asarray(scores, np.float64)
    result = average_precision(labels, scores, class_names)
    result["mAP_ci95"] = bootstrap_map_ci(labels, scores, seed=bootstrap_seed)
    auc = {c: float(sklearn.metrics.roc_auc_score(labels[:, k], scores[:, k]))
           for k, c in enumerate(class_names) if 0 < labels[:, k].sum() < len(labels)}
    mean_auc = float(np.mean(list(auc.values()))) if auc else float("nan")
    result.update(roc_auc=mean_auc, roc_auc_per_class=auc,
                  d_prime=float(np.sqrt(2.0) * scipy.stats.norm.ppf(mean_auc)))
    weights = labels.sum(1)
    result["lwlrap"] = (float(sklearn.metrics.label_ranking_average_precision_score(
        labels, scores, sample_weight=weights)) if weights.sum() else float("nan"))
    result.update(clip_f1_scores(labels, scores, class_names, thresholds))
    return result


def clip_f1_scores(labels, scores, class_names: Sequence[str], thresholds) -> dict:
    """{"clip_f1": macro F1 over the classes with a positive clip, "clip_f1_per_class"} of
    `scores > thresholds` (one float, C floats or {class: float})."""
    labels = np.asarray(labels, np.int64)
    scores = np.asarray(scores, np.float64)
    cut = localisation.class_thresholds(thresholds, class_names)
    per_class = {c: float(sklearn.metrics.f1_score(labels[:, k], scores[:, k] > cut[k],
                                                   zero_division=0.0))
                 for k, c in enumerate(class_names) if labels[:, k].any()}
    return {"clip_f1": float(np.mean(list(per_class.values()))) if per_class else float("nan"),
            "clip_f1_per_class": per_class}


def evaluate_tables(tables: Mapping[str, TimeLine], class_names: Sequence[str],
                    ground_truth: Mapping[str, list], *,
                    durations: Optional[Mapping[str, float]] = None,
                    weak_labels: Optional[Mapping[str, list]] = None,
                    clip_scores: Optional[Mapping[str, np.ndarray]] = None,
                    thresholds=0.5) -> dict:
    """Every metric of the module docstring for the files the tables name.

    Args:
      tables: id -> score table (`read_score_tables`); class_names: their columns.
      ground_truth: id -> true events; durations, weak_labels, clip_scores: optional, id-keyed
        (defaults in the module docstring).
      thresholds: operating point(s) of the F1 scores: one float, or {class: float}.

    Returns:
      the clip metrics (`clip_metrics`) with "localisation" (`localisation_metrics`: segment and
      event F1, PSDS1, PSDS2), "files", "ignored_score_tables" and "thresholds".

    Raises:
      EvaluationInputError naming the first files without a score table, the unknown classes, ...
    """
    class_names = [str(c) for c in class_names]
    ids, ignored = _evaluated_ids(tables, class_names, ground_truth, durations, weak_labels)
    if isinstance(thresholds, Mapping):
        localisation.class_thresholds(thresholds, class_names)  # names every class
    durations = _checked_durations(tables, ids, durations)
    labels = _weak_label_matrix(ids, class_names, ground_truth, weak_labels)
    clip = _clip_score_matrix(tables, ids, clip_scores)
    result = clip_metrics(labels, clip, class_names, thresholds=thresholds)
    result["localisation"] = localisation.localisation_metrics(
        {i: tables[i] for i in ids}, {i: ground_truth.get(i, []) for i in ids},
        {i: durations[i] for i in ids}, class_names, threshold=thresholds, psds2=True,
        event_f1=True)
    result.update(files=len(ids), ignored_score_tables=len(ignored),
                  thresholds=dict(thresholds) if isinstance(thresholds, Mapping)
                  else float(thresholds))
    return result


def _evaluated_ids(tables: Mapping[str, TimeLine], class_names: list[str],
                   ground_truth: Mapping[str, list], durations: Optional[Mapping[str, float]],
                   weak_labels: Optional[Mapping[str, list]]) -> tuple[list[str], list[str]]:
    """(sorted ids the tables name, sorted ids of the score tables they leave out).

    Raises if no file is named, a named file has no score table or a label is not a column.
    """
    named = set(ground_truth) | set(durations or {}) | set(weak_labels or {})
    ids = sorted(named)
    if not ids:
        raise EvaluationInputError("the ground truth names no file")
    missing = [i for i in ids if i not in tables]
    if missing:
        more = " ..." if len(missing) > 5 else ""
        raise EvaluationInputError(f"{len(missing)} file(s) of the ground truth have no score "
                                   f"table: {', '.join(missing[:5])}{more}; score them with "
                                   "python -m wler_jax.predict --scores_dir")
    ignored = sorted(set(tables) - named)
    if ignored:
        logging.warning("%d score table(s) not named by the ground truth are ignored: %s",
                        len(ignored), ignored[:5])
    used = {label for i in ids for _, _, label in ground_truth.get(i, [])}
    used |= {label for labels in (weak_labels or {}).values() for label in labels}
    unknown = sorted(used - set(class_names))
    if unknown:
        raise EvaluationInputError(f"unknown class(es) {unknown[:5]} in the ground truth; the "
                                   f"score tables have {class_names}")
    return ids, ignored


def _checked_durations(tables: Mapping[str, TimeLine], ids: list[str],
                       durations: Optional[Mapping[str, float]]) -> Mapping[str, float]:
    """The given durations (each table's last offset by default), each within 50 ms of its
    table's end."""
    if durations is None:
        durations = {i: float(tables[i][1][-1]) for i in ids}
    else:
        lacking = [i for i in ids if i not in durations]
        if lacking:
            raise EvaluationInputError(f"no duration for {', '.join(lacking[:5])} in --durations")
    for i in ids:
        if abs(durations[i] - tables[i][1][-1]) > 0.05:
            raise EvaluationInputError(f"{i}: duration {durations[i]:.3f} s but its score table "
                                       f"ends at {tables[i][1][-1]:.3f} s; wrong file or "
                                       "duration?")
    return durations


def _weak_label_matrix(ids: list[str], class_names: list[str], ground_truth: Mapping[str, list],
                       weak_labels: Optional[Mapping[str, list]]) -> np.ndarray:
    """[N, C] int64 weak labels: the given ones, or the classes of each file's true events."""
    if weak_labels is None:
        weak = {i: sorted({label for _, _, label in ground_truth.get(i, [])}) for i in ids}
    else:
        weak = {i: weak_labels.get(i, []) for i in ids}
    labels = np.zeros((len(ids), len(class_names)), np.int64)
    for row, i in enumerate(ids):
        labels[row, [class_names.index(c) for c in weak[i]]] = 1
    return labels


def _clip_score_matrix(tables: Mapping[str, TimeLine], ids: list[str],
                       clip_scores: Optional[Mapping[str, np.ndarray]]) -> np.ndarray:
    """[N, C] clip scores: each table's highest row, or the given path-keyed clip scores matched
    to each id by the path's end (exactly one match per id)."""
    if clip_scores is None:
        return np.stack([tables[i][2].max(0) for i in ids])
    by_suffix: dict[str, list] = {}  # every "__"-joined tail of each path id
    for k in clip_scores:
        parts = k.split("__")
        for j in range(len(parts)):
            by_suffix.setdefault("__".join(parts[j:]), []).append(k)
    matched = {i: by_suffix.get(i, []) for i in ids}
    absent = [i for i in ids if len(matched[i]) != 1]
    if absent:
        raise EvaluationInputError(f"--clip_scores has no (or more than one) file for "
                                   f"{', '.join(absent[:5])}")
    return np.stack([clip_scores[matched[i][0]] for i in ids])
