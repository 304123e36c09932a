"""The ``sprig.*`` functions of Argo's expressions (github.com/Masterminds/sprig v3.3
``GenericFuncMap``, minus ``env`` and ``expandenv`` which Argo removes: util/expr/env/env.go).

Sprig's functions are written for Go templates' pipelines, so the subject comes *last*:
``sprig.trimPrefix('v', version)``, ``sprig.hasPrefix('v', version)``, ``sprig.replace('a', 'b',
text)``. Numbers go through spf13/cast: ``sprig.add('2', 3.9)`` is 5 (strings parsed, floats
truncated, anything else 0). Parameters Go types as ``int`` or ``string`` must get one
(``sprig.repeat(3, 'ab')``), as expr-lang calls them through reflection.

:data:`FUNCTIONS` is what the runner implements; :data:`ALL_NAMES` is sprig's whole map, so a
function it has but the runner does not (dates, crypto, semver, paths, network) is refused with
that reason before anything runs.

The date functions format with Go's reference-time layouts (``sprig.date('2006-01-02', t)``,
argo_local/expr/gotime.py). As in sprig, a date that is not a ``time.Time`` or Unix seconds
(a date *string*, such as ``workflow.creationTimestamp``) formats the current time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import secrets
import string
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from argo_local.expr import golang, gotime
from argo_local.expr.depends import ExprError


class SprigError(ExprError):
    """A sprig function called with arguments Go would refuse."""


ALL_NAMES = frozenset(
    """hello ago date date_in_zone date_modify dateInZone dateModify duration durationRound
    htmlDate htmlDateInZone must_date_modify mustDateModify mustToDate now toDate unixEpoch abbrev
    abbrevboth trunc trim upper lower title untitle substr repeat trimall trimAll trimSuffix
    trimPrefix nospace initials randAlphaNum randAlpha randAscii randNumeric swapcase shuffle
    snakecase camelcase kebabcase wrap wrapWith contains hasPrefix hasSuffix quote squote cat
    indent nindent replace plural sha1sum sha256sum sha512sum adler32sum toString atoi int64 int
    float64 seq toDecimal split splitList splitn toStrings until untilStep add1 add sub div mod
    mul randInt add1f addf subf divf mulf biggest max min maxf minf ceil floor round join
    sortAlpha default empty coalesce all any compact mustCompact fromJson toJson toPrettyJson
    toRawJson mustFromJson mustToJson mustToPrettyJson mustToRawJson ternary deepCopy
    mustDeepCopy typeOf typeIs typeIsLike kindOf kindIs deepEqual getHostByName base dir clean
    ext isAbs osBase osClean osDir osExt osIsAbs b64enc b64dec b32enc b32dec tuple list dict get
    set unset hasKey pluck keys pick omit merge mergeOverwrite mustMerge mustMergeOverwrite
    values append push mustAppend mustPush prepend mustPrepend first mustFirst rest mustRest last
    mustLast initial mustInitial reverse mustReverse uniq mustUniq without mustWithout has mustHas
    slice mustSlice concat dig chunk mustChunk bcrypt htpasswd genPrivateKey derivePassword
    buildCustomCert genCA genCAWithKey genSelfSignedCert genSelfSignedCertWithKey genSignedCert
    genSignedCertWithKey encryptAES decryptAES randBytes uuidv4 semver semverCompare fail
    regexMatch mustRegexMatch regexFindAll mustRegexFindAll regexFind mustRegexFind
    regexReplaceAll mustRegexReplaceAll regexReplaceAllLiteral mustRegexReplaceAllLiteral
    regexSplit mustRegexSplit regexQuoteMeta urlParse urlJoin""".split()  # noqa: SIM905
)


# ------------------------------------------------------------------ Go argument types


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise SprigError(
            f"sprig.{name}: cannot use {golang.sprint(value)!r} ({golang.type_name(value)}) as string"
        )
    return value


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SprigError(
            f"sprig.{name}: cannot use {golang.sprint(value)!r} ({golang.type_name(value)}) as int"
        )
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SprigError(
            f"sprig.{name}: cannot use {golang.sprint(value)!r} ({golang.type_name(value)}) as bool"
        )
    return value


def _kind_of(value: Any) -> str:
    if value is None:
        return "invalid"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, dict):
        return "map"
    return golang.type_name(value)


def to_int64(value: Any) -> int:
    """spf13/cast.ToInt64: numbers truncated, strings parsed (base prefixes, ``3.0``), bools 1/0,
    anything else 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return 0 if math.isnan(value) or math.isinf(value) else int(value)
    if isinstance(value, str):
        text = value
        if re.fullmatch(r"[+-]?\d+\.0*", text):
            text = text.split(".")[0]
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        try:
            if body[:2].lower() in ("0x", "0o", "0b"):
                return sign * int(body, 0)
            if len(body) > 1 and body.startswith("0"):
                return sign * int(body, 8)
            return sign * int(body, 10)
        except ValueError:
            return 0
    return 0


def to_float64(value: Any) -> float:
    """spf13/cast.ToFloat64: numbers, parsed strings, bools 1/0, anything else 0."""
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value) if "_" not in value and value.strip() == value else 0.0
        except ValueError:
            return 0.0
    return 0.0


def strval(value: Any) -> str:
    """sprig's ``toString``: strings as they are, anything else as Go's ``%v``."""
    return value if isinstance(value, str) else golang.sprint(value)


def _strslice(value: Any) -> list[str]:
    if isinstance(value, list):
        return [strval(v) for v in value if v is not None]
    if value is None:
        return []
    return [strval(value)]


def empty(value: Any) -> bool:
    """sprig's ``empty``: nil, false, 0, and empty strings, lists and maps."""
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value == 0
    return False


# ------------------------------------------------------------------ functions


def _title(text: Any) -> str:
    s = _str(text, "title")
    out, prev = [], " "
    for ch in s:
        separator = not (prev.isalnum() or prev == "_")
        out.append(ch.upper() if separator else ch)
        prev = ch
    return "".join(out)


def _trunc(n: Any, text: Any) -> str:
    c, s = _int(n, "trunc"), _str(text, "trunc")
    data = s.encode()
    if c < 0 and len(data) + c > 0:
        return data[len(data) + c :].decode("utf-8", "replace")
    if c >= 0 and len(data) > c:
        return data[:c].decode("utf-8", "replace")
    return s


def _substr(start: Any, end: Any, text: Any) -> str:
    a, b, s = _int(start, "substr"), _int(end, "substr"), _str(text, "substr")
    data = s.encode()
    if a < 0:
        part = data[:b]
    elif b < 0 or b > len(data):
        part = data[a:]
    else:
        if a > b:
            raise SprigError(f"sprig.substr: slice bounds out of range [{a}:{b}]")
        part = data[a:b]
    return part.decode("utf-8", "replace")


def _quote(*values: Any) -> str:
    return " ".join(
        golang.marshal(strval(v))
        .replace("\\u003c", "<")
        .replace("\\u003e", ">")
        .replace("\\u0026", "&")
        for v in values
        if v is not None
    )


def _cat(*values: Any) -> str:
    return " ".join(golang.sprint(v) for v in values if v is not None)


def _indent(n: Any, text: Any) -> str:
    pad = " " * _int(n, "indent")
    return pad + _str(text, "indent").replace("\n", "\n" + pad)


def _split(sep: Any, text: Any) -> dict[str, str]:
    parts = _str(text, "split").split(_str(sep, "split")) if sep != "" else list(text)
    return {f"_{i}": p for i, p in enumerate(parts)}


def _split_list(sep: Any, text: Any) -> list[str]:
    s, d = _str(text, "splitList"), _str(sep, "splitList")
    return list(s) if d == "" else s.split(d)


def _splitn(sep: Any, n: Any, text: Any) -> dict[str, str]:
    s, d, count = _str(text, "splitn"), _str(sep, "splitn"), _int(n, "splitn")
    if count == 0:
        return {}
    parts = s.split(d) if count < 0 else s.split(d, count - 1)
    return {f"_{i}": p for i, p in enumerate(parts)}


def _until_step(start: Any, stop: Any, step: Any) -> list[int]:
    a, b, c = _int(start, "untilStep"), _int(stop, "untilStep"), _int(step, "untilStep")
    if b < a:
        return list(range(a, b, c)) if c < 0 else []
    return list(range(a, b, c)) if c > 0 else []


def _int_div(a: Any, b: Any, name: str) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise SprigError(f"sprig.{name}: integer divide by zero")
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _int_mod(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise SprigError("sprig.mod: integer divide by zero")
    return int(math.fmod(x, y))


def _fold(
    values: tuple[Any, ...], fn: Callable[[Any, Any], Any], cast: Callable[[Any], Any]
) -> Any:
    result = cast(values[0])
    for v in values[1:]:
        result = fn(result, cast(v))
    return result


def _divf(a: Any, *rest: Any) -> float:
    result = to_float64(a)
    for v in rest:
        d = to_float64(v)
        if d == 0:
            result = math.nan if result == 0 else math.copysign(math.inf, result)
        else:
            result /= d
    return result


def _round(a: Any, places: Any, *round_on: Any) -> float:
    value = to_float64(a)
    on = to_float64(round_on[0]) if round_on else 0.5
    scale = math.pow(10, to_float64(_int(places, "round")))
    digit = scale * value
    frac = math.modf(digit)[0]
    return (math.ceil(digit) if frac >= on else math.floor(digit)) / scale


def _default(default: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return default
    return given[0]


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if not empty(v)), None)


def _to_json(value: Any) -> str:
    try:
        return golang.marshal(value)
    except golang.GoError:
        return ""


def _to_pretty_json(value: Any) -> str:
    try:
        return golang.marshal(value, indent="  ")
    except golang.GoError:
        return ""


def _to_raw_json(value: Any) -> str:
    return _to_json(value).replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")


def _from_json(text: Any) -> Any:
    try:
        return golang.from_json(_str(text, "fromJson"))
    except golang.GoError:
        return None


def _b64dec(text: Any) -> str:
    try:
        return base64.b64decode(_str(text, "b64dec"), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError) as exc:
        return f"illegal base64 data: {exc}"


def _b32dec(text: Any) -> str:
    try:
        return base64.b32decode(_str(text, "b32dec")).decode("utf-8", "replace")
    except (binascii.Error, ValueError) as exc:
        return f"illegal base32 data: {exc}"


def _list_arg(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise SprigError(f"sprig.{name}: cannot find {name} on type {golang.type_name(value)}")
    return value


def _dict(*pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(pairs), 2):
        out[strval(pairs[i])] = pairs[i + 1] if i + 1 < len(pairs) else ""
    return out


def _dict_arg(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SprigError(
            f"sprig.{name}: cannot use {golang.type_name(value)} as map[string]interface {{}}"
        )
    return value


def _uniq(items: Any) -> list[Any]:
    out: list[Any] = []
    for v in _list_arg(items, "uniq"):
        if not any(_deep_equal(v, u) for u in out):
            out.append(v)
    return out


def _deep_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _regex(pattern: Any, name: str) -> re.Pattern[str]:
    try:
        return golang.regex(_str(pattern, name))
    except golang.GoError as exc:
        raise SprigError(f"sprig.{name}: {exc}") from None


def _regex_match(pattern: Any, text: Any) -> bool:
    try:
        compiled = golang.regex(_str(pattern, "regexMatch"))
    except golang.GoError:
        return False  # sprig ignores the compile error
    return compiled.search(_str(text, "regexMatch")) is not None


def _find_all(pattern: Any, text: Any, n: Any) -> list[str]:
    found = [
        m.group(0) for m in _regex(pattern, "regexFindAll").finditer(_str(text, "regexFindAll"))
    ]
    limit = _int(n, "regexFindAll")
    return found if limit < 0 else found[:limit]


def _go_template(repl: str) -> Callable[[re.Match[str]], str]:
    """Go's Regexp.Expand: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""

    def expand(m: re.Match[str]) -> str:
        def one(ref: re.Match[str]) -> str:
            if ref.group(0) == "$$":
                return "$"
            name = ref.group(1) or ref.group(2)
            try:
                group = m.group(int(name)) if name.isdigit() else m.group(name)
            except IndexError:
                return ""  # Go expands an unknown group to nothing
            return group or ""

        return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", one, repl)

    return expand


def _replace_all(pattern: Any, text: Any, repl: Any) -> str:
    return _regex(pattern, "regexReplaceAll").sub(
        _go_template(_str(repl, "regexReplaceAll")), _str(text, "regexReplaceAll")
    )


def _replace_literal(pattern: Any, text: Any, repl: Any) -> str:
    literal = _str(repl, "regexReplaceAllLiteral")
    return _regex(pattern, "regexReplaceAllLiteral").sub(
        lambda _m: literal, _str(text, "regexReplaceAllLiteral")
    )


def _regex_split(pattern: Any, text: Any, n: Any) -> list[str]:
    compiled, s, limit = (
        _regex(pattern, "regexSplit"),
        _str(text, "regexSplit"),
        _int(n, "regexSplit"),
    )
    if limit == 0:
        return []
    if not s:
        return [""]
    return compiled.split(s) if limit < 0 else compiled.split(s, maxsplit=limit - 1)


def _random(alphabet: str, name: str) -> Callable[[Any], str]:
    def run(count: Any) -> str:
        n = _int(count, name)
        return "".join(secrets.choice(alphabet) for _ in range(max(n, 0)))

    return run


def _rand_int(low: Any, high: Any) -> int:
    a, b = _int(low, "randInt"), _int(high, "randInt")
    if b <= a:
        raise SprigError("sprig.randInt: invalid argument to Intn")
    return a + secrets.randbelow(b - a)


def _without(items: Any, *omit: Any) -> list[Any]:
    return [v for v in _list_arg(items, "without") if not any(_deep_equal(v, o) for o in omit)]


def _has(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    return any(_deep_equal(needle, v) for v in _list_arg(haystack, "has"))


def _get(d: Any, key: Any) -> Any:
    return _dict_arg(d, "get").get(_str(key, "get"), "")


def _ternary(yes: Any, no: Any, cond: Any) -> Any:
    return yes if _bool(cond, "ternary") else no


# ------------------------------------------------------------------ dates (sprig date.go)


def _time(value: Any, name: str) -> gotime.Time:
    """A ``time.Time`` parameter."""
    if not isinstance(value, gotime.Time):
        raise SprigError(
            f"sprig.{name}: cannot use {golang.sprint(value)!r} ({golang.type_name(value)}) "
            "as time.Time"
        )
    return value


def _instant(value: Any) -> gotime.Time:
    """sprig's date argument: a time.Time, or Unix seconds as a Go int; anything else, a
    date string included, is *now* (date.go ``dateInZone``'s ``default: t = time.Now()``)."""
    if isinstance(value, gotime.Time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return gotime.Time.from_unix(value)
    return gotime.Time.now()


def _date_in_zone(layout: Any, date: Any, zone: Any) -> str:
    try:
        loc = gotime.load_location(_str(zone, "dateInZone"))
    except gotime.TimeError:
        loc = gotime.UTC  # sprig falls back to UTC for a zone it cannot load
    return _instant(date).in_location(loc).format(_str(layout, "dateInZone"))


def _date_modify(change: Any, date: Any) -> gotime.Time:
    t = _time(date, "dateModify")
    try:
        return t.add(gotime.parse_duration(_str(change, "dateModify")))
    except gotime.TimeError:
        return t  # sprig returns the date unchanged when the duration does not parse


def _must_date_modify(change: Any, date: Any) -> gotime.Time:
    t = _time(date, "mustDateModify")
    try:
        return t.add(gotime.parse_duration(_str(change, "mustDateModify")))
    except gotime.TimeError as exc:
        raise SprigError(str(exc)) from None


def _ago(date: Any) -> str:
    return gotime.duration_string(
        gotime.round_duration(gotime.Time.now().sub_ns(_instant(date)), gotime.SECOND)
    )


def _no_int(value: Any, name: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        # sprig switches on int64 only: an expr-lang int literal is a Go int (0s), asInt's
        # result an int64 (counted); the local runner does not keep that difference.
        raise SprigError(
            f"sprig.{name}: a number is 0 for an int and counted for an int64 in Go, which the "
            "local runner does not tell apart: pass a string"
        )


def _go_int64(value: int) -> int:
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def _duration(seconds: Any) -> str:
    _no_int(seconds, "duration")
    n = 0
    if isinstance(seconds, str) and re.fullmatch(r"[+-]?[0-9]+", seconds):
        # strconv.ParseInt: out of range is the nearest int64
        n = max(-(1 << 63), min((1 << 63) - 1, int(seconds)))
    return gotime.duration_string(_go_int64(n * gotime.SECOND))


_ROUND_UNITS = (
    (gotime.HOUR * 24 * 365, "y"),
    (gotime.HOUR * 24 * 30, "mo"),
    (gotime.HOUR * 24, "d"),
    (gotime.HOUR, "h"),
    (gotime.MINUTE, "m"),
    (gotime.SECOND, "s"),
)


def _duration_round(value: Any) -> str:
    _no_int(value, "durationRound")
    d = 0
    if isinstance(value, str):
        try:
            d = gotime.parse_duration(value)
        except gotime.TimeError:
            d = 0
    elif isinstance(value, gotime.Time):
        d = gotime.Time.now().sub_ns(value)
    u = abs(d)
    for size, unit in _ROUND_UNITS:
        if u > size:
            return f"{u // size}{unit}"
    return "0s"


_ZERO_TIME = gotime.Time(-62135596800)  # time.Time{}: January 1, year 1, 00:00:00 UTC


def _to_date(layout: Any, text: Any) -> gotime.Time:
    try:
        return gotime.parse(_str(layout, "toDate"), _str(text, "toDate"))
    except gotime.TimeError:
        return _ZERO_TIME


def _must_to_date(layout: Any, text: Any) -> gotime.Time:
    try:
        return gotime.parse(_str(layout, "mustToDate"), _str(text, "mustToDate"))
    except gotime.TimeError as exc:
        raise SprigError(str(exc)) from None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # dates (Go's reference-time layouts: argo_local/expr/gotime.py)
    "date": lambda layout, date: _date_in_zone(layout, date, "Local"),
    "dateInZone": _date_in_zone,
    "date_in_zone": _date_in_zone,
    "htmlDate": lambda date: _date_in_zone("2006-01-02", date, "Local"),
    "htmlDateInZone": lambda date, zone: _date_in_zone("2006-01-02", date, zone),
    "now": gotime.Time.now,
    "dateModify": _date_modify,
    "date_modify": _date_modify,
    "mustDateModify": _must_date_modify,
    "must_date_modify": _must_date_modify,
    "ago": _ago,
    "duration": _duration,
    "durationRound": _duration_round,
    "toDate": _to_date,
    "mustToDate": _must_to_date,
    "unixEpoch": lambda date: str(_time(date, "unixEpoch").unix),
    # strings (subject last)
    "upper": lambda s: _str(s, "upper").upper(),
    "lower": lambda s: _str(s, "lower").lower(),
    "title": _title,
    "untitle": lambda s: _str(s, "untitle")[:1].lower() + _str(s, "untitle")[1:],
    "trim": lambda s: _str(s, "trim").strip(),
    "trimAll": lambda cut, s: _str(s, "trimAll").strip(_str(cut, "trimAll")),
    "trimall": lambda cut, s: _str(s, "trimall").strip(_str(cut, "trimall")),
    "trimPrefix": lambda p, s: _str(s, "trimPrefix").removeprefix(_str(p, "trimPrefix")),
    "trimSuffix": lambda p, s: _str(s, "trimSuffix").removesuffix(_str(p, "trimSuffix")),
    "trunc": _trunc,
    "substr": _substr,
    "repeat": lambda n, s: _str(s, "repeat") * max(_int(n, "repeat"), 0),
    "nospace": lambda s: "".join(ch for ch in _str(s, "nospace") if not ch.isspace()),
    "swapcase": lambda s: _str(s, "swapcase").swapcase(),
    "contains": lambda sub, s: _str(sub, "contains") in _str(s, "contains"),
    "hasPrefix": lambda p, s: _str(s, "hasPrefix").startswith(_str(p, "hasPrefix")),
    "hasSuffix": lambda p, s: _str(s, "hasSuffix").endswith(_str(p, "hasSuffix")),
    "quote": _quote,
    "squote": lambda *v: " ".join(f"'{golang.sprint(x)}'" for x in v if x is not None),
    "cat": _cat,
    "indent": _indent,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "replace": lambda old, new, s: _str(s, "replace").replace(
        _str(old, "replace"), _str(new, "replace")
    ),
    "plural": lambda one, many, n: (
        _str(one, "plural") if _int(n, "plural") == 1 else _str(many, "plural")
    ),
    # conversions
    "toString": strval,
    "toStrings": _strslice,
    "atoi": lambda s: int(_str(s, "atoi")) if re.fullmatch(r"[+-]?\d+", s) else 0,
    "int": to_int64,
    "int64": to_int64,
    "float64": to_float64,
    "split": _split,
    "splitList": _split_list,
    "splitn": _splitn,
    "join": lambda sep, v: _str(sep, "join").join(_strslice(v)),
    "sortAlpha": lambda v: sorted(_strslice(v)),
    # integer arithmetic (cast.ToInt64 on every argument)
    "add1": lambda a: to_int64(a) + 1,
    "add": lambda *a: sum(to_int64(v) for v in a),
    "sub": lambda a, b: to_int64(a) - to_int64(b),
    "mul": lambda a, *rest: _fold((a, *rest), lambda x, y: x * y, to_int64),
    "div": lambda a, b: _int_div(a, b, "div"),
    "mod": _int_mod,
    "max": lambda a, *rest: max(to_int64(v) for v in (a, *rest)),
    "biggest": lambda a, *rest: max(to_int64(v) for v in (a, *rest)),
    "min": lambda a, *rest: min(to_int64(v) for v in (a, *rest)),
    "until": lambda n: _until_step(0, n, 1 if _int(n, "until") >= 0 else -1),
    "untilStep": _until_step,
    # float arithmetic
    "add1f": lambda a: to_float64(a) + 1,
    "addf": lambda *a: math.fsum(to_float64(v) for v in a),
    "subf": lambda a, *rest: _fold((a, *rest), lambda x, y: x - y, to_float64),
    "mulf": lambda a, *rest: _fold((a, *rest), lambda x, y: x * y, to_float64),
    "divf": _divf,
    "maxf": lambda a, *rest: max(to_float64(v) for v in (a, *rest)),
    "minf": lambda a, *rest: min(to_float64(v) for v in (a, *rest)),
    "floor": lambda a: float(math.floor(to_float64(a))),
    "ceil": lambda a: float(math.ceil(to_float64(a))),
    "round": _round,
    # defaults and logic
    "default": _default,
    "empty": empty,
    "coalesce": _coalesce,
    "all": lambda *v: all(not empty(x) for x in v),
    "any": lambda *v: any(not empty(x) for x in v) if v else False,
    "compact": lambda v: [x for x in _list_arg(v, "compact") if not empty(x)],
    "ternary": _ternary,
    # encodings
    "b64enc": lambda s: base64.b64encode(_str(s, "b64enc").encode()).decode(),
    "b64dec": _b64dec,
    "b32enc": lambda s: base64.b32encode(_str(s, "b32enc").encode()).decode(),
    "b32dec": _b32dec,
    "sha1sum": lambda s: hashlib.sha1(_str(s, "sha1sum").encode()).hexdigest(),
    "sha256sum": lambda s: hashlib.sha256(_str(s, "sha256sum").encode()).hexdigest(),
    "sha512sum": lambda s: hashlib.sha512(_str(s, "sha512sum").encode()).hexdigest(),
    "adler32sum": lambda s: str(zlib.adler32(_str(s, "adler32sum").encode())),
    "toJson": _to_json,
    "toPrettyJson": _to_pretty_json,
    "toRawJson": _to_raw_json,
    "fromJson": _from_json,
    # lists
    "list": lambda *v: list(v),
    "tuple": lambda *v: list(v),
    "first": lambda v: _list_arg(v, "first")[0] if v else None,
    "last": lambda v: _list_arg(v, "last")[-1] if v else None,
    "rest": lambda v: _list_arg(v, "rest")[1:] if v else [],
    "initial": lambda v: _list_arg(v, "initial")[:-1] if v else [],
    "reverse": lambda v: list(reversed(_list_arg(v, "reverse"))),
    "uniq": _uniq,
    "without": _without,
    "has": _has,
    "append": lambda v, x: [*_list_arg(v, "append"), x],
    "push": lambda v, x: [*_list_arg(v, "push"), x],
    "prepend": lambda v, x: [x, *_list_arg(v, "prepend")],
    "concat": lambda *lists: [x for v in lists for x in _list_arg(v, "concat")],
    # dicts
    "dict": _dict,
    "get": _get,
    "hasKey": lambda d, k: _str(k, "hasKey") in _dict_arg(d, "hasKey"),
    "keys": lambda *ds: [k for d in ds for k in sorted(_dict_arg(d, "keys"))],
    "values": lambda d: [_dict_arg(d, "values")[k] for k in sorted(d)],
    "pick": lambda d, *ks: {k: v for k, v in _dict_arg(d, "pick").items() if k in ks},
    "omit": lambda d, *ks: {k: v for k, v in _dict_arg(d, "omit").items() if k not in ks},
    # regular expressions (Go's RE2 syntax)
    "regexMatch": _regex_match,
    "regexFind": lambda p, s: (
        m.group(0) if (m := _regex(p, "regexFind").search(_str(s, "regexFind"))) else ""
    ),
    "regexFindAll": _find_all,
    "regexReplaceAll": _replace_all,
    "regexReplaceAllLiteral": _replace_literal,
    "regexSplit": _regex_split,
    "regexQuoteMeta": lambda s: re.sub(
        r"([\\.+*?()|\[\]{}^$])", r"\\\1", _str(s, "regexQuoteMeta")
    ),
    # random values
    "randAlphaNum": _random(string.ascii_letters + string.digits, "randAlphaNum"),
    "randAlpha": _random(string.ascii_letters, "randAlpha"),
    "randNumeric": _random(string.digits, "randNumeric"),
    "randAscii": _random("".join(chr(c) for c in range(32, 127)), "randAscii"),
    "randInt": _rand_int,
    "uuidv4": lambda: str(uuid.uuid4()),
    # types
    "typeOf": golang.type_name,
    "kindOf": _kind_of,
    "kindIs": lambda kind, v: _str(kind, "kindIs") == _kind_of(v),
    "typeIs": lambda t, v: _str(t, "typeIs") == golang.type_name(v),
    "deepEqual": _deep_equal,
}

assert set(FUNCTIONS) <= ALL_NAMES, set(FUNCTIONS) - ALL_NAMES
