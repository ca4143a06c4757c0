"""One spelling of values, percentages and durations (``repmet.formatting``), shared by the
console, the report's tables, captions and figures."""

from __future__ import annotations

import pytest

from repmet.formatting import format_duration, format_percent, format_value


@pytest.mark.parametrize(
    ("seconds", "sentence", "compact"),
    [
        (0, "0 s", "0s"),
        (3.4, "3 s", "3s"),
        (59.6, "1 min 00 s", "1m00s"),  # rounded to the second first
        (123, "2 min 03 s", "2m03s"),
        (3723, "1 h 02 min", "1h02m03s"),  # a sentence drops the seconds past an hour
        (90061, "25 h 01 min", "25h01m01s"),
        (-5, "0 s", "0s"),  # a clock that went back is no negative duration
    ],
)
def test_durations(seconds: float, sentence: str, compact: str) -> None:
    assert format_duration(seconds) == sentence
    assert format_duration(seconds, compact=True) == compact


def test_percent_with_and_without_spread() -> None:
    assert format_percent(12.345) == "12.3"
    assert format_percent(12.35, 0.44) == "12.3 ± 0.4"  # float rounding: 12.35 is 12.3499...
    assert format_percent(7.0, unit="%") == "7.0%"
    assert format_percent(7.0, 1.25, unit="%") == "7.0% ± 1.2"
    assert format_percent(0.0, 0.0) == "0.0 ± 0.0"


def test_values_keep_three_significant_digits_unless_told() -> None:
    assert format_value(3.16227766e-5) == "3.16e-05"
    assert format_value(0.001) == "0.001"
    assert format_value(1234.5) == "1.23e+03"
    assert format_value(1234.5, digits=6) == "1234.5"
    assert format_value(4) == "4"  # an int is exact
    assert format_value(True) == "True"
    assert format_value("magnet") == "magnet"
