"""Orbax checkpoints of a workdir: `latest` (full train state, to resume) and `best` (params).

Two managers, because with a metric-ordered `max_to_keep` orbax may delete the newest step
(STACK_NOTES): `WORKDIR/checkpoints/latest` keeps the last two train states plus a JSON record
of where training stands (epoch, batch, history); `WORKDIR/checkpoints/best` keeps the
parameters of the epoch with the best validation mAP. Orbax writes each step to a temporary
directory and renames it when complete, so a kill mid-save never leaves a half-written
checkpoint behind.

Checkpoints that cannot be lost (docs/reliability.md):
  * `latest` keeps the previous step too: when the newest cannot be read (corrupted on disk),
    `restore_latest` warns, moves it to `checkpoints/unreadable/` and resumes from the one
    before; when none can be read it stops with one line instead of starting over.
  * A save that cannot be written (full disk, quota, read-only or unwritable workdir) stops
    the run with one line (`CheckpointWriteError`) before the save when the free space is
    already short of the last checkpoint's size, else where orbax reports the failure; the
    half-written step stays a temporary directory, so the good checkpoint before it is kept.
  * `restore_best` of a workdir that is training retries when the step it listed was replaced
    meanwhile (predict and embed read `best` while a run writes it).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

from wler_jax import errors

RUN_FILE = "run.json"  # resolved config + class names: what a workdir was made with
LATEST_KEPT = 2  # the newest train state and the one before it (the fallback)
UNREADABLE_DIR = "unreadable"  # checkpoints/unreadable/<manager>-<step>: set aside, not deleted
TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix of a step being written
FREE_SPACE_MARGIN = 1.2  # a save needs this times the last checkpoint's size free


class CheckpointWriteError(errors.WorkdirWriteError):
    """A checkpoint cannot be written (no space, no permission, a read-only file system)."""


class CheckpointReadError(errors.UserError, ValueError):
    """No checkpoint of a workdir's `latest` can be read."""


class _Manager(ocp.CheckpointManager):
    """Orbax's manager without its own calls to JAX's preemption sync point.

    Orbax asks `reached_preemption(step)` at every save and, from its background thread, at
    every finalisation, with checkpoint steps; JAX's sync manager takes the last number it was
    given as the process's position, so those calls would move the agreed stopping point off
    the numbers the training loop counts (`training.preemption.Watch`, the only caller)."""

    def reached_preemption(self, step: int) -> bool:
        return False


def _manager(path: str, items: tuple[str, ...], keep: int, read_only: bool
             ) -> ocp.CheckpointManager:
    # Each manager its own barrier names: at an epoch end `latest` and `best` save the same step
    # at once, and on several processes their barriers ("_async_write_complete.<step>", ...)
    # would otherwise collide ("Barrier ... is already ongoing"; seen under load).
    prefix = os.path.basename(path)
    return _Manager(
        path, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=not read_only, read_only=read_only,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix=prefix)), item_names=items)


def os_error_of(e: BaseException) -> str | None:
    """The operating system's reason ("No space left on device") when `e`, or an exception it
    was raised from, is a failed file operation; None for any other error (a bug)."""
    while e is not None:
        if isinstance(e, OSError) and e.errno is not None:
            return os.strerror(e.errno)
        found = re.search(r"os_error_code='?(\d+)", str(e))  # tensorstore's ValueError text
        if found:
            return os.strerror(int(found.group(1)))
        e = e.__cause__ or e.__context__
    return None


def _dir_bytes(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class Checkpointer:
    """The `latest` and `best` checkpoints of one workdir (`read_only`: for readers such as
    predict and embed, which never create or clean up anything)."""

    def __init__(self, workdir: str, *, read_only: bool = False):
        self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.latest = _manager(os.path.join(self.root, "latest"), ("state", "meta"),
                               LATEST_KEPT, read_only)
        self.best = _manager(os.path.join(self.root, "best"), ("params", "meta"), 1, read_only)
        self._needed = 0  # bytes of the last saved train state: what the next save needs

    # -- writing ---------------------------------------------------------------------------
    def save_latest(self, step: int, state: Any, meta: dict) -> None:
        if step in self.latest.all_steps():
            # Resumed from a stop after an epoch's last step: that step is saved again with the
            # epoch's validation (orbax never overwrites; the step before it is still kept).
            self.latest.delete(step)
        self._write("latest", step, lambda: self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True))

    def save_best(self, step: int, params: Any, meta: dict) -> None:
        self._write("best", step, lambda: self.best.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)), force=True))

    def wait(self) -> None:
        self._write("latest", None, self.latest.wait_until_finished)
        self._write("best", None, self.best.wait_until_finished)

    def close(self) -> None:
        self._write("latest", None, self.latest.close)
        self._write("best", None, self.best.close)

    def _write(self, which: str, step: int | None, save: Callable[[], Any]) -> None:
        """Runs a save (or a wait for one): a failed write becomes one `CheckpointWriteError`
        line; the free space is checked first against the last train state's size."""
        if step is not None and self._needed:
            free = shutil.disk_usage(self.root).free
            if free < FREE_SPACE_MARGIN * self._needed:
                raise CheckpointWriteError(
                    f"{self.root} has {free / 1e6:.1f} MB free, less than the "
                    f"{FREE_SPACE_MARGIN * self._needed / 1e6:.1f} MB the {which} checkpoint of "
                    f"step {step} needs; stopped before writing it (the previous checkpoint is "
                    "intact): free some space and run the same command again to resume")
        try:
            save()
        except Exception as e:  # noqa: BLE001  only file-system failures are turned into a line
            reason = os_error_of(e)
            if reason is None:
                raise
            what = f"the {which} checkpoint" + ("" if step is None else f" of step {step}")
            raise CheckpointWriteError(
                f"cannot write {what} under {self.root}: {reason}; the checkpoint "
                "before it is intact (the failed one stays a temporary directory): free space "
                "or fix the permissions and run the same command again to resume") from e
        if which == "latest" and step is not None and not self._needed:
            self.latest.wait_until_finished()  # once: learn the size of a train state
            newest = self.latest.latest_step()
            if newest is not None:
                self._needed = _dir_bytes(os.path.join(self.root, "latest", str(newest)))

    # -- reading ---------------------------------------------------------------------------
    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the newest readable `latest` step, shaped and sharded like
        `abstract_state`; None when the workdir has none yet (a fresh run).

        An unreadable step is moved to `checkpoints/unreadable/` with a warning and the one
        before it is tried. Raises CheckpointReadError when steps exist and none can be read
        (never starts over silently)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        steps = sorted(self.latest.all_steps(), reverse=True)
        if not steps:
            self._warn_unfinished()
            return None
        failures = []
        for step in steps:
            try:
                out = self.latest.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                meta = out.meta
                if not isinstance(meta, dict) or not {"epoch", "batch"} <= set(meta):
                    raise ValueError(f"its loop position is unreadable ({meta!r:.80})")
            except Exception as e:  # noqa: BLE001  any failure to read is a corrupt step
                reason = " ".join(str(e).split())[:300] or type(e).__name__
                failures.append(f"step {step}: {reason}")
                logging.warning("the latest checkpoint of step %d under %s cannot be read (%s); "
                                "it is moved to %s and the step before it is tried", step,
                                self.latest.directory, reason,
                                os.path.join(self.root, UNREADABLE_DIR))
                self._set_aside("latest", step)
                continue
            if failures:
                logging.warning("resuming from the older checkpoint of step %d (%d newer one(s) "
                                "could not be read)", step, len(failures))
            return out.state, meta
        raise CheckpointReadError(
            f"no checkpoint under {self.latest.directory} can be read ({'; '.join(failures)}); "
            f"they were moved to {os.path.join(self.root, UNREADABLE_DIR)}: run again to start "
            "this workdir from the beginning, or use another --workdir")

    def _warn_unfinished(self) -> None:
        path = os.fspath(self.latest.directory)
        unfinished = [n for n in (os.listdir(path) if os.path.isdir(path) else ())
                      if TMP_MARK in n]
        if unfinished:
            logging.warning("%s holds only unfinished saves (%s: the run was stopped during its "
                            "first save); starting from the beginning", path,
                            ", ".join(sorted(unfinished)))

    def _set_aside(self, which: str, step: int) -> None:
        """Moves an unreadable step out of its manager's directory (kept for inspection)."""
        manager = self.latest if which == "latest" else self.best
        if jax.process_index() == 0:
            target = os.path.join(self.root, UNREADABLE_DIR, f"{which}-{step}-{int(time.time())}")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(os.fspath(manager.directory), str(step)), target)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"wler_jax: set aside {which} {step}")
        manager.reload()

    def read_latest(self) -> dict | None:
        """The latest train state as saved (nested dicts of arrays: step, params, opt_state,
        ema_params when kept), without an abstract state: for readers outside training."""
        step = self.latest.latest_step()
        if step is None:
            return None
        return self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]

    def restore_best(self, attempts: int = 3) -> tuple[Any, dict]:
        """(params, meta) of the best checkpoint, as host-loadable arrays.

        A run training in this workdir may replace the step between listing and reading it
        (orbax keeps one best step): then the listing is read again, up to `attempts` times."""
        for attempt in range(attempts):
            step = self.best.latest_step()
            if step is None:
                raise FileNotFoundError(f"no best checkpoint under {self.best.directory}")
            try:
                out = self.best.restore(step, args=ocp.args.Composite(
                    params=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
                return out.params, out.meta
            except Exception:  # noqa: BLE001
                self.best.reload()
                if attempt + 1 == attempts or self.best.latest_step() == step:
                    raise  # not replaced meanwhile: a real failure
                logging.info("best checkpoint step %d was replaced while being read; reading "
                             "step %s", step, self.best.latest_step())
        raise AssertionError("unreachable")


def write_run_file(workdir: str, run: dict) -> None:
    """Record the resolved config and class names (atomically: write then rename)."""
    if jax.process_index() != 0:  # several processes: process 0 writes it for all
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, RUN_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(run, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def read_run_file(workdir: str) -> dict | None:
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
