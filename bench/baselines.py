"""The log-mel statistics baseline on a real benchmark's tables: clips and long recordings.

  python -m bench.baselines --clips=BUILD/clips.csv --long=BUILD/mixtures.csv \
      [--train=BUILD/weak.csv] --json=bench/results/NAME.json

Logistic regression on per-band log-mel mean, std and max at the four FFT sizes
(`wler_jax.training.logmel_baseline`), C chosen on validation mAP. Settings:
  * `clips`: trained on the clip table's train split (C on its validation split); scored on its
    test split (95 % bootstrap over sources) and on the long test recordings of `--long`.
  * `weak` (with `--train`, e.g. a table of weakly labelled long recordings, the paper's
    setting): trained on that table's train split (C on its validation split); scored the same.
The baseline is deterministic, so its interval is a bootstrap over test sources (clips) or test
recordings (long), not over seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from wler_jax.training import logmel_baseline as lb


def _statistics(table: lb.Table, cache: dict, label: str) -> np.ndarray:
    todo = [p for p in table.paths if p not in cache]
    if todo:
        start = time.time()
        x = lb.recording_statistics(todo, progress=lambda i: (i + 1) % 200 == 0 and print(
            f"  {label}: {i + 1}/{len(todo)} files", file=sys.stderr, flush=True))
        cache.update(zip(todo, x))
        print(f"  {label}: statistics of {len(todo)} files in {time.time() - start:.0f} s",
              file=sys.stderr)
    return np.stack([cache[p] for p in table.paths])


def run_setting(train: lb.Table, clips: lb.Table, long: lb.Table | None, class_names: list,
                cache: dict) -> dict:
    """Fit on `train` (C on its validation split); score the clip test split and `long`."""
    x = _statistics(train, cache, "train table")
    y = train.multi_hot(class_names)
    tr, va = train.select("train"), train.select("validation")
    if not len(va):
        raise SystemExit("the training table has no validation split to choose C on")
    model, choice = lb.fit(x[tr], y[tr], x[va], y[va], class_names)
    out = {"num_train": int(len(tr)), "num_validation": int(len(va)), **choice}
    xc = _statistics(clips, cache, "clips")
    te = clips.select("test")
    res = lb.score(model, xc[te], clips.multi_hot(class_names)[te], class_names,
                   groups=[clips.groups[i] for i in te])
    out["clip_test"] = {k: v for k, v in res.items() if k != "scores"} | {"num": int(len(te))}
    if long is not None:
        xl = _statistics(long, cache, "long recordings")
        res = lb.score(model, xl, long.multi_hot(class_names), class_names)
        out["long_tagging"] = {k: v for k, v in res.items() if k != "scores"} | {
            "num": len(long.paths)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", required=True, help="clip table: path,labels,split[,source]")
    parser.add_argument("--train", default=None,
                        help="another training table (e.g. weak long recordings) with train "
                             "and validation splits: adds the 'weak' setting")
    parser.add_argument("--long", default=None, help="long test recordings: path,labels")
    parser.add_argument("--json", required=True, help="where the results go")
    args = parser.parse_args()
    clips = lb.read_table(args.clips)
    long = lb.read_table(args.long) if args.long else None
    class_names = sorted({c for names in clips.labels for c in names})
    cache: dict = {}
    results = {"baseline": "logistic regression on log-mel mean/std/max, 4 FFT sizes",
               "num_features": lb.NUM_FEATURES, "c_grid": list(lb.C_GRID),
               "class_names": class_names, "tables": vars(args), "settings": {}}
    results["settings"]["clips"] = run_setting(clips, clips, long, class_names, cache)
    if args.train:
        results["settings"]["weak"] = run_setting(lb.read_table(args.train), clips, long,
                                                  class_names, cache)
    for name, s in results["settings"].items():
        line = f"{name:6s} C={s['C']:g}  clip test mAP {s['clip_test']['mAP']:.3f} " \
               f"[{s['clip_test']['mAP_ci95'][0]:.3f}, {s['clip_test']['mAP_ci95'][1]:.3f}]"
        if "long_tagging" in s:
            lt = s["long_tagging"]
            line += f"  long tagging {lt['mAP']:.3f} [{lt['mAP_ci95'][0]:.3f}, " \
                    f"{lt['mAP_ci95'][1]:.3f}]"
        print(line)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
