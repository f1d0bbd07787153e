"""Dataset name -> builder class, and the entry points the training code calls (build, load_splits).

Synopsis:
  builder = build("urbansound8k", data_dir="~/tensorflow_datasets", manual_dir="~/corpora",
                  test_fold=10, validation_fold=9)
  sources, class_names, info = load_splits("synthetic", data_dir=d, size="smoke", seed=0)
  sources["train"][0]  # {"id": b"...", "audio": int16 [n], "labels": [..], "events": {...}}

`build` prepares the dataset once (tfds `download_and_prepare` with `DownloadConfig(manual_dir=
...)`) and reuses it afterwards. Every option that changes the data is encoded in the builder
config's name, so it lives in its own directory `<data_dir>/<builder>/<config>/<version>` and a
build made with other options is never reused. Nothing is downloaded: corpora are read from
the user's copy in `manual_dir` (default `<data_dir>/downloads/manual`, tfds' default).
"""
from __future__ import annotations

import contextlib
import fcntl
import inspect
import os
from typing import Any

import tensorflow_datasets as tfds
from absl import logging

from wler_jax import errors
from wler_jax.data.datasets import (
    audioset,
    common,
    esc50,
    folder,
    synthetic,
    urbansound,
    urbansound8k,
)

BUILDERS: dict[str, type[common.AudioBuilder]] = {
    "synthetic": synthetic.WlerSynthetic,
    "urbansound": urbansound.WlerUrbansound,
    "urbansound8k": urbansound8k.WlerUrbansound8k,
    "esc50": esc50.WlerEsc50,
    "audioset": audioset.WlerAudiosetEval,
    "folder": folder.WlerFolder,
}


def _config(cls: type[common.AudioBuilder], name: str, manual_dir: str | None,
            options: dict[str, Any]) -> common.AudioConfig:
    params = inspect.signature(cls.config_from_options).parameters
    allowed = sorted(p for p in params if p != "manual_dir")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown option(s) {unknown}; allowed: {allowed}")
    required = sorted(p for p, v in params.items()
                      if v.default is inspect.Parameter.empty and p not in options)
    if required:
        raise ValueError(f"dataset {name!r}: option(s) {required} are required")
    if "manual_dir" in params:
        options = dict(options, manual_dir=manual_dir)
    return cls.config_from_options(**options)


def build(name: str, *, data_dir: str, manual_dir: str | None = None,
          **options) -> tfds.core.DatasetBuilder:
    """Returns the prepared builder of dataset `name`, building it first if needed.

    Args:
      name: one of "synthetic", "urbansound", "urbansound8k", "esc50", "audioset", "folder".
      data_dir: tfds data directory (built data goes to <data_dir>/<builder>/<config>/1.0.0).
      manual_dir: folder holding the user's copy of a corpus (see each module's docstring
        for the layout); default `<data_dir>/downloads/manual`. Unused by synthetic/folder.
      **options: synthetic: size="cpu", seed=0. urbansound: validation_folds=(5, 6),
        test_folds=(7, 8, 9, 10). urbansound8k: validation_fold=9, test_fold=10. esc50:
        validation_fold=4, test_fold=5, esc10=False. audioset: classes=the paper's nine
        display names. folder: path (folder or CSV, required), seed=0.
    Raises:
      ValueError: unknown name or option, bad option values.
      ManualDataError (a FileNotFoundError): the manual copy is missing or incomplete; the
        message names the exact expected paths.
      EmptySplitError (a ValueError): every file of a split was unusable.
    """
    if name not in BUILDERS:
        raise errors.DataError(f"unknown dataset {name!r}; expected one of {sorted(BUILDERS)}")
    cls = BUILDERS[name]
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    manual_dir = (os.path.abspath(os.path.expanduser(os.fspath(manual_dir))) if manual_dir
                  else os.path.join(data_dir, "downloads", "manual"))
    try:  # options and the user's own listing (a folder or CSV): mistakes there are user errors
        config = _config(cls, name, manual_dir, options)
    except errors.UserError:
        raise
    except ValueError as e:
        raise errors.DataError(f"{e}; fix the dataset options or the files they name") from e
    except OSError as e:
        raise errors.MissingDataError(f"{name}: cannot read {e.filename or e}: "
                                      f"{e.strerror or e}; check the path and its "
                                      "permissions") from e
    builder = cls(data_dir=data_dir, config=config, file_format="array_record")
    if builder.is_prepared():
        logging.info("Reusing %s/%s at %s", builder.name, config.name, builder.data_dir)
        return builder
    with _build_lock(builder):
        # Another process (a sweep started several runs at once) may have built it meanwhile.
        builder = cls(data_dir=data_dir, config=config, file_format="array_record")
        if builder.is_prepared():
            logging.info("Reusing %s/%s at %s (built by another process)", builder.name,
                         config.name, builder.data_dir)
            return builder
        _prepare(builder, name, manual_dir)
    report = common.read_reports(builder.data_dir)
    logging.info("Built %s/%s: %s; %d file(s) skipped (report: %s)", builder.name, config.name,
                 {s: v.num_examples for s, v in builder.info.splits.items()},
                 report["num_skipped"], report["path"])
    return builder


def _prepare(builder: tfds.core.DatasetBuilder, name: str, manual_dir: str) -> None:
    """`builder.download_and_prepare` from the user's copy in `manual_dir`."""
    logging.info("Building %s/%s into %s (manual_dir %s)", builder.name,
                 builder.builder_config.name, builder.data_dir, manual_dir)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except AssertionError as e:  # tfds reports a missing manual dir with a bare assert
        if "Manual directory" not in str(e):
            raise
        raise common.ManualDataError(
            f"{name}: tfds could not use the manual directory {manual_dir}: {e}") from e


@contextlib.contextmanager
def _build_lock(builder: tfds.core.DatasetBuilder):
    """Holds an exclusive lock on `<data_dir>/<builder>/<config>.lock` while one process builds,
    so concurrent runs on one machine build a config once instead of racing on its directory
    (tfds renames a finished build into place and fails when the target already exists)."""
    config_dir = os.path.dirname(os.fspath(builder.data_dir))  # .../<builder>/<config>/<version>
    os.makedirs(os.path.dirname(config_dir), exist_ok=True)
    with open(config_dir + ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.info("Waiting for another process building %s", config_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_splits(name: str, *, data_dir: str, manual_dir: str | None = None, **options
                ) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Builds (if needed) and opens every existing split as a tfds data source (no TensorFlow).

    Returns:
      sources: {split: data source} for those of "train", "validation", "test" that exist
        (AudioSet eval has only "test"); `len(src)`, `src[i]` -> example dict.
      class_names: names of the ClassLabel feature in index order.
      info: {"name", "builder", "config", "data_dir", "options", "num_examples": {split: n},
        "skipped": [{"id", "path", "reason", "split"}], "warnings": [...], "skip_report":
        path or None, "split_file": path of the folder dataset's split_assignment.json or
        None}.
    """
    builder = build(name, data_dir=data_dir, manual_dir=manual_dir, **options)
    splits = [s for s in common.SPLITS if s in builder.info.splits]
    sources = {s: builder.as_data_source(split=s) for s in splits}
    class_names = list(builder.info.features["labels"].feature.names)
    report = common.read_reports(builder.data_dir)
    split_file = os.path.join(os.fspath(builder.data_dir), folder.SPLIT_FILE)
    info = {
        "name": name,
        "builder": builder.name,
        "config": builder.builder_config.name,
        "data_dir": os.fspath(builder.data_dir),
        "options": common.jsonable(builder.builder_config.options),
        "num_examples": {s: len(sources[s]) for s in splits},
        "skipped": report["skipped"],
        "warnings": report["warnings"],
        "skip_report": report["path"],
        "split_file": split_file if os.path.exists(split_file) else None,
    }
    return sources, class_names, info
