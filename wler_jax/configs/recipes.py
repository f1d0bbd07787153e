"""Recipes as config files: the experiment files' argument, loading `FILE[:arg]`, and how one
config differs from another.

The recipes that results were measured with live in the repository's `configs/experiments/`
(one file each). Each has `get_config(arg=None)` that builds on `common.base_config` and sets
fields, as `configs/wler.py` does; its `arg` is `method[,dataset][,size]` in any order
(`recipe_arg`), so one file serves both methods and every size:

  python -m wler_jax.main --config=configs/experiments/real_office.py:slat --config.data.path=...
  python -m bench.real_mixtures --config=configs/experiments/real_office.py ...  # both methods

Bench scripts load such a file with `load("FILE:arg")` and record the spec they loaded in their
result JSON (`"config_file"`). Like the rest of `wler_jax.configs`, this module imports nothing
heavy, so config files can use it.
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections

from wler_jax.configs.common import SIZES
from wler_jax.data.splits import DATASETS

# wler_jax.model.spec.METHODS (tests/test_experiment_configs.py holds them together); not
# imported from there, which would bring jax into every config file.
METHODS = ("wler", "slat")


def recipe_arg(arg: str | None, dataset: str = "synthetic", size: str = "cpu"
               ) -> tuple[str, str, str]:
    """`'slat,smoke'` -> ('slat', dataset, 'smoke'): the method (default wler), the dataset and
    the size, with the file's defaults `dataset` and `size` where `arg` names none."""
    method = None
    for part in filter(None, (p.strip() for p in (arg or "").split(","))):
        if part in METHODS and method is None:
            method = part
        elif part in DATASETS:
            dataset = part
        elif part in SIZES:
            size = part
        else:
            raise ValueError(f"unknown recipe argument {part!r} in {arg!r}: one method of "
                             f"{METHODS}, a dataset of {DATASETS}, a size of {SIZES}")
    return method or "wler", dataset, size


def split_spec(spec: str) -> tuple[str, str | None]:
    """`'configs/x.py:wler,smoke'` -> ('configs/x.py', 'wler,smoke'); no ':' -> (path, None)."""
    path, sep, arg = spec.partition(":")
    return path, (arg if sep else None)


def join_spec(path: str, *parts: str | None) -> str:
    """('configs/x.py', 'wler', None, 'smoke') -> 'configs/x.py:wler,smoke'."""
    arg = ",".join(p for p in parts if p)
    return f"{path}:{arg}" if arg else path


def load(spec: str) -> ml_collections.ConfigDict:
    """The config of `FILE[:arg]`, as `--config=FILE[:arg]` loads it: the file's
    `get_config(arg)` (`get_config()` without an argument)."""
    path, arg = split_spec(spec)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such config file")
    name = "recipe_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg is not None else module.get_config()


def _leaves(config: ml_collections.ConfigDict) -> dict:
    """{dotted name: value} of every field, in the config's field order."""
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[prefix + key] = value

    walk(config.to_dict(), "")
    return out


def differences(config: ml_collections.ConfigDict, base: ml_collections.ConfigDict,
                skip: tuple[str, ...] = ()) -> dict:
    """{dotted name: value in `config`} of every field whose value differs from `base`'s
    (fields `base` lacks included), in `config`'s field order; `skip`: names left out."""
    ours, theirs = _leaves(config), _leaves(base)
    return {k: v for k, v in ours.items()
            if k not in skip and (k not in theirs or theirs[k] != v)}


def as_override(key: str, value) -> str:
    """`key=value` as `common.apply_override` reads it back (floats in their short form)."""
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
