"""`python -m wler_jax.predict --workdir=DIR FILES_OR_FOLDERS...`: the command line.

The entry point: the only place the predict flags are defined (see `wler_jax.predict` for the
outputs). User errors (not a workdir, no audio files, bad flags) end in one line on stderr and
exit code 2 (`wler_jax.errors`); exit code 1 when some files failed, else 0.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app, flags, logging
from tqdm import tqdm

from wler_jax import errors
from wler_jax.audio import AudioError
from wler_jax.predict import DEFAULT_CHUNK_FRAMES, open_for_files, predict_files
from wler_jax.serving import reports
from wler_jax.serving.stream_input import RAW_FORMATS
from wler_jax.serving.chunked import Prediction

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir to load the best checkpoint from; its "
                    "MODEL_CARD.md says what the model was trained on, how well it did and its "
                    "known limits.")
flags.DEFINE_string("output", "predictions.json", "Output file: .json or .csv (see module doc).")
flags.DEFINE_float("threshold", None, "Decision threshold for merged segments and events "
                   "(probability strictly above it counts as active) for every class. Default: "
                   "the per-class thresholds fitted on the validation split (the workdir's "
                   "thresholds.json; see its MODEL_CARD.md), or 0.5 for a workdir without.")
flags.DEFINE_string("scores_dir", None, "Also write one sed_scores_eval score table per file "
                    "here (DIR/<id>.tsv: onset, offset, one column per class; unthresholded; "
                    "python -m wler_jax.evaluate scores them).")
flags.DEFINE_string("events_tsv", None, "Also write a DCASE event list (TSV) here.")
flags.DEFINE_integer("median_filter", 1, "Median filter length in 32-frame cells (~0.37 s) "
                     "applied to the time line before --events_tsv detection (1 = off).")
flags.DEFINE_enum("grid_reduce", "max", ["max", "mean"], "How the four overlapping segments "
                  "covering a 32-frame cell combine into its score (--events_tsv).")
flags.DEFINE_string("plot", None, "Write a PNG of segment scores over time per file here.")
flags.DEFINE_integer("chunk_frames", DEFAULT_CHUNK_FRAMES, "Frames per chunk (multiple of 32, "
                     ">= 256); bounds memory whatever the recording length.")
flags.DEFINE_integer("batch_size", 0, "Chunks per device call (0: 1 on CPU, 8 on accelerators).")
flags.DEFINE_bool("progress", True, "Progress bar over files on stderr.")
flags.DEFINE_string("stream", None, "Tag one live stream instead of files: a path or '-' "
                    "(standard input) carrying WAV or raw PCM (pipe from sox, arecord, ffmpeg); "
                    "prints one JSON line per segment as it completes, event lines and an end "
                    "line (wler_jax.serving.stream).")
flags.DEFINE_enum("stream_format", None, list(RAW_FORMATS), "--stream: the raw PCM encoding "
                  "of a stream without a WAV header.")
flags.DEFINE_integer("stream_rate", 44_100, "--stream: raw PCM sample rate (Hz).")
flags.DEFINE_integer("stream_channels", 1, "--stream: raw PCM channels (averaged).")
flags.DEFINE_string("compile_cache_dir", None, "JAX persistent compilation cache (a rerun loads "
                    "the compiled programs); default ~/.cache/wler_jax/jax_cache as in training, "
                    "'' turns it off.")


class _QuietLibraries:
    """Drops INFO lines of orbax (a dozen per restore) and jax's backend probing from the log."""

    def filter(self, record) -> bool:
        return record.levelno >= 30 or not any(
            s in record.pathname for s in ("orbax", "xla_bridge"))


def main(argv: Sequence[str]) -> int:
    inputs = list(argv[1:])
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())
    if not FLAGS.workdir:
        errors.fail("--workdir is required; give the workdir of a training run")
    if FLAGS.stream is not None:
        from wler_jax.predict import stream_cli  # deferred: only --stream needs it

        with errors.report_user_errors():
            return stream_cli.run(FLAGS.workdir, FLAGS.stream, inputs, threshold=FLAGS.threshold,
                                  raw=(FLAGS.stream_format, FLAGS.stream_rate,
                                       FLAGS.stream_channels),
                                  compile_cache_dir=FLAGS.compile_cache_dir)
    if not inputs:
        errors.fail("no audio files or folders given; name them after the flags")
    ext = os.path.splitext(FLAGS.output)[1].lower()
    if ext not in (".json", ".csv"):
        errors.fail(f"--output must end in .json or .csv, got {FLAGS.output}")
    if (FLAGS.threshold is not None and not 0.0 <= FLAGS.threshold <= 1.0) \
            or FLAGS.median_filter < 1:
        errors.fail("--threshold must be in [0, 1] and --median_filter >= 1")
    with errors.report_user_errors():
        return _predict(inputs, ext)


def _predict(inputs: list[str], ext: str) -> int:
    model, files, batch_size = open_for_files(FLAGS.workdir, inputs,
                                              compile_cache_dir=FLAGS.compile_cache_dir,
                                              batch_size=FLAGS.batch_size)
    predictions: dict[int, Prediction] = {}
    unreadable: dict[int, AudioError] = {}
    with tqdm(total=len(files), unit="file", file=sys.stderr, disable=not FLAGS.progress) as bar:
        for i, pred, err in predict_files(model, [p for p, _ in files],
                                          chunk_frames=FLAGS.chunk_frames, batch_size=batch_size,
                                          on_read=lambda: bar.update(1)):
            if err is None:
                predictions[i] = pred
            else:
                unreadable[i] = err
    names = model.class_names
    threshold = model.decision_thresholds(FLAGS.threshold)  # a float, or {class: float}
    records = [reports.prediction_record(files[i][0], predictions[i], names, threshold)
               for i in sorted(predictions)]
    failed = [{"file": files[i][0], "reason": unreadable[i].reason} for i in sorted(unreadable)]
    if ext == ".csv":
        reports.write_csv(FLAGS.output, records, failed)
    else:
        reports.write_json(FLAGS.output, records, failed, workdir=model.workdir,
                           class_names=list(names), threshold=threshold)
    if FLAGS.events_tsv:
        reports.write_events_tsv(FLAGS.events_tsv, [(files[i][1], reports.detect_file_events(
            predictions[i], names, threshold=threshold, median_filter=FLAGS.median_filter,
            reduce=FLAGS.grid_reduce)) for i in sorted(predictions)])
    if FLAGS.scores_dir:
        _write_score_tables(FLAGS.scores_dir, [(files[i][1], predictions[i])
                                               for i in sorted(predictions)], names)
    if FLAGS.plot:
        os.makedirs(FLAGS.plot, exist_ok=True)
        for i in sorted(predictions):
            name = files[i][1].replace(os.sep, "__")
            reports.plot_prediction(os.path.join(FLAGS.plot, name + ".png"), files[i][0],
                                    predictions[i], names,
                                    threshold if isinstance(threshold, float) else None)
    logging.info("scored %d file(s), %d failed; wrote %s", len(records), len(failed),
                 FLAGS.output)
    sys.stderr.write(f"scored {len(records)} file(s) -> {FLAGS.output}\n")
    if failed:
        sys.stderr.write(f"{len(failed)} file(s) failed:\n" + "".join(
            f"  {f['file']}: {f['reason']}\n" for f in failed))
        return 1
    return 0


def _write_score_tables(scores_dir: str, named: list[tuple[str, Prediction]],
                        names: Sequence[str]) -> None:
    """`--scores_dir`: DIR/<id>.tsv per file; two files with one id are refused in one line
    (before any table is written)."""
    ids: dict[str, str] = {}
    for name, _ in named:
        rid = reports.score_table_id(name)
        if rid in ids:
            raise errors.DataError(f"{ids[rid]} and {name} would both be written as {rid}.tsv "
                                   "in --scores_dir; rename one of them")
        ids[rid] = name
    os.makedirs(scores_dir, exist_ok=True)
    for name, prediction in named:
        onsets, offsets, scores = reports.score_table(prediction, FLAGS.grid_reduce)
        reports.write_score_table(os.path.join(scores_dir, reports.score_table_id(name) + ".tsv"),
                                  onsets, offsets, scores, names)


def cli(argv: Sequence[str]) -> int:
    """Run the command line in this process (tests, notebooks): argv[0] is the program name."""
    FLAGS.unparse_flags()
    return main(FLAGS(list(argv)))


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
