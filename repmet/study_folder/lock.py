"""One run at a time per study folder.

A run of ``study/run.py`` holds an exclusive ``flock`` on ``<study>/study.lock`` from before it
writes or deletes anything in the folder (``--overwrite``'s delete included) until it ends. The
kernel releases the lock when the process ends in any way (``kill -9`` and crashes included), so a
lock is never left stuck: the file stays, but an unlocked file means nothing. The file holds the
holder's pid, host, start time and command, for the message that refuses a second run.

Limits: ``flock`` protects against runs on machines that share the lock service of the
filesystem. On a local disk that is every run of the machine. On NFS, Linux maps ``flock`` to NFS
byte-range locks, which hold across clients when the server's lock manager (NLM for NFSv3,
built into NFSv4) works, and a crashed client's lock is released when its lease expires (about
90 s on NFSv4). A mount with ``local_lock=flock`` or ``local_lock=all``, and some FUSE
filesystems, lock per machine only: two runs on different machines are then not kept apart. A
filesystem without locks at all is reported with a warning and the run goes on unprotected.

The lock file is never deleted: deleting it would let a second run lock a new file of the same
name while the first still holds the old one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from repmet.errors import RepmetError
from repmet.study_folder.layout import LOCK_FILE, now

#: A lock that is busy is tried again this often before the run is refused: a second process that
#: only probes the lock (:func:`holder_of`) holds it for microseconds.
ATTEMPTS = 10
RETRY_S = 0.05
#: errno values of a filesystem that does not support locks.
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class StudyInUse(RepmetError):
    """The study folder is locked by another run."""


def in_use_message(folder: Path, holder: str) -> str:
    return (
        f"the study {folder} is in use by another run ({holder}); wait for it to end, or stop "
        "it and continue with --resume"
    )


def _describe(path: Path) -> str:
    """Who holds the lock, from what the holder wrote into the file."""
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def holder_of(folder: Path) -> str | None:
    """Who holds the lock of ``folder``, or None when no run does. Reads only: creates nothing."""
    path = folder / LOCK_FILE
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    except OSError:
        return None  # no locks on this filesystem
    finally:
        os.close(descriptor)  # releases the shared lock taken above
    return None


@dataclass
class StudyLock:
    """The held lock of one study folder; :meth:`release` (or the end of the process) frees it."""

    path: Path
    descriptor: int | None

    def release(self) -> None:
        if self.descriptor is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)
            self.descriptor = None

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(folder: Path, *, command: str) -> StudyLock:
    """Locks ``folder`` (created if missing) for this process.

    Raises:
        StudyInUse: another run holds the lock.
        OSError: the folder or the lock file cannot be created.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    for attempt in range(ATTEMPTS):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            if attempt + 1 < ATTEMPTS:
                time.sleep(RETRY_S)
            continue
        except OSError as error:
            if error.errno not in NO_LOCKS:
                os.close(descriptor)
                raise
            print(
                f"warning: {path} cannot be locked on this filesystem ({error.strerror}); nothing "
                "keeps a second run off this study",
                file=sys.stderr,
            )
            _write_holder(descriptor, command)
            return StudyLock(path=path, descriptor=descriptor)
        # The file may have been replaced between open and flock: lock the file that is there.
        try:
            same = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(descriptor)
            continue
        _write_holder(descriptor, command)
        return StudyLock(path=path, descriptor=descriptor)
    raise StudyInUse(in_use_message(folder, _describe(path)))


def _write_holder(descriptor: int, command: str) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(), "command": command}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, (json.dumps(info) + "\n").encode(), 0)
