r"""`python -m wler_jax.evaluate --scores_dir=DIR --ground_truth=events.tsv --output=metrics.json`.

Scores the per-file score tables of `python -m wler_jax.predict --scores_dir=DIR` (or any
sed_scores_eval score folder) against true event times: PSDS1, PSDS2, segment F1 and collar-based
event F1 at the operating thresholds, clip-level mAP (with a bootstrap interval), ROC AUC, d',
lwlrap and clip F1 (`wler_jax.evaluate.scoring` has the formats and defaults). Prints a table
and writes the figures as JSON. Bad inputs end in one line on stderr and exit code 2.

    python -m wler_jax.evaluate --scores_dir=scores --ground_truth=events.tsv \
        [--durations=durations.tsv] [--weak_labels=labels.csv] [--clip_scores=predictions.json] \
        [--threshold=0.5 | --thresholds=WORKDIR/thresholds.json] --output=metrics.json
"""
from __future__ import annotations

import json
import os
import sys
from typing import Sequence

from absl import app, flags

from wler_jax import errors
from wler_jax.evaluate import format_table, scoring

# Its own flag set: the predict CLI defines --threshold and --output too, and a process (a test,
# a notebook) may import both entry points; absl's global flags are parsed for the rest.
FLAGS = flags.FlagValues()
flags.DEFINE_string("scores_dir", None, "Folder of <id>.tsv score tables (onset, offset, "
                    "<class...>), e.g. from python -m wler_jax.predict --scores_dir.",
                    flag_values=FLAGS)
flags.DEFINE_string("ground_truth", None, "DCASE event TSV: filename, onset, offset, event_label "
                    "(an empty label declares a file without events).", flag_values=FLAGS)
flags.DEFINE_string("durations", None, "TSV filename, duration (s); default: each score table's "
                    "end.", flag_values=FLAGS)
flags.DEFINE_string("weak_labels", None, "CSV/TSV filename (or path), labels (';' or ','-"
                    "separated) for the clip-level metrics; default: the classes of each file's "
                    "true events.",
                    flag_values=FLAGS)
flags.DEFINE_string("clip_scores", None, "predict's JSON output, for the model's own clip "
                    "scores; default: each class's highest row of the score table.",
                    flag_values=FLAGS)
flags.DEFINE_float("threshold", None, "Operating threshold of the F1 scores for every class "
                   "(default 0.5).", flag_values=FLAGS)
flags.DEFINE_string("thresholds", None, "Per-class operating thresholds instead: a workdir's "
                    "thresholds.json (or a JSON object {class: threshold}).", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Write the metrics as JSON here.", flag_values=FLAGS)


def _thresholds():
    if FLAGS.thresholds and FLAGS.threshold is not None:
        errors.fail("give --threshold or --thresholds, not both")
    if not FLAGS.thresholds:
        value = 0.5 if FLAGS.threshold is None else FLAGS.threshold
        if not 0.0 <= value <= 1.0:
            errors.fail(f"--threshold must be in [0, 1], got {value}")
        return value
    try:
        with open(FLAGS.thresholds) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        errors.fail(f"--thresholds {FLAGS.thresholds} cannot be read as JSON ({e})")
    data = data.get("thresholds", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        errors.fail(f"--thresholds {FLAGS.thresholds} must hold {{class: threshold}} (a "
                    "workdir's thresholds.json)")
    return {str(k): float(v) for k, v in data.items()}


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        errors.fail(f"unexpected arguments {argv[1:]}; everything is a --flag")
    for name in ("scores_dir", "ground_truth"):
        if not FLAGS[name].value:
            errors.fail(f"--{name} is required")
    thresholds = _thresholds()
    with errors.report_user_errors():
        tables, class_names = scoring.read_score_tables(FLAGS.scores_dir)
        result = scoring.evaluate_tables(
            tables, class_names, scoring.read_ground_truth(FLAGS.ground_truth),
            durations=scoring.read_durations(FLAGS.durations) if FLAGS.durations else None,
            weak_labels=(scoring.read_weak_labels(FLAGS.weak_labels) if FLAGS.weak_labels
                         else None),
            clip_scores=(scoring.read_clip_scores(FLAGS.clip_scores, class_names)
                         if FLAGS.clip_scores else None),
            thresholds=thresholds)
    print(format_table({"score tables": result}, class_names,
                       title=f"{result['files']} file(s) in {FLAGS.scores_dir}"), flush=True)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w") as f:
            json.dump({"scores_dir": os.path.abspath(FLAGS.scores_dir),
                       "ground_truth": os.path.abspath(FLAGS.ground_truth),
                       "class_names": class_names, **result}, f, indent=1)
        sys.stderr.write(f"wrote {FLAGS.output}\n")
    return 0


def _parse(argv: Sequence[str]) -> list[str]:
    """This CLI's flags, then absl's own (e.g. --verbosity) from what is left."""
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
        print(__doc__ + "\nflags:\n" + FLAGS.get_help())
        raise SystemExit(0)
    FLAGS.unparse_flags()
    rest = FLAGS(list(argv), known_only=True)
    return flags.FLAGS(rest, known_only=True)


def cli(argv: Sequence[str]) -> int:
    """Run the command line in this process (tests): argv[0] is the program name."""
    return main(_parse(argv))


def run() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
