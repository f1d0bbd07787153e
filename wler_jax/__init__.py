"""wler_jax: weakly labelled audio event recognition (Kumar & Raj 2017) in JAX/Flax.

The package, following the data:

* `data/`: datasets (tfds builders, `data.datasets`), splits, the bucketed int16 input pipeline,
  batch plans, input statistics, and the real benchmarks' corpora and builds (`sased`,
  `mixtures`, `kitchen20`).
* `model/`: the networks (N_W, N_S), `spec.ModelSpec` (the only place that knows the method and
  the op choice), the CPU kernels and masked pooling.
* `training/`: the loop (`train.train_and_evaluate`), steps, transfer, several processes, config
  checks, the fitted thresholds and model card (`calibration`, `model_card`), the log-mel baseline.
* `serving/`: inference, chunked scoring, embeddings, reports and localisation of trained models.
* `evaluate/`: tagging metrics; score tables against true events (`python -m wler_jax.evaluate`).
* `analysis/`: what the benchmarks compute from runs and sweeps (statistics, paired comparisons).
* Shared leaves: `audio`, `features` (log-mel on the device), `geometry`, `checkpoints`,
  `compile_cache`, `errors` (`UserError`), `configs` (the defaults behind `configs/*.py`).
* Entry points: `python -m wler_jax.main` (train), `python -m wler_jax.predict` (and
  `predict.load_model`), `python -m wler_jax.embed`, `python -m wler_jax.evaluate`,
  `export.export_model`, and `hear` (the HEAR 2021 API).
"""

__version__ = "0.1.1"
