"""Last-epoch weights vs the best epoch's (chosen on clip validation), on long *validation*
recordings: does the best-epoch choice cost the real benchmark's long-recording tagging?

  python -m bench.last_vs_best --json=bench/results/last_vs_best_real.json SWEEP.json [...]

SWEEP.json: `python -m bench.real_mixtures` sweep JSONs (their runs' workdirs must exist here).
For each run the best checkpoint and the `latest` one (the final epoch's train state) score the
build's `mixtures_val/` in process (`wler_jax.predict.predict_files`); the validation mixtures
only, so nothing here reads test audio. Writes per-run figures and, per method, the
paired last - best difference.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os

import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from wler_jax import checkpoints, evaluate, predict


def last_params(workdir: str):
    """(params, meta) of a workdir's `latest` checkpoint (the last epoch's train state)."""
    ckpt = checkpoints.Checkpointer(workdir)
    try:
        step = ckpt.latest.latest_step()
        if step is None:
            raise SystemExit(f"error: {workdir}: no latest checkpoint")
        out = ckpt.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        return out.state["params"], out.meta
    finally:
        ckpt.close()


def long_val_map(model, build: str) -> float:
    """Tagging mAP of the build's long validation mixtures."""
    with open(os.path.join(build, "mixtures_val.csv")) as f:
        rows = list(csv.DictReader(f))
    names = list(model.class_names)
    labels = np.zeros((len(rows), len(names)), np.float32)
    for i, r in enumerate(rows):
        for label in filter(None, r["labels"].split(";")):
            labels[i, names.index(label)] = 1.0
    scores = np.zeros_like(labels)
    paths = [os.path.join(build, r["path"]) for r in rows]
    for i, pred, err in predict.predict_files(model, paths):
        if err is not None:
            raise SystemExit(f"error: {paths[i]}: {err}")
        scores[i] = pred.clip
    return evaluate.average_precision(labels, scores, names)["mAP"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="bench.real_mixtures sweep JSONs")
    parser.add_argument("--json", required=True, help="output JSON")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    runs = []
    for sweep in args.sweeps:
        with open(sweep) as f:
            for r in json.load(f)["runs"]:
                workdir = r["workdir"]
                # fixed-split sweeps predate build_dir: <out>/runs/<set>/<variant>/<run>
                build = r.get("build_dir") or os.path.dirname(os.path.dirname(
                    os.path.dirname(os.path.dirname(workdir))))
                model = predict.load_model(workdir)
                params, meta = last_params(workdir)
                row = {"sweep": os.path.basename(sweep), "method": r["method"],
                       "config_file": r.get("config_file"),  # None: a sweep from before it
                       "seed": r["seed"], "fold": r.get("fold"), "best_epoch": r["best_epoch"],
                       "last_epoch": meta["epoch"],
                       "clip_val_best": r["validation_mAP"],
                       "clip_val_last": meta["history"][-1]["mAP"],
                       "long_val_best": long_val_map(model, build),
                       "long_val_last": long_val_map(dataclasses.replace(model, params=params),
                                                     build)}
                runs.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for m in sorted({r["method"] for r in runs}):
        d = [r["long_val_last"] - r["long_val_best"] for r in runs if r["method"] == m]
        c = [r["clip_val_last"] - r["clip_val_best"] for r in runs if r["method"] == m]
        summary[m] = {"runs": len(d), "long_val_last_minus_best_mean": float(np.mean(d)),
                      "long_val_last_better": int(sum(x > 0 for x in d)),
                      "clip_val_last_minus_best_mean": float(np.mean(c))}
    with open(args.json, "w") as f:
        json.dump({"runs": runs, "summary": summary}, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
