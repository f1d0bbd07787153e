"""SLAT (the paper's baseline): N_S on 128-frame windows that inherit the recording label.

  python -m wler_jax.main --config=configs/slat.py
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import base_config  # noqa: E402


def get_config(arg=None):
    return base_config("slat", arg)
