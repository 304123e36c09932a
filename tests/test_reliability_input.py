"""Reliability: bad input gets one line, its documented exit code and no output; the parsers of
shard items, count files and part files are fuzzed with hypothesis.

BAD_INPUTS here adds to tests/test_steps.py's list (it does not repeat it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pipeline_helpers import RunStep, error_of, log_lines
from reliability_helpers import STEP_PYTHONPATH

from workers.errors import UsageError
from workers.jsonparts import to_json_lines
from workers.shards import MAX_KEY, parse_count, parse_item

pytestmark = pytest.mark.reliability

ENV = {"PYTHONPATH": STEP_PYTHONPATH}
R = ["--run-id", "r", "--store", "STORE"]

# (step, args, files to create {name: bytes}, exit code, message fragment)
BAD_INPUTS: list[tuple[str, list[str], dict[str, bytes], int, str]] = [
    # shard items: malformed, truncated, wrong types, inverted or absurd bounds
    ("shard", ["--shard", "", *R], {}, 2, "not valid JSON"),
    ("shard", ["--shard", '{"index":0,', *R], {}, 2, "not valid JSON"),
    ("shard", ["--shard", "@ITEM", *R], {"ITEM": b'{"index":0,"lo":1,"hi"'}, 2, "not valid JSON"),
    ("shard", ["--shard", "@ITEM", *R], {"ITEM": b"\xff\xfe{}"}, 2, "not UTF-8"),
    ("shard", ["--shard", "@ITEM", *R], {"ITEM": b""}, 2, "not valid JSON"),
    ("shard", ["--shard", "@DIR", *R], {"DIR/x": b""}, 2, "is a folder"),
    ("shard", ["--shard", "[0, 1, 10]", *R], {}, 2, "must be a JSON object"),
    ("shard", ["--shard", '{"index":0,"lo":"1"}', *R], {}, 2, "'lo' must be an integer"),
    ("shard", ["--shard", '{"index":0,"hi":2.5}', *R], {}, 2, "'hi' must be an integer"),
    ("shard", ["--shard", '{"index":true}', *R], {}, 2, "'index' must be an integer"),
    ("shard", ["--shard", '{"index":null}', *R], {}, 2, "'index' is required"),
    ("shard", ["--shard", '{"lo":1}', *R], {}, 2, "'index' is required"),
    ("shard", ["--shard", '{"index":-1}', *R], {}, 2, "out of range"),
    ("shard", ["--shard", '{"index":1000000}', *R], {}, 2, "out of range"),
    ("shard", ["--shard", '{"index":0,"rows":-3}', *R], {}, 2, "out of range"),
    ("shard", ["--shard", '{"index":0,"hi":1e30}', *R], {}, 2, "must be an integer"),
    ("shard", ["--shard", '{"index":0,"hi":99999999999999999999}', *R], {}, 2, "shard item"),
    ("shard", ["--shard", '{"index":0,"lo":-5,"hi":-9}', *R], {}, 2, "is above hi"),
    ("shard", ["--shard", '{"index":0,"extra":1}', *R], {}, 2, "unknown fields: extra"),
    (
        "shard",
        ["--shard", '{"index":0,"lo":null,"hi":null,"rows":null}' + " " * 70_000, *R],
        {},
        2,
        "expected one small JSON",
    ),
    (
        "shard",
        ["--shard", '{"index":0,"lo":null,"hi":null,"rows":null}', *R, "--batch-size", "0"],
        {},
        2,
        "positive integer",
    ),
    (
        "shard",
        ["--shard", '{"index":0,"lo":null,"hi":null,"rows":null}', *R, "--attempt", "-1"],
        {},
        2,
        "integer >= 0",
    ),
    # count files and counts: empty, missing, negative, non-integer, absurd
    ("split", ["--count-file", "COUNT"], {"COUNT": b""}, 2, "is empty"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b" \n"}, 2, "is empty"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b"-3\n"}, 2, "non-negative integer"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b"1e3\n"}, 2, "non-negative integer"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b"12 13\n"}, 2, "non-negative integer"),
    ("split", ["--count-file", "COUNT"], {"COUNT": "\u0663\n".encode()}, 2, "non-negative"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b"9" * 30}, 2, "too large"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b"\xff"}, 2, "not UTF-8"),
    ("split", ["--count-file", "DIR"], {"DIR/x": b""}, 2, "is a folder"),
    ("split", ["--count", "9223372036854775807"], {}, 2, "--max-shards"),
    ("split", ["--count", "0x10"], {}, 2, "expected an integer >= 0"),
    ("split", ["--count", ""], {}, 2, "expected an integer >= 0"),
    ("split", ["--count", "10", "--max-shards", "0"], {}, 2, "positive integer"),
    ("produce", ["--rows", "-1"], {}, 2, "expected an integer >= 0"),
    ("produce", ["--rows", "1.5"], {}, 2, "expected an integer >= 0"),
    # generators and processors that do not import, are not callable, raise, return junk
    ("produce", ["--generator", "nope.nothere:f"], {}, 2, "cannot import 'nope.nothere'"),
    ("produce", ["--generator", "plugins.broken_import:f"], {}, 2, "cannot import"),
    ("produce", ["--generator", "plugins.userfuncs:missing"], {}, 2, "has no attribute"),
    ("produce", ["--generator", "plugins.userfuncs:not_callable"], {}, 2, "is not callable"),
    ("produce", ["--generator", "plugins.userfuncs:raising_generator"], {}, 3, "could not open"),
    ("produce", ["--generator", "plugins.userfuncs:not_iterable"], {}, 3, "'int', not an iterable"),
    (
        "produce",
        ["--generator", "plugins.userfuncs:unserializable_rows"],
        {},
        3,
        "not JSON-serializable",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            *R,
            "--processor",
            "plugins.broken_import:f",
        ],
        {},
        2,
        "cannot import",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            *R,
            "--processor",
            "plugins.userfuncs:nothing",
        ],
        {},
        2,
        "has no attribute",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":null,"hi":null,"rows":null}',
            *R,
            "--processor",
            "plugins.userfuncs:not_callable",
        ],
        {},
        2,
        "is not callable",
    ),
    # part files (plain merge): invalid JSON names the file and the line
    ("merge", ["PART"], {"PART": b'{"a":1}\n{"a":2}\n{"a":\n'}, 2, "PART: line 3: invalid JSON"),
    ("merge", ["PART"], {"PART": b'{"a":1}\n\n[1,2\n'}, 2, "PART: line 3: invalid JSON"),
    ("merge", ["PART"], {"PART": b"1\n2\n3x\n"}, 2, "PART: line 3: invalid JSON"),
    ("merge", ["PART"], {"PART": b'{"a":NaN}\n'}, 2, "PART: line 1: invalid JSON"),
    ("merge", ["PART"], {"PART": b'"ok"\n"\xff"\n'}, 2, "PART: line 2: invalid UTF-8"),
    ("merge", ["PART"], {"PART": b"[" * 100_000}, 2, "PART: line 1: invalid JSON"),
    ("merge", ["PART"], {"PART": b"12 13\n1415"}, 0, ""),  # control: whitespace-separated is fine
    ("merge", ["--format", "JSON", "PART"], {"PART": b"1"}, 2, "unknown --format 'JSON'"),
    ("merge", ["--format", "", "PART"], {"PART": b"1"}, 2, "unknown --format ''"),
    ("merge", ["--format", "csv", "PART"], {"PART": b"1"}, 2, "unknown --format 'csv'"),
    ("merge", [], {}, 2, "give exactly one of"),
    # issue 9, section 3: each of these was accepted (exit 0) on 82691c7
    ("shard", ["--shard", '{"index":0,"lo":1,"rows":5}', *R], {}, 2, "'hi' is required"),
    ("shard", ["--shard", '{"index":0,"lo":1,"hi":5}', *R], {}, 2, "'rows' is required"),
    ("shard", ["--shard", '{"index":0}', *R], {}, 2, "'lo', 'hi', 'rows' are required"),
    ("shard", ["--shard", "@ITEM", *R], {"ITEM": b'{"index":0,"lo":1}'}, 2, "'hi', 'rows' are"),
    ("split", ["--count", "9223372036854775808"], {}, 2, "at most 9223372036854775807"),
    (
        "split",
        ["--count", "9223372036854775808", "--rows-per-shard", "9223372036854775808"],
        {},
        2,
        "at most 9223372036854775807",
    ),
    ("split", ["--count", "10", "--run-id", ""], {}, 2, "invalid run id ''"),
    ("split", ["--count", "10", "--row", "5"], {}, 2, "unrecognized arguments: --row"),
    ("split", ["--count", "10", "--rows-per", "5"], {}, 2, "unrecognized arguments: --rows-per"),
    ("split", ["--count-file", "COUNT"], {"COUNT": b" " * 100 + b"5\n"}, 2, "64-byte limit"),
    ("split", ["--count", "10", "--run-id", "r", "--store", "memory://x"], {}, 2, "memory"),
    ("produce", ["--rows", "5", "--run-id", ""], {}, 2, "invalid run id ''"),
    ("produce", ["--row", "5"], {}, 2, "unrecognized arguments: --row"),
    ("produce", ["--rows", "5", "--count-file", "memory://count"], {}, 2, "memory"),
    (
        "shard",
        ["--shard", '{"index":0,"lo":1,"hi":5,"rows":5}', "--run-id", "", "--store", "S"],
        {},
        2,
        "invalid run id ''",
    ),
    (
        "shard",
        [
            "--shard",
            '{"index":0,"lo":1,"hi":5,"rows":5}',
            "--run-id",
            "r",
            "--store",
            "memory://run",
        ],
        {},
        2,
        "memory",
    ),
    (
        "shard",
        ["--shard", '{"index":0,"lo":1,"hi":5,"rows":5}', *R, "--batch", "5"],
        {},
        2,
        "unrecognized arguments: --batch",
    ),
    ("merge", ["--store", "memory://run"], {}, 2, "memory"),
    ("merge", ["--glob", "PART*", "--output", "memory://out.json"], {"PART": b"1\n"}, 2, "memory"),
    ("merge", ["--stor", "STORE"], {}, 2, "unrecognized arguments: --stor"),
    ("merge", ["PART"], {"PART": b"1,2\n[3\n4]\n"}, 2, "PART: line 1: invalid JSON"),
    (
        "merge",
        ["--glob", "PAR*"],
        {"PART": b'{"a":1},{"b":2}\n{"c":"}\n{"}\n'},
        2,
        "line 1: invalid JSON",
    ),
]


def _ids() -> list[str]:
    return [f"{b[0]}-{i}" for i, b in enumerate(BAD_INPUTS)]


@pytest.mark.parametrize(("step", "args", "files", "code", "message"), BAD_INPUTS, ids=_ids())
def test_bad_input(
    run_step: RunStep,
    tmp_path: Path,
    step: str,
    args: list[str],
    files: dict[str, bytes],
    code: int,
    message: str,
) -> None:
    for name, data in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    subst = {
        "STORE": str(tmp_path / "store"),
        **{n.split("/")[0]: str(tmp_path / n.split("/")[0]) for n in files},
    }
    args = [
        re.sub(r"\b(" + "|".join(map(re.escape, subst)) + r")\b", lambda m: subst[m.group(1)], a)
        for a in args
    ]
    env = {"WORKERS_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite", **ENV}
    before = {p for p in tmp_path.rglob("*")}
    proc = run_step(step, *args, env=env, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    if code == 0:
        return
    assert proc.stdout == ""
    lines = log_lines(proc)
    assert [line["level"] for line in lines].count("error") == 1
    assert "\n" not in error_of(proc)["message"]
    assert message.replace("PART", str(tmp_path / "PART")) in error_of(proc)["message"]
    created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert not [p for p in created if "db.sqlite" not in p.name and "home" not in p.parts], created
    assert not (tmp_path / "store").exists()


# ----------------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.one_of(
        st.text(max_size=60),
        st.dictionaries(
            st.sampled_from(["index", "lo", "hi", "rows", "x"]), json_values, max_size=5
        ).map(json.dumps),
        st.fixed_dictionaries(
            {"index": st.integers(-3, 2 * 10**6)},
            optional={
                "lo": st.one_of(st.none(), st.integers(-(2**64), 2**64)),
                "hi": st.one_of(st.none(), st.integers(-(2**64), 2**64)),
                "rows": st.one_of(st.none(), st.integers(-5, 2**64)),
            },
        ).map(json.dumps),
    )
)
@example('{"index": 0, "lo": 5, "hi": 5, "rows": 1}')
@example("[" * 5000)
@example('{"index": 0, "lo": 9223372036854775808}')
def test_fuzz_parse_item(text: str) -> None:
    try:
        shard = parse_item(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    obj = json.loads(text)
    assert shard.index == obj["index"] and 0 <= shard.index <= 999_999
    assert shard.lo == obj.get("lo") and shard.hi == obj.get("hi") and shard.rows == obj.get("rows")
    for v in (shard.lo, shard.hi):
        assert v is None or (type(v) is int and abs(v) <= MAX_KEY)
    assert shard.lo is None or shard.hi is None or shard.lo <= shard.hi
    assert shard.rows is None or shard.rows >= 0


@FUZZ
@given(
    st.one_of(
        st.text(max_size=30),
        st.integers(-(10**25), 10**25).map(str),
        st.tuples(st.sampled_from(["", " ", "\n", "\t", "+", "0"]), st.integers(0, 10**20)).map(
            lambda t: f"{t[0]}{t[1]}\n"
        ),
    )
)
@example("")
@example("\u0663")
@example("\u00b2")
@example("9223372036854775808")
def test_fuzz_parse_count(text: str) -> None:
    try:
        n = parse_count(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert text.strip().isascii() and text.strip().isdigit()
    assert n == int(text.strip()) and 0 <= n <= MAX_KEY


_WS = re.compile(r"[ \t\n\r]*")
_REF = json.JSONDecoder(parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def _lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(_lone_surrogate(v) for v in value)


def reference_values(data: bytes) -> list[object] | None:
    """What json itself makes of whitespace-separated values (None: not valid), refusing a
    lone surrogate escape as jq -s . does (json decodes it into a string UTF-8 cannot hold)."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    out, pos = [], _WS.match(text, 0).end()  # type: ignore[union-attr]
    try:
        while pos < len(text):
            value, stop = _REF.raw_decode(text, pos)
            nxt = _WS.match(text, stop).end()  # type: ignore[union-attr]
            word = re.compile(r"[0-9A-Za-z.+-]")
            if (
                nxt == stop
                and nxt < len(text)
                and word.match(text[stop - 1])
                and word.match(text[nxt])
            ):
                return None
            if _lone_surrogate(value):
                return None
            out.append(value)
            pos = nxt
    except (ValueError, RecursionError):
        return None
    return out


separators = st.lists(
    st.sampled_from([" ", "\n", "\t", "\r\n", "\n\n", "  \n "]), min_size=1, max_size=2
).map("".join)


@FUZZ
@given(st.lists(st.tuples(json_values, separators, st.booleans()), max_size=6))
def test_fuzz_parts_of_valid_values_match_json(values: list[tuple[object, str, bool]]) -> None:
    data = "".join(
        json.dumps(v, indent=1 if pretty else None, ensure_ascii=pretty) + sep
        for v, sep, pretty in values
    ).encode()
    lines, n = to_json_lines(data, "part")
    assert n == len(values)
    parsed = [json.loads(line) for line in lines.decode().split("\n")[:-1]]
    assert parsed == [v for v, _, _ in values] == reference_values(data)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=80),
        st.text(alphabet='{}[]",:0123456789.eE+-tfnrulasx \n\t\\', max_size=60).map(str.encode),
    )
)
@example(b"[" * 3000)
@example(b'{"a":1}{"b":2}')
@example(b"1 2\n3")
@example(b"12")
@example(b'"\\ud800"')
@example(b"\xef\xbb\xbf[1]")
@example(b"1e400")
def test_fuzz_parts_either_usage_error_or_what_json_parses(data: bytes) -> None:
    ref = reference_values(data)
    try:
        lines, n = to_json_lines(data, "part")
    except UsageError as exc:
        assert "part: line " in str(exc) and "\n" not in str(exc)
        assert ref is None, f"json accepts what merge rejected: {ref!r}"
        return
    assert ref is not None, "merge accepted what json rejects"
    assert n == len(ref)
    got = [json.loads(line) for line in lines.decode().split("\n")[:-1]]
    assert json.dumps(got) == json.dumps(ref)
