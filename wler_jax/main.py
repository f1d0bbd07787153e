"""Train and evaluate: `python -m wler_jax.main --config=configs/wler.py [--workdir=DIR]`.

`--config=configs/slat.py` trains the SLAT baseline; `configs/X.py:VARIANT[,VARIANT]` picks a
dataset (synthetic, urbansound, urbansound8k, esc50, audioset, folder) and a size (smoke, cpu,
full); `--config.a.b=v` overrides any field. The entry point: the only place its flags are
defined. User errors (bad config, missing data, an incompatible workdir) end in one line on
stderr and exit code 2 (`wler_jax.errors`); anything else keeps its traceback. SIGTERM or
SIGINT during training: the current step finishes, a checkpoint is written, one line says how
to resume, exit code 75 (`wler_jax.training.preemption`).

Several hosts: run one process per host with `--coordinator_address=HOST:PORT
--num_processes=N --process_id=K` (or no flags where JAX detects the cluster: Cloud TPU VM,
SLURM, Open MPI); see `wler_jax.training.distributed` and the README. One host runs as before.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from wler_jax import errors
from wler_jax.training import config_check

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training config file (configs/wler.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and "
                    "results.json (default: workdirs/<method>_<dataset>).")
flags.DEFINE_string("coordinator_address", None, "Several hosts: HOST:PORT of process 0's "
                    "coordinator, the same on every process (jax.distributed.initialize).")
flags.DEFINE_integer("num_processes", None, "Several hosts: processes in the job.")
flags.DEFINE_integer("process_id", None, "Several hosts: this process, 0 .. num_processes - 1.")
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
        from wler_jax.training import (
            distributed,  # deferred: jax start-up only after the flags are valid
        )

        distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
        distributed.quiet_other_processes()
        _train(config)


def _train(config) -> None:
    workdir = FLAGS.workdir or os.path.join("workdirs", f"{config.method}_{config.data.name}")
    from wler_jax.training import distributed

    if not FLAGS.workdir and distributed.is_main():
        logging.info("no --workdir given: using %s", os.path.abspath(workdir))
        print(f"workdir: {os.path.abspath(workdir)}", flush=True)
    from wler_jax.training import (  # deferred: jax start-up only after the flags are valid
        preemption,
        train,
    )

    try:
        train.train_and_evaluate(config, workdir)
    except preemption.Preempted as e:  # SIGTERM/SIGINT: checkpoint written, say how to resume
        if distributed.is_main():
            sys.stderr.write(f"{e}; resume with the same command: "
                             f"{preemption.resume_command()}\n")
            sys.stderr.flush()
        raise SystemExit(preemption.EXIT_PREEMPTED) from None


def run() -> None:
    app.run(main, flags_parser=config_check.flags_parser)


if __name__ == "__main__":
    run()
