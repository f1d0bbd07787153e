"""AudioSet "eval" segments (Gemmeke et al. 2017) restricted to a few classes: the paper's test set.

Read from the user's copy (nothing is downloaded; AudioSet audio must be fetched from YouTube by
the user's own downloader):

  <manual_dir>/AudioSet/eval_segments.csv        3 comment lines starting with '#', then
      YTID, start_seconds, end_seconds, positive_labels   ("/m/..,/m/.." quoted MIDs)
  <manual_dir>/AudioSet/class_labels_indices.csv  index,mid,display_name
  <manual_dir>/AudioSet/**/<audio>                any sub-folder; a segment's file may be named
      <YTID>.<ext>, <YTID>_<start>.<ext>, <YTID>_<start>_<end>.<ext>, or the same with a
      leading "Y" (Y<YTID>...), for <ext> in .wav/.flac/.ogg/.mp3/...

(`manual_dir` may also point at the AudioSet folder itself.)

Classes: `classes` lists AudioSet display names; default the paper's nine (the UrbanSound classes
minus street music). Labels use only the MIDs listed in the csv (no ontology propagation).

Which segments: those with at least one selected class (the paper's 761 recordings for 9
classes); segments with none of them are not kept, so AP is computed among recordings that
contain at least one of the classes. Segments whose audio file is absent (videos gone, not
downloaded) are listed in the skip report. AudioSet eval has no train/validation split of its
own: only a "test" split is produced; train on UrbanSound or your own folder data and evaluate
here (`load_splits` returns just the splits that exist).
"""
from __future__ import annotations

import csv
import hashlib
import os

from absl import logging

from wler_jax.data.datasets import common

PAPER_CLASSES = ("Air conditioning", "Vehicle horn, car horn, honking", "Children playing",
                 "Bark", "Drill", "Idling", "Gunshot, gunfire", "Jackhammer", "Siren")
SEGMENTS = "eval_segments.csv"
CLASS_INDEX = "class_labels_indices.csv"
LAYOUT = """  <manual_dir>/AudioSet/eval_segments.csv
  <manual_dir>/AudioSet/class_labels_indices.csv
  <manual_dir>/AudioSet/<any sub-folder>/<YTID>.wav or <YTID>_<start>.wav (.flac, ...)"""
_YTID_LEN = 11


def read_segments(path: str) -> list[tuple[str, float, float, tuple[str, ...]]]:
    """(YTID, start_s, end_s, MIDs) per segment of an AudioSet segments csv."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        rows = (line for line in f if line.strip() and not line.lstrip().startswith("#"))
        for row in csv.reader(rows, skipinitialspace=True):
            if len(row) < 4:
                raise ValueError(f"{path}: malformed row {row!r} (expected YTID, start_seconds, "
                                 "end_seconds, positive_labels)")
            mids = tuple(m.strip() for m in row[3].split(",") if m.strip())
            out.append((row[0].strip(), float(row[1]), float(row[2]), mids))
    return out


def read_class_index(path: str) -> dict[str, str]:
    """display_name -> mid from class_labels_indices.csv."""
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) < 3 or row[0].strip().lower() == "index":
                continue
            out[row[2].strip()] = row[1].strip()
    return out


def index_audio_files(root: str, ytids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """Audio files below `root` by YTID: {ytid: [(path, rest of the name after the id)]}."""
    found: dict[str, list[tuple[str, str]]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not common.is_audio_file(name):
                continue
            stem = os.path.splitext(name)[0]
            for offset in (0, 1):  # "<YTID>..." or "Y<YTID>..."
                if offset and not stem.startswith("Y"):
                    continue
                ytid = stem[offset:offset + _YTID_LEN]
                rest = stem[offset + _YTID_LEN:]
                if ytid in ytids and (not rest or rest.startswith("_")):
                    found.setdefault(ytid, []).append((os.path.join(dirpath, name), rest[1:]))
                    break
    return found


def _matches_start(rest: str, start: float) -> bool:
    """Whether a file name suffix ("", "30", "30.000", "30_40", "30000_40000") fits `start`."""
    if not rest:
        return True
    try:
        value = float(rest.split("_")[0])
    except ValueError:
        return False
    return abs(value - start) < 1e-3 or abs(value / 1000.0 - start) < 1e-3  # seconds or ms


class WlerAudiosetEval(common.AudioBuilder, skip_registration=True):
    """AudioSet eval segments holding at least one selected class (a "test" split only)."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Get eval_segments.csv and class_labels_indices.csv from "
        "https://research.google.com/audioset/download.html, download the segments' audio with "
        "your own tool and pass the folder above AudioSet/ as manual_dir:\n" + LAYOUT)
    HOMEPAGE = "https://research.google.com/audioset/"
    CITATION = ("J. F. Gemmeke et al., \"Audio Set: An ontology and human-labeled dataset for "
                "audio events\", ICASSP 2017.")

    @classmethod
    def config_from_options(cls, *, classes=PAPER_CLASSES) -> common.AudioConfig:
        """Args: classes: AudioSet display names (order = label indices)."""
        if isinstance(classes, str):
            classes = [c for c in classes.split(";")]
        classes = tuple(c.strip() for c in classes if c.strip())
        if not classes:
            raise ValueError("audioset: `classes` is empty")
        if len(set(classes)) != len(classes):
            raise ValueError(f"audioset: duplicate class names in {classes}")
        if classes == PAPER_CLASSES:
            name = "paper9"
        else:
            digest = hashlib.sha256("\n".join(classes).encode()).hexdigest()[:10]
            name = common.config_name(f"c{len(classes)}", digest)
        return common.AudioConfig(
            name=name, description=f"AudioSet eval segments with any of: {', '.join(classes)}",
            class_names=classes, options={"classes": list(classes)})

    def _items(self, dl_manager):
        manual = self.manual_dir(dl_manager, corpus="AudioSet eval", layout=LAYOUT)
        root = common.find_corpus_root(manual, "AudioSet", SEGMENTS, corpus="AudioSet eval",
                                       layout=LAYOUT)
        index_path = os.path.join(root, CLASS_INDEX)
        if not os.path.isfile(index_path):
            raise common.ManualDataError(
                f"AudioSet eval: {index_path} does not exist (needed to map class names to "
                f"MIDs).\n{LAYOUT}")
        mids_by_name = read_class_index(index_path)
        classes = self.builder_config.class_names
        unknown = [c for c in classes if c not in mids_by_name]
        if unknown:
            import difflib

            hints = {c: difflib.get_close_matches(c, list(mids_by_name), n=3) for c in unknown}
            raise ValueError(f"audioset: unknown display names {unknown} in {index_path}; "
                             f"close matches: {hints}")
        label_of_mid = {mids_by_name[c]: i for i, c in enumerate(classes)}

        segments = read_segments(os.path.join(root, SEGMENTS))
        selected = []
        for ytid, start, end, mids in segments:
            labels = sorted({label_of_mid[m] for m in mids if m in label_of_mid})
            if labels:
                selected.append((ytid, start, end, tuple(labels)))
        files = index_audio_files(root, {s[0] for s in selected})
        items = []
        for ytid, start, end, labels in selected:
            candidates = [p for p, rest in files.get(ytid, ()) if _matches_start(rest, start)]
            rec_id = f"{ytid}_{start:.3f}"
            if not candidates:
                self.skip(rec_id, os.path.join(root, f"{ytid}.wav"),
                          f"no audio file for segment {ytid} [{start:.3f}, {end:.3f}] s below "
                          f"{root} (looked for {ytid}.*, {ytid}_<start>.*, Y{ytid}_<start>.*)",
                          "test")
                continue
            if len(candidates) > 1:
                self.warn(f"several files for {rec_id}: {candidates}; using {candidates[0]}")
            items.append(common.Item(id=rec_id, path=candidates[0], labels=labels))
        if selected and not items:
            raise common.ManualDataError(
                f"AudioSet eval: none of the {len(selected)} selected segments has an audio "
                f"file below {root}.\n{LAYOUT}")
        logging.info("AudioSet eval: %d of %d segments hold a selected class; %d have audio.",
                     len(selected), len(segments), len(items))
        return {"test": items}
