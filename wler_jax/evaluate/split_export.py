"""A workdir's evaluation split as files: audio, DCASE ground truth, durations and weak labels.

What a user of the field's tools holds for a test set, made from the split training evaluated,
so that `python -m wler_jax.predict --scores_dir` + `python -m wler_jax.evaluate` can be checked
against the workdir's results.json (tests/test_scores_eval.py; the same check on a real run):

    python -m wler_jax.evaluate.split_export --workdir=W --split=test --output=DIR
    python -m wler_jax.predict --workdir=W DIR/audio --output=DIR/predictions.json \
        --scores_dir=DIR/scores --threshold=0.5
    python -m wler_jax.evaluate --scores_dir=DIR/scores --ground_truth=DIR/events.tsv \
        --durations=DIR/durations.tsv --weak_labels=DIR/labels.csv \
        --clip_scores=DIR/predictions.json --output=DIR/metrics.json

Files are named `<index>_<id>.wav` (index in the split, zero-padded), so the tools' sorted order
is the split's order (the bootstrap interval of mAP resamples in that order).
"""
from __future__ import annotations

import csv
import os
import re

import ml_collections
import numpy as np
import soundfile as sf

from wler_jax import checkpoints, errors
from wler_jax.data import splits
from wler_jax.geometry import SAMPLE_RATE


def export_split(workdir: str, split: str, out_dir: str) -> dict:
    """Write `out_dir/{audio/, events.tsv, durations.tsv, labels.csv}` for one split of the
    workdir's dataset (read again from its data directory). Returns {"files": N, ...paths}."""
    run = checkpoints.read_run_file(os.path.abspath(workdir))
    if run is None:
        raise errors.NotAWorkdirError(f"{workdir}: no run.json; not a wler_jax workdir")
    config = ml_collections.ConfigDict(run["config"])
    class_names = list(run["class_names"])
    sources, _, _ = splits.load(config)
    if split not in sources:
        raise errors.DataError(f"the workdir's dataset has no {split!r} split ({sorted(sources)})")
    source = sources[split]
    audio_dir = os.path.join(out_dir, "audio")
    os.makedirs(audio_dir, exist_ok=True)
    events_rows, duration_rows, label_rows = [], [], []
    for i in range(len(source)):
        ex = source[i]
        rid = ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])
        name = f"{i:05d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', rid)}.wav"
        audio = np.asarray(ex["audio"])
        sf.write(os.path.join(audio_dir, name), audio, SAMPLE_RATE,
                 subtype="PCM_16" if audio.dtype == np.int16 else "FLOAT")
        duration_rows.append((name, repr(len(audio) / SAMPLE_RATE)))
        label_rows.append((name, ";".join(class_names[int(c)] for c in ex["labels"])))
        events = ex.get("events") or {"label": []}
        if not len(events["label"]):
            events_rows.append((name, "", "", ""))
        for lab, on, off in zip(events["label"], events.get("onset", []),
                                events.get("offset", [])):
            events_rows.append((name, repr(float(on)), repr(float(off)),
                                class_names[int(lab)]))
    paths = {k: os.path.join(out_dir, f) for k, f in (
        ("events", "events.tsv"), ("durations", "durations.tsv"), ("labels", "labels.csv"))}
    _write(paths["events"], ("filename", "onset", "offset", "event_label"), events_rows, "\t")
    _write(paths["durations"], ("filename", "duration"), duration_rows, "\t")
    _write(paths["labels"], ("filename", "labels"), label_rows, ",")
    return {"files": len(source), "audio": audio_dir, **paths}


def _write(path: str, header, rows, delimiter: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "A training workdir.")
    flags.DEFINE_string("split", "test", "The split to export.")
    flags.DEFINE_string("output", None, "Folder to write into.")
    flags.mark_flags_as_required(["workdir", "output"])

    def main(argv):
        with errors.report_user_errors():
            out = export_split(flags.FLAGS.workdir, flags.FLAGS.split, flags.FLAGS.output)
        print(f"{out['files']} file(s) of {flags.FLAGS.split} -> {flags.FLAGS.output}")

    app.run(main)
