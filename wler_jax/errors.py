"""User errors: problems the user can fix, reported by the command lines as one line.

A `UserError`'s message names the problem and what to do (`"<problem>; <what to do>"`). The
command lines (`wler_jax.main`, `python -m wler_jax.predict`) run their work inside
`report_user_errors`, which prints `error: <message>` on stderr and exits with `EXIT_USER_ERROR`
without a traceback; any other exception is a bug and keeps its traceback. Library callers get
ordinary exceptions: each concrete class is also the builtin a caller would catch
(`FileNotFoundError`, `ValueError`).
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input (paths, data, workdir, flags), not a bug."""


class ConfigError(UserError, ValueError):
    """A config field has a value outside its allowed range (or a required one is missing)."""


class NotAWorkdirError(UserError, FileNotFoundError):
    """A directory given as a workdir holds no run.json or no best checkpoint."""


class IncompatibleWorkdirError(UserError, ValueError):
    """A workdir was made with another model, other classes or other data."""


class DataError(UserError, ValueError):
    """The user's data cannot be used as given (empty, no audio files, a bad column, ...)."""


class MissingDataError(UserError, FileNotFoundError):
    """The user's data (a corpus copy, a folder or CSV) is missing or incomplete."""


class WorkdirWriteError(UserError, OSError):
    """A workdir (or a checkpoint in it) cannot be written: no space, no permission, read-only."""


def fail(message: str) -> "NoReturn":  # noqa: F821
    """Print `error: message` on stderr and exit with EXIT_USER_ERROR (no traceback)."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_USER_ERROR)


@contextlib.contextmanager
def report_user_errors() -> Iterator[None]:
    """Turn a `UserError` raised inside into one line on stderr and a non-zero exit."""
    try:
        yield
    except UserError as e:
        fail(str(e))
