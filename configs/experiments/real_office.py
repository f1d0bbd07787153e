"""The real benchmark's recipe (DCASE 2016 task 2 office events): the default of
`python -m bench.real_mixtures`, for SLAT and WLER.

The folder dataset's `cpu` preset at width 0.25 (24 conv1 channels; the preset's 0.125 left 2 of
10 WLER runs near chance for 12 epochs) and 36 epochs, trained on the benchmark's default build
(`weak.csv`: clips, events in 2-6 s backgrounds, background-only recordings and long weakly
labelled mixtures, `--train_mixtures=0.25`). Other sizes are the preset's.

Produced (docs/results.md "Real recordings" and docs/real_benchmark.md "Current recipe (width
0.25)": the width-0.25 table and the cross-validated WLER figure; docs/experiments.md, part 12):
  bench/results/real_mixtures_cpu_weak_mix0.25_36ep_width0.25_5seeds.json      both methods
  bench/results/real_mixtures_cpu_weak_mix0.25_36ep_width0.25_wler_5seeds.json WLER, fixed split
  bench/results/real_mixtures_cpu_weak_mix0.25_36ep_width0.25_wler_5fold.json  WLER, --folds=5
  bench/results/unit_activity_real_mix0.25_width0.25.json                      its runs' units

  python -m bench.real_mixtures --source=SASED --out=DIR --train --seeds=5 [--folds=5]
  python -m wler_jax.main --config=configs/experiments/real_office.py:slat \\
      --config.data.path=DIR/weak.csv --workdir=...

`arg`: `method[,dataset][,size]` (default `wler,folder,cpu`; `wler_jax.configs.recipes`).
"""
from wler_jax.configs import common, recipes

EPOCHS = 36  # about the time 72 took before the long training mixtures (parts 5 and 9)
WIDTH = 0.25  # part 12: every run starts, long validation tagging 0.667 +- 0.072 -> 0.700 +- 0.033


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="folder")
    c = common.base_config(method, f"{dataset},{size}")
    if size == "cpu":
        c.train.epochs = EPOCHS
        c.model.width = WIDTH
    return c
