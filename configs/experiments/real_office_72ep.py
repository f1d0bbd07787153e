"""The real benchmark's recipe before the long training mixtures ("Learning", parts 5-8): the
folder dataset's `cpu` preset (width 0.125) for 72 epochs, on a build without long weakly
labelled training recordings (`--train_mixtures=0`: clips, events in 2-6 s backgrounds and
background-only recordings). Other sizes are the preset's.

Produced (docs/results.md and docs/real_benchmark.md "Weak set without long recordings, 72
epochs"; docs/experiments.md parts 5, 7 and 8):
  bench/results/real_mixtures_cpu_weak_72ep_5seeds.json          both methods, fixed split
  bench/results/real_mixtures_cpu_weak_72ep_5seeds_rescored.json the same runs, exact scores
  bench/results/real_mixtures_cpu_weak_72ep_5fold.json           both methods, --folds=5
  bench/results/last_vs_best_real_72ep.json                      last vs best epoch of its runs
  bench/results/long_false_positives_real_72ep_5fold.json        its runs' false alarms

  python -m bench.real_mixtures --config=configs/experiments/real_office_72ep.py \\
      --train_mixtures=0 --source=SASED --out=DIR --train --seeds=5 [--folds=5]

`arg`: `method[,dataset][,size]` (default `wler,folder,cpu`).
"""
from wler_jax.configs import common, recipes


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="folder")
    c = common.base_config(method, f"{dataset},{size}")
    if size == "cpu":
        c.train.epochs = 72
        c.model.width = 0.125
    return c
