"""Pure functions: shard planning, item and count parsing, part parsing, redaction."""

from __future__ import annotations

import json
import subprocess

import orjson
import pytest

from workers import shards
from workers.config import redact
from workers.errors import UsageError
from workers.jsonparts import to_json_lines


@pytest.mark.parametrize(
    ("count", "per", "expected"),
    [
        (0, 10, []),
        (1, 10, [(1, 1, 1)]),
        (10, 10, [(1, 10, 10)]),
        (11, 10, [(1, 10, 10), (11, 11, 1)]),
        (25, 10, [(1, 10, 10), (11, 20, 10), (21, 25, 5)]),
    ],
)
def test_by_count_covers_every_key_once(
    count: int, per: int, expected: list[tuple[int, int, int]]
) -> None:
    got = shards.by_count(count, per)
    assert [(s.lo, s.hi, s.rows) for s in got] == expected
    assert [s.index for s in got] == list(range(len(expected)))
    assert sum(s.rows or 0 for s in got) == count


def test_guard_names_the_flag_to_change() -> None:
    with pytest.raises(
        UsageError, match=r"--max-shards 1000: raise --rows-per-shard to at least 1001"
    ):
        shards.by_count(1_000_001, 1000)


def test_500_billion_rows_fit_the_default_guard() -> None:
    items = shards.by_count(500_000_000_000, 1_000_000_000)
    data = shards.encode(items)
    assert len(items) == 500
    assert len(data) < 64 * 1024


def test_list_over_200kb_for_withparam_is_refused_naming_the_way_out() -> None:
    data = shards.encode(shards.by_count(5000, 1, max_shards=10_000))
    with pytest.raises(UsageError, match=r"withSequence over --shard-count-file.*--rows-per-shard"):
        shards.check_parameter_size(data)


def _candidates(keys: list[object], every: int) -> list[shards.Candidate]:
    """What the database's cut query returns for rows with these keys, in key order: the rows
    at positions 1 + every*k and the last row of a key held by more than ``every`` rows."""
    first = {k: keys.index(k) + 1 for k in keys}
    last = {k: len(keys) - keys[::-1].index(k) for k in keys}
    out = []
    for pos, k in enumerate(keys, 1):
        heavy = pos == last[k] and last[k] - first[k] + 1 > every
        if (pos > 1 and (pos - 1) % every == 0) or heavy:
            following = keys[pos] if pos < len(keys) else None
            out.append(shards.Candidate(k, pos, first[k], last[k], following))  # type: ignore[arg-type]
    return out


def test_sparse_keys_cut_into_half_open_ranges_with_open_ends() -> None:
    keys = [3, 7, 8, 20, 21, 40, 41, 90]  # 8 rows, 3 per shard -> shards start at rows 4 and 7
    got, heavy = shards.by_cuts(_candidates(keys, 3), len(keys), 3, "integer")
    assert [(s.lo, s.hi, s.rows, s.key) for s in got] == [
        (None, 20, 3, "integer"),
        (20, 41, 3, "integer"),
        (41, None, 2, "integer"),
    ]
    assert heavy == []
    for k in keys:  # every key falls in exactly one shard
        hits = [s for s in got if (s.lo is None or s.lo <= k) and (s.hi is None or k < s.hi)]
        assert len(hits) == 1


def test_a_key_repeated_over_a_shards_worth_gets_one_shard() -> None:
    keys = ["a", "b", "m", "m", "m", "m", "m", "m", "m", "n", "o", "p", "q"]
    got, heavy = shards.by_cuts(_candidates(keys, 3), len(keys), 3, "text")
    assert [(s.lo, s.hi, s.rows) for s in got] == [
        (None, "m", 2),
        ("m", "n", 7),
        ("n", "q", 3),
        ("q", None, 1),
    ]
    assert heavy == [shards.Heavy("m", 7, 1)]
    # the first key, or the last, repeated: still one shard, the ends still open
    keys = ["a"] * 5 + ["b", "c"]
    got, heavy = shards.by_cuts(_candidates(keys, 2), len(keys), 2, "text")
    # cuts stay at the table's quantiles (rows 3, 5, 7): the heavy key's end adds one at row 6
    assert [(s.lo, s.hi, s.rows) for s in got] == [(None, "b", 5), ("b", "c", 1), ("c", None, 1)]
    assert heavy == [shards.Heavy("a", 5, 0)]
    keys = ["a", "b"] + ["c"] * 5
    got, heavy = shards.by_cuts(_candidates(keys, 2), len(keys), 2, "text")
    assert [(s.lo, s.hi, s.rows) for s in got] == [(None, "c", 2), ("c", None, 5)]
    assert heavy == [shards.Heavy("c", 5, 1)]


def test_one_shard_and_no_rows() -> None:
    got, heavy = shards.by_cuts([], 5, 10, "uuid")
    assert heavy == []
    assert [(s.lo, s.hi, s.rows, s.key) for s in got] == [(None, None, 5, "uuid")]
    assert shards.by_cuts([], 0, 10, "uuid") == ([], [])


def test_typed_items_round_trip_and_say_half_open() -> None:
    item = shards.Shard(2, "2024-01-01T00:00:00+00:00", None, 7, "timestamptz")
    assert shards.parse_item(shards.encode([item])[1:-1].decode()) == item
    assert item.describe() == "['2024-01-01T00:00:00+00:00', +inf)"
    assert shards.Shard(0, 1, 10, 10).describe() == "[1, 10]"
    assert "key" not in shards.Shard(0, 1, 10, 10).to_dict()  # a count's items are unchanged


@pytest.mark.parametrize(
    "text",
    [
        '{"index":0,"lo":1,"hi":10,"rows":10}',
        '{"index":3,"lo":null,"hi":null,"rows":null}',
    ],
)
def test_parse_item_accepts(text: str) -> None:
    s = shards.parse_item(text)
    assert s.to_dict()["index"] == json.loads(text)["index"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"index":0,"lo":1,"hi":10', "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
        ('{"lo":1}', "'index' is required"),
        ('{"index":1}', "'lo', 'hi', 'rows' are required"),
        ('{"index":0,"lo":1,"rows":5}', "'hi' is required"),
        ('{"index":0,"lo":1,"hi":5}', "'rows' is required"),
        ('{"index":"0"}', "'index' must be an integer"),
        ('{"index":true}', "'index' must be an integer"),
        ('{"index":0,"lo":1.5}', "'lo' must be an integer"),
        ('{"index":0,"lo":10,"hi":1}', "lo 10 is above hi 1"),
        ('{"index":-1}', "out of range"),
        ('{"index":0,"rows":-5}', "out of range"),
        ('{"index":0,"lo":99999999999999999999}', "'lo' must be an integer"),
        ('{"index":0,"hi":9223372036854775808}', "out of range"),
        ('{"index":0,"extra":1}', "unknown fields: extra"),
        ("", "not valid JSON"),
    ],
)
def test_parse_item_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        shards.parse_item(text)


@pytest.mark.parametrize(("text", "value"), [("0\n", 0), ("42", 42), ("  7 \n", 7)])
def test_parse_count_accepts(text: str, value: int) -> None:
    assert shards.parse_count(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n", "empty"),
        ("-3", "non-negative integer"),
        ("1.5", "non-negative integer"),
        ("abc", "non-negative integer"),
        ("1e9", "non-negative integer"),
        ("99999999999999999999", "too large"),
        ("١٢", "non-negative integer"),
    ],
)
def test_parse_count_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        shards.parse_count(text)


PART_CASES = {
    "jsonl": b'{"a":1}\n{"a":2}\n',
    "no-final-newline": b'{"a":1}\n{"a":2}',
    "pretty": b'{\n  "a": 1,\n  "b": [1,\n 2]\n}\n{"c": 3}\n',
    "same-line": b'1 2 3\n"x" {"y":null}\n',
    "glued-objects": b'{"a":1}{"b":2}[3]\n',
    "blank-lines": b'\n\n{"a":1}\n\n\n{"a":2}\n\n',
    "crlf": b'{"a":1}\r\n{"a":2}\r\n',
    "scalars": b'true\nfalse\nnull\n1.5e3\n-0\n"s"\n',
    "unicode": '{"é":"日本","emoji":"\U0001f600"}\n'.encode(),
    "empty": b"",
    "whitespace-only": b"  \n\t\n",
    "commas-in-strings": b'"a,b"\n"c\\nd"\n',
    "big-int": b"123456789012345678901234567890\n",
}


@pytest.mark.parametrize("name", sorted(PART_CASES))
def test_part_parsing_matches_jq(name: str, jq: str) -> None:
    data = PART_CASES[name]
    lines, n = to_json_lines(data, name)
    expected = subprocess.run(
        [jq, "-s", "-c", "."], input=data, capture_output=True, check=True
    ).stdout
    ours = b"[" + lines[:-1].replace(b"\n", b",") + b"]" if n else b"[]"
    # jq reads numbers as doubles; we keep the original digits, which parse to the same double.
    assert json.loads(ours, parse_int=float) == json.loads(expected, parse_int=float)
    assert n == len(json.loads(expected))
    assert all(line for line in lines.split(b"\n")[:-1])  # one value per line, no blanks


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'{"a":1}\n{"a":\n', 2),
        (b'{"a":1}\n{"a":2}\n{oops}\n', 3),
        (b"[1,2,]\n", 1),
        (b'"raw\nnewline"\n', 1),
        (b"NaN\n", 1),
        (b'{"a":1}\n\xff\xfe\n', 2),
    ],
)
def test_invalid_part_names_file_and_line(data: bytes, line: int) -> None:
    with pytest.raises(UsageError, match=rf"^p\.jsonl: line {line}: invalid"):
        to_json_lines(data, "p.jsonl")


def test_fast_path_does_not_swallow_a_raw_newline_in_a_string() -> None:
    # Joining lines with commas would turn this into the valid "a,b": counts must catch it.
    with pytest.raises(UsageError):
        to_json_lines(b'{"k":"a\nb"}\n', "p")


def test_redact_removes_passwords() -> None:
    text = "cannot reach postgresql://app:s3cr%40t@db:5432/x (s3cr@t)"
    out = redact(text, ("s3cr%40t", "s3cr@t"))
    assert "s3cr" not in out
    assert "postgresql://app:***@db:5432/x" in out


def test_encode_is_compact_json() -> None:
    data = shards.encode(shards.by_count(3, 2))
    assert data == b'[{"index":0,"lo":1,"hi":2,"rows":2},{"index":1,"lo":3,"hi":3,"rows":1}]'
    assert orjson.loads(data)[1]["rows"] == 1


@pytest.mark.parametrize("seed", [0, 1, 7, 40503, 2**31 - 1, -5])
def test_built_in_rows_as_json_are_orjson_bytes_of_the_dicts(seed: int) -> None:
    """produce writes ``generate_json``; shards and merge must see exactly what
    ``orjson.dumps`` of the documented rows gives."""
    from workers import synth

    rows = list(synth.generate(60_000, seed))
    assert list(synth.generate_json(60_000, seed)) == [orjson.dumps(row) for row in rows]
    # The comparison covered every line template and whole and fractional scores.
    assert len({(row["city"], row["kind"]) for row in rows}) == 40
    assert any(row["score"] == int(row["score"]) for row in rows)
