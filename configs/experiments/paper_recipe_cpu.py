"""The paper's optimisation at the CPU width (docs/experiments.md, part 6, arm D): Adagrad 1e-3
(Lasagne semantics), dropout 0.5, a constant rate, one recording per step (128 frames per
batch), 150 epochs, each mel band standardised on the training split
(`model.input_norm=per_band`; on raw dB, as in the paper, this budget stays at chance) and the
output bias started at each class's prior (`model.head_bias_init=prior`; fewer dead FCv1
units). Validation every 10 epochs. Sizes other than `cpu` are the preset's (`full` is the
paper's own recipe). Arm C, the same without the prior bias, is
`--override=model.head_bias_init=zeros`.

Produced (docs/experiments.md, parts 6-7; WLER):
  bench/results/paper_recipe_synthetic_150epochs_batch1_per_band_prior_5seeds.json   synthetic
  bench/results/paper_recipe_synthetic_150epochs_batch1_per_band_prior_3seeds.json   synthetic
  bench/results/paper_recipe_real_150epochs_batch1_per_band_prior_3seeds.json        real build
                                                        without long training mixtures

  python -m bench.compare_wler_slat --config=configs/experiments/paper_recipe_cpu.py \\
      --methods=wler --seeds=5
  python -m bench.real_mixtures --config=configs/experiments/paper_recipe_cpu.py --methods=wler \\
      --train_mixtures=0 --source=SASED --out=DIR --train --seeds=3

`arg`: `method[,dataset][,size]` (default `wler,synthetic,cpu`).
"""
from wler_jax.configs import common, recipes


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="synthetic")
    c = common.base_config(method, f"{dataset},{size}")
    if size == "cpu":
        c.model.dropout_rate = 0.5
        c.model.input_norm = "per_band"
        c.model.head_bias_init = "prior"
        c.input.frame_budget = 128
        c.train.optimizer = "adagrad"
        c.train.learning_rate = 1e-3
        c.train.schedule = "constant"
        c.train.warmup_steps = 0
        c.train.warmup_epochs = 0.0
        c.train.epochs = 150
        c.train.eval_every_epochs = 10
    return c
