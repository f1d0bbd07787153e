"""UrbanSound8K (Salamon et al. 2014): 8,732 slices of <= 4 s, 10 classes, 10 folds.

Read from the user's copy of the official release (nothing is downloaded):

  <manual_dir>/UrbanSound8K/metadata/UrbanSound8K.csv
      slice_file_name,fsID,start,end,salience,fold,classID,class
  <manual_dir>/UrbanSound8K/audio/fold1 ... fold10/<slice_file_name>

(`manual_dir` may also point at the UrbanSound8K folder itself.) Each slice is one recording
with one weak label (classID); `events` is empty (start/end are times in the parent Freesound
recording, not in the slice). Splits by fold: test = `test_fold` (default 10), validation =
`validation_fold` (default 9), train = the other eight. The slices are already split by
recording (all slices of one Freesound file share a fold), so folds do not leak.
"""
from __future__ import annotations

import csv
import os

from wler_jax.data.datasets import common

CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
           "engine_idling", "gun_shot", "jackhammer", "siren", "street_music")
NUM_FOLDS = 10
METADATA = "metadata/UrbanSound8K.csv"
LAYOUT = """  <manual_dir>/UrbanSound8K/metadata/UrbanSound8K.csv
      (columns slice_file_name,fsID,start,end,salience,fold,classID,class)
  <manual_dir>/UrbanSound8K/audio/fold1/*.wav ... audio/fold10/*.wav"""
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


def read_metadata(path: str) -> list[dict[str, str]]:
    """Rows of UrbanSound8K.csv as dicts; raises ManualDataError if columns are missing."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("slice_file_name", "fsID", "fold", "classID") if
                   c not in (reader.fieldnames or ())]
        if missing:
            raise common.ManualDataError(
                f"{path}: not the UrbanSound8K metadata file (missing columns {missing}; "
                f"expected {','.join(COLUMNS)})")
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


class WlerUrbansound8k(common.AudioBuilder, skip_registration=True):
    """UrbanSound8K slices (one weak label each), split by fold."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download UrbanSound8K from https://urbansounddataset.weebly.com/urbansound8k.html, "
        "extract it and pass its parent folder as manual_dir:\n" + LAYOUT)
    HOMEPAGE = "https://urbansounddataset.weebly.com/urbansound8k.html"
    CITATION = ("J. Salamon, C. Jacoby and J. P. Bello, \"A Dataset and Taxonomy for Urban Sound "
                "Research\", ACM Multimedia 2014.")

    @classmethod
    def config_from_options(cls, *, validation_fold: int = 9, test_fold: int = 10
                            ) -> common.AudioConfig:
        """Args: validation_fold, test_fold: fold numbers in 1..10 (distinct)."""
        (val,), (test,) = common.check_split_folds(validation_fold, test_fold, NUM_FOLDS)
        return common.AudioConfig(
            name=common.config_name(f"val{val}", f"test{test}"),
            description=f"UrbanSound8K, validation fold {val}, test fold {test}, train the rest.",
            class_names=CLASSES,
            options={"validation_fold": val, "test_fold": test})

    def _items(self, dl_manager):
        manual = self.manual_dir(dl_manager, corpus="UrbanSound8K", layout=LAYOUT)
        root = common.find_corpus_root(manual, "UrbanSound8K", METADATA, corpus="UrbanSound8K",
                                       layout=LAYOUT)
        audio_dir = os.path.join(root, "audio")
        if not os.path.isdir(audio_dir):
            raise common.ManualDataError(
                f"UrbanSound8K: {audio_dir} does not exist (expected audio/fold1 ... "
                f"audio/fold10 next to {os.path.join(root, METADATA)}).\n{LAYOUT}")
        records, found = [], 0
        for row in read_metadata(os.path.join(root, METADATA)):
            fold, label = int(row["fold"]), int(row["classID"])
            rel = f"audio/fold{fold}/{row['slice_file_name']}"
            path = os.path.join(root, rel)
            found += os.path.exists(path)
            records.append((fold, common.Item(id=rel, path=path, labels=(label,))))
        if records and not found:
            raise common.ManualDataError(
                f"UrbanSound8K: none of the {len(records)} audio files listed in "
                f"{os.path.join(root, METADATA)} exist under {audio_dir} (expected e.g. "
                f"{records[0][1].path}).\n{LAYOUT}")
        opts = self.builder_config.options
        return common.split_by_fold(records, validation=[opts["validation_fold"]],
                                    test=[opts["test_fold"]])
