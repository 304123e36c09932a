"""Merge at scale: memory bounded by a constant whatever the part size, and no value-count cliff.

The slow tests merge a 2 GiB part of 20 million values as a real ``python -m
workers.merge`` process under a 256 MB address-space limit, with and without a plan,
to JSON and JSON Lines, and read the child's peak RSS from the kernel. The quick ones
prove that validating a part in blocks accepts, rejects and reports exactly what
validating it whole does, however the bytes arrive.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import services

from workers import layout
from workers.errors import UsageError
from workers.jsonparts import BLOCK, JsonLines, to_json_lines
from workers.shards import Shard

# --------------------------------------------------------------- blocks agree with the whole

PRETTY = json.dumps([{"k": i, "v": [i, i + 1]} for i in range(40)], indent=2).encode()

PARTS = {
    "jsonl": b'{"a":1}\n{"a":2}\n{"a":3}\n',
    "no-final-newline": b'{"a":1}\n{"a":2}',
    "pretty": b'{\n  "a": 1,\n  "b": [1,\n 2]\n}\n{"c": 3}\n',
    "pretty-between-lines": b"1\n2\n" + PRETTY + b"\n3\n4\n" + PRETTY + b"\n5\n",
    "same-line": b'1 2 3\n"x" {"y":null}\n',
    "glued-objects": b'{"a":1}{"b":2}[3]\n',
    "blank-lines": b'\n\n{"a":1}\n\n\n{"a":2}\n\n',
    "crlf": b'{"a":1}\r\n{"a":2}\r\n',
    "bom": b'\xef\xbb\xbf{"a":1}\n{"a":2}\n',
    "unicode": '{"é":"日本","emoji":"\U0001f600"}\n"ü"\n'.encode(),
    "big-int": b"1\n123456789012345678901234567890\n2\n",
    "whitespace-only": b"  \n\t\n",
    "lines-that-only-look-like-values": b'[1,\n2]\n"x"\n{"a":[1,\n2]}\n{"b":3}\n',
    # refused: the error must name the same line however the part is cut
    "truncated": b'{"a":1}\n{"a":2}\n{"a":\n',
    "bad-third-line": b'{"a":1}\n{"a":2}\n{oops}\n',
    "raw-newline-in-string": b'1\n"raw\nnewline"\n',
    "nan": b"1\n2\nNaN\n",
    "bad-utf8": b'{"a":1}\n\xff\xfe\n',
    "one-value-two-numbers": b"1,2\n[3\n4]\n",
    "unseparated": b"1\n2 3\n45\n[1]1\n",
    "bom-later": b"1\n\xef\xbb\xbf2\n",
    "open-at-the-end": b"1\n[2,\n3,\n",
}


def _whole(data: bytes) -> tuple[list[object], int] | str:
    try:
        lines, n = to_json_lines(data, "p")
    except UsageError as exc:
        return str(exc)
    return [json.loads(line) for line in lines.decode().splitlines()], n


def _in_blocks(data: bytes, block: int, step: int) -> tuple[list[object], int] | str:
    parser = JsonLines("p", block=block)
    out: list[bytes] = []
    try:
        for i in range(0, len(data), step):
            out.extend(lines for lines, _, _ in parser.feed(data[i : i + step]))
        out.extend(lines for lines, _, _ in parser.finish())
    except UsageError as exc:
        return str(exc)
    values = [json.loads(line) for line in b"".join(out).decode().splitlines()]
    assert len(values) == parser.values
    return values, parser.values


@pytest.mark.parametrize("name", sorted(PARTS))
@pytest.mark.parametrize(("block", "step"), [(1, 1), (3, 2), (8, 5), (64, 7), (4096, 3)])
def test_blocks_and_chunks_give_what_the_whole_part_gives(name: str, block: int, step: int) -> None:
    data = PARTS[name]
    assert _in_blocks(data, block, step) == _whole(data)


def test_the_error_cases_are_errors() -> None:
    # The table above must keep cases of both kinds, or its test proves less than it says.
    refused = {n for n in PARTS if isinstance(_whole(PARTS[n]), str)}
    assert len(refused) >= 8 and len(PARTS) - len(refused) >= 12


def test_a_value_longer_than_a_block_is_carried_whole() -> None:
    big = json.dumps({"rows": [{"i": i, "s": "x" * 20} for i in range(60_000)]}, indent=1)
    data = b"0\n" + big.encode() + b"\n1\n"
    assert len(data) > 3 * BLOCK
    values, n = _in_blocks(data, BLOCK, BLOCK // 3)  # type: ignore[misc]
    assert n == 3 and values[0] == 0 and values[2] == 1 and len(values[1]["rows"]) == 60_000


def test_more_than_16777215_values_stay_on_the_fast_path() -> None:
    """simdjson counts at most 16,777,215 elements of one array: a whole part of more than that
    used to fall to the slow path. Blocks keep every call far below it."""
    values = (1 << 24) + 1_000
    chunk = b"1\n" * (BLOCK // 2)
    parser = JsonLines("p")
    fed = slow = 0
    while fed < values:
        take = min(len(chunk) // 2, values - fed)
        for _, _, joined in parser.feed(chunk[: 2 * take]):
            slow += joined is None
        fed += take
    for _, _, joined in parser.finish():
        slow += joined is None
    assert parser.values == values
    assert slow == 0


# ------------------------------------------------------------------ 2 GiB under 256 MB

VALUES = 20_000_000
PER_BLOCK = 10_000
LIMIT = 256 << 20
PEAK = 64 << 20


@dataclass(frozen=True)
class BigPart:
    store: Path
    part: Path
    size: int
    sha256: str
    first: bytes
    last: bytes


def _block() -> bytes:
    # 108 bytes a line: 20 million lines are 2.16 GB, just over 2 GiB.
    return b"".join(
        b'{"id":%d,"name":"value-%09d","ok":true,"pad":"%s"}\n' % (100_000_000 + i, i, b"x" * 47)
        for i in range(PER_BLOCK)
    )


@pytest.fixture(scope="module")
def big_part(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigPart]:
    """A store with a plan, one 2 GiB part and its commit record, as split and shard leave them."""
    store = tmp_path_factory.mktemp("big-store")
    (store / "parts").mkdir()
    (store / "commits").mkdir()
    block = _block()
    part = Path(layout.part_url(str(store), 0))
    sha = hashlib.sha256()
    with part.open("wb") as f:
        for _ in range(VALUES // PER_BLOCK):
            f.write(block)
            sha.update(block)
    size = part.stat().st_size
    assert size > 2 << 30
    record = {
        "run_id": "big",
        "index": 0,
        "lo": 1,
        "hi": VALUES,
        "rows_in": VALUES,
        "rows": VALUES,
        "bytes": size,
        "sha256": sha.hexdigest(),
        "attempt": 0,
        "duration_s": 1.0,
    }
    Path(layout.commit_url(str(store), 0)).write_bytes(orjson.dumps(record))
    plan = layout.Plan("big", VALUES, (Shard(0, 1, VALUES, VALUES),), {"mode": "count"})
    layout.write_plan(str(store), plan)
    lines = block.splitlines(keepends=True)
    yield BigPart(store, part, size, sha.hexdigest(), lines[0], lines[-1])
    part.unlink()


# Runs the step under the limit and reports its own peak RSS: a launcher this small is the
# parent, so the child's ru_maxrss is not inflated by a large pytest process it forked from.
LAUNCHER = """
import json, os, resource, sys
limit = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(sys.executable, [sys.executable, "-m", "workers.merge", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "peak_kb": usage.ru_maxrss}))
"""


def _expected_json_sha256(big: BigPart) -> str:
    """sha256 of ``[`` + the part, newlines as commas, its last newline cut + ``]\n``, streamed."""
    sha = hashlib.sha256(b"[")
    table = bytes.maketrans(b"\n", b",")
    left = big.size
    with big.part.open("rb") as f:
        while chunk := f.read(1 << 20):
            left -= len(chunk)
            sha.update((chunk if left else chunk[:-1]).translate(table))
    sha.update(b"]\n")
    return sha.hexdigest()


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _head_and_tail(path: Path, n: int) -> tuple[bytes, bytes]:
    with path.open("rb") as f:
        head = f.read(n)
        f.seek(-n, 2)
        return head, f.read()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
@pytest.mark.parametrize("mode", ["plan", "glob"])
def test_a_2_gib_part_merges_in_64_mb_under_a_256_mb_address_space(
    big_part: BigPart, tmp_path: Path, mode: str, fmt: str
) -> None:
    big = big_part
    out = tmp_path / f"merged.{fmt}"
    args = ["--format", fmt, "--output", str(out)]
    if mode == "plan":
        summary = tmp_path / "summary.json"
        args += ["--store", str(big.store), "--summary", str(summary)]
    else:
        args += ["--glob", str(big.store / "parts" / "part-*.jsonl")]
    proc = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(LIMIT), *args],
        env=services.step_env(tmp_path / "home"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    result = json.loads(proc.stdout)
    try:
        assert result["exit"] == 0, proc.stderr[-2000:]
        merged = [json.loads(line) for line in proc.stderr.splitlines() if '"merged"' in line]
        assert merged and merged[-1]["rows"] == VALUES
        if fmt == "jsonl":
            want_size, want_sha = big.size, big.sha256
            head_want, tail_want = big.first, big.last
        else:
            want_size, want_sha = big.size + 2, _expected_json_sha256(big)
            head_want, tail_want = b"[" + big.first[:-1] + b",", b"," + big.last[:-1] + b"]\n"
        assert out.stat().st_size == want_size
        head, tail = _head_and_tail(out, len(tail_want))
        assert head.startswith(head_want[: len(head)]) and tail == tail_want
        assert _sha256(out) == want_sha
        if mode == "plan":
            report = json.loads(summary.read_text())
            assert report["output_sha256"] == want_sha
            assert report["totals"]["rows"] == VALUES
        assert result["peak_kb"] * 1024 <= PEAK, f"peak RSS {result['peak_kb']} KB"
    finally:
        out.unlink(missing_ok=True)
