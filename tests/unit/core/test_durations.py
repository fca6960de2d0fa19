"""GEP-2257 durations: parsing, the CLI's plain-number form, and formatting."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.core.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("10s", 10.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1h1m1s1ms", 3661.001),
        ("99999ms", 99.999),
        ("2m", 120.0),
        (" 10s ", 10.0),
    ],
)
def test_valid_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "s",
        "1.5s",
        "-1s",
        "100000s",  # at most five digits per part
        "1h1m1s1ms1h",  # at most four parts
        "10S",
        "1d",
        "1 s",
        "1us",
    ],
)
def test_invalid_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(DurationError, match=r"expected e\.g\. 10s, 500ms, 1m30s"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "seconds"), [("2.5", 2.5), ("0", 0.0), ("10s", 10.0)])
def test_plain_numbers_only_where_allowed(text: str, seconds: float) -> None:
    assert parse_duration(text, allow_number=True) == seconds


def test_plain_numbers_are_refused_by_default_and_negatives_always() -> None:
    with pytest.raises(DurationError):
        parse_duration("2.5")
    with pytest.raises(DurationError, match="negative"):
        parse_duration("-1", allow_number=True)


def test_not_a_number_is_not_a_duration() -> None:
    with pytest.raises(DurationError):
        parse_duration("nan", allow_number=True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1.5, "1s500ms"),
        (10, "10s"),
        (90, "1m30s"),
        (3600, "1h"),
        (3661, "1h1m1s"),
        (7200.0, "2h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=99_999))
def test_whole_seconds_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_fractional_durations_format_to_valid_gep_2257() -> None:
    text = format_duration(100.5)

    assert math.isclose(parse_duration(text), 100.5)
