"""Train and evaluate: `python -m wler_jax.main --config=configs/wler.py [--workdir=DIR]`.

`--config=configs/slat.py` trains the SLAT baseline; `configs/X.py:VARIANT[,VARIANT]` picks a
dataset (synthetic, urbansound, urbansound8k, esc50, audioset, folder) and a size (smoke, cpu,
full); `--config.a.b=v` overrides any field. The entry point: the only place its flags are
defined. User errors (bad config, missing data, an incompatible workdir) end in one line on
stderr and exit code 2 (`wler_jax.errors`); anything else keeps its traceback.
"""
from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from wler_jax import config_check, errors

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/wler.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and "
                    "results.json (default: workdirs/<method>_<dataset>).")
flags.mark_flags_as_required(["config"])


class _QuietLibraries:
    """Drops INFO lines of orbax (several per checkpoint) from the absl log; warnings stay."""

    def filter(self, record) -> bool:
        return record.levelno >= 30 or "orbax" not in record.pathname


def main(argv):
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if len(argv) > 1:
        errors.fail(f"unexpected arguments {argv[1:]}; give options as --config.a.b=v")
    config = FLAGS.config
    with errors.report_user_errors():
        config_check.validate(config)
        _train(config)


def _train(config) -> None:
    workdir = FLAGS.workdir or os.path.join("workdirs", f"{config.method}_{config.data.name}")
    if not FLAGS.workdir:
        logging.info("no --workdir given: using %s", os.path.abspath(workdir))
        print(f"workdir: {os.path.abspath(workdir)}", flush=True)
    from wler_jax import train  # deferred: jax start-up only after the flags are valid

    train.train_and_evaluate(config, workdir)


def run() -> None:
    app.run(main, flags_parser=config_check.flags_parser)


if __name__ == "__main__":
    run()
