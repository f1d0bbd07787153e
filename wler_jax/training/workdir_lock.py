"""One run per workdir: an exclusive lock on `WORKDIR/run.lock` while a run trains.

Two runs on one workdir would write the same checkpoints, each resuming from the other's. The
lock is `fcntl.flock`, as the dataset builds' (`registry._build_lock`): the kernel drops it
when its process ends, however it ends (kill -9 included), so a lock left by a killed run is
never in the way. The file names its holder (pid, host, start), so a second run is refused in
one line naming the first, and a run that finds a holder recorded but no lock held says it is
taking over from a run that ended without releasing it. On a shared file system (NFS) flock is
a byte-range lock the server holds for the client, released when the client dies or its
lease expires. Only process 0 of a job of several takes it. Readers (predict, embed) take no
lock: they read the `best` checkpoint, which orbax replaces atomically.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from absl import logging

from wler_jax import errors

LOCK_FILE = "run.lock"


class WorkdirBusyError(errors.UserError, RuntimeError):
    """Another run is training in this workdir."""


def _describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {started}"


class WorkdirLock:
    """`with WorkdirLock(workdir):` holds the workdir's run lock (raises WorkdirBusyError when
    another process holds it)."""

    def __init__(self, workdir: str):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
        self._fd: int | None = None

    def __enter__(self) -> "WorkdirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)
            os.close(fd)
            raise WorkdirBusyError(
                f"workdir {os.path.dirname(self.path)} is in use by another run "
                f"({_describe(holder) if holder else 'holder unknown'}); wait for it to end or "
                "stop it, or give another --workdir") from None
        previous = self._read(fd)
        if previous:
            logging.warning("workdir %s: taking over from a run that ended without releasing "
                            "it (%s)", os.path.dirname(self.path), _describe(previous))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.time(), "argv": sys.argv}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # released cleanly: nobody to take over from
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            return json.loads(os.pread(fd, 65536, 0) or b"{}")
        except ValueError:
            return {}


def holder(workdir: str) -> dict | None:
    """Who holds `workdir`'s lock now ({"pid", "host", "started", "argv"}), None if nobody."""
    path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    if not os.path.exists(path):
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return WorkdirLock._read(fd) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
