"""What the three commands (``study/run.py``, ``analysis/report.py``, ``python -m repmet.train``)
share: one argument parser that reports a mistake in one line, and one way of ending.

Exit status: 0 done; 1 the work could not be completed (a run diverged, a study stopped, a file
could not be written); 2 the command line or its input is wrong (nothing was started); 130
interrupted with Ctrl-C; 143 stopped by SIGTERM, where a command takes it as Ctrl-C (the study).
Every error is one line on stderr, ``<prog>: error: <what>``, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from repmet.errors import ConfigError, RepmetError, TrialFailed

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: As a shell reports a process that SIGTERM ended (128 + 15).
EXIT_TERMINATED = 128 + int(signal.SIGTERM)


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


def run_command(
    prog: str, body: Callable[[], int], *, sigterm: SigtermAsCtrlC | None = None
) -> int:
    """Runs a command's ``body`` and turns its errors into one line and an exit status.

    A :class:`WorkFailed` with ``interrupted`` set (a study stopped by Ctrl-C) ends as Ctrl-C does.
    With ``sigterm``, SIGTERM does what Ctrl-C does while the body runs, and the command then ends
    with :data:`EXIT_TERMINATED`.
    """
    try:
        with sigterm or contextlib.nullcontext():
            return body()
    except WorkFailed as error:
        if getattr(error, "interrupted", False):
            return _interrupted(prog, str(error), sigterm)
        return _fail(prog, str(error), EXIT_FAILED)
    except TrialFailed as error:
        return _fail(prog, str(error), EXIT_FAILED)
    except RepmetError as error:
        return _fail(prog, str(error), EXIT_USAGE)
    except OSError as error:  # a file that could not be written or read, after checks passed
        reason = error.strerror or str(error)
        where = f" {error.filename}" if error.filename else ""
        return _fail(prog, f"{reason}:{where}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _interrupted(prog, "interrupted", sigterm)


class SigtermAsCtrlC:
    """While the ``with`` block runs, SIGTERM (``kill PID``, a batch scheduler's cancel,
    ``docker stop``) does what Ctrl-C does: it calls the SIGINT handler of the moment in its place,
    Tune's (which ends the run after saving its state, as for Ctrl-C) or Python's (which raises
    ``KeyboardInterrupt``). ``received`` tells the two signals apart afterwards.

    Whoever sends SIGTERM waits only so long before SIGKILL, and the orderly stop can hang when
    the signal also reached the processes it waits on (a scheduler's cancel signals every process
    of the job, a local Ray's included). A command still running ``deadline_s`` seconds after the
    first SIGTERM therefore ends at once, with the line ``<prog>: error: stopped by SIGTERM:
    <late>`` and :data:`EXIT_TERMINATED`, leaving its files as ``kill -9`` would.

    Where SIGINT is ignored (a background job of a script), SIGTERM raises ``KeyboardInterrupt``:
    it must still stop the command. Outside the main thread, where no handler can be set, the
    block runs with SIGTERM as it was.
    """

    def __init__(self, prog: str, *, deadline_s: float, late: str) -> None:
        self.received = False
        self._prog, self._deadline_s, self._late = prog, deadline_s, late
        self._previous: Any = None
        self._installed = False
        self._timer: threading.Timer | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.received:
            self.received = True
            self._timer = threading.Timer(self._deadline_s, self._end_now)
            self._timer.daemon = True
            self._timer.start()
        interrupt = signal.getsignal(signal.SIGINT)
        if not callable(interrupt):  # SIG_IGN or SIG_DFL
            raise KeyboardInterrupt
        interrupt(signal.SIGINT, frame)

    def _end_now(self) -> None:
        print(flush=True)  # ends a progress line being redrawn
        _fail(self._prog, f"stopped by SIGTERM: {self._late}", EXIT_TERMINATED)
        sys.stderr.flush()
        os._exit(EXIT_TERMINATED)

    def __enter__(self) -> SigtermAsCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self.handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._installed:
            # None: a handler not set from Python; the default is the nearest Python can restore.
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
            self._installed = False


def _interrupted(prog: str, message: str, sigterm: SigtermAsCtrlC | None) -> int:
    if sigterm is not None and sigterm.received:
        return _fail(prog, f"stopped by SIGTERM: {message}", EXIT_TERMINATED)
    return _fail(prog, message, EXIT_INTERRUPTED)


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
