"""Benchmarks and experiment recipes: run each as `python -m bench.<name>` from the repository root."""
