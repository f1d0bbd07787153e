"""How far training moved each layer: ||w_best - w_init|| / ||w_init|| per kernel, per workdir.

  python -m bench.weight_travel WORKDIR [WORKDIR ...] [--json=bench/results/weight_travel.json]

Why: the paper's Adagrad (Lasagne semantics: accumulator from 0) moves a parameter by
lr * g_t / sqrt(sum_s g_s^2) per step, so after T steps no parameter can have moved more than
lr * sqrt(T) (Cauchy-Schwarz), whatever the gradients. With lr 1e-3 and the ~1,850 steps of the
`cpu` budget that is 0.043, against conv kernels whose entries start at a Glorot scale of ~0.05-0.3
(Adam's bound, lr * T, is ~100x larger). The script reports the measured relative change per layer,
the mean absolute change per entry next to that bound, and the step count, so a stalled recipe can
be told from one that moved its weights and still did not learn. The initial parameters are
rebuilt from the run's config and seed with `wler_jax.training.train.run_rngs`, as training drew them.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np
from flax import traverse_util

from wler_jax.predict import load_model
from wler_jax.training import train


def travel(workdir: str) -> dict:
    """Per-kernel relative change between the run's initial and best parameters."""
    model = load_model(workdir)
    config = model.config
    init_rng, _ = train.run_rngs(config.seed)
    init = traverse_util.flatten_dict(jax.device_get(model.spec.init(init_rng)), sep="/")
    best = traverse_util.flatten_dict(jax.device_get(model.params), sep="/")
    layers = {}
    for name, w0 in init.items():
        if not name.endswith("kernel"):
            continue
        w0, w1 = np.asarray(w0, np.float64), np.asarray(best[name], np.float64)
        layers[name] = {"relative_change": float(np.linalg.norm(w1 - w0) / np.linalg.norm(w0)),
                        "mean_abs_change": float(np.abs(w1 - w0).mean()),
                        "max_abs_change": float(np.abs(w1 - w0).max()),
                        "init_mean_abs": float(np.abs(w0).mean())}
    results = json.load(open(os.path.join(workdir, "results.json")))
    # optimiser steps up to the selected (best) epoch, whose parameters are compared
    steps = next((int(h["step"]) for h in results.get("history") or []
                  if h.get("epoch") == results["best_epoch"] and "step" in h), None)
    out = {"workdir": workdir, "optimizer": config.train.optimizer,
           "learning_rate": config.train.learning_rate, "schedule": config.train.schedule,
           "dropout_rate": config.model.dropout_rate, "input_norm": config.model.input_norm,
           "best_epoch": results["best_epoch"], "validation_mAP": results["validation"]["mAP"],
           "steps": steps, "layers": layers}
    if steps and config.train.optimizer == "adagrad":
        out["adagrad_bound_per_entry"] = config.train.learning_rate * float(np.sqrt(steps))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs = [travel(w) for w in args.workdirs]
    for r in runs:
        bound = r.get("adagrad_bound_per_entry")
        print(f"\n{r['workdir']}: {r['optimizer']} lr {r['learning_rate']:g} ({r['schedule']}), "
              f"dropout {r['dropout_rate']}, input_norm {r['input_norm']}, best epoch "
              f"{r['best_epoch']}, validation mAP {r['validation_mAP']:.3f}, steps {r['steps']}"
              + (f", Adagrad bound per entry {bound:.3f}" if bound else ""))
        print(f"  {'kernel':28} {'rel. change':>11} {'mean |dw|':>10} {'max |dw|':>9} {'mean |w0|':>9}")
        for name, v in r["layers"].items():
            print(f"  {name:28} {v['relative_change']:11.3f} {v['mean_abs_change']:10.4f} "
                  f"{v['max_abs_change']:9.4f} {v['init_mean_abs']:9.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
