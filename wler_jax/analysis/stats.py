"""Statistics over seeds: mean, sample std and the 95 % t-interval of the mean, and paired
differences. Two conventions for a single value, both kept as the result JSONs have them:
`interval` (the synthetic sweep and transfer) gives NaN std and interval, `t_stats` (the real
benchmark) std 0, a null interval and the values themselves."""
from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
import scipy.stats


def interval(values, level: float = 0.95) -> dict:
    """Mean, sample std and the t-interval of the mean of `values` (NaN interval for n < 2)."""
    v = np.asarray(values, np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "std": float("nan"), "ci95": [float("nan")] * 2, "n": len(v)}
    std = float(v.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.5 + level / 2, len(v) - 1) * std / np.sqrt(len(v)))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": len(v)}


def t_stats(values) -> dict:
    """{"mean", "std", "ci95" (95 % t-interval; None for one value), "n", "values"}."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    if len(v) < 2:  # no interval from one run (null in the JSON)
        return {"mean": mean, "std": std, "ci95": None, "n": len(v), "values": [mean]}
    half = float(scipy.stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v)))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": len(v),
            "values": [float(x) for x in v]}


def paired(a: Mapping[int, dict], b: Mapping[int, dict], seeds: list[int],
           metrics: Mapping[str, Callable[[dict], float]], flag: str) -> dict:
    """{metric: t_stats of metric(a[s]) - metric(b[s]) over `seeds`, with `flag`: every
    difference >= 0}; `a`, `b`: {seed: run}."""
    out = {}
    for m, f in metrics.items():
        d = [f(a[s]) - f(b[s]) for s in seeds]
        out[m] = {**t_stats(d), flag: bool(all(x >= 0 for x in d))}
    return out
