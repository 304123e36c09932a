"""Go's ``time`` package as sprig's date functions use it: ``Time.Format`` and ``time.Parse``
with Go's reference-time layouts (``"2006-01-02 15:04:05.000 -0700 MST"``), ``time.Duration``'s
``String``, ``Round`` and ``time.ParseDuration``.

Go reads a layout by looking for the parts of one reference time, Mon Jan 2 15:04:05 MST 2006
(``2006`` the year, ``01``/``1``/``Jan``/``January`` the month, ``_2`` a space-padded day,
``.000``/``.999`` fractional seconds, ``Z07:00`` an ISO 8601 zone...); everything else is
copied. Python's ``strftime`` has other rules, so they are followed here chunk by chunk (Go's
time/format.go ``nextStdChunk``, ``appendFormat`` and ``parse``).

A :class:`Time` is an instant (Unix seconds and nanoseconds, any year: Go's zero Time is year 1
and ``toDate("15:04", ...)`` gives year 0) in a :class:`Location`: UTC, a fixed offset, or an IANA
zone through :mod:`zoneinfo`. Go's ``time.Local`` is the controller's zone: UTC in Argo's
distroless controller image, so ``Local`` is UTC here too, whatever this machine's zone is.
"""

from __future__ import annotations

import datetime as _dt
import re
import time as _time
from dataclasses import dataclass

NANOSECOND = 1
MICROSECOND = 1000
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
_MAX_DURATION = (1 << 63) - 1
_MIN_DURATION = -(1 << 63)


class TimeError(ValueError):
    """What Go's time package returns as an error (a layout that does not parse a value, a bad
    duration)."""


# ------------------------------------------------------------------ locations


@dataclass(frozen=True)
class Location:
    """A ``*time.Location``: ``name`` as Go names it (``UTC``, ``Local``, ``Asia/Shanghai``),
    a fixed ``offset``/``abbreviation`` or an IANA ``zone``."""

    name: str
    offset: int = 0
    abbreviation: str = "UTC"
    zone: str | None = None

    def lookup(self, unix: int) -> tuple[str, int]:
        """The zone abbreviation and offset east of UTC (seconds) in effect at ``unix``."""
        if self.zone is None:
            return self.abbreviation, self.offset
        import zoneinfo

        try:
            moment = _dt.datetime.fromtimestamp(unix, zoneinfo.ZoneInfo(self.zone))
        except (OverflowError, OSError, ValueError):
            raise TimeError(
                f"time zone {self.zone} outside years 1-9999 is not supported by the local runner"
            ) from None
        offset = moment.utcoffset()
        assert offset is not None
        return moment.tzname() or "", int(offset.total_seconds())


UTC = Location("UTC")
LOCAL = Location("Local")
"""``time.Local`` of Argo's controller: UTC (see the module docstring)."""


def fixed_zone(name: str, offset: int) -> Location:
    """``time.FixedZone``."""
    return Location(name, offset, name)


def load_location(name: str) -> Location:
    """``time.LoadLocation``: ``""`` and ``"UTC"`` are UTC, ``"Local"`` is :data:`LOCAL`, any other
    name an IANA zone; TimeError for an unknown one."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        return LOCAL
    import zoneinfo

    if name.startswith("/") or ".." in name.split("/") or "\\" in name:
        raise TimeError(f"time: invalid location name {name!r}")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise TimeError(f"unknown time zone {name}") from None
    return Location(name, zone=name)


# ------------------------------------------------------------------ calendar (any year)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)


def _days_in(month: int, year: int) -> int:
    if month == 2 and _is_leap(year):
        return 29
    return _DAYS_BEFORE[month] - _DAYS_BEFORE[month - 1]


_MONTHS = "January February March April May June July August September October November December"
LONG_MONTHS = _MONTHS.split()
SHORT_MONTHS = [m[:3] for m in LONG_MONTHS]
LONG_DAYS = "Sunday Monday Tuesday Wednesday Thursday Friday Saturday".split()  # noqa: SIM905
SHORT_DAYS = [d[:3] for d in LONG_DAYS]


# ------------------------------------------------------------------ Time


@dataclass(frozen=True)
class Time:
    """A ``time.Time``. ``monotonic``: it carries a monotonic clock reading (``time.Now()``
    and what ``Add`` makes of it), which Go's ``String`` prints and the local runner cannot."""

    unix: int
    nanos: int = 0
    loc: Location = UTC
    monotonic: bool = False

    @classmethod
    def now(cls) -> Time:
        ns = _time.time_ns()
        return cls(ns // SECOND, ns % SECOND, LOCAL, monotonic=True)

    @classmethod
    def from_unix(cls, seconds: int) -> Time:
        """``time.Unix(seconds, 0)`` (in Local)."""
        return cls(seconds, 0, LOCAL)

    @classmethod
    def date(
        cls,
        year: int,
        month: int,
        day: int,
        hour: int = 0,
        minute: int = 0,
        second: int = 0,
        nanos: int = 0,
        loc: Location = UTC,
    ) -> Time:
        """``time.Date`` for values already in range, in a fixed-offset location."""
        days = _days_from_civil(year, month, day)
        unix = days * 86400 + hour * 3600 + minute * 60 + second
        _name, offset = loc.lookup(unix)
        return cls(unix - offset, nanos, loc)

    def in_location(self, loc: Location) -> Time:
        """``t.In(loc)``: the same instant, another zone; the monotonic reading is dropped."""
        return Time(self.unix, self.nanos, loc)

    def add(self, duration: int) -> Time:
        """``t.Add(d)`` (nanoseconds)."""
        total = self.nanos + duration
        return Time(self.unix + total // SECOND, total % SECOND, self.loc, self.monotonic)

    def sub_ns(self, other: Time) -> int:
        """``t.Sub(u)`` in nanoseconds, clamped to a Duration's range as Go clamps it."""
        d = (self.unix - other.unix) * SECOND + self.nanos - other.nanos
        return max(_MIN_DURATION, min(_MAX_DURATION, d))

    def fields(self) -> tuple[int, int, int, int, int, int, int, int, str, int]:
        """year, month, day, hour, minute, second, weekday (Sunday 0), year day (1-366), zone
        abbreviation, offset: the wall clock in the Time's location."""
        name, offset = self.loc.lookup(self.unix)
        local = self.unix + offset
        days, secs = divmod(local, 86400)
        year, month, day = _civil_from_days(days)
        weekday = (days + 4) % 7  # 1970-01-01 was a Thursday
        yday = _DAYS_BEFORE[month - 1] + day + (month > 2 and _is_leap(year))
        return (
            year,
            month,
            day,
            secs // 3600,
            secs // 60 % 60,
            secs % 60,
            weekday,
            yday,
            name,
            offset,
        )

    def format(self, layout: str) -> str:
        return format_time(self, layout)

    def string(self) -> str:
        """``t.String()`` (``fmt``'s ``%v``): ``2006-01-02 15:04:05.999999999 -0700 MST``."""
        if self.monotonic:
            raise TimeError(
                "printing time.Now() shows its monotonic clock reading (m=+...), which the local "
                "runner cannot reproduce: format it (sprig.date) instead"
            )
        return self.format("2006-01-02 15:04:05.999999999 -0700 MST")

    def json(self) -> str:
        """``t.MarshalJSON()``: RFC 3339 with nanoseconds, quoted."""
        year = self.fields()[0]
        if not 0 <= year <= 9999:
            raise TimeError("Time.MarshalJSON: year outside of range [0,9999]")
        return '"' + self.format("2006-01-02T15:04:05.999999999Z07:00") + '"'


# ------------------------------------------------------------------ layouts

# Go's std chunk codes, by name (time/format.go).
(
    LONG_MONTH,
    MONTH,
    NUM_MONTH,
    ZERO_MONTH,
    LONG_WEEKDAY,
    WEEKDAY,
    DAY,
    UNDER_DAY,
    ZERO_DAY,
    UNDER_YEAR_DAY,
    ZERO_YEAR_DAY,
    HOUR24,
    HOUR12,
    ZERO_HOUR12,
    MINUTE_,
    ZERO_MINUTE,
    SECOND_,
    ZERO_SECOND,
    LONG_YEAR,
    YEAR,
    PM,
    PM_LOWER,
    TZ,
    ISO8601_TZ,
    ISO8601_SECONDS_TZ,
    ISO8601_SHORT_TZ,
    ISO8601_COLON_TZ,
    ISO8601_COLON_SECONDS_TZ,
    NUM_TZ,
    NUM_SECONDS_TZ,
    NUM_SHORT_TZ,
    NUM_COLON_TZ,
    NUM_COLON_SECONDS_TZ,
    FRAC0,
    FRAC9,
) = range(1, 36)

_ISO = (
    ISO8601_TZ,
    ISO8601_SECONDS_TZ,
    ISO8601_SHORT_TZ,
    ISO8601_COLON_TZ,
    ISO8601_COLON_SECONDS_TZ,
)
_ZERO_X = (ZERO_MONTH, ZERO_DAY, ZERO_HOUR12, ZERO_MINUTE, ZERO_SECOND, YEAR)


@dataclass(frozen=True)
class Chunk:
    """One reference-time part of a layout; for fractional seconds, its digits and separator."""

    code: int
    text: str
    digits: int = 0
    separator: str = "."


def _lower_next(s: str) -> bool:
    return bool(s) and "a" <= s[0] <= "z"


def next_chunk(layout: str) -> tuple[str, Chunk | None, str]:
    """``nextStdChunk``: the literal text before the first chunk, the chunk, the rest."""
    n = len(layout)
    for i, c in enumerate(layout):
        rest = layout[i:]
        if c == "J" and rest.startswith("Jan"):
            if rest.startswith("January"):
                return layout[:i], Chunk(LONG_MONTH, "January"), layout[i + 7 :]
            if not _lower_next(layout[i + 3 :]):
                return layout[:i], Chunk(MONTH, "Jan"), layout[i + 3 :]
        elif c == "M" and n >= i + 3:
            if rest.startswith("Mon"):
                if rest.startswith("Monday"):
                    return layout[:i], Chunk(LONG_WEEKDAY, "Monday"), layout[i + 6 :]
                if not _lower_next(layout[i + 3 :]):
                    return layout[:i], Chunk(WEEKDAY, "Mon"), layout[i + 3 :]
            if rest.startswith("MST"):
                return layout[:i], Chunk(TZ, "MST"), layout[i + 3 :]
        elif c == "0":
            if n >= i + 2 and "1" <= layout[i + 1] <= "6":
                code = _ZERO_X[ord(layout[i + 1]) - ord("1")]
                return layout[:i], Chunk(code, layout[i : i + 2]), layout[i + 2 :]
            if rest.startswith("002"):
                return layout[:i], Chunk(ZERO_YEAR_DAY, "002"), layout[i + 3 :]
        elif c == "1":
            if rest.startswith("15"):
                return layout[:i], Chunk(HOUR24, "15"), layout[i + 2 :]
            return layout[:i], Chunk(NUM_MONTH, "1"), layout[i + 1 :]
        elif c == "2":
            if rest.startswith("2006"):
                return layout[:i], Chunk(LONG_YEAR, "2006"), layout[i + 4 :]
            return layout[:i], Chunk(DAY, "2"), layout[i + 1 :]
        elif c == "_":
            if rest.startswith("_2"):
                # _2006 is a literal _ followed by the long year
                if rest.startswith("_2006"):
                    return layout[: i + 1], Chunk(LONG_YEAR, "2006"), layout[i + 5 :]
                return layout[:i], Chunk(UNDER_DAY, "_2"), layout[i + 2 :]
            if rest.startswith("__2"):
                return layout[:i], Chunk(UNDER_YEAR_DAY, "__2"), layout[i + 3 :]
        elif c in "345":
            code = {"3": HOUR12, "4": MINUTE_, "5": SECOND_}[c]
            return layout[:i], Chunk(code, c), layout[i + 1 :]
        elif c == "P" and rest.startswith("PM"):
            return layout[:i], Chunk(PM, "PM"), layout[i + 2 :]
        elif c == "p" and rest.startswith("pm"):
            return layout[:i], Chunk(PM_LOWER, "pm"), layout[i + 2 :]
        elif c in "-Z":
            table = (
                ("070000", NUM_SECONDS_TZ, ISO8601_SECONDS_TZ),
                ("07:00:00", NUM_COLON_SECONDS_TZ, ISO8601_COLON_SECONDS_TZ),
                ("0700", NUM_TZ, ISO8601_TZ),
                ("07:00", NUM_COLON_TZ, ISO8601_COLON_TZ),
                ("07", NUM_SHORT_TZ, ISO8601_SHORT_TZ),
            )
            for text, num, iso in table:
                if rest.startswith(c + text):
                    code = num if c == "-" else iso
                    return layout[:i], Chunk(code, c + text), layout[i + 1 + len(text) :]
        elif c in ".," and i + 1 < n and layout[i + 1] in "09":
            digit = layout[i + 1]
            j = i + 1
            while j < n and layout[j] == digit:
                j += 1
            # only a run of one digit not followed by another digit is a fractional second
            if not (j < n and layout[j].isdigit()):
                code = FRAC0 if digit == "0" else FRAC9
                return layout[:i], Chunk(code, layout[i:j], j - (i + 1), c), layout[j:]
    return layout, None, ""


def _int(value: int, width: int) -> str:
    """``appendInt``: a decimal, zero-padded to ``width``, a minus sign before the padding."""
    sign = "-" if value < 0 else ""
    return sign + str(abs(value)).rjust(width, "0")


def format_time(t: Time, layout: str) -> str:
    """``t.Format(layout)``."""
    year, month, day, hour, minute, second, weekday, yday, name, offset = t.fields()
    out: list[str] = []
    while layout:
        prefix, chunk, layout = next_chunk(layout)
        out.append(prefix)
        if chunk is None:
            break
        code = chunk.code
        if code == YEAR:
            out.append(_int(abs(year) % 100, 2))
        elif code == LONG_YEAR:
            out.append(_int(year, 4))
        elif code == MONTH:
            out.append(SHORT_MONTHS[month - 1])
        elif code == LONG_MONTH:
            out.append(LONG_MONTHS[month - 1])
        elif code == NUM_MONTH:
            out.append(str(month))
        elif code == ZERO_MONTH:
            out.append(_int(month, 2))
        elif code == WEEKDAY:
            out.append(SHORT_DAYS[weekday])
        elif code == LONG_WEEKDAY:
            out.append(LONG_DAYS[weekday])
        elif code == DAY:
            out.append(str(day))
        elif code == UNDER_DAY:
            out.append(str(day).rjust(2))
        elif code == ZERO_DAY:
            out.append(_int(day, 2))
        elif code == UNDER_YEAR_DAY:
            out.append(str(yday).rjust(3))
        elif code == ZERO_YEAR_DAY:
            out.append(_int(yday, 3))
        elif code == HOUR24:
            out.append(_int(hour, 2))
        elif code in (HOUR12, ZERO_HOUR12):
            h12 = hour % 12 or 12
            out.append(str(h12) if code == HOUR12 else _int(h12, 2))
        elif code == MINUTE_:
            out.append(str(minute))
        elif code == ZERO_MINUTE:
            out.append(_int(minute, 2))
        elif code == SECOND_:
            out.append(str(second))
        elif code == ZERO_SECOND:
            out.append(_int(second, 2))
        elif code in (PM, PM_LOWER):
            text = "PM" if hour >= 12 else "AM"
            out.append(text if code == PM else text.lower())
        elif code == TZ:
            if name:
                out.append(name)
            else:
                # no abbreviation known: Go prints the -0700 form
                zone = _go_div(offset, 60)
                out.append(("-" if zone < 0 else "+") + _int(abs(zone) // 60, 2))
                out.append(_int(abs(zone) % 60, 2))
        elif code in (FRAC0, FRAC9):
            out.append(_nanos(t.nanos, chunk))
        else:
            out.append(_zone(code, offset))
    return "".join(out)


def _go_div(a: int, b: int) -> int:
    """Go's integer division (truncated toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _zone(code: int, offset: int) -> str:
    if offset == 0 and code in _ISO:
        return "Z"
    zone = _go_div(offset, 60)
    absoffset = offset
    if zone < 0:
        sign, zone, absoffset = "-", -zone, -offset
    else:
        sign = "+"
    text = sign + _int(zone // 60, 2)
    colon = code in (ISO8601_COLON_TZ, NUM_COLON_TZ, ISO8601_COLON_SECONDS_TZ, NUM_COLON_SECONDS_TZ)
    if colon:
        text += ":"
    if code not in (NUM_SHORT_TZ, ISO8601_SHORT_TZ):
        text += _int(zone % 60, 2)
    if code in (ISO8601_SECONDS_TZ, NUM_SECONDS_TZ, NUM_COLON_SECONDS_TZ, ISO8601_COLON_SECONDS_TZ):
        if code in (NUM_COLON_SECONDS_TZ, ISO8601_COLON_SECONDS_TZ):
            text += ":"
        text += _int(absoffset - _go_div(absoffset, 60) * 60, 2)
    return text


def _nanos(nanos: int, chunk: Chunk) -> str:
    """``appendNano``: ``.000`` always that many digits, ``.999`` without trailing zeros (and
    nothing at all for a whole second)."""
    trim = chunk.code == FRAC9
    if trim and (chunk.digits == 0 or nanos == 0):
        return ""
    text = chunk.separator + _int(nanos, 9)[: chunk.digits]
    if trim:
        text = text.rstrip("0").rstrip(chunk.separator)
    return text


# ------------------------------------------------------------------ parsing


def _getnum(s: str, fixed: bool) -> tuple[int, str]:
    if not s[:1].isdigit() or not s[:1].isascii():
        raise TimeError("bad number")
    if not (len(s) > 1 and "0" <= s[1] <= "9"):
        if fixed:
            raise TimeError("bad number")
        return int(s[0]), s[1:]
    return int(s[:2]), s[2:]


def _getnum3(s: str, fixed: bool) -> tuple[int, str]:
    n = i = 0
    while i < 3 and i < len(s) and "0" <= s[i] <= "9":
        n = n * 10 + int(s[i])
        i += 1
    if i == 0 or (fixed and i != 3):
        raise TimeError("bad number")
    return n, s[i:]


def _lookup(table: list[str], value: str) -> tuple[int, str]:
    for i, name in enumerate(table):
        if len(value) >= len(name) and value[: len(name)].lower() == name.lower():
            return i, value[len(name) :]
    raise TimeError("bad name")


def _skip(value: str, prefix: str) -> str:
    """``skip``: the layout's literal text must be in the value; a run of spaces in the layout
    matches a run of (at least one) space."""
    while prefix:
        if prefix[0] == " ":
            if value and value[0] != " ":
                raise TimeError("bad literal")
            prefix = prefix.lstrip(" ")
            value = value.lstrip(" ")
            continue
        if not value or value[0] != prefix[0]:
            raise TimeError("bad literal")
        prefix, value = prefix[1:], value[1:]
    return value


def _leading_int(s: str) -> tuple[int, str]:
    i, x = 0, 0
    while i < len(s) and "0" <= s[i] <= "9":
        if x > (1 << 63) // 10:
            raise TimeError("time: bad [0-9]*")
        x = x * 10 + int(s[i])
        if x > 1 << 63:
            raise TimeError("time: bad [0-9]*")
        i += 1
    return x, s[i:]


def _signed_offset(value: str) -> int:
    if not value or value[0] not in "+-":
        return 0
    try:
        x, rem = _leading_int(value[1:])
    except TimeError:
        return 0
    if value[1:] == rem or x > 12:
        return 0
    return len(value) - len(rem)


def _zone_name_length(value: str) -> int:
    """``parseTimeZone``: how long the zone abbreviation at the start of ``value`` is (0: none)."""
    if len(value) < 3:
        return 0
    if value[:4] in ("ChST", "MeST"):
        return 4
    if value[:3] == "GMT":
        return 3 + (_signed_offset(value[3:]) if len(value) > 3 else 0)
    if value[0] in "+-":
        return _signed_offset(value)
    upper = 0
    while upper < 6 and upper < len(value) and "A" <= value[upper] <= "Z":
        upper += 1
    if upper == 5 and value[4] == "T":
        return 5
    if upper == 4 and (value[3] == "T" or value[:4] == "WITA"):
        return 4
    return 3 if upper == 3 else 0


def _atoi(s: str) -> int:
    """Go's time ``atoi``: an optional sign, then only ASCII digits."""
    neg = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    x, rem = _leading_int(s)
    if rem:
        raise TimeError("bad number")
    return -x if neg else x


def _parse_nanos(value: str, nbytes: int) -> int:
    if value[0] not in ".,":
        raise TimeError("bad fraction")
    nbytes = min(nbytes, 10)
    ns = _atoi(value[1:nbytes])
    if ns < 0:
        raise TimeError("bad fraction")
    return ns * 10 ** (10 - nbytes)


def _q(text: str) -> str:
    """Go's ``quote`` in time errors."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse(layout: str, value: str, local: Location = LOCAL) -> Time:
    """``time.ParseInLocation(layout, value, local)``; TimeError as Go's ParseError.

    A zone abbreviation (``MST``) the local zone does not have gets a zone of that name at
    offset 0 (``GMT+3``: +3 hours), as Go fabricates one; ``local`` must be a fixed zone.
    """
    alayout, avalue = layout, value
    f = _Fields()

    def fail(detail: str = "") -> TimeError:
        return TimeError(f"parsing time {_q(avalue)} as {_q(alayout)}: cannot parse{detail}")

    while True:
        prefix, chunk, suffix = next_chunk(layout)
        try:
            value = _skip(value, prefix)
        except TimeError:
            raise fail(f" {_q(value)} as {_q(prefix)}") from None
        if chunk is None:
            if value:
                raise TimeError(f"parsing time {_q(avalue)}: extra text: {_q(value)}")
            break
        layout = suffix
        hold = value
        try:
            done = _parse_date_chunk(f, chunk.code, value)
            if done is None:
                done = _parse_clock_chunk(f, chunk, value, layout)
            value, range_error = done
        except TimeError:
            raise fail(f" {_q(hold)} as {_q(chunk.text)}") from None
        if range_error:
            raise TimeError(f"parsing time {_q(avalue)}: {range_error} out of range")
    _settle_date(f, avalue)
    return _in_zone(f, local)


@dataclass
class _Fields:
    """What :func:`parse` has read so far (Go's locals in time.parse)."""

    year: int = 0
    month: int = -1
    day: int = -1
    yday: int = -1
    hour: int = 0
    minute: int = 0
    second: int = 0
    nsec: int = 0
    utc: bool = False
    zone_offset: int | None = None
    zone_name: str = ""
    pm_set: bool = False
    am_set: bool = False


def _parse_date_chunk(f: _Fields, code: int, value: str) -> tuple[str, str] | None:
    """A date element (year, month, weekday, day, day of year): the rest of ``value`` and a
    range error; None when ``code`` is not one."""
    range_error = ""
    if code == YEAR:
        if len(value) < 2:
            raise TimeError("bad year")
        f.year = _atoi(value[:2])
        f.year += 1900 if f.year >= 69 else 2000
        value = value[2:]
    elif code == LONG_YEAR:
        if len(value) < 4 or not "0" <= value[0] <= "9":
            raise TimeError("bad year")
        f.year, value = _atoi(value[:4]), value[4:]
    elif code in (MONTH, LONG_MONTH):
        index, value = _lookup(SHORT_MONTHS if code == MONTH else LONG_MONTHS, value)
        f.month = index + 1
    elif code in (NUM_MONTH, ZERO_MONTH):
        f.month, value = _getnum(value, code == ZERO_MONTH)
        if not 1 <= f.month <= 12:
            range_error = "month"
    elif code in (WEEKDAY, LONG_WEEKDAY):
        _index, value = _lookup(SHORT_DAYS if code == WEEKDAY else LONG_DAYS, value)
    elif code in (DAY, UNDER_DAY, ZERO_DAY):
        if code == UNDER_DAY and value[:1] == " ":
            value = value[1:]
        f.day, value = _getnum(value, code == ZERO_DAY)
    elif code in (UNDER_YEAR_DAY, ZERO_YEAR_DAY):
        for _ in range(2):
            if code == UNDER_YEAR_DAY and value[:1] == " ":
                value = value[1:]
        f.yday, value = _getnum3(value, code == ZERO_YEAR_DAY)
        if not 1 <= f.yday <= 366:
            range_error = "day-of-year"
    else:
        return None
    return value, range_error


def _parse_clock_chunk(f: _Fields, chunk: Chunk, value: str, layout: str) -> tuple[str, str]:
    """A time-of-day or zone element: the rest of ``value`` and a range error."""
    code = chunk.code
    range_error = ""
    if code == HOUR24:
        f.hour, value = _getnum(value, False)
        if f.hour >= 24:
            range_error = "hour"
    elif code in (HOUR12, ZERO_HOUR12):
        f.hour, value = _getnum(value, code == ZERO_HOUR12)
        if f.hour > 12:
            range_error = "hour"
    elif code in (MINUTE_, ZERO_MINUTE):
        f.minute, value = _getnum(value, code == ZERO_MINUTE)
        if f.minute >= 60:
            range_error = "minute"
    elif code in (SECOND_, ZERO_SECOND):
        f.second, value = _getnum(value, code == ZERO_SECOND)
        if f.second >= 60:
            range_error = "second"
        elif len(value) >= 2 and value[0] in ".," and "0" <= value[1] <= "9":
            _p, following, _s = next_chunk(layout)
            if following is None or following.code not in (FRAC0, FRAC9):
                # a fraction the layout does not have is taken anyway
                n = 2
                while n < len(value) and "0" <= value[n] <= "9":
                    n += 1
                f.nsec, value = _parse_nanos(value, n), value[n:]
    elif code in (PM, PM_LOWER):
        if len(value) < 2:
            raise TimeError("bad pm")
        p, value = value[:2], value[2:]
        if p == ("PM" if code == PM else "pm"):
            f.pm_set = True
        elif p == ("AM" if code == PM else "am"):
            f.am_set = True
        else:
            raise TimeError("bad pm")
    elif code in _ISO and value[:1] == "Z":
        value, f.utc = value[1:], True
    elif code in _ISO or code in (
        NUM_TZ,
        NUM_SECONDS_TZ,
        NUM_SHORT_TZ,
        NUM_COLON_TZ,
        NUM_COLON_SECONDS_TZ,
    ):
        f.zone_offset, value, range_error = _parse_offset(code, value)
    elif code == TZ:
        if value[:3] == "UTC":
            value, f.utc = value[3:], True
        else:
            n = _zone_name_length(value)
            if n == 0:
                raise TimeError("bad zone")
            f.zone_name, value = value[:n], value[n:]
    elif code == FRAC0:
        ndigit = 1 + chunk.digits
        if len(value) < ndigit:
            raise TimeError("bad fraction")
        f.nsec, value = _parse_nanos(value, ndigit), value[ndigit:]
    elif code == FRAC9 and len(value) >= 2 and value[0] in ".," and "0" <= value[1] <= "9":
        i = 0
        while i + 1 < len(value) and "0" <= value[i + 1] <= "9":
            i += 1
        f.nsec, value = _parse_nanos(value, 1 + i), value[1 + i :]
    return value, range_error


def _settle_date(f: _Fields, avalue: str) -> None:
    """AM/PM into the hour; a day of year into month and day (checked against them)."""
    if f.pm_set and f.hour < 12:
        f.hour += 12
    elif f.am_set and f.hour == 12:
        f.hour = 0
    if f.yday >= 0:
        m = d = 0
        if _is_leap(f.year):
            if f.yday == 31 + 29:
                m, d = 2, 29
            elif f.yday > 31 + 29:
                f.yday -= 1
        if m == 0:
            m = f.yday // 31 + 1
            if _DAYS_BEFORE[m] < f.yday:
                m += 1
            d = f.yday - _DAYS_BEFORE[m - 1]
        if f.month >= 0 and f.month != m:
            raise TimeError(f"parsing time {_q(avalue)}: day-of-year does not match month")
        if f.day >= 0 and f.day != d:
            raise TimeError(f"parsing time {_q(avalue)}: day-of-year does not match day")
        f.month, f.day = m, d
    else:
        f.month = 1 if f.month < 0 else f.month
        f.day = 1 if f.day < 0 else f.day
    if f.day < 1 or f.day > _days_in(f.month, f.year):
        raise TimeError(f"parsing time {_q(avalue)}: day out of range")


def _in_zone(f: _Fields, local: Location) -> Time:
    """The parsed wall clock as a Time: UTC, an offset, a zone abbreviation, or ``local``."""
    wall = _days_from_civil(f.year, f.month, f.day) * 86400
    wall += f.hour * 3600 + f.minute * 60 + f.second
    nsec, zone_name, zone_offset = f.nsec, f.zone_name, f.zone_offset
    if f.utc:
        return Time(wall, nsec, UTC)
    if local.zone is not None:
        raise TimeError("parsing in a named time zone is not supported by the local runner")
    if zone_offset is not None:
        unix = wall - zone_offset
        name, offset = local.lookup(unix)
        if offset == zone_offset and (not zone_name or name == zone_name):
            return Time(unix, nsec, local)
        return Time(unix, nsec, fixed_zone(zone_name, zone_offset))
    if zone_name:
        name, offset = local.lookup(wall)
        if name == zone_name:
            return Time(wall - offset, nsec, local)
        offset = 0
        if len(zone_name) > 3 and zone_name.startswith("GMT"):
            offset = int(zone_name[3:]) * 3600
        return Time(wall, nsec, fixed_zone(zone_name, offset))
    _name, offset = local.lookup(wall)
    return Time(wall - offset, nsec, local)


def _parse_offset(code: int, value: str) -> tuple[int, str, str]:
    if code in (ISO8601_COLON_TZ, NUM_COLON_TZ):
        if len(value) < 6 or value[3] != ":":
            raise TimeError("bad zone")
        sign, hh, mm, ss, value = value[0], value[1:3], value[4:6], "00", value[6:]
    elif code in (NUM_SHORT_TZ, ISO8601_SHORT_TZ):
        if len(value) < 3:
            raise TimeError("bad zone")
        sign, hh, mm, ss, value = value[0], value[1:3], "00", "00", value[3:]
    elif code in (ISO8601_COLON_SECONDS_TZ, NUM_COLON_SECONDS_TZ):
        if len(value) < 9 or value[3] != ":" or value[6] != ":":
            raise TimeError("bad zone")
        sign, hh, mm, ss, value = value[0], value[1:3], value[4:6], value[7:9], value[9:]
    elif code in (ISO8601_SECONDS_TZ, NUM_SECONDS_TZ):
        if len(value) < 7:
            raise TimeError("bad zone")
        sign, hh, mm, ss, value = value[0], value[1:3], value[3:5], value[5:7], value[7:]
    else:
        if len(value) < 5:
            raise TimeError("bad zone")
        sign, hh, mm, ss, value = value[0], value[1:3], value[3:5], "00", value[5:]
    hr, _ = _getnum(hh, True)
    mi, _ = _getnum(mm, True)
    se, _ = _getnum(ss, True)
    range_error = ""
    if hr > 24:
        range_error = "time zone offset hour"
    elif mi > 60:
        range_error = "time zone offset minute"
    elif se > 60:
        range_error = "time zone offset second"
    offset = (hr * 60 + mi) * 60 + se
    if sign == "-":
        offset = -offset
    elif sign != "+":
        raise TimeError("bad zone sign")
    return offset, value, range_error


# ------------------------------------------------------------------ durations

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 micro sign
    "μs": MICROSECOND,  # U+03BC Greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}


def parse_duration(text: str) -> int:
    """``time.ParseDuration``: nanoseconds; TimeError as Go's."""
    orig = text
    bad = TimeError(f'time: invalid duration "{orig}"')
    s = text
    neg = False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise bad
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise bad
        length = len(s)
        try:
            v, s = _leading_int(s)
        except TimeError:
            raise bad from None
        pre = length != len(s)
        post = False
        f, scale = 0, 1.0
        if s[:1] == ".":
            s = s[1:]
            length = len(s)
            f, scale, s = _leading_fraction(s)
            post = length != len(s)
        if not pre and not post:
            raise bad
        m = re.match(r"[^.0-9]*", s)
        unit = m.group(0) if m else ""
        if not unit:
            raise TimeError(f'time: missing unit in duration "{orig}"')
        s = s[len(unit) :]
        if unit not in _UNITS:
            raise TimeError(f'time: unknown unit "{unit}" in duration "{orig}"')
        scale_ns = _UNITS[unit]
        if v > (1 << 63) // scale_ns:
            raise bad
        v *= scale_ns
        if f > 0:
            v += int(float(f) * (float(scale_ns) / scale))
            if v > 1 << 63:
                raise bad
        total += v
        if total > 1 << 63:
            raise bad
    if neg:
        return -total
    if total > _MAX_DURATION:
        raise bad
    return total


def _leading_fraction(s: str) -> tuple[int, float, str]:
    i, x, scale, overflow = 0, 0, 1.0, False
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            if x > _MAX_DURATION // 10:
                overflow = True
            else:
                y = x * 10 + int(s[i])
                if y > 1 << 63:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def _frac(u: int, prec: int) -> tuple[str, int]:
    digits = str(u % 10**prec).rjust(prec, "0").rstrip("0")
    return ("." + digits if digits else ""), u // 10**prec


def duration_string(d: int) -> str:
    """``Duration.String``: ``1h2m3.5s``, ``1.5ms``, ``0s``; hours are the largest unit."""
    u = abs(d)
    if u < SECOND:
        if u == 0:
            return "0s"
        if u < MICROSECOND:
            prec, unit = 0, "ns"
        elif u < MILLISECOND:
            prec, unit = 3, "µs"
        else:
            prec, unit = 6, "ms"
        frac, u = _frac(u, prec)
        text = f"{u}{frac}{unit}"
    else:
        frac, u = _frac(u, 9)
        text = f"{u % 60}{frac}s"
        u //= 60
        if u > 0:
            text = f"{u % 60}m" + text
            u //= 60
            if u > 0:
                text = f"{u}h" + text
    return ("-" if d < 0 else "") + text


def round_duration(d: int, m: int) -> int:
    """``Duration.Round(m)``: to the nearest multiple, halves away from zero."""
    if m <= 0:
        return d
    r = abs(d) % m  # Go's % truncates toward zero
    if d < 0:
        if r + r < m:
            return d + r
        return max(d - m + r, _MIN_DURATION)
    if r + r < m:
        return d - r
    return min(d + m - r, _MAX_DURATION)


# util/humanize Duration's units (go-humanize's Day, Week, Month, Year in seconds): the
# largest unit under which the duration falls, with its Go format (``%d`` the count).
_DAY = 86400
_MONTH = 30 * _DAY
_YEAR = 12 * _MONTH
_MAGNITUDES: tuple[tuple[float, str, int], ...] = (
    (1, "0 seconds", 1),
    (2, "1 second", 0),
    (60, "%d seconds", 1),
    (120, "1 minute", 0),
    (3600, "%d minutes", 60),
    (7200, "1 hour", 0),
    (_DAY, "%d hours", 3600),
    (2 * _DAY, "1 day", 0),
    (7 * _DAY, "%d days", _DAY),
    (14 * _DAY, "1 week", 0),
    (_MONTH, "%d weeks", 7 * _DAY),
    (2 * _MONTH, "1 month", 0),
    (_YEAR, "%d months", _MONTH),
    (18 * _MONTH, "1 year", 0),
    (2 * _YEAR, "2 years", 0),
    (37 * _YEAR, "%d years", _YEAR),
    (float("inf"), "a long while", 0),
)


def _truncated(nanos: int) -> str:
    """util/humanize TruncatedDuration: the duration in its largest unit, rounded down."""
    for limit, text, unit in _MAGNITUDES:
        if nanos < limit * 1_000_000_000:
            return text % (nanos // (unit * 1_000_000_000)) if "%d" in text else text
    return "a long while"  # pragma: no cover - the table ends at infinity


def humanize_duration(seconds: float) -> str:
    """Argo's util/humanize Duration (the retry node's ``Backoff for ...``): one unit under a
    minute (``1 second``, ``59 seconds``), else two (``1 minute 30 seconds``)."""
    nanos = abs(round(seconds * 1_000_000_000))
    whole = nanos // 1_000_000_000
    if whole < 60:
        return _truncated(nanos)
    if whole < 3600:
        return f"{_truncated(nanos)} {whole % 60} seconds"
    if whole < _DAY:
        return f"{_truncated(nanos)} {whole // 60 % 60} minutes"
    return f"{_truncated(nanos)} {whole // 3600 % 24} hours"
