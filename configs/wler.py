"""WLER (the paper's method): N_W on whole recordings, global max pooling, weak labels.

  python -m wler_jax.main --config=configs/wler.py            # synthetic set, CPU size
  python -m wler_jax.main --config=configs/wler.py:full       # the paper's widths, 150 epochs
  python -m wler_jax.main --config=configs/wler.py:folder --config.data.path=/my/data

Every field and variant: wler_jax/configs/common.py.
"""
from wler_jax.configs import common


def get_config(arg=None):
    return common.base_config("wler", arg)
