"""Dead and always-on ReLU units per layer, at a run's initialisation and at its best epoch.

  python -m bench.unit_activity WORKDIR [WORKDIR ...] --csv=LABELS.csv [--split=train]
      [--num=60] [--json=bench/results/unit_activity.json]

Why: a ReLU unit whose pre-activation is <= 0 on every position of every recording passes no
signal and gets no gradient (dead); one that is > 0 almost everywhere (>= 95 % of positions
here) is a linear unit that adds no non-linearity. Either wastes a channel, and at the `cpu`
width there are only 16-32 per layer. Raw dB input (-100 ... +40, mostly far below 0) puts a
large constant term into every conv1 output, which sets many units on one side of zero before
any training; `model.input_norm=per_band` removes it. The script reports, per layer (conv1 ..
conv5, and FCv1 for WLER), how many channels are dead and always on and the fraction of
positive pre-activations, over `--num` recordings of a folder/CSV dataset (one scale, n_fft 1024,
each recording alone so no batch padding counts). The initial parameters are rebuilt from the
run's config and seed as training drew them (`wler_jax.training.train.run_rngs`); the input
normalisation statistics, which training measures before the first step, are the run's own.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from wler_jax import audio, features
from wler_jax.analysis.unit_activity import ALWAYS_ON, activity
from wler_jax.data.datasets import folder
from wler_jax.predict import load_model
from wler_jax.training import train

N_FFT = 1024


def read_features(csv_path: str, split: str, num: int, seed: int = 0) -> list[np.ndarray]:
    """Log-mel features [T, 128] of `num` recordings drawn (seeded) from one split of a CSV."""
    # The folder dataset's own CSV reader (header forms, split names, paths relative to the CSV);
    # rows without a split (seeded by the dataset) count for every split.
    rows = [r for r in folder.scan_csv(csv_path) if not split or (r.split or split) == split]
    if not rows:
        raise SystemExit(f"{csv_path}: no rows of split {split!r}")
    pick = np.random.default_rng(seed).choice(len(rows), min(num, len(rows)), replace=False)
    feats = []
    for i in sorted(pick):
        wave = audio.load(rows[i].path)
        f, _ = features.log_mel(jnp.asarray(wave[None]), jnp.asarray([len(wave)]), N_FFT)
        feats.append(np.asarray(f[0]))
    return feats


def run(workdir: str, feats: list[np.ndarray]) -> dict:
    """Activity at the run's initialisation and at its best checkpoint (counted by
    `wler_jax.analysis.unit_activity.activity`)."""
    model = load_model(workdir)
    init_rng, _ = train.run_rngs(model.config.seed)
    init = jax.device_get(model.spec.init(init_rng))
    if "input_norm" in model.params:  # measured before the first step, then frozen
        init["input_norm"] = model.params["input_norm"]
    results_file = os.path.join(workdir, "results.json")  # absent while the run still trains
    results = json.load(open(results_file)) if os.path.exists(results_file) else {}
    return {"workdir": workdir, "input_norm": model.config.model.input_norm,
            "optimizer": model.config.train.optimizer, "best_epoch": results.get("best_epoch"),
            "init": activity(model.spec, init, feats),
            "best": activity(model.spec, model.params, feats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--csv", required=True, help="folder-dataset CSV (path[,split]) to read")
    parser.add_argument("--split", default="train", help="rows of this split ('' = all)")
    parser.add_argument("--num", type=int, default=60, help="recordings to run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    feats = read_features(args.csv, args.split, args.num)
    runs = [run(w, feats) for w in args.workdirs]
    for r in runs:
        print(f"\n{r['workdir']}: {r['optimizer']}, input_norm {r['input_norm']}, best epoch "
              f"{r['best_epoch']}; {len(feats)} recordings")
        print(f"  {'layer':6} {'dead (init -> best)':>20} {'always on':>14} {'active':>14}")
        for name, v0 in r["init"].items():
            v1 = r["best"][name]
            print(f"  {name:6} {v0['dead']:>7} -> {v1['dead']:<3}/{v0['channels']:<4} "
                  f"{v0['always_on']:>6} -> {v1['always_on']:<5} "
                  f"{v0['active']:>6.3f} -> {v1['active']:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"csv": os.path.abspath(args.csv), "split": args.split,
                       "recordings": len(feats), "always_on_threshold": ALWAYS_ON,
                       "runs": runs}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
