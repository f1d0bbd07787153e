"""UrbanSound (Salamon et al. 2014), the original set: 1,302 full Freesound recordings, 10 classes.

This is the paper's training/test corpus (Kumar & Raj 2017, §III). Read from the user's copy of
the official release (nothing is downloaded):

  <manual_dir>/UrbanSound/data/<class>/<fsid>.<wav|mp3|flac|aif|...>   the recording
  <manual_dir>/UrbanSound/data/<class>/<fsid>.csv    one row per annotated event, no header:
                                                     start_s,end_s,salience,class
  <manual_dir>/UrbanSound/FREESOUNDCREDITS.txt

(`manual_dir` may also point at the UrbanSound folder itself.) Weak labels are the set of
classes annotated in the recording; `events` are the annotation rows with their true times
(used only to evaluate localisation; training uses the weak labels). A recording without its
.csv falls back to its folder's class (a warning in the skip report).

Folds. The release has no fold file. The paper's counts (533 train / 262 validation / 502 test
= 1,297 recordings in folds 1-4 / 5-6 / 7-10) are those of the UrbanSound8K folds, which are
assigned per Freesound recording (fsID). So folds come, in this order, from:
  1. `<manual_dir>/UrbanSound/folds.csv` (header with `fsid` and `fold` columns), if present;
  2. the UrbanSound8K metadata `<manual_dir>/UrbanSound8K/metadata/UrbanSound8K.csv` (fsID ->
     fold; only that csv is needed), if present: the paper's split. Recordings absent from the
     fold source are left out and listed in the skip report (5 of 1,302 for UrbanSound8K);
  3. otherwise derived: within each class folder, recordings sorted by fsid are dealt
     round-robin to folds 1..10 (deterministic, class-balanced; a warning says so).
The source used is part of the config name, so adding a fold file later does not reuse a
build made with derived folds.
"""
from __future__ import annotations

import collections
import csv
import os

from wler_jax.data.datasets import common, urbansound8k

CLASSES = urbansound8k.CLASSES
NUM_FOLDS = 10
FOLDS_FILE = "folds.csv"
US8K_METADATA = os.path.join("UrbanSound8K", urbansound8k.METADATA)
LAYOUT = """  <manual_dir>/UrbanSound/data/<class>/<fsid>.wav (or .mp3, .flac, .aif, ...)
  <manual_dir>/UrbanSound/data/<class>/<fsid>.csv   (rows: start,end,salience,class)
  <manual_dir>/UrbanSound/FREESOUNDCREDITS.txt
  folds (optional, see wler_jax/data/datasets/urbansound.py): <manual_dir>/UrbanSound/folds.csv
  or <manual_dir>/UrbanSound8K/metadata/UrbanSound8K.csv"""
_DEFAULT_VALIDATION = (5, 6)
_DEFAULT_TEST = (7, 8, 9, 10)


def _fold_source(manual_dir: str | None) -> str:
    """Which fold source a manual dir provides: "file", "us8k" or "derived"."""
    if manual_dir:
        for root in (os.path.join(manual_dir, "UrbanSound"), manual_dir):
            if os.path.isfile(os.path.join(root, FOLDS_FILE)):
                return "file"
        if os.path.isfile(os.path.join(manual_dir, US8K_METADATA)):
            return "us8k"
    return "derived"


def read_annotations(path: str) -> list[tuple[float, float, str, str]]:
    """Rows (start_s, end_s, salience, class) of one UrbanSound annotation csv."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) < 4 or not row[0].strip():
                continue
            try:
                start, end = float(row[0]), float(row[1])
            except ValueError:  # a header line
                continue
            rows.append((start, end, row[2].strip(), row[3].strip()))
    return rows


def _read_fold_file(path: str, fsid_column: str) -> dict[str, int]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or ()}
        key = cols.get(fsid_column.lower())
        if key is None or "fold" not in cols:
            raise common.ManualDataError(
                f"{path}: needs a header with columns {fsid_column!r} and 'fold'")
        return {row[key].strip(): int(row[cols["fold"]]) for row in reader}


class WlerUrbansound(common.AudioBuilder, skip_registration=True):
    """Original UrbanSound recordings with weak labels and true event times."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download UrbanSound from https://urbansounddataset.weebly.com/urbansound.html, extract "
        "it and pass its parent folder as manual_dir:\n" + LAYOUT)
    HOMEPAGE = "https://urbansounddataset.weebly.com/urbansound.html"
    CITATION = urbansound8k.WlerUrbansound8k.CITATION

    @classmethod
    def config_from_options(cls, *, validation_folds=_DEFAULT_VALIDATION,
                            test_folds=_DEFAULT_TEST, manual_dir: str | None = None
                            ) -> common.AudioConfig:
        """Args: validation_folds / test_folds: disjoint folds in 1..10 (paper: 5-6 / 7-10).

        `manual_dir` only selects the fold source recorded in the config name.
        """
        val, test = common.check_split_folds(validation_folds, test_folds, NUM_FOLDS,
                                             names=("validation_folds", "test_folds"))
        source = _fold_source(manual_dir)
        return common.AudioConfig(
            name=common.config_name("val" + ".".join(map(str, val)),
                                    "test" + ".".join(map(str, test)), source),
            description=f"UrbanSound, validation folds {val}, test folds {test}, train the "
                        f"rest; folds from {source}.",
            class_names=CLASSES,
            options={"validation_folds": list(val), "test_folds": list(test),
                     "fold_source": source})

    def _items(self, dl_manager):
        manual = self.manual_dir(dl_manager, corpus="UrbanSound", layout=LAYOUT)
        root, data_dir, class_dirs = self._class_folders(manual)
        recordings = []  # (fsid, class folder, Item)
        for folder in class_dirs:
            recordings += self._folder_recordings(os.path.join(data_dir, folder), folder)
        if not recordings:
            raise common.ManualDataError(f"UrbanSound: no recordings under {data_dir}.\n{LAYOUT}")

        folds = self._folds(manual, root, recordings)
        opts = self.builder_config.options
        records = []
        for fsid, _, item in recordings:
            if fsid in folds:
                records.append((folds[fsid], item))
            else:
                self.skip(item.id, item.path, f"no fold for fsid {fsid} in the fold source "
                          f"({opts['fold_source']}); left out as in the paper")
        return common.split_by_fold(records, validation=opts["validation_folds"],
                                    test=opts["test_folds"])

    def _class_folders(self, manual: str) -> tuple[str, str, list[str]]:
        """(the UrbanSound folder, its data folder, the class folders found there); a missing
        class folder or a folder of no class is warned about."""
        root = os.path.join(manual, "UrbanSound")
        if not os.path.isdir(os.path.join(root, "data")):
            root = manual
        data_dir = os.path.join(root, "data")
        class_dirs = [c for c in CLASSES if os.path.isdir(os.path.join(data_dir, c))]
        if not class_dirs:
            raise common.ManualDataError(
                f"UrbanSound: no class folders found: expected "
                f"{os.path.join(manual, 'UrbanSound', 'data', '<class>')} for <class> in "
                f"{', '.join(CLASSES)}.\n{LAYOUT}")
        for c in CLASSES:
            if c not in class_dirs:
                self.warn(f"class folder {os.path.join(data_dir, c)} is missing")
        for name in sorted(os.listdir(data_dir)):
            if name not in CLASSES and not name.startswith("."):
                self.warn(f"ignored {os.path.join(data_dir, name)}: not an UrbanSound class")
        return root, data_dir, class_dirs

    def _folder_recordings(self, d: str, folder: str) -> list[tuple[str, str, common.Item]]:
        """(fsid, folder, Item) of each recording in class folder `d`: an audio file and its
        annotation csv of the same stem (fsid), in fsid order."""
        stems = collections.defaultdict(dict)
        for n in sorted(os.listdir(d)):
            if n.startswith("."):
                continue
            stem, ext = os.path.splitext(n)
            stems[stem][ext.lower()] = n
        recordings = []
        for stem in sorted(stems, key=lambda s: (len(s), s)):
            files = stems[stem]
            rel_audio = [n for e, n in files.items() if e != ".csv"]
            csv_name = files.get(".csv")
            rec_id = f"data/{folder}/{rel_audio[0] if rel_audio else stem}"
            if not rel_audio:
                self.skip(rec_id, os.path.join(d, csv_name), "annotation without an audio "
                          f"file (looked for {stem}.<audio ext> in {d})")
                continue
            if len(rel_audio) > 1:
                self.warn(f"{d}: several audio files for {stem}: {rel_audio}; using "
                          f"{rel_audio[0]}")
            labels, events = self._annotations(d, stem, csv_name, folder)
            item = common.Item(id=rec_id, path=os.path.join(d, rel_audio[0]),
                               labels=tuple(sorted(labels)),
                               events=tuple(sorted(events, key=lambda e: (e[1], e[2]))))
            recordings.append((stem, folder, item))
        return recordings

    def _annotations(self, d: str, stem: str, csv_name: str | None, folder: str
                     ) -> tuple[set[int], list[tuple[int, float, float]]]:
        """(weak labels, events (class, start_s, end_s)) of one recording from its annotation
        csv; without the csv, or without a usable row in it, the folder's class and no events."""
        index = {c: i for i, c in enumerate(CLASSES)}
        if csv_name is None:
            self.warn(f"{os.path.join(d, stem)}: no annotation csv; weak label = the "
                      f"folder's class {folder}, no events")
            return {index[folder]}, []
        labels, events = set(), []
        for start, end, _, cls in read_annotations(os.path.join(d, csv_name)):
            key = cls.lower().replace(" ", "_")
            if key not in index:
                self.warn(f"{os.path.join(d, csv_name)}: unknown class {cls!r}")
                continue
            labels.add(index[key])
            events.append((index[key], start, end))
        if not labels:
            labels = {index[folder]}
            self.warn(f"{os.path.join(d, csv_name)}: no usable annotation rows; "
                      f"weak label = the folder's class {folder}")
        return labels, events

    def _folds(self, manual: str, root: str, recordings) -> dict[str, int]:
        source = self.builder_config.options["fold_source"]
        if source == "file":
            path = next(p for p in (os.path.join(root, FOLDS_FILE),
                                    os.path.join(manual, "UrbanSound", FOLDS_FILE),
                                    os.path.join(manual, FOLDS_FILE)) if os.path.isfile(p))
            return _read_fold_file(path, "fsid")
        if source == "us8k":
            rows = urbansound8k.read_metadata(os.path.join(manual, US8K_METADATA))
            return {r["fsID"]: int(r["fold"]) for r in rows}
        self.warn("no fold file (UrbanSound/folds.csv) or UrbanSound8K metadata found: folds "
                  "derived round-robin per class folder over sorted fsids (not the paper's split)")
        folds, per_class = {}, collections.Counter()
        for fsid, folder, _ in sorted(recordings, key=lambda r: (r[1], len(r[0]), r[0])):
            if fsid not in folds:
                folds[fsid] = 1 + per_class[folder] % NUM_FOLDS
                per_class[folder] += 1
        return folds
