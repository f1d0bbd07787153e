"""Padding waste of length bucketing vs padding every recording to the longest.

Padding waste = padded frames / real frames over one epoch, where padded frames count every
frame slot of every batch that holds no audio (zeros after a recording's end, and the weight-0
rows that fill the last batch of a bucket). It is the compute spent on nothing. Only the
batch plan is computed (no audio is read), so this runs in about a second.

Length distributions:
  synthetic: the default synthetic training split's shape, log-normal with median 5 s clipped
    to 1-70 s (1000 recordings), or the lengths in `--lengths_npy` (e.g. the length cache
    `RecordingBatcher(lengths_cache=...)` writes for a real split).
  web: like the paper's web-collected data (0.6 s to 10 min, mean 2.1 min): 1250 recordings,
    log-normal (sigma 1.2) clipped to [0.6 s, 600 s], mu fitted so the clipped mean is 126 s.

The "(rows)" column is the part of the waste spent on weight-0 rows that fill the last batch
of each bucket; the rest is zeros after recordings' ends. "frames (M)" is all frame slots of
an epoch (real + padded), i.e. the compute per epoch.

Usage:
  python -m bench.padding_waste [--frame_budget=10240] [--num_devices=1] [--ratios 1.25 1.5 2]
      [--lengths_npy=FILE] [--json=PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
from absl import logging

from bench import common
from wler_jax import geometry
from wler_jax.data import input_pipeline as ip

SR = geometry.SAMPLE_RATE


def synthetic_lengths(num=1000, median_s=5.0, sigma=0.8, lo_s=1.0, hi_s=70.0, seed=0):
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(median_s), sigma, num), lo_s, hi_s)
    return (seconds * SR).astype(np.int64)


def web_lengths(num=1250, mean_s=126.0, sigma=1.2, lo_s=0.6, hi_s=600.0, seed=0):
    z = np.random.default_rng(seed).standard_normal(num)
    lo, hi = np.log(mean_s) - 5, np.log(mean_s) + 2
    for _ in range(60):  # bisection on mu: the clipped sample mean increases with mu
        mu = (lo + hi) / 2
        if np.clip(np.exp(mu + sigma * z), lo_s, hi_s).mean() < mean_s:
            lo = mu
        else:
            hi = mu
    return (np.clip(np.exp(mu + sigma * z), lo_s, hi_s) * SR).astype(np.int64)


def bucketed(lengths, frame_budget, num_devices, ratio):
    batcher = ip.RecordingBatcher(num_classes=1, frame_budget=frame_budget,
                                  num_devices=num_devices, ratio=ratio, lengths=lengths)
    stats = batcher.plan_stats(batcher.epoch_plan(0))
    return {"method": f"buckets x{ratio:g}", "ratio": ratio, "batch_shapes": stats["batch_shapes"],
            "batches_per_epoch": stats["batches"], "real_frames": stats["real_frames"],
            "padded_frames": stats["padded_frames"], "padding_waste": stats["padding_waste"],
            "padding_row_frames": stats["padding_row_frames"],
            "buckets": {str(f): {"batch_size": b["batch_size"], "recordings": b["recordings"],
                                 "batches": b["batches"]} for f, b in stats["buckets"].items()}}


def fixed(lengths, frame_budget, num_devices):
    """Every recording padded to the longest (rounded up to the 32-frame grid, >= 128)."""
    frames = geometry.num_frames_for_samples(lengths)
    length = max(geometry.SEGMENT_FRAMES, int(math.ceil(frames.max() / 32)) * 32)
    size = max(num_devices, max(1, frame_budget // length) // num_devices * num_devices)
    batches = math.ceil(len(lengths) / size)
    real = int(frames.sum())
    return {"method": "pad to longest", "ratio": None, "batch_shapes": 1,
            "batches_per_epoch": batches, "real_frames": real,
            "padded_frames": batches * size * length - real,
            "padding_waste": (batches * size * length - real) / real,
            "padding_row_frames": (batches * size - len(lengths)) * length,
            "buckets": {str(length): {"batch_size": size, "recordings": len(lengths),
                                      "batches": batches}}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frame_budget", type=int, default=8 * 1280)
    parser.add_argument("--num_devices", type=int, default=1)
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.25, 1.5, 2.0])
    parser.add_argument("--lengths_npy", default=None,
                        help="samples per recording (.npy) to use instead of the synthetic shape")
    parser.add_argument("--json", default=os.path.join(common.RESULTS_DIR, "padding_waste.json"))
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)  # the batcher logs every plan at INFO

    if args.lengths_npy:
        first = ("file:" + os.path.basename(args.lengths_npy), np.load(args.lengths_npy))
    else:
        first = ("synthetic (median 5 s, 1-70 s, n=1000)", synthetic_lengths())
    distributions = [first, ("web (0.6 s-10 min, mean 126 s, n=1250)", web_lengths())]

    results = []
    header = (f"{'distribution':<40} {'method':<15} {'shapes':>6} {'batches/epoch':>13} "
              f"{'waste':>8} {'(rows)':>7} {'frames (M)':>10}")
    print(f"frame budget {args.frame_budget} frames/batch, {args.num_devices} device(s)")
    print(header)
    print("-" * len(header))
    for name, lengths in distributions:
        seconds = lengths / SR
        summary = {"num_recordings": int(len(lengths)), "min_s": float(seconds.min()),
                   "median_s": float(np.median(seconds)), "mean_s": float(seconds.mean()),
                   "max_s": float(seconds.max()), "hours": float(seconds.sum() / 3600)}
        rows = [fixed(lengths, args.frame_budget, args.num_devices)]
        rows += [bucketed(lengths, args.frame_budget, args.num_devices, r) for r in args.ratios]
        for row in rows:
            total = (row["real_frames"] + row["padded_frames"]) / 1e6
            print(f"{name:<40} {row['method']:<15} {row['batch_shapes']:>6} "
                  f"{row['batches_per_epoch']:>13} {100 * row['padding_waste']:>7.1f}% "
                  f"{100 * row['padding_row_frames'] / row['real_frames']:>6.1f}% {total:>10.2f}")
        results.append({"distribution": name, **summary, "rows": rows})
        print(f"  ({summary['num_recordings']} recordings, {summary['min_s']:.1f}-"
              f"{summary['max_s']:.0f} s, median {summary['median_s']:.1f} s, mean "
              f"{summary['mean_s']:.1f} s, {summary['hours']:.1f} h)")

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"frame_budget": args.frame_budget, "num_devices": args.num_devices,
                   "definition": "padding_waste = padded frames / real frames per epoch",
                   "results": results}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
