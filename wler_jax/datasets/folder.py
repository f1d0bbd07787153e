"""Any folder or CSV of weakly labelled recordings (e.g. web data collected as in the paper).

Two layouts, chosen by `path`:
  * a folder with one sub-folder per label:  <path>/<label>/**/<file>.<audio ext>
    (one label per file; files directly in <path> or with other extensions are ignored and
    listed as warnings in the skip report);
  * a CSV file with rows `path,labels[,split]` (a header row naming these columns is optional):
    `path` relative to the CSV's folder (or absolute), `labels` ';'-separated (may be empty: a
    recording with none of the classes), `split` one of train/validation/test (aliases
    val/valid/dev and eval accepted).
Class names are the sorted set of labels. Recording ids are the paths as listed (relative to
the folder or CSV).

Splits: the `split` column is honoured; rows without one (or every row, without the column)
get a seeded random 70/15/15 train/validation/test split (`seed`), with each split non-empty
when there are at least 3 recordings. Which recording went where is written to
`split_assignment.json` next to the built data (copy it into a workdir to record the run).

Staleness: the config name is a hash of the source path, the seed and the listing (each
file's id, labels, split, size and mtime), so any change to the folder or CSV builds anew.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import os

import numpy as np

from wler_jax.datasets import common

SPLIT_FILE = "split_assignment.json"
SPLIT_FRACTIONS = {"validation": 0.15, "test": 0.15}  # train gets the rest (70 %)
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation",
                  "valid": "validation", "val": "validation", "dev": "validation",
                  "test": "test", "eval": "test", "evaluation": "test"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One listed recording: id (as listed), absolute path, label names, split ('' = seeded)."""

    id: str
    path: str
    labels: tuple[str, ...]
    split: str = ""


@dataclasses.dataclass(eq=False)
class FolderConfig(common.AudioConfig):
    """AudioConfig plus the scanned listing (kept out of repr: tfds logs the config)."""

    rows: tuple[Row, ...] = dataclasses.field(default=(), repr=False)
    scan_warnings: tuple[str, ...] = dataclasses.field(default=(), repr=False)


def scan_folder(root: str) -> tuple[list[Row], list[str]]:
    """Rows of the <root>/<label>/... layout, plus warnings about ignored files."""
    rows, warnings = [], []
    for name in sorted(os.listdir(root)):
        full = os.path.join(root, name)
        if name.startswith("."):
            continue
        if not os.path.isdir(full):
            warnings.append(f"ignored {full}: not inside a label sub-folder")
            continue
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                path = os.path.join(dirpath, f)
                if f.startswith("."):
                    continue
                if not common.is_audio_file(f):
                    warnings.append(f"ignored {path}: not an audio file extension")
                    continue
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                rows.append(Row(id=rel, path=path, labels=(name,)))
    return rows, warnings


def scan_csv(csv_path: str) -> list[Row]:
    """Rows of a `path,labels[,split]` CSV (paths relative to the CSV's folder)."""
    base = os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        table = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not table:
        raise ValueError(f"{csv_path}: empty CSV (expected rows path,labels[,split])")
    head = [c.strip().lower() for c in table[0]]
    if "path" in head:
        cols = {"path": head.index("path"),
                "labels": head.index("labels") if "labels" in head else
                head.index("label") if "label" in head else None,
                "split": head.index("split") if "split" in head else None}
        if cols["labels"] is None:
            raise ValueError(f"{csv_path}: header {table[0]} has no 'labels' column")
        body, first_line = table[1:], 2
    else:
        cols = {"path": 0, "labels": 1, "split": 2 if len(table[0]) > 2 else None}
        body, first_line = table, 1
    rows, seen = [], set()
    for n, r in enumerate(body, start=first_line):
        cell = lambda k: r[cols[k]].strip() if cols[k] is not None and cols[k] < len(r) else ""
        listed = cell("path")
        if not listed:
            raise ValueError(f"{csv_path}:{n}: empty path")
        if listed in seen:
            raise ValueError(f"{csv_path}:{n}: {listed} is listed twice")
        seen.add(listed)
        split = cell("split")
        if split:
            if split.lower() not in _SPLIT_ALIASES:
                raise ValueError(f"{csv_path}:{n}: unknown split {split!r} (expected "
                                 "train, validation or test)")
            split = _SPLIT_ALIASES[split.lower()]
        labels = tuple(sorted({l.strip() for l in cell("labels").split(";") if l.strip()}))
        path = listed if os.path.isabs(listed) else os.path.join(base, listed)
        rows.append(Row(id=listed.replace(os.sep, "/"), path=os.path.normpath(path),
                        labels=labels, split=split))
    return rows


def assign_splits(rows: list[Row], seed: int) -> dict[str, str]:
    """{id: split}: the listed split, else a seeded 70/15/15 split of the unassigned rows.

    With n >= 3 unassigned rows each split gets at least one; with 2, train and test; with 1,
    train.
    """
    out = {r.id: r.split for r in rows if r.split}
    free = sorted(r.id for r in rows if not r.split)
    n = len(free)
    if n >= 3:
        n_val = max(1, int(round(SPLIT_FRACTIONS["validation"] * n)))
        n_test = max(1, int(round(SPLIT_FRACTIONS["test"] * n)))
    else:
        n_val, n_test = 0, int(n == 2)
    order = np.random.default_rng(seed).permutation(n)
    for rank, i in enumerate(order):
        out[free[i]] = ("test" if rank < n_test else
                        "validation" if rank < n_test + n_val else "train")
    return out


def _fingerprint(source: str, layout: str, seed: int, rows: list[Row]) -> str:
    h = hashlib.sha256(f"{source}\n{layout}\n{seed}\n".encode())
    for r in rows:
        try:
            st = os.stat(r.path)
            stat = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stat = "missing"
        h.update(f"{r.id}\t{';'.join(r.labels)}\t{r.split}\t{stat}\n".encode())
    return h.hexdigest()


class WlerFolder(common.AudioBuilder, skip_registration=True):
    """Weakly labelled recordings from a label-per-sub-folder tree or a path,labels CSV."""

    @classmethod
    def config_from_options(cls, *, path: str, seed: int = 0) -> FolderConfig:
        """Args: path: folder (one sub-folder per label) or CSV; seed: for the seeded split."""
        if not path:
            raise ValueError("folder dataset: `path` is required (a folder or a CSV file)")
        source = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if os.path.isdir(source):
            layout = "folder"
            rows, warnings = scan_folder(source)
        elif os.path.isfile(source):
            layout = "csv"
            rows, warnings = scan_csv(source), []
        else:
            raise common.ManualDataError(
                f"folder dataset: {source} does not exist (expected a folder with one "
                "sub-folder per label, or a CSV with columns path,labels[,split])")
        if not rows:
            raise ValueError(f"folder dataset: no audio files found in {source} (expected "
                             f"<label>/<file>.wav sub-folders or CSV rows)")
        seed = int(seed)
        digest = _fingerprint(source, layout, seed, rows)
        stem = os.path.splitext(os.path.basename(source.rstrip(os.sep)))[0][:40] or "data"
        classes = tuple(sorted({l for r in rows for l in r.labels}))
        if not classes:
            raise ValueError(f"folder dataset: {source} lists no labels at all")
        return FolderConfig(
            name=common.config_name(stem, f"seed{seed}", digest[:12]),
            description=f"Recordings listed by {source} ({layout} layout), seed {seed}.",
            class_names=classes,
            options={"path": source, "seed": seed, "layout": layout, "source_hash": digest},
            rows=tuple(rows), scan_warnings=tuple(warnings))

    def _items(self, dl_manager):
        config = self.builder_config
        for w in config.scan_warnings:
            self.warn(w)
        index = {c: i for i, c in enumerate(config.class_names)}
        splits = assign_splits(list(config.rows), config.options["seed"])
        out = {s: [] for s in common.SPLITS}
        for r in config.rows:
            out[splits[r.id]].append(common.Item(id=r.id, path=r.path,
                                                 labels=tuple(index[l] for l in r.labels)))
        self._reports[SPLIT_FILE] = {
            "source": config.options["path"],
            "layout": config.options["layout"],
            "seed": config.options["seed"],
            "source_hash": config.options["source_hash"],
            "from_split_column": sum(bool(r.split) for r in config.rows),
            "counts": {s: len(v) for s, v in out.items()},
            "splits": {s: sorted(i.id for i in v) for s, v in out.items()},
        }
        return out
