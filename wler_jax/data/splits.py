"""From a config to data: open the configured dataset's splits, and read their labels/events.

The bridge between `config.data` and `wler_jax.data.datasets.registry`; also the per-split label
and event tables evaluation needs (read once per split and cached, without the audio).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from wler_jax import errors
from wler_jax.geometry import SAMPLE_RATE, num_frames_for_samples
from wler_jax.serving import localisation as loc

DEFAULT_DATA_DIR = os.path.join("~", ".cache", "wler_jax", "tfds")
# The dataset names `config.data.name` takes: the keys of `datasets.registry.BUILDERS`
# (tests/test_config.py holds the two together; this module stays light for config files).
DATASETS = ("synthetic", "urbansound", "urbansound8k", "esc50", "audioset", "folder")


def dataset_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The registry options of `config.data` for its dataset (only the ones that apply)."""
    d = config.data
    if d.name == "synthetic":
        return {"size": d.size, "seed": d.seed}
    if d.name in ("urbansound8k", "esc50"):
        return {k: getattr(d, k) for k in ("validation_fold", "test_fold") if getattr(d, k) >= 0}
    if d.name == "audioset":
        return {"classes": tuple(c.strip() for c in d.classes.split(";"))} if d.classes else {}
    if d.name == "folder":
        if not d.path:
            raise errors.ConfigError("the folder dataset needs --config.data.path=PATH (a folder with one "
                             "sub-folder per label, or a CSV with columns path,labels[,split])")
        return {"path": os.path.abspath(os.path.expanduser(d.path)), "seed": d.seed}
    return {}


def load(config: ml_collections.ConfigDict) -> tuple[dict, list[str], dict]:
    """Builds (first time) and opens the splits: (sources, class_names, info)."""
    from wler_jax.data.datasets import registry  # deferred: imports tensorflow_datasets

    data_dir = os.path.expanduser(config.data.data_dir or DEFAULT_DATA_DIR)
    sources, class_names, info = registry.load_splits(
        config.data.name, data_dir=data_dir, manual_dir=config.data.manual_dir,
        **dataset_options(config))
    missing = [s for s in ("train", "validation") if s not in sources]
    if missing:
        hint = ("; a folder/CSV dataset gets a validation split carved from train (15 %) when "
                "it lists both train and test, and a seeded 70/15/15 split when it lists none"
                if config.data.name == "folder" else "")
        raise errors.DataError(f"dataset {config.data.name!r} has no {missing} split(s) to train "
                               f"on; it has {sorted(sources)}{hint}")
    logging.info("dataset %s: %s recordings per split, %d classes; data in %s",
                 config.data.name, info["num_examples"], len(class_names), info["data_dir"])
    return sources, class_names, info


@dataclasses.dataclass(frozen=True)
class SplitTable:
    """What evaluation needs of a split, read once (the audio is decoded but not kept)."""

    ids: list[str]
    labels: list[list[int]]
    events: list[dict]  # {"label": [...], "onset": [...], "offset": [...]} per recording


def read_split_table(source) -> SplitTable:
    """Ids, weak labels and event times of every recording of a split, in source order."""
    ids, labels, events = [], [], []
    for i in range(len(source)):
        ex = source[i]
        rid = ex["id"]
        ids.append(rid.decode() if isinstance(rid, bytes) else str(rid))
        labels.append([int(c) for c in ex["labels"]])
        events.append(ex.get("events") or {"label": [], "onset": [], "offset": []})
    return SplitTable(ids, labels, events)


def multi_hot_labels(table: SplitTable, num_classes: int) -> np.ndarray:
    """[N, C] weak labels of every recording of a split."""
    out = np.zeros((len(table.labels), num_classes), np.float32)
    for i, labels in enumerate(table.labels):
        out[i, labels] = 1.0
    return out


def localisation(table: SplitTable, segments: list, class_names: list[str], *, threshold: float,
                 lengths: np.ndarray) -> dict | None:
    """Segment-based F1 and PSDS of segment scores against true event times (None without any).

    Args:
      table: the split's ids and events; segments: per recording [S_i, C] probabilities;
      lengths: samples per recording (the batcher's scan).
    """
    if not any(len(e["label"]) for e in table.events):
        return None
    preds, truth, durations = {}, {}, {}
    for i, rid in enumerate(table.ids):
        durations[rid] = float(lengths[i]) / SAMPLE_RATE
        preds[rid] = loc.grid_scores(segments[i], num_frames_for_samples(int(lengths[i])))
        truth[rid] = loc.events_to_ground_truth(table.events[i], class_names)
    return loc.localisation_metrics(preds, truth, durations, class_names, threshold=threshold,
                                    psds2=True)
