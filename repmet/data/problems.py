"""The data layer's one-line errors for files that are missing, unreadable or cannot be downloaded.

Every loader reports these the same way, so that a user reads one sentence saying which data set,
where it was looked for and what to do, instead of a library's traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from repmet.errors import DataError, DataNotFoundError


def error_reason(error: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none: enough to say what
    went wrong while keeping the data layer's errors on one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def name_list(names: Sequence[str], *, limit: int = 5) -> str:
    """The first ``limit`` names joined by commas, so that a message stays short however many
    files or folders a user's data holds."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def missing_data(name: str, *, path: Path, layout: str, remedy: str) -> DataNotFoundError:
    """The one-line error for a data set whose files are not where they were looked for."""
    return DataNotFoundError(f"data set {name!r} not found in {path} (expected {layout}); {remedy}")


def download_remedy(files: str, *, source: str) -> str:
    """The remedy for a downloadable set's missing files, worded in terms of the ``download``
    argument rather than any command-line flag, since the data layer does not know its caller."""
    return f"allow downloading (download=True) or unpack {files} there from {source}"


def unreadable_data(path: Path, *, what: str, error: BaseException, remedy: str) -> DataError:
    """The one-line error for a file that is there but cannot be read as ``what`` it should be."""
    return DataError(f"{what} {path} cannot be read ({error_reason(error)}); {remedy}")


def download_or_explain(name: str, path: Path, fetch: Callable[[], object], *, source: str) -> None:
    """Runs ``fetch``; any failure (offline, moved URL, bad archive) becomes one clear line."""
    try:
        fetch()
    except Exception as error:  # noqa: BLE001 - every download failure has the same remedy
        raise DataNotFoundError(
            f"could not download data set {name!r} into {path} ({error_reason(error)}); "
            f"fetch it by hand from {source} and unpack it there"
        ) from None
