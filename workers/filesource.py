"""Files as the source: ``split --from-files`` plans units of files, a shard reads its units.

A URL_GLOB (a local folder or glob, an ``s3://`` or ``gs://`` prefix or glob) names
``.jsonl``, ``.jsonl.gz``, ``.csv`` and ``.parquet`` files (names starting with ``.`` or
``_``, such as ``_SUCCESS``, are left out, as Spark and Hadoop do). split lists each with
its size and version (S3 ETag, GCS generation, a local file's mtime_ns and size) and cuts
it into units:

* an uncompressed JSON Lines file larger than ``--bytes-per-shard`` into byte ranges: a
  unit ``[start, end)`` owns every line that *starts* in it (the Hadoop/Spark rule: skip
  the partial first line unless start is 0, read past ``end`` to finish the last line),
  so every line is read exactly once whatever the cut points;
* a Parquet file into runs of consecutive row groups (their rows known from the footer);
* a compressed (``.gz``) or CSV file whole (CSV may quote newlines).

Units are packed in listing order into shards of about ``--bytes-per-shard`` bytes; the
plan names each shard's units (meta ``source_files``). A shard reads its units through
fsspec with no database (:class:`FileReader` stands where the database would), checks
each file's version before it reads and after, and counts the rows of every unit for its
commit record, which merge reconciles against the plan (:func:`unit_problems`).

The rows' "keys" are their ordinals in the shard (1, 2, ...): a resumed shard skips the
rows its checkpoint holds. pyarrow is imported only for Parquet files or a columnar batch
format: a rows shard over JSON Lines never loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from workers import failures, storage
from workers.db import Database, Key, Source
from workers.errors import UsageError
from workers.provenance import Generation

FORMATS = (
    (".jsonl.gz", "jsonl.gz"),
    (".jsonl", "jsonl"),
    (".csv", "csv"),
    (".parquet", "parquet"),
)
"""Name endings split takes, longest first, and the format each means."""

MODE = "files"
"""The plan's ``mode`` for a run whose source is files."""

_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class SourceFile:
    """One input file as split saw it."""

    url: str
    size: int
    version: str
    format: str

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "size": self.size, "version": self.version, "format": self.format}


@dataclass(frozen=True)
class Unit:
    """A piece of one file: bytes ``[start, end)`` (JSON Lines), row groups ``[start, end)``
    (Parquet), or the whole file (``start`` 0, ``end`` its size)."""

    file: int
    kind: str  # "bytes", "row-groups" or "whole"
    start: int
    end: int
    bytes: int
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "bytes": self.bytes,
            "rows": self.rows,
        }


def format_of(url: str) -> str | None:
    name = url.rsplit("/", 1)[-1].lower()
    for ending, fmt in FORMATS:
        if name.endswith(ending):
            return fmt
    return None


def _hidden(url: str) -> bool:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name.startswith((".", "_"))


# ------------------------------------------------------------------------------ listing


def _local_listing(store: storage.Store) -> list[tuple[str, int, str]]:
    import glob

    # Absolute: every shard pod reads the names the plan holds, from its own working folder.
    path = os.path.abspath(store.local_path)
    if any(c in path for c in _GLOB_CHARS):
        paths = glob.glob(path, recursive=True)
    elif os.path.isdir(path):
        paths = [os.path.join(d, n) for d, _, names in os.walk(path) for n in names]
    else:
        paths = [path] if os.path.exists(path) else []
    out = []
    for p in paths:
        if os.path.isdir(p) or _hidden(p):
            continue
        if not os.path.isfile(p):  # a FIFO or device would block a shard; a broken link fails
            raise UsageError(f"--from-files: {p} is not a regular file")
        st = os.stat(p)
        out.append((p, st.st_size, local_version(st)))
    return out


def local_version(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}:{st.st_size}"


def _remote_version(store: storage.Store, info: dict[str, Any]) -> str | None:
    for key in store.version_fields:
        value = info.get(key)
        if value not in (None, ""):
            return str(value).strip('"')
    return None


def _remote_listing(pattern: str, store: storage.Store) -> list[tuple[str, int, str]]:
    fs, path = store.fs()
    scheme = pattern.split("://", 1)[0]
    with storage.tagged(store):
        if any(c in path for c in _GLOB_CHARS):
            infos = fs.glob(path, detail=True)
        else:
            infos = fs.find(path, detail=True)
            if not infos and fs.isfile(path):
                infos = {path: fs.info(path)}
        out = []
        for name, info in sorted(infos.items()):
            if info.get("type") == "directory" or _hidden(name):
                continue
            version = _remote_version(store, info)
            if version is None:  # a listing without the version field: ask the object
                info = fs.info(name)
                version = _remote_version(store, info) or ""
            out.append((f"{scheme}://{name}", int(info.get("size") or 0), version))
    return out


def list_files(pattern: str) -> list[SourceFile]:
    """The files ``pattern`` names, in byte order of their URLs; exit 2 for none or another type."""
    store = storage.resolve(pattern, "--from-files")
    listing = _local_listing(store) if store.is_local else _remote_listing(pattern, store)
    if not listing:
        raise UsageError(f"--from-files {pattern!r} matches no file")
    files = []
    for url, size, version in sorted(listing):
        fmt = format_of(url)
        if fmt is None:
            raise UsageError(
                f"--from-files: {url} is not a .jsonl, .jsonl.gz, .csv or .parquet file: "
                "narrow the glob, or move it away"
            )
        files.append(SourceFile(url, size, version, fmt))
    return files


def current_version(url: str) -> str | None:
    """The file's version now (None when it is gone), asked afresh of its store."""
    store = storage.resolve(url, "source file")
    if store.is_local:
        try:
            return local_version(os.stat(store.local_path))
        except FileNotFoundError:
            return None
    fs, path = store.fs()
    with storage.tagged(store):
        fs.invalidate_cache(path)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return None
    return _remote_version(store, info) or ""


# ----------------------------------------------------------------------------- planning


def _open(url: str) -> IO[bytes]:
    store = storage.resolve(url, "source file")
    if store.is_local:
        return open(store.local_path, "rb")  # the caller closes it
    fs, path = store.fs()
    with storage.tagged(store):
        return fs.open(path, "rb")  # type: ignore[no-any-return]


def _parquet_file(url: str, f: IO[bytes]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(f)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UsageError(
            f"{url} is not a readable Parquet file ({failures.first_line(exc)})"
        ) from None


def units_of(index: int, f: SourceFile, bytes_per_shard: int) -> list[Unit]:
    """The units of one file (see the module's docstring)."""
    if f.format == "jsonl" and f.size > bytes_per_shard:
        starts = range(0, f.size, bytes_per_shard)
        return [
            Unit(
                index,
                "bytes",
                s,
                min(s + bytes_per_shard, f.size),
                min(bytes_per_shard, f.size - s),
            )
            for s in starts
        ]
    if f.format == "parquet":
        with _open(f.url) as raw:
            meta = _parquet_file(f.url, raw).metadata
            groups = [
                (meta.row_group(i).num_rows, _group_bytes(meta.row_group(i)))
                for i in range(meta.num_row_groups)
            ]
        units: list[Unit] = []
        first, rows, size = 0, 0, 0
        for i, (n, b) in enumerate(groups):
            rows, size = rows + n, size + b
            if size >= bytes_per_shard or i == len(groups) - 1:
                units.append(Unit(index, "row-groups", first, i + 1, size, rows))
                first, rows, size = i + 1, 0, 0
        return units or [Unit(index, "row-groups", 0, 0, 0, 0)]
    return [Unit(index, "whole", 0, f.size, f.size)]


def _group_bytes(group: Any) -> int:
    return sum(group.column(c).total_compressed_size for c in range(group.num_columns))


def pack(units: list[Unit], bytes_per_shard: int) -> list[list[int]]:
    """Unit indexes per shard: consecutive units up to about ``bytes_per_shard`` bytes each."""
    shards: list[list[int]] = []
    size = 0
    for i, unit in enumerate(units):
        if not shards or (size and size + unit.bytes > bytes_per_shard):
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += unit.bytes
    return shards


@dataclass(frozen=True)
class FilePlan:
    """What split decided for a file source: the files, their units, each shard's units."""

    files: list[SourceFile]
    units: list[Unit]
    shard_units: list[list[int]]
    generation: Generation

    def shard_rows(self, index: int) -> int | None:
        rows = [self.units[u].rows for u in self.shard_units[index]]
        return None if any(r is None for r in rows) else sum(r or 0 for r in rows)

    @property
    def total(self) -> int | None:
        rows = [u.rows for u in self.units]
        return None if any(r is None for r in rows) else sum(r or 0 for r in rows)

    def meta(self, pattern: str, bytes_per_shard: int) -> dict[str, Any]:
        return {
            "source_files": {
                "pattern": pattern,
                "bytes_per_shard": bytes_per_shard,
                "files": [f.to_dict() for f in self.files],
                "units": [u.to_dict() for u in self.units],
                "shard_units": self.shard_units,
            }
        }


def plan_files(pattern: str, bytes_per_shard: int, max_shards: int) -> FilePlan:
    files = list_files(pattern)
    units = [u for i, f in enumerate(files) for u in units_of(i, f, bytes_per_shard)]
    shard_units = pack(units, bytes_per_shard)
    if len(shard_units) > max_shards:
        total = sum(f.size for f in files)
        raise UsageError(
            f"{len(files)} files of {total} bytes at --bytes-per-shard {bytes_per_shard} would "
            f"make {len(shard_units)} shards, over --max-shards {max_shards}: raise "
            f"--bytes-per-shard to at least {-(-total // max_shards)}"
        )
    listing = orjson.dumps([[f.url, f.size, f.version] for f in files])
    rows = [u.rows for u in units]
    generation = Generation(
        hashlib.sha256(listing).hexdigest()[:16],
        sum(r or 0 for r in rows),
        f"files {pattern}",
        {"files": len(files), "bytes": sum(f.size for f in files)},
        round(time.time(), 3),
    )
    return FilePlan(files, units, shard_units, generation)


# ------------------------------------------------------------------------- plan, record


def is_files_plan(plan: Any) -> bool:
    return plan is not None and plan.meta.get("mode") == MODE


def _source_meta(plan: Any) -> dict[str, Any]:
    meta = plan.meta.get("source_files")
    if not isinstance(meta, dict):
        raise UsageError("the plan's mode is files, but it names no source_files")
    return meta


def describe_unit(meta: dict[str, Any], u: int) -> str:
    unit = meta["units"][u]
    url = meta["files"][unit["file"]]["url"]
    if unit["kind"] == "bytes":
        return f"unit {u} ({url} bytes {unit['start']}-{unit['end']})"
    if unit["kind"] == "row-groups":
        return f"unit {u} ({url} row groups {unit['start']}-{unit['end']})"
    return f"unit {u} ({url})"


def shard_units(plan: Any, index: int) -> list[str]:
    """The units (files, byte ranges, row groups) the plan gives shard ``index``, described."""
    meta = _source_meta(plan)
    planned = meta["shard_units"][index] if index < len(meta["shard_units"]) else []
    return [describe_unit(meta, u) for u in planned]


def unit_problems(
    plan: Any, records: dict[int, dict[str, Any]], *, partial: bool = False
) -> list[str]:
    """What keeps merge from vouching that every planned unit was read exactly once, by the
    shard the plan gave it, with the rows the plan expects (Parquet) adding up to the shard's.
    ``partial`` (merge --min-success-ratio): only the units of the committed shards."""
    meta = _source_meta(plan)
    n_units = len(meta["units"])
    required = (
        {u for i in records if i < len(meta["shard_units"]) for u in meta["shard_units"][i]}
        if partial
        else set(range(n_units))
    )
    covered: dict[int, list[int]] = {}
    problems = []
    for index, rec in sorted(records.items()):
        units = rec.get("units")
        entries = [
            e
            for e in (units if isinstance(units, list) else [])
            if isinstance(e, dict)
            and type(e.get("unit")) is int
            and 0 <= e["unit"] < n_units
            and type(e.get("rows")) is int
        ]
        if not isinstance(units, list) or len(entries) != len(units):
            problems.append(f"part-{index:05d} does not name the units it read")
            continue
        for e in entries:
            covered.setdefault(e["unit"], []).append(index)
            want = meta["units"][e["unit"]]["rows"]
            if want is not None and e["rows"] != want:
                problems.append(
                    f"{describe_unit(meta, e['unit'])} has {e['rows']} rows, the plan {want}"
                )
        read = sum(e["rows"] for e in entries)
        if read != rec.get("rows_in"):
            problems.append(
                f"part-{index:05d} read {rec.get('rows_in')} rows, its units add up to {read}"
            )
        got = [e["unit"] for e in entries]
        planned = meta["shard_units"][index] if index < len(meta["shard_units"]) else []
        if got != planned:
            problems.append(f"part-{index:05d} read units {got}, the plan gave it {planned}")
    for u in range(n_units):
        by = covered.get(u, [])
        if not by and u in required:
            problems.append(f"{describe_unit(meta, u)} is covered by no commit")
        elif len(by) > 1:
            parts = ", ".join(f"part-{i:05d}" for i in by)
            problems.append(f"{describe_unit(meta, u)} is covered {len(by)} times ({parts})")
    return problems


# ------------------------------------------------------------------------------ reading


class FileReader(Database):
    """A shard's units of files where the database would be: the generation is the plan's
    (once every file still has its planned version), the rows are the units' lines, rows or
    row groups, keyed by their ordinal in the shard."""

    dialect = "files"

    def __init__(self, plan: Any, index: int) -> None:
        meta = _source_meta(plan)
        self.index = index
        self.generation = Generation.from_dict(plan.generation)
        try:
            self.files = [SourceFile(**f) for f in meta["files"]]
            self.units = [Unit(**u) for u in meta["units"]]
            self.mine = [int(u) for u in meta["shard_units"][index]]
            for u in self.mine:
                self.files[self.units[u].file]  # every unit's file is listed
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise UsageError(
                f"the plan's source_files are not valid ({exc!r}): run split again"
            ) from None
        self.unit_rows: list[dict[str, int]] = []

    def columns(self, source: Source) -> list[str] | None:
        return None

    def check_columns(self, source: Source, *, creating: bool = False) -> bool:
        return True  # files have no table: the source columns name nothing here

    def read_generation(self, source: Source, run_id: str) -> Generation | None:
        for f in sorted({self.units[u].file for u in self.mine}):
            self.check_version(self.files[f])
        return self.generation

    def check_version(self, f: SourceFile) -> None:
        now = current_version(f.url)
        if now != f.version:
            raise failures.error(
                "stale",
                f"shard {self.index}: source file {f.url} "
                + (
                    "is gone"
                    if now is None
                    else f"changed since split (version {f.version} then, {now} now)"
                )
                + ": run split again",
            )

    def stream_rows(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        assert lo is None or isinstance(lo, int)  # a unit's row ordinal, never a typed key
        yield from self._blocks(lo, batch, arrow=False)

    def stream_arrow(
        self, source: Source, run_id: str | None, lo: Key, hi: Key, batch: int
    ) -> Iterator[tuple[Any, int]]:
        import pyarrow as pa

        assert lo is None or isinstance(lo, int)  # a unit's row ordinal, never a typed key
        for block, last in self._blocks(lo, batch, arrow=True):
            yield (
                (block if isinstance(block, pa.RecordBatch) else pa.RecordBatch.from_pylist(block)),
                last,
            )

    def _blocks(self, lo: int | None, batch: int, *, arrow: bool) -> Iterator[tuple[Any, int]]:
        """Each unit's rows in blocks of at most ``batch`` (Arrow record batches from Parquet
        when ``arrow``, else lists of dicts), after skipping the ordinals below ``lo``."""
        skip_to = lo or 1
        ordinal = 0
        self.unit_rows = []
        for n, u in enumerate(self.mine):
            unit = self.units[u]
            f = self.files[unit.file]
            rows = 0
            for block in _unit_blocks(f, unit, batch, arrow):
                size = block.num_rows if not isinstance(block, list) else len(block)
                rows += size
                first = ordinal + 1
                ordinal += size
                if ordinal < skip_to:
                    continue
                if first < skip_to:
                    block = (
                        block[skip_to - first :]
                        if isinstance(block, list)
                        else block.slice(skip_to - first)
                    )
                yield block, ordinal
            self.unit_rows.append({"unit": u, "rows": rows})
            last_of_file = n + 1 == len(self.mine) or self.units[self.mine[n + 1]].file != unit.file
            if last_of_file:
                self.check_version(f)  # the rows read are the planned version's


def _unit_blocks(f: SourceFile, unit: Unit, batch: int, arrow: bool) -> Iterator[Any]:
    if f.format == "parquet":
        yield from _parquet_blocks(f, unit, batch, arrow)
        return
    if f.format == "csv":
        rows: Iterator[dict[str, Any]] = _csv_rows(f)
    else:
        rows = _json_rows(f, unit)
    block: list[dict[str, Any]] = []
    for row in rows:
        block.append(row)
        if len(block) >= batch:
            yield block
            block = []
    if block:
        yield block


def _parquet_blocks(f: SourceFile, unit: Unit, batch: int, arrow: bool) -> Iterator[Any]:
    with _open(f.url) as raw:
        pf = _parquet_file(f.url, raw)
        groups = list(range(unit.start, unit.end))
        if not groups:
            return
        for rb in pf.iter_batches(batch_size=batch, row_groups=groups):
            yield rb if arrow else rb.to_pylist()


def _lines(f: SourceFile, unit: Unit) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of every line starting in the unit; offsets are in the
    uncompressed stream."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(_open(f.url))
        if f.format == "jsonl.gz":
            import gzip

            stream: Any = stack.enter_context(gzip.GzipFile(fileobj=raw))
            end = None
        else:
            stream, end = raw, unit.end
            if unit.start > 0:
                stream.seek(unit.start - 1)
                stream.readline()  # the line through start-1 belongs to the unit before
        pos = stream.tell() if f.format != "jsonl.gz" else 0
        while end is None or pos < end:
            try:
                line = stream.readline()
            except (EOFError, OSError) as exc:
                if f.format != "jsonl.gz" or not _gzip_fault(exc):
                    raise
                raise UsageError(f"{f.url} is not a readable gzip file ({exc})") from None
            if not line:
                return
            yield pos, line
            pos += len(line)


def _gzip_fault(exc: BaseException) -> bool:
    import gzip
    import zlib

    return isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error))


def _json_rows(f: SourceFile, unit: Unit) -> Iterator[dict[str, Any]]:
    for pos, line in _lines(f, unit):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise UsageError(
                f"{f.url} line {_line_number(f, unit, pos)}: not valid JSON ({exc})"
            ) from None
        if not isinstance(value, dict):
            raise UsageError(
                f"{f.url} line {_line_number(f, unit, pos)}: a row must be a JSON object, "
                f"got {type(value).__name__}"
            )
        yield value


def _line_number(f: SourceFile, unit: Unit, pos: int) -> int:
    """The 1-based number of the line at byte ``pos`` (of the uncompressed stream)."""
    count = 0
    with contextlib.ExitStack() as stack:
        stream: Any = stack.enter_context(_open(f.url))
        if f.format == "jsonl.gz":
            import gzip

            stream = stack.enter_context(gzip.GzipFile(fileobj=stream))
        left = pos
        while left > 0:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count + 1


def _csv_rows(f: SourceFile) -> Iterator[dict[str, Any]]:
    import csv

    with _open(f.url) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None:
                return
            width = len(header)
            for row in reader:
                if not row:
                    continue
                if len(row) > width:
                    raise UsageError(
                        f"{f.url} line {reader.line_num}: {len(row)} fields, the header has {width}"
                    )
                yield dict(zip(header, row + [None] * (width - len(row)), strict=True))  # type: ignore[list-item]
        except UnicodeDecodeError as exc:
            raise UsageError(f"{f.url}: not UTF-8 text ({exc})") from None
        except csv.Error as exc:
            raise UsageError(f"{f.url} line {reader.line_num}: {exc}") from None
