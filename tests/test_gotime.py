"""Go's time formatting, parsing and durations (argo_local/expr/gotime.py), from Go's own docs.

The cases are the outputs Go's time package documents: pkg.go.dev/time ExampleTime_Format and
ExampleTime_Format_pad (their reference value, "Wed Feb 25 11:06:39 PST 2015", is the Unix
instant 1424891199 in America/Los_Angeles, the zone Go's time tests force as Local), the layout
constants (time.RFC3339, time.Kitchen...), ExampleParseDuration and ExampleDuration_Round, and
the "Layout" section of the package documentation.
"""

from __future__ import annotations

import pytest

from argo_local.expr import gotime

LA = gotime.load_location("America/Los_Angeles")
# Wed Feb 25 11:06:39 PST 2015, and the same with .1234 seconds (ExampleTime_Format)
FEB25 = gotime.Time(1424891199, 0, LA)
FEB25_FRAC = gotime.Time(1424891199, 123400000, LA)
# Sat Mar 7 11:06:39 PST 2015 (ExampleTime_Format_pad)
MAR7 = gotime.Time(1425755199, 0, LA)


@pytest.mark.parametrize(
    ("value", "layout", "expected"),
    [
        # ExampleTime_Format
        (FEB25, "Mon Jan 2 15:04:05 MST 2006", "Wed Feb 25 11:06:39 PST 2015"),
        (FEB25, "2006/01/02", "2015/02/25"),
        (FEB25, "3PM==3pm==15h", "11AM==11am==11h"),
        (FEB25_FRAC, "Mon Jan _2 15:04:05 MST 2006", "Wed Feb 25 11:06:39 PST 2015"),
        (FEB25_FRAC, "15:04:05.00000", "11:06:39.12340"),
        (FEB25_FRAC, "15:04:05.99999999", "11:06:39.1234"),
        (FEB25, "2006-01-02 15:04:05.999999999 -0700 MST", "2015-02-25 11:06:39 -0800 PST"),
        (
            FEB25.in_location(gotime.UTC),
            "Mon Jan _2 15:04:05 MST 2006",
            "Wed Feb 25 19:06:39 UTC 2015",
        ),
        (
            FEB25.in_location(gotime.load_location("Asia/Shanghai")),
            "2006-01-02T15:04:05 -070000",
            "2015-02-26T03:06:39 +080000",
        ),
        (
            FEB25.in_location(gotime.load_location("Asia/Shanghai")),
            "2006-01-02T15:04:05 -07:00:00",
            "2015-02-26T03:06:39 +08:00:00",
        ),
        # ExampleTime_Format_pad
        (MAR7, "Mon Jan _2 15:04:05 MST 2006", "Sat Mar  7 11:06:39 PST 2015"),
        (MAR7, "<2>", "<7>"),
        (MAR7, "<_2>", "< 7>"),
        (MAR7, "<02>", "<07>"),
        (MAR7, "04:05", "06:39"),
        # the layout constants, applied to the same instant
        (FEB25, "2006-01-02T15:04:05Z07:00", "2015-02-25T11:06:39-08:00"),  # RFC3339
        (FEB25.in_location(gotime.UTC), "2006-01-02T15:04:05Z07:00", "2015-02-25T19:06:39Z"),
        (FEB25, "3:04PM", "11:06AM"),  # Kitchen
        (FEB25, "02 Jan 06 15:04 MST", "25 Feb 15 11:06 PST"),  # RFC822
        (FEB25, "Monday, 02-Jan-06 15:04:05 MST", "Wednesday, 25-Feb-15 11:06:39 PST"),  # RFC850
        (FEB25, "Mon, 02 Jan 2006 15:04:05 -0700", "Wed, 25 Feb 2015 11:06:39 -0800"),  # RFC1123Z
        (FEB25_FRAC, "Jan _2 15:04:05.000", "Feb 25 11:06:39.123"),  # StampMilli
        # "Layout" docs: January / 002 day of year / __2 padded / _2006 a literal _ and the year;
        # "Jan" before a lower-case letter is text; ",000" a fraction with a comma
        (FEB25, "January 002 __2", "February 056  56"),
        (FEB25, "_2006", "_2015"),
        (FEB25, "Janet", "Janet"),
        (FEB25_FRAC, "05,000", "39,123"),
        (FEB25, "-07 Z07", "-08 -08"),
    ],
)
def test_format(value: gotime.Time, layout: str, expected: str) -> None:
    """Time.Format with Go's reference-time layouts (time/format.go)."""
    assert value.format(layout) == expected


@pytest.mark.parametrize(
    ("layout", "text", "unix", "rendered"),
    [
        # sprig date_test.go TestUnixEpoch: GMT, which Local (UTC) does not name, is offset 0
        ("02 Jan 06 15:04:05 MST", "13 Jun 19 20:39:39 GMT", 1560458379, "20:39:39 GMT"),
        # time.RFC3339 with a numeric zone keeps it (a fixed zone without a name)
        ("2006-01-02T15:04:05Z07:00", "2015-02-25T11:06:39-08:00", 1424891199, "11:06:39 -0800"),
        ("2006-01-02T15:04:05Z07:00", "2015-02-25T19:06:39Z", 1424891199, "19:06:39 UTC"),
        # ExampleTime_Format: a fraction the layout lacks is read anyway
        ("Mon Jan _2 15:04:05 2006", "Wed Feb 25 11:06:39.1234 2015", 1424862399, "11:06:39 UTC"),
        ("3:04PM", "11:06PM", -62167136040, "23:06:00 UTC"),  # no date: January 1, year 0
        ("2006 002", "2016 060", 1456704000, "00:00:00 UTC"),  # day 60 of a leap year: Feb 29
        ("Jan 2 2006", "FEB 25 2015", 1424822400, "00:00:00 UTC"),  # names are case-insensitive
    ],
)
def test_parse(layout: str, text: str, unix: int, rendered: str) -> None:
    """time.ParseInLocation(layout, text, Local) with Local UTC, as sprig's toDate calls it."""
    t = gotime.parse(layout, text)
    assert t.unix == unix
    assert t.format("15:04:05 MST") == rendered


@pytest.mark.parametrize(
    ("layout", "text", "message"),
    [
        ("2006-01-02", "2017-13-01", "month out of range"),
        ("2006-01-02", "2017-02-30", "day out of range"),
        ("2006-01-02", "2017-12-31 x", 'extra text: " x"'),
        ("2006-01-02", "17-12-31", 'cannot parse "17-12-31" as "2006"'),
    ],
)
def test_parse_errors(layout: str, text: str, message: str) -> None:
    with pytest.raises(gotime.TimeError, match=message):
        gotime.parse(layout, text)


@pytest.mark.parametrize(
    ("text", "nanoseconds", "string"),
    [
        # ExampleParseDuration
        ("10h", 10 * gotime.HOUR, "10h0m0s"),
        ("1h10m10s", gotime.HOUR + 10 * gotime.MINUTE + 10 * gotime.SECOND, "1h10m10s"),
        ("1.5h", 90 * gotime.MINUTE, "1h30m0s"),
        ("-1.5h", -90 * gotime.MINUTE, "-1h30m0s"),
        ("1µs", 1000, "1µs"),
        ("1us", 1000, "1µs"),
        ("300ms", 300 * gotime.MILLISECOND, "300ms"),
        ("1.5ms", 1500 * gotime.MICROSECOND, "1.5ms"),
        ("0", 0, "0s"),
        ("2ns", 2, "2ns"),
    ],
)
def test_durations(text: str, nanoseconds: int, string: str) -> None:
    """time.ParseDuration and Duration.String."""
    assert gotime.parse_duration(text) == nanoseconds
    assert gotime.duration_string(nanoseconds) == string


@pytest.mark.parametrize("text", ["", "1", "1x", ".s", "1h-2m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(gotime.TimeError, match="duration"):
        gotime.parse_duration(text)


@pytest.mark.parametrize(
    ("multiple", "expected"),
    [
        # ExampleDuration_Round, d = 1h15m30.918273645s
        (gotime.NANOSECOND, "1h15m30.918273645s"),
        (gotime.MICROSECOND, "1h15m30.918274s"),
        (gotime.MILLISECOND, "1h15m30.918s"),
        (gotime.SECOND, "1h15m31s"),
        (2 * gotime.SECOND, "1h15m30s"),
        (gotime.MINUTE, "1h16m0s"),
        (15 * gotime.MINUTE, "1h15m0s"),
        (gotime.HOUR, "1h0m0s"),
    ],
)
def test_round(multiple: int, expected: str) -> None:
    d = gotime.parse_duration("1h15m30.918273645s")
    assert gotime.duration_string(gotime.round_duration(d, multiple)) == expected
