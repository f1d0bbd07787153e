"""WLER (the paper's method): N_W on whole recordings, global max pooling, weak labels.

  python -m wler_jax.main --config=configs/wler.py            # synthetic set, CPU size
  python -m wler_jax.main --config=configs/wler.py:full       # the paper's widths, 150 epochs
  python -m wler_jax.main --config=configs/wler.py:folder --config.data.path=/my/data
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import base_config  # noqa: E402


def get_config(arg=None):
    return base_config("wler", arg)
