"""Any folder or CSV of weakly labelled recordings (e.g. web data collected as in the paper).

Three layouts, chosen by `path`:
  * a folder with one sub-folder per label:  <path>/<label>/**/<file>.<audio ext>
    (one label per file; files directly in <path> or with other extensions are ignored and
    listed as warnings in the skip report);
  * a folder split into sub-trees:  <path>/<split>/<label>/**/<file>, read as split + label.
    Rule (so that a label called "train" is never misread): this layout applies only when
    *every* visible top-level sub-folder is a split name (train, validation/valid/val/dev,
    test/eval), `train` is one of them, and none of them holds audio files directly. A label
    tree whose labels happen to be "train" and "test" keeps its files directly inside those
    folders, so it is still read as labels (a split tree puts them one level deeper);
  * a CSV file with rows `path,labels[,split][,source]` (a header row naming these columns is
    optional; the `source` column, alias `group`, needs the header): `path` relative to the
    CSV's folder (or absolute), `labels` ';'-separated (may be empty: a recording with none of
    the classes), `split` one of train/validation/test (aliases val/valid/dev and eval
    accepted), `source` any text naming the source recording a clip was cut from. A row
    without a path, a path listed again or an unknown split is left out and listed in the
    skip report with its line; the other rows are built (docs/reliability.md).
Class names are the sorted set of labels. Recording ids are the paths as listed (relative to
the folder or CSV).

Splits (`assign_splits`; every split the builder makes is grouped by `source`: the clips of one
source recording never straddle two splits; without the column every recording is its own
group):
  * the `split` column (or the split sub-trees) is honoured;
  * with `train` and `test` but no `validation` anywhere, validation is carved from train:
    seeded (`seed`), whole groups in a seeded order until ~15 % of the train clips
    (`CARVE_FRACTION`), at least one group left in train;
  * rows without a split (or every row, without the column) get a seeded 70/15/15
    train/validation/test split of whole groups (by clip count), each split non-empty when
    there are at least 3 groups; a row whose group already has a listed split joins it.
Which recording went where, which rows were carved and the grouping used are written to
`split_assignment.json` next to the built data (copy it into a workdir to record the run) and
logged.

Staleness: the config name is a hash of the source path, the seed and the listing (each
file's id, labels, split, source, size and mtime), so any change to the folder or CSV
(including its source column) builds anew.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import os

import numpy as np
from absl import logging

from wler_jax.data.datasets import common

SPLIT_FILE = "split_assignment.json"
SPLIT_FRACTIONS = {"validation": 0.15, "test": 0.15}  # train gets the rest (70 %)
CARVE_FRACTION = 0.15  # validation carved from train when a split column has none
GROUP_COLUMNS = ("source", "group")  # CSV header names of the grouping column, first wins
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation",
                  "valid": "validation", "val": "validation", "dev": "validation",
                  "test": "test", "eval": "test", "evaluation": "test"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One listed recording: id (as listed), absolute path, label names, split ('' = seeded),
    group (its source recording; '' = its own group)."""

    id: str
    path: str
    labels: tuple[str, ...]
    split: str = ""
    group: str = ""


@dataclasses.dataclass(eq=False)
class FolderConfig(common.AudioConfig):
    """AudioConfig plus the scanned listing (kept out of repr: tfds logs the config)."""

    rows: tuple[Row, ...] = dataclasses.field(default=(), repr=False)
    scan_warnings: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    bad_rows: tuple = dataclasses.field(default=(), repr=False)  # BadRow: CSV rows left out
    group_column: str = ""  # the CSV column that named the groups ('' = none)


def is_split_tree(root: str) -> bool:
    """True when <root> is laid out <split>/<label>/... (see the module docstring's rule)."""
    tops = [n for n in os.listdir(root) if not n.startswith(".")
            and os.path.isdir(os.path.join(root, n))]
    if not tops or any(n.lower() not in _SPLIT_ALIASES for n in tops):
        return False
    if "train" not in {_SPLIT_ALIASES[n.lower()] for n in tops}:
        return False
    for n in tops:
        if any(common.is_audio_file(f) and os.path.isfile(os.path.join(root, n, f))
               for f in os.listdir(os.path.join(root, n))):
            return False
    return True


def _scan_labels(root: str, top: str, split: str = "") -> tuple[list[Row], list[str]]:
    """Rows of <top>/<label>/... (ids relative to `root`), plus warnings about ignored files."""
    rows, warnings = [], []
    for name in sorted(os.listdir(top)):
        full = os.path.join(top, name)
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
                rows.append(Row(id=rel, path=path, labels=(name,), split=split))
    return rows, warnings


def scan_folder(root: str) -> tuple[list[Row], list[str]]:
    """Rows of the <root>/<label>/... or <root>/<split>/<label>/... layout, plus warnings."""
    if not is_split_tree(root):
        return _scan_labels(root, root)
    rows, warnings = [], []
    for name in sorted(os.listdir(root)):
        full = os.path.join(root, name)
        if name.startswith("."):
            continue
        if not os.path.isdir(full):
            warnings.append(f"ignored {full}: not inside a <split>/<label> sub-folder")
            continue
        r, w = _scan_labels(root, full, _SPLIT_ALIASES[name.lower()])
        rows += r
        warnings += w
    return rows, warnings


def scan_csv(csv_path: str) -> list[Row]:
    """Rows of a `path,labels[,split][,source]` CSV (paths relative to the CSV's folder)."""
    return scan_csv_with_groups(csv_path)[0]


@dataclasses.dataclass(frozen=True)
class BadRow:
    """A CSV row that is not built: its line, what it listed as path, and why."""

    line: int
    listed: str
    reason: str


def scan_csv_with_groups(csv_path: str) -> tuple[list[Row], str]:
    """(rows, name of the grouping column or '') of a `path,labels[,split][,source]` CSV."""
    rows, group_column, _, _ = scan_csv_checked(csv_path)
    return rows, group_column


def scan_csv_checked(csv_path: str) -> tuple[list[Row], str, list[BadRow], list[str]]:
    """(rows, grouping column or '', rows not built with their reasons, warnings) of a CSV.

    One bad row never stops the others: a row without a path, a path listed again (the first
    listing is kept) or an unknown split is left out with its reason; labels that differ only
    in case or spacing ("Dog", "dog ", "DOG") stay distinct classes, with a warning. A UTF-8
    byte order mark, CRLF line ends and quoted cells (paths with commas) are read as written.
    """
    base = os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        table = [(n, r) for n, r in enumerate(csv.reader(f), start=1)
                 if r and any(c.strip() for c in r)]
    if not table:
        raise ValueError(f"{csv_path}: empty CSV (expected rows path,labels[,split])")
    head = [c.strip().lower() for c in table[0][1]]
    if "path" in head:
        group_column = next((g for g in GROUP_COLUMNS if g in head), "")
        cols = {"path": head.index("path"),
                "labels": head.index("labels") if "labels" in head else
                head.index("label") if "label" in head else None,
                "split": head.index("split") if "split" in head else None,
                "group": head.index(group_column) if group_column else None}
        if cols["labels"] is None:
            raise ValueError(f"{csv_path}: header {table[0][1]} has no 'labels' column")
        body = table[1:]
    else:
        cols = {"path": 0, "labels": 1, "split": 2 if len(table[0][1]) > 2 else None,
                "group": None}
        group_column = ""
        body = table
    rows, bad, first = [], [], {}
    for n, r in body:
        cell = lambda k: r[cols[k]].strip() if cols[k] is not None and cols[k] < len(r) else ""
        listed = cell("path")
        if not listed:
            bad.append(BadRow(n, "", "empty path"))
            continue
        if listed in first:
            bad.append(BadRow(n, listed, f"listed again (first on line {first[listed]}, which "
                                         "is kept)"))
            continue
        split = cell("split")
        if split and split.lower() not in _SPLIT_ALIASES:
            bad.append(BadRow(n, listed, f"unknown split {split!r} (expected train, "
                                         "validation or test)"))
            continue
        first[listed] = n
        split = _SPLIT_ALIASES[split.lower()] if split else ""
        labels = tuple(sorted({l.strip() for l in cell("labels").split(";") if l.strip()}))
        path = listed if os.path.isabs(listed) else os.path.join(base, listed)
        rows.append(Row(id=listed.replace(os.sep, "/"), path=os.path.normpath(path),
                        labels=labels, split=split, group=cell("group")))
    if not rows and bad:
        raise ValueError(f"{csv_path}: no usable row; line {bad[0].line}: {bad[0].reason}"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    return rows, group_column, bad, label_spelling_warnings(rows)


def label_spelling_warnings(rows: list[Row]) -> list[str]:
    """Warnings for labels that differ only in case or spacing (kept as distinct classes)."""
    spellings: dict[str, set] = {}
    for r in rows:
        for label in r.labels:
            spellings.setdefault(" ".join(label.lower().split()), set()).add(label)
    return [f"labels {sorted(v)} differ only in case or spacing and are {len(v)} classes; "
            "write them one way if they are one" for v in spellings.values() if len(v) > 1]


@dataclasses.dataclass
class SplitPlan:
    """What `assign_splits` did: the assignment and how it was made (for the record and log).

    Attributes:
      splits: {id: split} for every row.
      method: one line saying what was done.
      carved: ids moved from train to validation (empty unless carved).
      carved_groups: the groups they belong to.
      straddling: groups the *listed* splits already put in more than one split (the user's
        choice is honoured; reported, not changed).
      num_groups: distinct groups among the rows.
    """

    splits: dict[str, str]
    method: str
    carved: list[str] = dataclasses.field(default_factory=list)
    carved_groups: list[str] = dataclasses.field(default_factory=list)
    straddling: list[str] = dataclasses.field(default_factory=list)
    num_groups: int = 0


def _group_of(row: Row) -> str:
    return row.group or "\0" + row.id  # ungrouped rows are singleton groups (never collide)


def _grouped(rows: list[Row]) -> tuple[list[str], dict[str, list[str]]]:
    """(sorted group keys, {group key: ids}) of `rows`."""
    members: dict[str, list[str]] = {}
    for r in rows:
        members.setdefault(_group_of(r), []).append(r.id)
    return sorted(members, key=lambda g: g.lstrip("\0")), members


def _seeded_70_15_15(rows: list[Row], seed: int) -> dict[str, str]:
    """Seeded grouped 70/15/15 split of `rows` by clip count.

    Groups are walked in a seeded order: test takes groups until it holds round(15 %) of the
    clips (at least one group), then validation likewise; the rest is train. With >= 3 groups
    each split gets at least one group; with 2, train and test; with 1, train. With one clip per
    group this is exactly the ungrouped split of earlier versions (same seed, same split).
    """
    keys, members = _grouped(rows)
    n, g = len(rows), len(keys)
    if g >= 3:
        n_val = max(1, int(round(SPLIT_FRACTIONS["validation"] * n)))
        n_test = max(1, int(round(SPLIT_FRACTIONS["test"] * n)))
    else:
        n_val, n_test = 0, int(g == 2)
    counts = {"train": 0, "validation": 0, "test": 0}
    out = {}
    order = np.random.default_rng(seed).permutation(g)
    for rank, i in enumerate(order):
        left = g - rank - 1  # groups after this one
        if counts["test"] < n_test and (left >= 2 or (g == 2 and left >= 1)):
            split = "test"
        elif counts["validation"] < n_val and left >= 1:
            split = "validation"
        else:
            split = "train"
        counts[split] += len(members[keys[i]])
        for rid in members[keys[i]]:
            out[rid] = split
    return out


def _carve_validation(rows: list[Row], seed: int) -> list[str]:
    """Groups of the train `rows` that become validation: seeded, ~CARVE_FRACTION of the clips,
    at least one group kept in train (none carved from a single group)."""
    keys, members = _grouped(rows)
    target = max(1, int(round(CARVE_FRACTION * len(rows))))
    carved, count = [], 0
    order = np.random.default_rng([seed, 15]).permutation(len(keys))
    for rank, i in enumerate(order):
        if count >= target or rank == len(keys) - 1:
            break
        size = len(members[keys[i]])
        if count and abs(count + size - target) > abs(count - target):
            continue  # a big group would overshoot more than leaving it: try the next
        carved.append(keys[i])
        count += size
    return carved


def plan_splits(rows: list[Row], seed: int) -> SplitPlan:
    """The split of every row and a record of how it was made (see the module docstring)."""
    listed = {r.id: r.split for r in rows if r.split}
    keys, members = _grouped(rows)
    by_group: dict[str, set] = {}
    for r in rows:
        if r.split:
            by_group.setdefault(_group_of(r), set()).add(r.split)
    straddling = sorted(k for k, s in by_group.items() if len(s) > 1 and not k.startswith("\0"))
    out = dict(listed)
    # Unlisted rows whose group already has one listed split join it; the rest get 70/15/15.
    free = []
    for r in rows:
        if r.split:
            continue
        known = by_group.get(_group_of(r), set())
        if len(known) == 1:
            out[r.id] = next(iter(known))
        else:
            free.append(r)
    out.update(_seeded_70_15_15(free, seed))
    parts = []
    if listed:
        parts.append(f"{len(listed)} row(s) from the split column")
    if free:
        parts.append(f"seeded grouped 70/15/15 split of {len(free)} row(s) (seed {seed})")
    joined = len(rows) - len(listed) - len(free)
    if joined:
        parts.append(f"{joined} row(s) without a split joined their group's listed split")
    plan = SplitPlan(out, "; ".join(parts), straddling=straddling, num_groups=len(keys))
    present = set(out.values())
    if listed and "validation" not in present and "train" in present and "test" in present:
        train_rows = [r for r in rows if out[r.id] == "train"]
        carved_groups = _carve_validation(train_rows, seed)
        if carved_groups:
            _, train_members = _grouped(train_rows)
            carved = sorted(rid for k in carved_groups for rid in train_members[k])
            for rid in carved:
                out[rid] = "validation"
            plan.carved = carved
            plan.carved_groups = sorted(k.lstrip("\0") for k in carved_groups)
            plan.method += (f"; no validation split listed: {len(carved)} of {len(train_rows)} "
                            f"train row(s) ({len(carved_groups)} group(s)) carved into "
                            f"validation (seed {seed}, target {CARVE_FRACTION:.0%})")
    return plan


def assign_splits(rows: list[Row], seed: int) -> dict[str, str]:
    """{id: split}: `plan_splits(rows, seed).splits` (see the module docstring)."""
    return plan_splits(rows, seed).splits


def _fingerprint(source: str, layout: str, seed: int, rows: list[Row],
                 group_column: str = "", bad: list = ()) -> str:
    h = hashlib.sha256(f"{source}\n{layout}\n{seed}\n".encode())
    # Grouping and the carved validation split came in data version 1.2 of this builder: the
    # listings they apply to hash differently (so an older build without them is never reused);
    # every other listing keeps its old name and data.
    splits = {r.split for r in rows}
    if group_column or layout == "split_tree" or (
            "validation" not in splits and {"train", "test"} <= splits):
        h.update(f"splits-v2\ngroup_column={group_column}\n".encode())
    for r in rows:
        try:
            st = os.stat(r.path)
            stat = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stat = "missing"
        group = f"\t{r.group}" if group_column else ""
        h.update(f"{r.id}\t{';'.join(r.labels)}\t{r.split}{group}\t{stat}\n".encode())
    for b in bad:  # rows left out (none in a listing of earlier versions: same names)
        h.update(f"bad\t{b.line}\t{b.listed}\t{b.reason}\n".encode())
    return h.hexdigest()


class WlerFolder(common.AudioBuilder, skip_registration=True):
    """Weakly labelled recordings from a label-per-sub-folder tree or a path,labels CSV."""

    @classmethod
    def config_from_options(cls, *, path: str, seed: int = 0) -> FolderConfig:
        """Args: path: folder (one sub-folder per label) or CSV; seed: for the seeded split."""
        if not path:
            raise ValueError("folder dataset: `path` is required (a folder or a CSV file)")
        source = os.path.abspath(os.path.expanduser(os.fspath(path)))
        group_column, bad = "", []
        if os.path.isdir(source):
            layout = "split_tree" if is_split_tree(source) else "folder"
            rows, warnings = scan_folder(source)
            warnings += label_spelling_warnings(rows)
        elif os.path.isfile(source):
            layout = "csv"
            rows, group_column, bad, warnings = scan_csv_checked(source)
        else:
            raise common.ManualDataError(
                f"folder dataset: {source} does not exist (expected a folder with one "
                "sub-folder per label, or a CSV with columns path,labels[,split])")
        if not rows:
            raise ValueError(f"folder dataset: no audio files found in {source} (expected "
                             f"<label>/<file>.wav sub-folders or CSV rows)")
        seed = int(seed)
        digest = _fingerprint(source, layout, seed, rows, group_column, bad)
        stem = os.path.splitext(os.path.basename(source.rstrip(os.sep)))[0][:40] or "data"
        classes = tuple(sorted({l for r in rows for l in r.labels}))
        if not classes:
            raise ValueError(f"folder dataset: {source} lists no labels at all")
        return FolderConfig(
            name=common.config_name(stem, f"seed{seed}", digest[:12]),
            description=f"Recordings listed by {source} ({layout} layout), seed {seed}.",
            class_names=classes,
            options={"path": source, "seed": seed, "layout": layout, "source_hash": digest,
                     "group_column": group_column},
            rows=tuple(rows), scan_warnings=tuple(warnings), group_column=group_column,
            bad_rows=tuple(bad))

    def _items(self, dl_manager):
        config = self.builder_config
        for w in config.scan_warnings:
            self.warn(w)
        for b in config.bad_rows:  # in the skip report with the files that cannot be decoded
            self.skip(b.listed or f"line {b.line}", f"{config.options['path']}:{b.line}",
                      b.reason)
        index = {c: i for i, c in enumerate(config.class_names)}
        plan = plan_splits(list(config.rows), config.options["seed"])
        splits = plan.splits
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
            "method": plan.method,
            "grouping": {"column": config.group_column or None,
                         "num_groups": plan.num_groups,
                         "straddling_listed_splits": plan.straddling},
            "carved_validation": {"from": "train", "fraction": CARVE_FRACTION,
                                  "seed": config.options["seed"], "ids": plan.carved,
                                  "groups": plan.carved_groups} if plan.carved else None,
            "counts": {s: len(v) for s, v in out.items()},
            "splits": {s: sorted(i.id for i in v) for s, v in out.items()},
        }
        group_note = (f"grouped by column {config.group_column!r} ({plan.num_groups} groups)"
                      if config.group_column else "ungrouped (one group per recording)")
        logging.info("folder dataset %s: splits %s: %s; %s", config.options["path"],
                     {s: len(v) for s, v in out.items()}, plan.method, group_note)
        if plan.straddling:
            self.warn(f"{len(plan.straddling)} group(s) appear in more than one listed split "
                      f"(kept as listed): {plan.straddling[:5]}")
        return out
