"""Parquet parts: a shard's output as one Parquet file whose checkpoint chunks are row groups.

``shard --part-format parquet`` writes ``STORE/parts/part-NNNNN.parquet`` through the same
part writers as JSON Lines (:mod:`workers.checkpoints`: local temp file, S3 multipart
upload, GCS chunk objects), so it keeps their atomic publish, checkpoints and resume.

**Why the bytes after a resume are the bytes of a clean run.** Each checkpoint chunk is
encoded as a Parquet file of its own (pyarrow, :data:`WRITE_OPTIONS`: fixed codec and
level, statistics, the Arrow schema stored, no page index or bloom filter, so the column
data holds no file offsets), from the chunk's batches only; its row groups end at fixed
row and byte counts of the chunk's own rows. Chunk boundaries depend only on the rows and
the processor (see :mod:`workers.checkpoints`), so each chunk's file is a pure function of
its rows. The part is the first chunk's file up to its footer, then each later chunk's
file between its magic and its footer (its *body*), then one footer: the chunks' footers
joined by :mod:`workers.parquetfooter` (row groups concatenated, offsets shifted by where
each body landed), a pure function of the chunks' footers and sizes. Each chunk's footer
is kept in the checkpoint record (``meta``); a resume keeps the chunks whose bytes verify
and their footers, and the part it publishes is byte for byte the clean run's. Nothing
else (no time, no host) goes into the file; the writer's ``created_by`` is pyarrow's
version, pinned by the lock.

**One schema per part, and per run.** With ``--batch-format rows`` the processor's dicts
become Arrow by :func:`rows_to_table`: the first batch's inferred schema is the part's,
later batches are converted to it or refused (exit 3 naming the field). A resume takes
the schema from the kept chunks. The commit record names the schema (``schema``: Arrow IPC,
base64; ``schema_text``: readable), and merge refuses a run whose parts disagree.

pyarrow is imported only here, and only by a shard or merge that handles Parquet.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from workers import failures, parquetfooter, stop, storage
from workers.errors import IncompleteError, ProcessingError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from workers.checkpoints import PartWriter
    from workers.splice import Part

PART_FORMATS = ("jsonl", "parquet")

ROW_GROUP_ROWS = 128 * 1024
"""A row group ends after this many rows of a chunk (or :data:`ROW_GROUP_BYTES`) or with it."""

SEGMENT_MAX_BYTES = 64 << 20
"""A segment also ends at this much encoded output (as a JSON Lines chunk at 64 MiB)."""

ROW_GROUP_BYTES = 16 << 20
"""...or when the chunk's Arrow batches not yet written hold this much: a merge decodes one
row group at a time, so this bounds its memory."""

WRITE_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    # Plain encoding: on the benchmark's typed rows (unique keys and timestamps, 10,007 names,
    # 150 jsonb values) dictionary encoding took 0.7 s of the writer's 0.9 s of CPU for 1M rows
    # and made the part larger (20.9 MB against 12.9 MB): zstd finds the repeats anyway.
    "use_dictionary": False,
    "write_statistics": True,
    "store_schema": True,
    "write_page_index": False,  # its offsets would sit before the footer, inside a body
    "version": "2.6",
    "data_page_version": "1.0",
}
"""Fixed writer options: identical rows give identical bytes."""


def _pa() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise failures.classify(exc) from None
    return pyarrow


def writer_version() -> str:
    """What encodes the part: pyarrow's version (the file's ``created_by``) and the writer's
    options. Part of a Parquet part's checkpoint key: a checkpoint encoded otherwise is not
    resumed (its chunks would not be the bytes this writer makes)."""
    options = ",".join(f"{k}={v}" for k, v in sorted(WRITE_OPTIONS.items()))
    return f"pyarrow {_pa().__version__}; {options}"


def schema_fields(schema: pa.Schema) -> dict[str, str]:
    """The commit record's ``schema`` (Arrow IPC, base64) and ``schema_text``."""
    return {
        "schema": base64.b64encode(schema.serialize().to_pybytes()).decode("ascii"),
        "schema_text": schema.to_string(show_schema_metadata=False),
    }


def schema_from(encoded: str) -> pa.Schema:
    pa = _pa()
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(encoded)))


def rows_to_table(rows: Sequence[Any], schema: pa.Schema | None) -> pa.Table:
    """The processor's dicts as an Arrow table; the first batch's inferred schema is the part's
    (``schema`` None), later ones are converted to ``schema``; anything else is exit 3."""
    pa = _pa()
    for row in rows:
        if not isinstance(row, dict):
            raise ProcessingError(
                f"a Parquet part holds records: the processor returned a {type(row).__name__}, "
                "not a dict (use --part-format jsonl for other JSON values)"
            )
    if schema is None:
        try:
            first = pa.Table.from_pylist(list(rows))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ProcessingError(
                f"the processor's rows have no Arrow type: {_field_of(rows, None) or exc}"
            ) from None
        # from_pylist takes the fields of the first row: a field only later rows hold must not
        # be dropped silently (checked below, as for any batch).
        _check_fields(rows, first.schema)
        wide = _widened(first.schema)
        return first if wide.equals(first.schema) else first.cast(wide)
    _check_fields(rows, schema)
    try:
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ProcessingError(
            "the processor's rows do not fit the part's schema (the first batch's): "
            f"{_field_of(rows, schema) or exc}"
        ) from None


def _check_fields(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> None:
    names = set(schema.names)
    for row in rows:
        extra = [k for k in row if k not in names]
        if extra:
            raise ProcessingError(
                f"the processor returned field {extra[0]!r}, which is not in the part's schema "
                f"(the first batch's first row: {', '.join(schema.names) or 'no fields'})"
            )


def _widened(schema: pa.Schema) -> pa.Schema:
    """Decimals inferred from one batch get the widest precision (their scale stays): a later
    batch's larger numbers of the same column must fit."""
    pa = _pa()
    fields = [
        f.with_type(pa.decimal128(38, f.type.scale))
        if pa.types.is_decimal128(f.type) and f.type.scale <= 38
        else f
        for f in schema
    ]
    return pa.schema(fields)


def _field_of(rows: Sequence[dict[str, Any]], schema: pa.Schema | None) -> str | None:
    """Name the first field whose values fail to convert, and why."""
    pa = _pa()
    names = schema.names if schema is not None else list(dict.fromkeys(k for r in rows for k in r))
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            pa.array(values, type=schema.field(name).type if schema is not None else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            want = f" as {schema.field(name).type}" if schema is not None else ""
            return f"field {name!r}{want}: {exc}"
    return None


def cast_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in the part's schema (exit 3 naming the field that does not fit)."""
    if table.schema.equals(schema):
        return table
    pa = _pa()
    if sorted(table.schema.names) != sorted(schema.names):
        raise ProcessingError(
            f"the processor returned fields {table.schema.names}, the part's schema (its first "
            f"batch's) has {schema.names}"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        bad = next((f for f in schema if not table.schema.field(f.name).type.equals(f.type)), None)
        what = f"field {bad.name!r} ({bad.type})" if bad is not None else "a field"
        raise ProcessingError(f"{what} does not fit the part's schema: {exc}") from None


def _encode_meta(footers: list[tuple[int, parquetfooter.Footer]]) -> str | None:
    if not footers:
        return None
    return ";".join(f"{shift}:{base64.b64encode(f.data).decode('ascii')}" for shift, f in footers)


def _decode_meta(meta: str | None) -> list[tuple[int, parquetfooter.Footer]]:
    out = []
    for item in (meta or "").split(";"):
        if item:
            shift, _, encoded = item.partition(":")
            out.append((int(shift), parquetfooter.Footer(base64.b64decode(encoded))))
    return out


def _schema_of_footer(footer: parquetfooter.Footer) -> pa.Schema:
    _pa()
    import pyarrow.parquet as pq

    data = footer.data
    file = parquetfooter.MAGIC + data + len(data).to_bytes(4, "little") + parquetfooter.MAGIC
    return pq.read_metadata(io.BytesIO(file)).schema.to_arrow_schema()


class ParquetPart:
    """Writes Arrow tables into a part writer as one Parquet file, a segment's file at a time.

    A *segment* ends at the first batch boundary past ``every`` rows read (or
    :data:`SEGMENT_MAX_BYTES` encoded): what a checkpoint chunk is for JSON Lines, decided
    here whatever the store, so the part's bytes are the same on a folder, S3 or GCS and
    whether or not the store checkpoints. A checkpoint chunk of the part writer holds one
    segment, or several on S3 until the chunk reaches S3's 5 MiB minimum; its ``meta`` lists
    their footers (``OFFSET:BASE64;...``, the offset their own files would start at).

    Use it as the part writer is used: :meth:`write_table` per processor batch (or
    :meth:`write_rows` for row dicts), :meth:`end_batch` after it, :meth:`commit` at the end.
    """

    def __init__(self, inner: PartWriter, every: int) -> None:
        self.inner = inner
        self.every = every
        self.schema: pa.Schema | None = None
        self._footers: list[tuple[int, parquetfooter.Footer]] = []
        self._unvouched: list[tuple[int, parquetfooter.Footer]] = []  # not in a closed chunk yet
        for chunk in inner.chunks:  # what a resume kept: their footers come with them
            for shift, footer in _decode_meta(chunk.meta):
                self._footers.append((shift, footer))
                if self.schema is None:
                    self.schema = _schema_of_footer(footer)
        self._pending: list[pa.Table] = []
        self._pending_rows = self._pending_bytes = self._seg_rows_in = 0
        self._file: io.BytesIO | None = None
        self._writer: pq.ParquetWriter | None = None

    # The part writer's view, for run_shard.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __enter__(self) -> ParquetPart:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer = None
        self.inner.__exit__(*exc)

    def write_rows(self, rows: Sequence[Any]) -> None:
        if rows:
            self.write_table(rows_to_table(rows, self.schema))

    def write_table(self, table: pa.Table) -> None:
        """One processor batch's output (a pyarrow Table or RecordBatch)."""
        pa = _pa()
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if self.schema is None:
            self.schema = table.schema.remove_metadata()
        table = cast_to(table.replace_schema_metadata(None), self.schema)
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush_row_group()

    def _flush_row_group(self) -> None:
        if not self._pending:
            return
        pa = _pa()
        import pyarrow.parquet as pq

        table = pa.concat_tables(self._pending).combine_chunks()
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
        if self._writer is None:
            self._file = io.BytesIO()
            self._writer = pq.ParquetWriter(self._file, self.schema, **WRITE_OPTIONS)
        self._writer.write_table(table, row_group_size=table.num_rows)

    def _encoded(self) -> int:
        return self._file.tell() if self._file is not None else 0

    def end_batch(self, rows_in: int, rows_out: int, last_key: Any) -> None:
        """A batch is written: end the segment here once it holds ``every`` rows read, and the
        part writer's chunk with it when the store allows (S3: once it holds 5 MiB)."""
        inner = self.inner
        inner.count(rows_in, rows_out, last_key)
        if stop.noticed():
            # The spot notice: no segment ends early, since the row groups follow
            # --checkpoint-rows and a resumed part must have a clean run's bytes; the retry
            # resumes at the last periodic checkpoint.
            raise stop.Terminated("a Parquet part resumes at its last periodic checkpoint")
        self._seg_rows_in += rows_in
        if not self.every or (
            self._seg_rows_in < self.every
            and self._encoded() + self._pending_bytes < SEGMENT_MAX_BYTES
        ):
            return
        self._end_segment()
        if inner.every and inner.open_chunk_bytes >= inner.min_chunk_bytes:
            meta = _encode_meta(self._unvouched)
            self._unvouched = []
            inner.close_chunk(meta)

    def _end_segment(self) -> None:
        """Close this segment's Parquet file and write its body into the part."""
        self._flush_row_group()
        self._seg_rows_in = 0
        if self._writer is None or self._file is None:
            return
        self._writer.close()
        body, footer = parquetfooter.split_file(self._file.getvalue())
        self._writer, self._file = None, None
        start = self.inner.bytes
        if start:
            body = body[len(parquetfooter.MAGIC) :]  # the part's own magic came first
        entry = (start - len(parquetfooter.MAGIC) if start else 0, footer)
        self._footers.append(entry)
        self._unvouched.append(entry)
        self.inner.write(body)

    def commit(self) -> None:
        self._end_segment()
        if self._footers:
            self.inner.write(parquetfooter.join(self._footers))
        else:
            self.inner.write(self._empty_file())
        self.inner.commit()

    def _empty_file(self) -> bytes:
        """A part without rows: a Parquet file of the schema (or of no columns) and no row group."""
        if self.schema is None:
            self.schema = _pa().schema([])
        return empty_file(self.schema)

    def record_fields(self) -> dict[str, Any]:
        """What the commit record adds for a Parquet part."""
        schema = self.schema if self.schema is not None else _pa().schema([])
        return {"format": "parquet", **schema_fields(schema)}


def empty_file(schema: pa.Schema) -> bytes:
    """A Parquet file of ``schema`` without row groups."""
    _pa()
    import pyarrow.parquet as pq

    f = io.BytesIO()
    pq.ParquetWriter(f, schema, **WRITE_OPTIONS).close()
    return f.getvalue()


# -- reading committed parts (merge)


@contextlib.contextmanager
def verified(part: Part) -> Iterator[Any]:
    """A committed Parquet part, opened for reading once its size and sha256 match its record.

    Locally the one open file is hashed and then read (a name swapped meanwhile changes
    nothing); from a bucket (or a location not resolved) the part is downloaded once to a
    local temp file while hashed.
    Memory stays a read buffer either way. Yields a ``pyarrow.parquet.ParquetFile``.
    """
    _pa()
    import pyarrow.parquet as pq

    try:
        f, size = storage.open_input(part.url, "part")
    except FileNotFoundError:
        raise IncompleteError(f"{part.label} data file is missing: {part.url}") from None
    with contextlib.ExitStack() as stack:
        stack.enter_context(f)
        if part.bytes is not None and size != part.bytes:
            raise IncompleteError(
                f"{part.label} is {size} bytes, its commit record says {part.bytes}"
            )
        local: Any = f
        if part.where is None or not part.where.is_local:
            import tempfile

            local = stack.enter_context(tempfile.TemporaryFile(prefix="workers-part-"))
        sha = hashlib.sha256()
        total = 0
        while data := f.read(1 << 20):
            sha.update(data)
            total += len(data)
            if local is not f:
                local.write(data)
        if total != size or sha.hexdigest() != part.sha256:
            raise IncompleteError(f"{part.label} does not match the sha256 of its commit record")
        local.seek(0)
        reader = pq.ParquetFile(local, pre_buffer=False, buffer_size=1 << 20)
        if part.rows is not None and reader.metadata.num_rows != part.rows:
            raise IncompleteError(
                f"{part.label} holds {reader.metadata.num_rows} rows, its commit record says {part.rows}"
            )
        yield reader


def verify_only(part: Part) -> None:
    """Check size and sha256 of a committed part without keeping anything (dataset merge)."""
    try:
        f, size = storage.open_input(part.url, "part")
    except FileNotFoundError:
        raise IncompleteError(f"{part.label} data file is missing: {part.url}") from None
    with f:
        if part.bytes is not None and size != part.bytes:
            raise IncompleteError(
                f"{part.label} is {size} bytes, its commit record says {part.bytes}"
            )
        sha = hashlib.sha256()
        while data := f.read(1 << 20):
            sha.update(data)
    if sha.hexdigest() != part.sha256:
        raise IncompleteError(f"{part.label} does not match the sha256 of its commit record")


def check_part_format(value: str, flag: str = "--part-format") -> str:
    if value not in PART_FORMATS:
        raise UsageError(f"unknown {flag} {value!r}: choose jsonl or parquet")
    return value


def memory_pool_for_merge() -> None:
    """Return freed Arrow memory to the OS at once: merge's bound is on its peak RSS."""
    pa = _pa()
    with contextlib.suppress(Exception):
        pa.set_memory_pool(pa.system_memory_pool())
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
