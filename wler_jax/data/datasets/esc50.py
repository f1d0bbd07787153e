"""ESC-50 (Piczak 2015): 2,000 five-second clips, 50 classes, 5 folds.

Read from the user's copy of the official release (the GitHub archive; nothing is downloaded):

  <manual_dir>/ESC-50-master/meta/esc50.csv
      filename,fold,target,category,esc10,src_file,take
  <manual_dir>/ESC-50-master/audio/<filename>          e.g. 1-100032-A-0.wav

(`manual_dir` may also point at the ESC-50-master folder itself.) One weak label per clip
(`target`), no event times. Splits by fold: test = `test_fold` (default 5), validation =
`validation_fold` (default 4), train = the rest (clips of one source file share a fold).
`esc10=True` keeps the ESC-10 subset (the `esc10` column) with its 10 classes.
"""
from __future__ import annotations

import csv
import os

from wler_jax.data.datasets import common

CLASSES = (  # `category` in `target` order
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks",
    "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick",
    "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw")
ESC10_CLASSES = ("dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby",
                 "sneezing", "clock_tick", "helicopter", "chainsaw")
NUM_FOLDS = 5
METADATA = "meta/esc50.csv"
LAYOUT = """  <manual_dir>/ESC-50-master/meta/esc50.csv
      (columns filename,fold,target,category,esc10,src_file,take)
  <manual_dir>/ESC-50-master/audio/<filename>.wav"""


class WlerEsc50(common.AudioBuilder, skip_registration=True):
    """ESC-50 (or ESC-10) clips, one weak label each, split by fold."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download https://github.com/karolpiczak/ESC-50 (archive ESC-50-master.zip), extract "
        "it and pass its parent folder as manual_dir:\n" + LAYOUT)
    HOMEPAGE = "https://github.com/karolpiczak/ESC-50"
    CITATION = ("K. J. Piczak, \"ESC: Dataset for Environmental Sound Classification\", "
                "ACM Multimedia 2015.")

    @classmethod
    def config_from_options(cls, *, validation_fold: int = 4, test_fold: int = 5,
                            esc10: bool = False) -> common.AudioConfig:
        """Args: validation_fold, test_fold: distinct folds in 1..5; esc10: ESC-10 subset only."""
        (val,), (test,) = common.check_split_folds(validation_fold, test_fold, NUM_FOLDS)
        esc10 = bool(esc10)
        return common.AudioConfig(
            name=common.config_name("esc10" if esc10 else "esc50", f"val{val}", f"test{test}"),
            description=f"ESC-{10 if esc10 else 50}, validation fold {val}, test fold {test}.",
            class_names=ESC10_CLASSES if esc10 else CLASSES,
            options={"validation_fold": val, "test_fold": test, "esc10": esc10})

    def _items(self, dl_manager):
        manual = self.manual_dir(dl_manager, corpus="ESC-50", layout=LAYOUT)
        root = common.find_corpus_root(manual, "ESC-50-master", METADATA, corpus="ESC-50",
                                       layout=LAYOUT)
        meta = os.path.join(root, METADATA)
        audio_dir = os.path.join(root, "audio")
        if not os.path.isdir(audio_dir):
            raise common.ManualDataError(f"ESC-50: {audio_dir} does not exist.\n{LAYOUT}")
        opts = self.builder_config.options
        index = {name: i for i, name in enumerate(self.builder_config.class_names)}
        records, found = [], 0
        with open(meta, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("filename", "fold", "target", "category") if
                       c not in (reader.fieldnames or ())]
            if missing:
                raise common.ManualDataError(f"{meta}: missing columns {missing}.\n{LAYOUT}")
            for row in reader:
                category = row["category"].strip()
                if category not in index:
                    if opts["esc10"]:
                        continue
                    raise ValueError(f"{meta}: unknown ESC-50 category {category!r}")
                if not opts["esc10"] and int(row["target"]) != index[category]:
                    raise ValueError(f"{meta}: target {row['target']} does not match category "
                                     f"{category!r} (expected {index[category]})")
                rel = f"audio/{row['filename'].strip()}"
                path = os.path.join(root, rel)
                found += os.path.exists(path)
                records.append((int(row["fold"]),
                                common.Item(id=rel, path=path, labels=(index[category],))))
        if records and not found:
            raise common.ManualDataError(
                f"ESC-50: none of the {len(records)} files listed in {meta} exist under "
                f"{audio_dir} (expected e.g. {records[0][1].path}).\n{LAYOUT}")
        return common.split_by_fold(records, validation=[opts["validation_fold"]],
                                    test=[opts["test_fold"]])
