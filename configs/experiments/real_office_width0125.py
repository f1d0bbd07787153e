"""The real benchmark's recipe before width 0.25 ("Learning, part 9" to part 11): the folder
dataset's `cpu` preset as it is (width 0.125), 36 epochs, on the default build (long weakly
labelled training mixtures, `--train_mixtures=0.25`). Other sizes are the preset's.

Produced (docs/results.md "Real recordings" and docs/real_benchmark.md "Width 0.125, with long
training recordings": the width-0.125 tables; docs/experiments.md parts 9-11, the baseline of
their A/Bs):
  bench/results/real_mixtures_cpu_weak_mix0.25_36ep_5fold.json    both methods, --folds=5
  bench/results/real_mixtures_cpu_weak_mix0.25_36ep_5seeds.json   both methods, fixed split
  bench/results/real_mixtures_cpu_weak_mix0.25_36ep_3seeds.json   both methods, fixed split
  bench/results/long_false_positives_real_mix0.25_36ep_5fold.json its runs' false alarms

  python -m bench.real_mixtures --config=configs/experiments/real_office_width0125.py \\
      --source=SASED --out=DIR --train --seeds=5 [--folds=5]

`arg`: `method[,dataset][,size]` (default `wler,folder,cpu`).
"""
from wler_jax.configs import common, recipes


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="folder")
    c = common.base_config(method, f"{dataset},{size}")
    if size == "cpu":
        c.train.epochs = 36
        c.model.width = 0.125
    return c
