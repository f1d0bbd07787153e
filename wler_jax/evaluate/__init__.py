"""Recording-level tagging metrics and the paper's results table (paper §III-C, Tables I-II).

The paper reports average precision (AP) per event and their mean (mAP) over recordings'
clip scores. AP comes from `sklearn.metrics.average_precision_score` (no hand-written metric).
A class without a positive (or without a negative) recording in the evaluated set has no
defined AP: it is left out of mAP and named in "skipped_classes", never silently counted as 0.

`format_table` lays out one column per run or split (e.g. SLAT vs WLER), rows per event and a
final mAP row, plus localisation rows (segment F1, PSDS) when `localisation.localisation_metrics`
results are attached under result["localisation"].

The package also scores prediction tables outside training: `scoring` (score tables, ground
truth, PSDS, F1, AUC, d', lwlrap) and the command line `python -m wler_jax.evaluate`
(`__main__.py`).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import sklearn.metrics
from absl import logging


def average_precision(labels, scores, class_names: Sequence[str], *,
                      sample_weight=None) -> dict:
    """Per-class AP and mAP of recording scores against weak labels.

    Args:
      labels: [N, C] multi-hot {0, 1} recording labels.
      scores: [N, C] recording scores (probabilities or logits: AP only uses their order).
      class_names: C names (keys of "AP").
      sample_weight: optional [N] weights; rows of weight 0 (batch padding) are ignored,
        including when deciding whether a class has positives and negatives.

    Returns:
      {"mAP": mean AP over defined classes (NaN if none), "AP": {name: AP} for the defined
       classes, "skipped_classes": [names whose AP is undefined: no positive or no negative],
       "num_examples": int}. Values are plain Python floats.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"labels and scores must both be [N, C]; got {labels.shape} and "
                         f"{scores.shape}")
    if len(class_names) != labels.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {labels.shape[1]} columns")
    if not np.all(np.isin(labels, (0, 1))):
        raise ValueError("labels must be 0 or 1")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain non-finite values")
    if sample_weight is None:
        weight = np.ones(len(labels))
    else:
        weight = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if weight.shape != (len(labels),) or np.any(weight < 0):
            raise ValueError(f"sample_weight must be [N={len(labels)}] and >= 0")
    used = weight > 0
    labels, scores, weight = labels[used].astype(np.int64), scores[used], weight[used]

    ap, skipped = {}, []
    for c, name in enumerate(class_names):
        positives = int(labels[:, c].sum())
        if positives == 0 or positives == len(labels):
            skipped.append(str(name))
            continue
        ap[str(name)] = float(sklearn.metrics.average_precision_score(
            labels[:, c], scores[:, c], sample_weight=weight))
    if skipped:
        logging.warning("AP undefined (no positive or no negative recording) for %s; excluded "
                        "from mAP", skipped)
    mean = float(np.mean(list(ap.values()))) if ap else float("nan")
    return {"mAP": mean, "AP": ap, "skipped_classes": skipped, "num_examples": int(len(labels))}


def _ap_sorted(labels: np.ndarray, scores: np.ndarray) -> float:
    """sklearn's average precision (step-wise, ties grouped) of one class, in plain numpy.

    Only for the bootstrap, where sklearn's per-call overhead (~5 ms) times 10^4 calls dominates;
    `tests/test_evaluate.py` holds it equal to `sklearn.metrics.average_precision_score`.
    """
    order = np.argsort(-scores, kind="stable")
    y, s = labels[order], scores[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1.0)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _resampled_maps(labels, scores: Sequence, *, groups=None, num_resamples: int,
                    seed: int) -> np.ndarray:
    """[R, len(scores)] mAP of each system on the same bootstrap resamples (R <= num_resamples:
    a resample with no class that has both a positive and a negative is dropped).

    A resample draws len(units) units with replacement, a unit being one recording or, with
    `groups` ([N] ids), all recordings of one group; each mAP averages the classes that have a
    positive and a negative in the resample (as `average_precision` does).
    """
    labels = np.asarray(labels).astype(np.int64)
    scores = [np.asarray(x, dtype=np.float64) for x in scores]
    n = len(labels)
    if groups is None:
        units = [np.array([i]) for i in range(n)]
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
        units = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(num_resamples):
        idx = np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
        y = labels[idx]
        pos = y.sum(0)
        keep = [c for c in range(y.shape[1]) if 0 < pos[c] < len(idx)]
        if keep:
            maps.append([np.mean([_ap_sorted(y[:, c], s[idx, c]) for c in keep])
                         for s in scores])
    return np.asarray(maps, dtype=np.float64).reshape(-1, len(scores))


def _percentile_interval(values: np.ndarray, level: float) -> list[float]:
    if not len(values):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def bootstrap_map_ci(labels, scores, *, groups=None, num_resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of mAP over recordings: [lo, hi].

    Recordings are resampled with replacement; each resample's mAP averages the classes that
    have a positive and a negative in it (as `average_precision` does). The interval says how
    much the figure would move on another test set of the same size, which is what decides
    whether two methods differ.

    Args:
      labels: [N, C] multi-hot weak labels; scores: [N, C] recording scores.
      groups: [N] ids (e.g. each clip's source recording): whole groups are resampled, for
        clips that are not independent; None resamples recordings.
      num_resamples: bootstrap resamples; seed: their RNG seed (the interval is deterministic).
      level: coverage of the interval.
    """
    maps = _resampled_maps(labels, [scores], groups=groups, num_resamples=num_resamples,
                           seed=seed)
    return _percentile_interval(maps[:, 0], level)


def paired_bootstrap_map_ci(labels, scores_a, scores_b, *, groups=None,
                            num_resamples: int = 1000, seed: int = 0,
                            level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of two systems' mAP on the same recordings and of their
    difference (a - b), from the same resamples, so the pairing is kept.

    With `groups` ([N] ids, e.g. the source recording a clip was cut from), whole groups are
    resampled: clips of one source are not independent, and resampling them one by one would
    make the interval too narrow.

    Returns {"a": [lo, hi], "b": [lo, hi], "diff": [lo, hi]}.
    """
    maps = _resampled_maps(labels, [scores_a, scores_b], groups=groups,
                           num_resamples=num_resamples, seed=seed)
    return {"a": _percentile_interval(maps[:, 0], level),
            "b": _percentile_interval(maps[:, 1], level),
            "diff": _percentile_interval(maps[:, 0] - maps[:, 1], level)}


def display_name(name: str) -> str:
    """Human-readable event name: "air_conditioner" -> "Air Conditioner"; others unchanged."""
    name = str(name)
    if "_" in name or name == name.lower():
        return " ".join(w[:1].upper() + w[1:] for w in name.replace("_", " ").split())
    return name


# Optional rows: (label, key in the result) and (label, key in result["localisation"]).
_CLIP_ROWS = (("ROC AUC", "roc_auc"), ("d'", "d_prime"), ("lwlrap", "lwlrap"),
              ("Clip F1", "clip_f1"))
_LOCALISATION_ROWS = (("Segment F1", "segment_f1"), ("Event F1", "event_f1"), ("PSDS", "psds1"),
                      ("PSDS2", "psds2"))


def _cell(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    return "-" if np.isnan(value) else f"{value:.3f}"


def format_table(results: Mapping[str, Mapping], class_names: Sequence[str], *,
                 title: Optional[str] = None) -> str:
    """The paper's AP table: one row per event, one column per run/split, then mAP.

    Args:
      results: column name -> an `average_precision` result (e.g. {"SLAT": r1, "WLER": r2});
        a result may carry result["localisation"] (from `localisation.localisation_metrics`),
        which adds "Segment F1" / "Event F1" / "PSDS" / "PSDS2" rows when any column has them,
        and the clip metrics of `scoring.clip_metrics` (ROC AUC, d', lwlrap, clip F1 rows).
      class_names: row order (dataset class names, shown human-readable).
      title: optional first line.

    Returns:
      A plain-text, column-aligned table (3 decimals; "-" where a value is missing, e.g. a
      skipped class).
    """
    columns = list(results)
    if not columns:
        raise ValueError("no results to format")
    rows = [["Event Name", *columns]]
    for name in class_names:
        rows.append([display_name(name),
                     *(_cell(results[c].get("AP", {}).get(str(name))) for c in columns)])
    rows.append(["mAP", *(_cell(results[c].get("mAP")) for c in columns)])
    for label, key in _CLIP_ROWS:
        values = [results[c].get(key) for c in columns]
        if any(v is not None for v in values):
            rows.append([label, *(_cell(v) for v in values)])
    for label, key in _LOCALISATION_ROWS:
        values = [(results[c].get("localisation") or {}).get(key) for c in columns]
        if any(v is not None for v in values):
            rows.append([label, *(_cell(v) for v in values)])

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row):
        return "  ".join([row[0].ljust(widths[0])] +
                         [v.rjust(w) for v, w in zip(row[1:], widths[1:])]).rstrip()

    rule = "-" * len(line(rows[0]))
    out = ([title] if title else []) + [line(rows[0]), rule]
    out += [line(r) for r in rows[1:len(class_names) + 1]]
    out += [rule] + [line(r) for r in rows[len(class_names) + 1:]]
    return "\n".join(out)
