"""`python -m wler_jax.embed --workdir=DIR FILES_OR_FOLDERS... --output=embeddings.npz`.

The entry point of embedding extraction (the library is `wler_jax.serving.embeddings`; this module
defines the flags). Files and folders are found as by `python -m wler_jax.predict` (folders
searched recursively for audio files), read block by block and embedded in exact chunks, so any
length fits in bounded memory.

Output, `.npz` (`numpy.load`; strings are unicode arrays, no pickle):
  files [N] paths; clip [N, D] float32 (the masked mean of the segment embeddings, scales
  averaged: `wler_jax.serving.embeddings`); clip_max [N, D]; duration [N] seconds; workdir; method;
  failed_files [F] and failed_reasons [F]. With `--segments` also: segments [M, D] (all files'
  segments, file after file), segment_file [M] (index into files), segment_start and
  segment_end [M] seconds (segment k spans frames [32k, 32k + 128), its end cut at the
  recording's end).
Output, `.csv`: one row per file, `file,duration,mean_0..mean_{D-1},max_0..max_{D-1}` (the
  failed files are listed on stderr only; `--segments` needs .npz).

Files that cannot be read are named at the end with their reason; the others are still written.
Exit code 1 when any file failed, 2 on a user error (one line), else 0.
"""
from __future__ import annotations

import csv
import os
import sys
from typing import Sequence

import numpy as np
from absl import app, flags, logging

from wler_jax import errors

# Its own FlagValues: `--workdir`, `--output`, ... are also flags of `python -m wler_jax.predict`
# and `wler_jax.main`, and tests / notebooks run several command lines in one process.
FLAGS = flags.FlagValues()
flags.DEFINE_string("workdir", None, "Training workdir to load the best checkpoint from.",
                    flag_values=FLAGS)
flags.DEFINE_string("output", "embeddings.npz", "Output file: .npz or .csv (see module doc).",
                    flag_values=FLAGS)
flags.DEFINE_bool("segments", False, "Also write per-segment embeddings with their times (.npz).",
                  flag_values=FLAGS)
flags.DEFINE_integer("chunk_frames", 2048, "Frames per chunk (multiple of 32, >= 256); bounds "
                     "memory whatever the recording length.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 0, "Chunks per device call (0: 1 on CPU, 8 on accelerators).",
                     flag_values=FLAGS)
flags.DEFINE_bool("progress", True, "Progress bar over files on stderr.", flag_values=FLAGS)
flags.DEFINE_string("compile_cache_dir", None, "JAX persistent compilation cache (default "
                    "~/.cache/wler_jax/jax_cache, as for training and predict; '' turns it off).",
                    flag_values=FLAGS)


def main(argv: Sequence[str]) -> int:
    inputs = list(argv[1:])
    if not FLAGS.workdir:
        errors.fail("--workdir is required; give the workdir of a training run")
    if not inputs:
        errors.fail("no audio files or folders given; name them after the flags")
    ext = os.path.splitext(FLAGS.output)[1].lower()
    if ext not in (".npz", ".csv"):
        errors.fail(f"--output must end in .npz or .csv, got {FLAGS.output}")
    if ext == ".csv" and FLAGS.segments:
        errors.fail("--segments needs an .npz --output (per-segment arrays)")
    with errors.report_user_errors():
        return _embed(inputs, ext)


def _embed(inputs: list[str], ext: str) -> int:
    # deferred: JAX and the model code load only once the flags are valid (fast one-line errors)
    from tqdm import tqdm

    from wler_jax.predict import open_for_files
    from wler_jax.serving import embeddings

    model, files, batch_size = open_for_files(FLAGS.workdir, inputs,
                                              compile_cache_dir=FLAGS.compile_cache_dir,
                                              batch_size=FLAGS.batch_size)
    paths = [p for p, _ in files]
    done, failed = {}, {}
    with tqdm(total=len(paths), unit="file", file=sys.stderr, disable=not FLAGS.progress) as bar:
        for i, emb, err in embeddings.embed_files(model, paths, chunk_frames=FLAGS.chunk_frames,
                                                  batch_size=batch_size,
                                                  on_read=lambda: bar.update(1)):
            if err is None:
                done[i] = emb
            else:
                failed[i] = err.reason
    order = sorted(done)
    width = model.spec.embedding_width
    clip = np.stack([done[i].clip_mean for i in order]) if order else np.zeros((0, width))
    clip_max = np.stack([done[i].clip_max for i in order]) if order else np.zeros((0, width))
    out = {"files": np.array([paths[i] for i in order], dtype=str),
           "clip": clip.astype(np.float32), "clip_max": clip_max.astype(np.float32),
           "duration": np.array([done[i].duration for i in order], np.float64),
           "workdir": np.array(model.workdir), "method": np.array(model.spec.method),
           "failed_files": np.array([paths[i] for i in sorted(failed)], dtype=str),
           "failed_reasons": np.array([failed[i] for i in sorted(failed)], dtype=str)}
    if FLAGS.segments:
        segs = [done[i].segments for i in order]
        times = [done[i].segment_times() for i in order]
        out.update(
            segments=(np.concatenate(segs) if segs else np.zeros((0, width))).astype(np.float32),
            segment_file=np.concatenate([np.full(len(s), k, np.int32)
                                         for k, s in enumerate(segs)] or [np.zeros(0, np.int32)]),
            segment_start=np.concatenate([t[0] for t in times] or [np.zeros(0)]),
            segment_end=np.concatenate([t[1] for t in times] or [np.zeros(0)]))
    _write(FLAGS.output, out, ext)
    logging.info("embedded %d file(s) (D = %d), %d failed; wrote %s", len(order), width,
                 len(failed), FLAGS.output)
    sys.stderr.write(f"embedded {len(order)} file(s) -> {FLAGS.output}\n")
    if failed:
        sys.stderr.write(f"{len(failed)} file(s) failed:\n" + "".join(
            f"  {paths[i]}: {failed[i]}\n" for i in sorted(failed)))
        return 1
    return 0


def _write(path: str, out: dict, ext: str) -> None:
    """Write atomically (a temporary file renamed), so a failed run never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp" + ext
    if ext == ".npz":
        with open(tmp, "wb") as f:
            np.savez(f, **out)
    else:
        d = out["clip"].shape[1]
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "duration"] + [f"mean_{k}" for k in range(d)]
                       + [f"max_{k}" for k in range(d)])
            for row in range(len(out["files"])):
                w.writerow([out["files"][row], f"{out['duration'][row]:.6f}"]
                           + [f"{v:.7g}" for v in out["clip"][row]]
                           + [f"{v:.7g}" for v in out["clip_max"][row]])
    os.replace(tmp, path)


def cli(argv: Sequence[str]) -> int:
    """Run the command line in this process (tests, notebooks): argv[0] is the program name."""
    FLAGS.unparse_flags()
    return main(FLAGS(list(argv)))


def _parse(argv: list[str]) -> list[str]:
    """This command's flags, then absl's own (logging) on what is left."""
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        sys.stdout.write(f"{__doc__}\nflags:\n{FLAGS.get_help()}\n")
        raise SystemExit(0)
    try:
        return flags.FLAGS(FLAGS(argv, known_only=True))
    except flags.Error as e:
        errors.fail(f"{e}; see python -m wler_jax.embed --help")


def run() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
