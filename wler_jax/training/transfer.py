"""Fine-tuning: start a run from another workdir's best checkpoint, optionally freezing parts.

Synopsis (config fields in `configs/common.py`)::

    python -m wler_jax.main --config=configs/wler.py:folder --config.data.path=MY_DATA \
        --config.train.init_from=SOURCE_WORKDIR --config.train.freeze=conv_stack

`train.init_from` names a finished training workdir (its `run.json` and best checkpoint). When
a run starts (not when it resumes: the latest checkpoint already holds the fine-tuned state),
`init_params` fills the freshly initialised parameters from the source's best ones:

* every parameter whose path and shape match is loaded;
* the class-specific head (`fc2`, and `attention` / `alpha` of attention and auto pooling) is
  loaded only when the source has the same class set (reordered by name if the order differs);
  with other classes it keeps its fresh initialisation -- the log says so;
* a SLAT source initialises a WLER run through the paper's exact N_S -> N_T conversion
  (`spec.ns_to_nt_params`: FC1 becomes the 4x4 FCv1 conv, FC2 the 1x1 FCv2), and a WLER
  source a SLAT run through its inverse (`spec.nt_to_ns_params`); both are reshapes, so the
  converted network computes the same function on a 128-frame window;
* input normalisation statistics (`model.input_norm=per_band`) come from the source: its conv
  stack was trained on inputs normalised with them.

What was loaded, re-initialised and left unused is logged and written to
`WORKDIR/transfer.json`. A source of another width, another input normalisation or an unknown
method cannot be loaded and is refused with one line (`errors.IncompatibleWorkdirError`), as
are paths that are not finished workdirs (`errors.NotAWorkdirError`).

`train.freeze` ("" = nothing; e.g. "conv_stack", or a comma-separated list such as
"conv_stack,fc1" or "conv_stack/conv1,conv_stack/conv2") names parameter subtrees the optimiser
never changes (`optax.set_to_zero` through `steps.make_optimizer`): they stay bit-identical to
where they started, the source's values when fine-tuning.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging
from flax import traverse_util

from wler_jax import checkpoints, errors
from wler_jax.model.spec import (
    METHODS,
    ModelSpec,
    check_removed_options,
    convert_params,
    model_field,
)

TRANSFER_FILE = "transfer.json"  # in the fine-tuned run's workdir: what init_from loaded
CLASS_HEAD = ("fc2", "attention", "alpha")  # top-level params whose last axis is the classes


# -- the source ---------------------------------------------------------------------------------
def check_source(init_from: str, config, *, workdir: str | None = None) -> dict:
    """The source workdir's run.json, after checking it can initialise `config`'s model.

    Raises:
      errors.NotAWorkdirError: missing path, a file, no run.json, no best checkpoint.
      errors.IncompatibleWorkdirError: another width, input normalisation or an unknown method;
        a model option since removed (`spec.REMOVED_MODEL_OPTIONS`); the run's own workdir.
    """
    path = os.path.abspath(os.path.expanduser(init_from))
    flag = f"--config.train.init_from={init_from}"
    fix = "give the --workdir of a finished python -m wler_jax.main run"
    if not os.path.exists(path):
        raise errors.NotAWorkdirError(f"{flag}: {path} does not exist; {fix}")
    if not os.path.isdir(path):
        raise errors.NotAWorkdirError(f"{flag}: {path} is a file, not a workdir; {fix}")
    if workdir is not None and os.path.realpath(path) == os.path.realpath(workdir):
        raise errors.IncompatibleWorkdirError(
            f"{flag} is this run's own --workdir; fine-tune into a new --workdir")
    run_file = os.path.join(path, "run.json")
    if not os.path.isfile(run_file):
        raise errors.NotAWorkdirError(f"{flag}: {path} holds no run.json, so it is not a "
                                      f"wler_jax workdir; {fix}")
    with open(run_file) as f:
        run = json.load(f)
    best = os.path.join(path, "checkpoints", "best")
    if not os.path.isdir(best) or not any(d.isdigit() for d in os.listdir(best)):
        raise errors.NotAWorkdirError(f"{flag}: {path} has no best checkpoint yet; let that run "
                                      "finish at least one evaluation (epoch) first")
    src = run.get("config", {})
    src_method = src.get("method")
    if src_method not in METHODS:
        raise errors.IncompatibleWorkdirError(
            f"{flag}: the source's method {src_method!r} cannot initialise a {config.method} "
            f"model (sources: {', '.join(METHODS)} workdirs)")
    src_model = src.get("model", {})
    if float(src_model.get("width", -1)) != float(config.model.width):
        raise errors.IncompatibleWorkdirError(
            f"{flag}: the source has model.width={src_model.get('width')}, this run "
            f"{config.model.width}; its parameters have other shapes: set "
            f"--config.model.width={src_model.get('width')}")
    check_removed_options(src_model, f"{flag}: the source")
    src_norm = model_field(src_model, "input_norm")
    own_norm = model_field(config.model, "input_norm")
    if src_norm != own_norm:
        raise errors.IncompatibleWorkdirError(
            f"{flag}: the source was trained with model.input_norm={src_norm!r}, this run has "
            f"{own_norm!r}; its conv stack expects its inputs: "
            f"set --config.model.input_norm={src_norm}")
    return run


def has_started(workdir: str) -> bool:
    """Whether `workdir` holds a latest checkpoint (a resumed run does not read init_from)."""
    latest = os.path.join(workdir, "checkpoints", "latest")
    return os.path.isdir(latest) and any(d.isdigit() for d in os.listdir(latest))


def load_source(init_from: str) -> Any:
    """The source workdir's best parameters (host arrays)."""
    ckpt = checkpoints.Checkpointer(os.path.abspath(os.path.expanduser(init_from)),
                                    read_only=True)  # another run's workdir: never written
    try:
        params, _ = ckpt.restore_best()
    finally:
        ckpt.close()
    return params


# -- loading ------------------------------------------------------------------------------------
def init_params(target_params: Any, source_params: Any, *, source_method: str,
                target_method: str, source_classes: Sequence[str],
                target_classes: Sequence[str]) -> tuple[Any, dict]:
    """Target params with every matching source parameter loaded (see the module docstring).

    Returns:
      (params, report): params has `target_params`' structure (float32 host arrays where loaded,
      the target's own arrays elsewhere); report = {"conversion", "class_head", "loaded": [path],
      "reinitialised": {path: reason}, "unused": [path]}, paths '/'-joined.
    """
    src, conversion = convert_params(source_params, source_method, target_method)
    flat_s = traverse_util.flatten_dict(src, sep="/")
    flat_t = traverse_util.flatten_dict(target_params, sep="/")
    source_classes, target_classes = list(source_classes), list(target_classes)
    same_set = sorted(source_classes) == sorted(target_classes) and len(
        set(target_classes)) == len(target_classes)
    order = [source_classes.index(c) for c in target_classes] if same_set else None
    if source_classes == target_classes:
        class_head = "loaded (same classes)"
    elif same_set:
        class_head = "loaded (same classes, reordered by name)"
    else:
        class_head = (f"re-initialised (classes differ: {len(source_classes)} in the source, "
                      f"{len(target_classes)} here)")
    out, loaded, reinit = {}, [], {}
    for key, t in flat_t.items():
        s = flat_s.get(key)
        if key.split("/")[0] in CLASS_HEAD and not same_set:
            out[key], reinit[key] = t, "class head, other classes"
        elif s is None:
            out[key], reinit[key] = t, "not in the source"
        else:
            s = np.asarray(s, np.float32)
            if key.split("/")[0] in CLASS_HEAD and order is not None:
                s = np.take(s, order, axis=-1)
            if s.shape != tuple(t.shape):
                out[key], reinit[key] = t, f"shape {s.shape} in the source, {tuple(t.shape)} here"
            else:
                out[key] = s
                loaded.append(key)
    report = {"conversion": conversion, "class_head": class_head, "loaded": loaded,
              "reinitialised": reinit, "unused": sorted(set(flat_s) - set(flat_t))}
    return traverse_util.unflatten_dict(out, sep="/"), report


def _summary(paths: Sequence[str]) -> str:
    """'conv_stack (10 arrays), fc1 (2 arrays)': '/'-paths grouped by top-level name."""
    groups: dict[str, int] = {}
    for p in paths:
        groups[p.split("/")[0]] = groups.get(p.split("/")[0], 0) + 1
    return ", ".join(f"{k} ({n} array{'s' * (n != 1)})" for k, n in groups.items()) or "nothing"


def init_from_workdir(config, target_params: Any, class_names: Sequence[str],
                      workdir: str) -> tuple[Any, dict]:
    """`init_params` from `config.train.init_from`; logs the report and writes it to
    `workdir/transfer.json`."""
    source = config.train.init_from
    run = check_source(source, config, workdir=workdir)
    params, report = init_params(
        target_params, load_source(source), source_method=run["config"]["method"],
        target_method=config.method, source_classes=run["class_names"],
        target_classes=class_names)
    report = {"source": os.path.abspath(os.path.expanduser(source)),
              "source_method": run["config"]["method"], "source_classes": run["class_names"],
              "freeze": list(freeze_paths(config)), **report}
    logging.info("init_from %s (%s%s): loaded %s; class head %s; re-initialised %s%s",
                 report["source"], report["source_method"],
                 f", {report['conversion']}" if report["conversion"] else "",
                 _summary(report["loaded"]), report["class_head"],
                 _summary(list(report["reinitialised"])),
                 f"; unused from the source: {_summary(report['unused'])}"
                 if report["unused"] else "")
    with open(os.path.join(workdir, TRANSFER_FILE + ".tmp"), "w") as f:
        json.dump(report, f, indent=2)
    os.replace(os.path.join(workdir, TRANSFER_FILE + ".tmp"),
               os.path.join(workdir, TRANSFER_FILE))
    return params, report


# -- freezing -----------------------------------------------------------------------------------
def freeze_paths(config) -> tuple[str, ...]:
    """`config.train.freeze` as a tuple of '/'-paths ('' -> ())."""
    value = config.train.get("freeze", "") or ""
    return tuple(p.strip().strip("/") for p in value.split(",") if p.strip())


def check_freeze(paths: Sequence[str], params: Any) -> None:
    """Raises errors.ConfigError unless every path names a parameter subtree of `params`."""
    flat = [tuple(k) for k in traverse_util.flatten_dict(params)]
    bad = [p for p in paths if not any(k[:len(p.split("/"))] == tuple(p.split("/"))
                                       for k in flat)]
    if bad:
        names = sorted({"/".join(k[:2]) if k[0] == "conv_stack" else k[0] for k in flat})
        raise errors.ConfigError(f"train.freeze names no parameters: {', '.join(bad)}; choose "
                                 f"from {', '.join(['conv_stack'] + names)} (comma-separated)")


def validate(config) -> None:
    """Early checks of `train.init_from` and `train.freeze` (before data is read)."""
    if config.train.get("init_from"):
        check_source(config.train.init_from, config)
    paths = freeze_paths(config)
    if paths:
        spec = ModelSpec.from_config(config, 1, devices=jax.devices("cpu")[:1])
        check_freeze(paths, jax.eval_shape(spec.init, jax.random.key(0)))
