"""Let tensorflow-datasets write splits over 1 GB without TensorFlow.

tfds 4.9.10 buffers a split's serialized examples in memory and, past 1 GB
(`tfds.core.shuffle.MAX_MEM_BUFFER_SIZE`), spills them to temporary bucket files through
`tf.io.gfile`, which imports TensorFlow: building UrbanSound8K (~3 GB), AudioSet eval or the
synthetic "gpu" set failed with `No module named 'tensorflow'`. `install()` gives tfds' shuffler
a local-file stand-in for the four `tf` names it uses there (GFile, exists, remove,
errors.ResourceExhaustedError). It does nothing when TensorFlow is installed.
"""
from __future__ import annotations

import importlib.util
import os
import types


class _ResourceExhaustedError(OSError):
    """Never raised by local files; only caught by tfds (`except tf.errors...`)."""

    message = ""


LOCAL_TF = types.SimpleNamespace(
    io=types.SimpleNamespace(gfile=types.SimpleNamespace(
        GFile=lambda path, mode="r": open(os.fspath(path), mode),
        exists=lambda path: os.path.exists(os.fspath(path)),
        remove=lambda path: os.remove(os.fspath(path)),
    )),
    errors=types.SimpleNamespace(ResourceExhaustedError=_ResourceExhaustedError),
)


def install() -> bool:
    """Point tfds' shuffler at local files unless TensorFlow is importable; True if it did."""
    if importlib.util.find_spec("tensorflow") is not None:
        return False
    from tensorflow_datasets.core import shuffle

    shuffle.tf = LOCAL_TF
    return True
