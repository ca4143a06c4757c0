"""Errors: those a user causes, and those that mean a bug.

Every error that a user can cause (a bad name, a missing or unusable data set, an infeasible
configuration) derives from :class:`RepmetError`. Command-line entry points catch it and print its
message as a single line with a non-zero exit, instead of a traceback.

:class:`ArgumentError` is not a :class:`RepmetError`: a library function called with arguments
outside its contract (tensors of the wrong shape, more clusters than points) is a programming error,
and its traceback is what the programmer needs.
"""

from __future__ import annotations


class RepmetError(Exception):
    """Base class for errors caused by user input; the message is one complete sentence."""


class ConfigError(RepmetError, ValueError):
    """An invalid or infeasible configuration value or command-line option, found before any
    training starts."""


class UnknownNameError(RepmetError, KeyError):
    """A name that is not in a registry (data set, model, loss, search space)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(RepmetError, FileNotFoundError):
    """A data set or weights file that is not where it was looked for."""


class DataError(RepmetError, ValueError):
    """A data set whose files are there but cannot be used: unreadable, empty, of the wrong
    shape, or holding non-finite pixels."""


class CheckpointError(RepmetError):
    """A saved trial state that cannot be read: missing, truncated, foreign, or of a format this
    version does not know."""


class TrialFailed(RepmetError):
    """A trial that cannot go on because of its own configuration. A study records the trial as
    failed and goes on with the next one."""


class TrainingDiverged(TrialFailed, ArithmeticError):
    """The training loss became NaN or infinite; the trial cannot continue."""


class ArgumentError(ValueError):
    """A library function called with arguments outside its contract (a programming error)."""
