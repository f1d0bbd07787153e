"""Stopping a run cleanly on SIGTERM or SIGINT: the step finishes, a checkpoint is written.

Preemptible TPU VMs and spot GPUs send SIGTERM some seconds before they go; Ctrl-C sends
SIGINT. `Watch` is active around the training loop (`train.train_and_evaluate`): on either
signal the loop finishes the step it is in, writes the latest checkpoint with its position in
the epoch, and raises `Preempted`; `wler_jax.main` logs one line saying how to resume and
exits with `EXIT_PREEMPTED`, which a scheduler or script tells from success (0), a failure
(1) and a user error (2). A second Ctrl-C stops at once (KeyboardInterrupt). On one process,
outside the loop (set-up, the final evaluation) the signals keep their default meaning: nothing
is lost there that a restart does not redo from the checkpoints. With several processes JAX's
service holds SIGTERM for the whole run, so one outside the loop lets the run go on to its end.

Several processes must stop at the same step, or their collectives wait for each other for
ever. JAX's preemption service (`jax_enable_preemption_service`, on in
`distributed.initialize`) catches SIGTERM on whichever process gets it and tells all of them;
`multihost_utils.reached_preemption_sync_point(n)` then returns True on every process at the
same n, one past the largest n any of them had reached. Every process calls it at the same
points of the loop, counted by `Watch.should_stop`, so they agree on the step. SIGINT is
forwarded to the process as SIGTERM so that it goes the same way.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from typing import Any

import jax
from absl import logging

EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL: a temporary failure, run the same command again


class Preempted(Exception):
    """The run stopped on a signal after writing the latest checkpoint of `step`."""

    def __init__(self, signal_name: str, step: int, meta: dict):
        self.signal_name, self.step, self.meta = signal_name, step, meta
        super().__init__(f"stopped by {signal_name} at step {step} (epoch {meta['epoch'] + 1}, "
                         f"batch {meta['batch']}); the latest checkpoint holds that step")


def resume_command(argv: list[str] | None = None) -> str:
    """The command line that resumes this run: `python -m wler_jax.main` with the same flags."""
    args = list(sys.argv if argv is None else argv)[1:]
    return " ".join(["python", "-m", "wler_jax.main", *map(shlex.quote, args)])


class Watch:
    """Notes SIGTERM/SIGINT while the training loop runs (a context manager); the loop asks
    `should_stop()` after every step and after every epoch's checkpoint."""

    def __init__(self):
        self.multi = False
        self.signal_name: str | None = None
        self.checks = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "Watch":
        self.multi = jax.process_count() > 1
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only: nothing to watch
        if self.multi:  # SIGTERM is JAX's preemption service's; SIGINT joins it
            self._install(signal.SIGINT, self._forward)
        else:
            self._install(signal.SIGTERM, self._note)
            self._install(signal.SIGINT, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _install(self, signum: int, handler) -> None:
        self._previous[signum] = signal.signal(signum, handler)

    def _note(self, signum: int, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal_name = signal.Signals(signum).name
        logging.warning("%s received: finishing the current step and writing a checkpoint",
                        self.signal_name)

    def _forward(self, signum: int, frame) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = "SIGINT"
        logging.warning("SIGINT received: every process stops at the same step after "
                        "writing a checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)

    def should_stop(self) -> bool:
        """True when the loop should write a checkpoint and stop here (on every process at
        the same call)."""
        self.checks += 1
        if not self.multi:
            return self.signal_name is not None
        from jax.experimental import multihost_utils

        if multihost_utils.reached_preemption_sync_point(self.checks):
            self.signal_name = self.signal_name or "SIGTERM"
            return True
        return False
