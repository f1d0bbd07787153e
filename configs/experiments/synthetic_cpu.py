"""The synthetic benchmark's recipe: WLER vs SLAT on the embedded synthetic set at the `cpu` size.

The `cpu` preset, its fields that the figures depend on written out so that a later change of
the preset does not change this recipe: width 0.125, no dropout, 2 x 1280 frames per batch, one
scale per step, Adam 2e-3 with a cosine decay after a one-epoch warm-up, 36 epochs, validation
every 2 epochs (docs/experiments.md, parts 3 and 4). Other sizes are the preset's.

Produced (docs/results.md "WLER vs SLAT on the synthetic set", 5 seeds):
  bench/results/compare_wler_slat_cpu_5seeds.json   (run as the preset with
                                                    --override=train.learning_rate=0.002, the
                                                    preset's rate since)

  python -m bench.compare_wler_slat --config=configs/experiments/synthetic_cpu.py --seeds=5

`arg`: `method[,dataset][,size]` (default `wler,synthetic,cpu`).
"""
from wler_jax.configs import common, recipes


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="synthetic")
    c = common.base_config(method, f"{dataset},{size}")
    if size == "cpu":
        c.model.width = 0.125
        c.model.dropout_rate = 0.0
        c.input.frame_budget = 2 * 1280
        c.train.scales_per_step = "one"
        c.train.optimizer = "adam"
        c.train.learning_rate = 2e-3
        c.train.schedule = "cosine"
        c.train.warmup_steps = 77  # one epoch of the synthetic cpu set's bucket plan
        c.train.warmup_epochs = 0.0  # (the steps above, as recorded)
        c.train.epochs = 36
        c.train.eval_every_epochs = 2
    return c
