"""User-facing errors.

Every error that a user can cause (a bad name, a missing data set, an infeasible configuration)
derives from :class:`RepmetError`. Command-line entry points catch it and print its message as a
single line with a non-zero exit, instead of a traceback.
"""

from __future__ import annotations


class RepmetError(Exception):
    """Base class for errors caused by user input; the message is one complete sentence."""


class ConfigError(RepmetError, ValueError):
    """An invalid or infeasible configuration value, raised before any training starts."""


class UnknownNameError(RepmetError, KeyError):
    """A name that is not in a registry (data set, model, loss, search space)."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataNotFoundError(RepmetError, FileNotFoundError):
    """A data set or weights file that is not where it was looked for."""


class TrainingDiverged(RepmetError, ArithmeticError):
    """The training loss became NaN or infinite; the trial cannot continue."""
