"""What the three commands (``study/run.py``, ``analysis/report.py``, ``python -m repmet.train``)
share: one argument parser that reports a mistake in one line, and one way of ending.

Exit status: 0 done; 1 the work could not be completed (a run diverged, a study stopped, a file
could not be written); 2 the command line or its input is wrong (nothing was started); 130
interrupted with Ctrl-C. Every error is one line on stderr, ``<prog>: error: <what>``, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from repmet.errors import ConfigError, RepmetError, TrialFailed

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(RepmetError):
    """A malformed command line (argparse's complaint, as one line)."""


class WorkFailed(RepmetError):
    """The command's input was right but its work could not be completed (exit status 1)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser that raises :class:`UsageError` instead of printing its usage and
    exiting, so that every mistake ends as the same one line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it says something: not for unset values, switches that
    are off, or help texts that already explain their default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def program_name(script: str) -> str:
    """How the running command calls itself: its installed name (``repmet-study``) when started
    through one, else the documented ``script`` form."""
    name = Path(sys.argv[0]).name
    return name if name.startswith("repmet-") else script


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Runs a command's ``body`` and turns its errors into one line and an exit status."""
    try:
        return body()
    except (TrialFailed, WorkFailed) as error:
        return _fail(prog, str(error), EXIT_FAILED)
    except RepmetError as error:
        return _fail(prog, str(error), EXIT_USAGE)
    except OSError as error:  # a file that could not be written or read, after checks passed
        reason = error.strerror or str(error)
        where = f" {error.filename}" if error.filename else ""
        return _fail(prog, f"{reason}:{where}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", EXIT_INTERRUPTED)


def _fail(prog: str, message: str, status: int) -> int:
    text = " ".join(message.split()) or "unknown error"
    print(f"{prog}: error: {text}", file=sys.stderr)
    return status


def check_writable(path: Path, *, what: str) -> None:
    """Refuses, before any work, a folder ``path`` that cannot be written or created: its nearest
    existing folder must be a folder in which a file can be created. A temporary file is created
    and removed there, since permission bits say nothing for root or on a read-only mount.

    Raises:
        ConfigError: naming ``what`` (e.g. "the report folder"), the path and the reason.
    """
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder")
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ConfigError(f"cannot create {what} {path}: {existing} is a file")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".repmet-write-check-")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = "" if existing == path else f" in {existing}"
        raise ConfigError(f"cannot write {what} {path}{where}: {reason}") from None
    os.close(handle)
    os.unlink(probe)
