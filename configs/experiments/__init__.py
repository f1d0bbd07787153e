"""Recipes as files: one config file per recipe that a figure of the README or docs/ was
measured with (big_vision style: `get_config(arg)` builds on
`wler_jax.configs.common.base_config` and sets fields; `arg` is `method[,dataset][,size]`, see
`wler_jax.configs.recipes`). Each file's docstring names the results it produced and the command
that reproduces them.

  real_office.py            the real benchmark's default (width 0.25, 36 epochs)
  real_office_width0125.py  the real benchmark before width 0.25 (parts 9-11)
  real_office_72ep.py       the real benchmark before the long training mixtures (parts 5-8)
  synthetic_cpu.py          WLER vs SLAT on the synthetic set (the `cpu` preset, written out)
  paper_recipe_cpu.py       the paper's optimisation at the CPU width (parts 6-7)
  transfer_office.py        the transfer benchmark's target runs
  gpu_full_bf16.py          the paper's network in bfloat16 on a GPU (input-pipeline timing)

Bench scripts take `--config=FILE[:arg]` and write `"config_file"` into their result JSONs (the
method is part of `arg`; a sweep of both methods records `FILE:{method}`). The JSONs written
before that are mapped here: `RESULTS` gives, per file under bench/results/, the config file
whose recipe its runs used (the JSON's own `overrides` / `variant` keys record how they were
given then). A result that is not listed is an A/B or an exploration: its `overrides` name what
it changed on top of the preset.
"""

RESULTS = {
    "compare_wler_slat_cpu_5seeds.json": "configs/experiments/synthetic_cpu.py:{method}",
    "real_mixtures_cpu_weak_mix0.25_36ep_width0.25_5seeds.json":
        "configs/experiments/real_office.py:{method}",
    "real_mixtures_cpu_weak_mix0.25_36ep_width0.25_wler_5seeds.json":
        "configs/experiments/real_office.py:wler",
    "real_mixtures_cpu_weak_mix0.25_36ep_width0.25_wler_5fold.json":
        "configs/experiments/real_office.py:wler",
    "unit_activity_real_mix0.25_width0.25.json": "configs/experiments/real_office.py:wler",
    "real_mixtures_cpu_weak_mix0.25_36ep_3seeds.json":
        "configs/experiments/real_office_width0125.py:{method}",
    "real_mixtures_cpu_weak_mix0.25_36ep_5seeds.json":
        "configs/experiments/real_office_width0125.py:{method}",
    "real_mixtures_cpu_weak_mix0.25_36ep_5fold.json":
        "configs/experiments/real_office_width0125.py:{method}",
    "long_false_positives_real_mix0.25_36ep_5fold.json":
        "configs/experiments/real_office_width0125.py:{method}",
    "real_mixtures_cpu_weak_72ep_5seeds.json": "configs/experiments/real_office_72ep.py:{method}",
    "real_mixtures_cpu_weak_72ep_5seeds_rescored.json":
        "configs/experiments/real_office_72ep.py:{method}",
    "real_mixtures_cpu_weak_72ep_5fold.json": "configs/experiments/real_office_72ep.py:{method}",
    "last_vs_best_real_72ep.json": "configs/experiments/real_office_72ep.py:{method}",
    "long_false_positives_real_72ep_5fold.json":
        "configs/experiments/real_office_72ep.py:{method}",
    "paper_recipe_synthetic_150epochs_batch1_per_band_prior_5seeds.json":
        "configs/experiments/paper_recipe_cpu.py:wler",
    "paper_recipe_synthetic_150epochs_batch1_per_band_prior_3seeds.json":
        "configs/experiments/paper_recipe_cpu.py:wler",
    "paper_recipe_real_150epochs_batch1_per_band_prior_3seeds.json":
        "configs/experiments/paper_recipe_cpu.py:wler,folder",
    "transfer_cpu.json": "configs/experiments/transfer_office.py:wler",
    "pipeline_efficiency_NVIDIA_H100_80GB_HBM3_full_bfloat16_synthetic.json":
        "configs/experiments/gpu_full_bf16.py:wler",
}
