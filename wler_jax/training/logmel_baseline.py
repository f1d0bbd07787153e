"""The simplest baseline: logistic regression on per-band log-mel statistics of whole recordings.

Every real-data figure of WLER stands beside this: if a network does not beat band-energy
statistics, it has learned nothing they do not hold. A recording becomes one vector: the mean,
standard deviation and maximum over time of each of the 128 log-mel bands at each of the four
FFT sizes (the network's own features, `features.multi_scale_log_mel`: 4 x 3 x 128 = 1,536
values). One standardised L2 logistic regression per class (scikit-learn); its strength C is
chosen on the validation split's mAP, never on test.

Synopsis::

    table = read_table("clips.csv")                 # path,labels,split[,source] rows
    x = recording_statistics([r.path for r in table])
    model = fit(x[train], y[train], x[val], y[val])  # C on validation
    scores = model.predict_proba(x[test])
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wler_jax import audio as audio_lib
from wler_jax import evaluate, features
from wler_jax.data.datasets import folder
from wler_jax.geometry import HOP_LENGTH, N_FFTS, N_MELS

C_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0)  # logistic-regression strengths tried on validation
STATISTICS = ("mean", "std", "max")
NUM_FEATURES = len(N_FFTS) * len(STATISTICS) * N_MELS  # 1,536
_BUCKET_RATIO = 1.25  # waveforms are zero-padded to a geometric ladder: few compiled shapes


@dataclasses.dataclass(frozen=True)
class Table:
    """Recordings of a `path,labels[,split][,source]` CSV: paths, label names, splits, groups."""

    paths: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    splits: tuple[str, ...]
    groups: tuple[str, ...]

    def select(self, split: str) -> np.ndarray:
        """Indices of the rows of one split."""
        return np.flatnonzero(np.asarray(self.splits) == split)

    def multi_hot(self, class_names: Sequence[str]) -> np.ndarray:
        """[N, C] {0, 1} labels over `class_names` (labels outside it are ignored)."""
        index = {c: i for i, c in enumerate(class_names)}
        y = np.zeros((len(self.paths), len(class_names)), np.int64)
        for n, names in enumerate(self.labels):
            for c in names:
                if c in index:
                    y[n, index[c]] = 1
        return y


def read_table(csv_path: str) -> Table:
    """The rows of a CSV in the `folder` dataset's format (paths relative to the CSV; a row's
    group is its `source`/`group` cell, or its own path)."""
    rows = folder.scan_csv(csv_path)
    return Table(tuple(r.path for r in rows), tuple(r.labels for r in rows),
                 tuple(r.split for r in rows), tuple(r.group or r.path for r in rows))


def _bucket(num_samples: int) -> int:
    """The padded length of a waveform: the next rung of a 1.25x ladder of 32-hop multiples."""
    step = 32 * HOP_LENGTH
    rungs = max(0, math.ceil(math.log(max(num_samples, step) / step, _BUCKET_RATIO)))
    return int(math.ceil(step * _BUCKET_RATIO ** rungs / step) * step)


@jax.jit
def _statistics(waveform: jax.Array, num_samples: jax.Array) -> jax.Array:
    """[L] zero-padded waveform, its valid length -> [NUM_FEATURES] (scale, statistic, band)."""
    feats, num_frames = features.multi_scale_log_mel(waveform[None], num_samples[None])
    valid = (jnp.arange(feats.shape[2]) < num_frames[0])[None, :, None]  # [1, T, 1]
    count = num_frames[0].astype(jnp.float32)
    x = feats[:, 0]  # [K, T, 128]
    mean = jnp.where(valid, x, 0.0).sum(1) / count
    var = jnp.where(valid, (x - mean[:, None]) ** 2, 0.0).sum(1) / count
    peak = jnp.where(valid, x, -jnp.inf).max(1)
    return jnp.stack([mean, jnp.sqrt(var), peak], 1).reshape(-1)


def waveform_statistics(waveform: np.ndarray) -> np.ndarray:
    """[NUM_FEATURES] float32 log-mel statistics of one 44.1 kHz mono float32 waveform."""
    n = int(waveform.shape[0])
    padded = np.zeros(_bucket(n), np.float32)
    padded[:n] = waveform
    return np.asarray(_statistics(padded, np.int32(n)), np.float32)


def recording_statistics(paths: Sequence[str], *,
                         progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """[N, NUM_FEATURES] statistics of audio files (`audio.load`: any format, rate, channels).

    Raises audio.AudioError naming the file that cannot be read."""
    out = np.zeros((len(paths), NUM_FEATURES), np.float32)
    for i, path in enumerate(paths):
        out[i] = waveform_statistics(audio_lib.load(path))
        if progress is not None:
            progress(i)
    return out


def _classifier(c: float):
    # liblinear: deterministic, fast on a few hundred rows of 1,536 features
    return make_pipeline(StandardScaler(), OneVsRestClassifier(
        LogisticRegression(C=c, max_iter=5000, solver="liblinear")))


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        class_names: Sequence[str], c_grid: Sequence[float] = C_GRID):
    """The classifier of the C in `c_grid` with the best validation mAP, fitted on train.

    Returns (fitted pipeline, {"C": chosen, "validation_mAP": {C: mAP}}). A class without a
    positive training example gets a constant score (scikit-learn's one-vs-rest)."""
    val_maps = {}
    best = None
    for c in c_grid:
        model = _classifier(c).fit(x_train, y_train)
        val_maps[c] = evaluate.average_precision(y_val, model.predict_proba(x_val),
                                                 class_names)["mAP"]
        if best is None or val_maps[c] > val_maps[best[0]]:
            best = (c, model)
    return best[1], {"C": best[0], "validation_mAP": {str(c): m for c, m in val_maps.items()}}


def score(model, x: np.ndarray, y: np.ndarray, class_names: Sequence[str], *,
          groups: Optional[Sequence[str]] = None, seed: int = 0) -> dict:
    """mAP, per-class AP and a 95 % bootstrap interval (over `groups`, e.g. sources) of `model`
    on recordings `x` with labels `y`; also the scores themselves (for paired comparisons)."""
    scores = model.predict_proba(x)
    ap = evaluate.average_precision(y, scores, class_names)
    ci = evaluate.bootstrap_map_ci(y, scores, groups=None if groups is None
                                   else np.asarray(groups), seed=seed)
    return {"mAP": ap["mAP"], "AP": ap["AP"], "mAP_ci95": ci, "scores": scores}
