"""Benchmarks: run each as `python -m bench.<name>` from the repository root.

What the scripts share is `bench.common` (and `bench.torch_reference`, the PyTorch twins that
`bench.train_speed` times against); what tests check lives in the package (`wler_jax.analysis`,
`wler_jax.data.mixtures`). The recipes results were measured with are config files under
configs/experiments/ (`--config=FILE[:arg]`).
"""
