"""SLAT (the paper's baseline): N_S on 128-frame windows that inherit the recording label.

  python -m wler_jax.main --config=configs/slat.py

Every field and variant: wler_jax/configs/common.py.
"""
from wler_jax.configs import common


def get_config(arg=None):
    return common.base_config("slat", arg)
