"""TFDS builders for the corpora wler_jax trains on, plus the embedded synthetic dataset.

Entry points: `build(name, *, data_dir, manual_dir=None, **options)` returns a prepared
`tfds.core.DatasetBuilder`; `load_splits(...)` returns `({split: data source}, class_names,
info)`. Names: "synthetic", "urbansound", "urbansound8k", "esc50", "audioset", "folder".
"""
from wler_jax.data.datasets.common import EmptySplitError, ManualDataError
from wler_jax.data.datasets.registry import BUILDERS, build, load_splits

__all__ = ["BUILDERS", "EmptySplitError", "ManualDataError", "build", "load_splits"]
