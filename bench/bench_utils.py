"""Helpers shared by the bench scripts: a test signal and writing a result file."""
from __future__ import annotations

import json
import os

import numpy as np

SAMPLE_RATE = 44_100


def noise_and_tones(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise, three tones and a chirp under a slow envelope: float32 [num_samples] in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    x = 0.05 * rng.standard_normal(num_samples)
    for f, a in ((220.0, 0.2), (1830.0, 0.1), (6000.0, 0.05)):
        x += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x += 0.1 * np.sin(2 * np.pi * (300 * t + 50 * t ** 2))
    return (x * np.clip(np.sin(np.pi * t / 3) + 0.5, 0, None)).astype(np.float32)


def write_json(out: dict, path: str, total_s: float) -> None:
    """Write a bench result (creating its folder) and say where, with the run's total time."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"\ntotal {total_s:.1f} s; wrote {path}")
