"""`python -m wler_jax.serve --workdir=W [--port=8000]`: the entry point (flags; see
`wler_jax.serve` for the page and the endpoints). User errors end in one line on stderr and
exit code 2 (`wler_jax.errors`)."""
from __future__ import annotations

import sys
from typing import Sequence

from absl import app, flags, logging

from wler_jax import compile_cache, errors, predict

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir whose best checkpoint is served.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface; the "
                    "microphone needs the page opened from localhost or over https).")
flags.DEFINE_integer("port", 8000, "Port to listen on.")
flags.DEFINE_float("max_upload_mb", 64.0, "Largest upload accepted, in MB (HTTP 413 above).")
flags.DEFINE_float("max_seconds", 600.0, "Longest recording accepted, in seconds (HTTP 413 "
                   "above); every program a recording up to this long needs is compiled at start.")
flags.DEFINE_float("threshold", None, "Decision threshold for every class (default: the "
                   "workdir's fitted per-class thresholds, else 0.5), as predict's --threshold.")
flags.DEFINE_integer("workers", 2, "Uploads scored at once (threads); more wait their turn.")
flags.DEFINE_integer("max_pending", 32, "Uploads accepted at once, waiting included (HTTP 503 "
                     "above).")
flags.DEFINE_integer("chunk_frames", predict.DEFAULT_CHUNK_FRAMES, "Frames per chunk of the "
                     "chunked scorer (predict's --chunk_frames).")
flags.DEFINE_string("compile_cache_dir", None, "JAX persistent compilation cache (default as "
                    "predict's; '' turns it off): a restart loads the warm-up's programs.")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        errors.fail(f"unexpected arguments {' '.join(argv[1:])}; give only flags")
    if not FLAGS.workdir:
        errors.fail("--workdir is required; give the workdir of a training run")
    if FLAGS.threshold is not None and not 0.0 <= FLAGS.threshold <= 1.0:
        errors.fail("--threshold must be in [0, 1]")
    if FLAGS.max_upload_mb <= 0 or FLAGS.max_seconds <= 0 or FLAGS.workers < 1 \
            or FLAGS.max_pending < 1:
        errors.fail("--max_upload_mb, --max_seconds, --workers and --max_pending must be > 0")
    try:
        import uvicorn

        from wler_jax.serve import app as app_lib
        from wler_jax.serve import uploads
    except ImportError as e:
        errors.fail(f"python -m wler_jax.serve needs {e.name}: pip install -e '.[serve]'")
    with errors.report_user_errors():
        compile_cache.configure(compile_cache.default_cache_dir() if FLAGS.compile_cache_dir
                                is None else FLAGS.compile_cache_dir)
        model = predict.load_model(FLAGS.workdir)
    limits = uploads.Limits(int(FLAGS.max_upload_mb * (1 << 20)), FLAGS.max_seconds)
    scorer = uploads.UploadScorer(model, limits, threshold=FLAGS.threshold,
                                  chunk_frames=FLAGS.chunk_frames)
    sys.stderr.write(f"compiling for recordings up to {FLAGS.max_seconds:g} s...\n")
    compiled = scorer.warm_up()
    sys.stderr.write(f"{compiled} programs ready in {scorer.warmup_seconds:.1f} s; serving "
                     f"{model.workdir} on http://{FLAGS.host}:{FLAGS.port}/\n")
    web = app_lib.create_app(scorer, workers=FLAGS.workers, max_pending=FLAGS.max_pending)
    uvicorn.run(web, host=FLAGS.host, port=FLAGS.port, log_level="warning")


if __name__ == "__main__":
    logging.set_verbosity(logging.WARNING)
    app.run(main)
