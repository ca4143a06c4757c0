"""How the commands and the report spell a value, a percentage and a duration: one place for
each, so that the console, the tables, the captions and the figures agree. Free of torch and Ray."""

from __future__ import annotations

from typing import Any


def format_value(value: Any, digits: int = 3) -> str:
    """A setting's value: a float to ``digits`` significant digits (``0.001``, ``3.16e-05``),
    anything else as its text."""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def format_percent(value: float, spread: float | None = None, *, unit: str = "") -> str:
    """A number in percent to one decimal, with its spread (a standard deviation or an interval's
    half-width) when given: ``12.3``, ``12.3 ± 0.4``; ``unit="%"`` marks the value (``12.3% ±
    0.4``) where no column header says it."""
    text = f"{value:.1f}{unit}"
    return text if spread is None else f"{text} ± {spread:.1f}"


def format_duration(seconds: float, *, compact: bool = False) -> str:
    """A duration rounded to the second: ``1 h 02 min``, ``2 min 03 s``, ``3 s`` in the report's
    sentences; ``compact`` (a console line that is redrawn): ``1h02m03s``, ``2m03s``, ``3s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if compact:
        if hours:
            return f"{hours}h{minutes:02d}m{secs:02d}s"
        return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
