"""Transfer to the office events (`python -m bench.transfer`): the target runs' recipe, WLER on
the real benchmark's clips (`clips.csv`) from scratch and fine-tuned: the folder dataset's `cpu`
preset at width 0.125 (the source model's width) for 8 epochs, to fit the time available. The
source: WLER trained on the synthetic set with the `cpu` preset, seed 0 (`configs/wler.py`).
Other sizes are the preset's.

Produced (docs/results.md "Transfer": scratch vs fine-tuning vs linear probes):
  bench/results/transfer_cpu.json   (run as --override=train.epochs=8)

  python -m bench.transfer --config=configs/experiments/transfer_office.py \\
      --clips=DIR/clips.csv --out=OUT --source_workdir=workdirs/wler --seeds=3

`arg`: `method[,dataset][,size]` (default `wler,folder,cpu`).
"""
from wler_jax.configs import common, recipes


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="folder")
    c = common.base_config(method, f"{dataset},{size}")
    if size == "cpu":
        c.model.width = 0.125
        c.train.epochs = 8
    return c
