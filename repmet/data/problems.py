"""The data layer's one-line errors for files that are missing or cannot be downloaded.

Every loader reports these the same way, so that a user reads one sentence saying which data set,
where it was looked for and what to do, instead of a library's traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from repmet.errors import DataNotFoundError


def missing_data(name: str, *, path: Path, layout: str, remedy: str) -> DataNotFoundError:
    """The one-line error for a data set whose files are not where they were looked for."""
    return DataNotFoundError(f"data set {name!r} not found in {path} (expected {layout}); {remedy}")


def download_remedy(files: str, *, source: str) -> str:
    """The remedy for a downloadable set's missing files, worded in terms of the ``download``
    argument rather than any command-line flag, since the data layer does not know its caller."""
    return f"allow downloading (download=True) or unpack {files} there from {source}"


def download_or_explain(name: str, path: Path, fetch: Callable[[], object], *, source: str) -> None:
    """Runs ``fetch``; any failure (offline, moved URL, bad archive) becomes one clear line."""
    try:
        fetch()
    except Exception as error:  # noqa: BLE001 - every download failure has the same remedy
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataNotFoundError(
            f"could not download data set {name!r} into {path} ({reason}); "
            f"fetch it by hand from {source} and unpack it there"
        ) from None
