"""The paper's network on a GPU (`full` size: width 1.0, every scale per step, Adagrad 1e-3) in
bfloat16, read by 12 host threads with 4 batches prefetched: the input-pipeline measurement of
`bench/device_run.sh` (`python -m bench.pipeline_efficiency`).

Produced (docs/performance.md "GPU input pipeline (one H100)": the full training loop against
the bare step):
  bench/results/pipeline_efficiency_NVIDIA_H100_80GB_HBM3_full_bfloat16_synthetic.json
  (run as --variant full --set model.dtype=bfloat16 input.num_threads=12 input.prefetch=4)

  python -m bench.pipeline_efficiency --config=configs/experiments/gpu_full_bf16.py \\
      --synthetic 600,2,2,20,30,25 --epochs 4

`arg`: `method[,dataset][,size]` (default `wler,synthetic,full`).
"""
from wler_jax.configs import common, recipes


def get_config(arg=None):
    method, dataset, size = recipes.recipe_arg(arg, dataset="synthetic", size="full")
    c = common.base_config(method, f"{dataset},{size}")
    c.model.dtype = "bfloat16"
    c.input.num_threads = 12
    c.input.prefetch = 4
    return c
