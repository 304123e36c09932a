"""Join Parquet files written one per checkpoint chunk into one Parquet file, without re-encoding.

A Parquet file is ``PAR1``, the column chunks of its row groups, then the footer (a Thrift
compact ``FileMetaData``), its length and ``PAR1``. The column chunks hold no file offsets
(page headers are relative, and the page index and bloom filters, which would add offsets
before the footer, are off): only the footer points into the file. So a chunk's Parquet file
written on its own is, between its magic and its footer, a *body* that may sit at any offset
of a bigger file, and the bigger file's footer is the chunks' footers with their row groups
concatenated, every offset shifted by where the body landed and each row group's ordinal
renumbered. That is all this module does, on the Thrift bytes (pyarrow cannot write a
footer for offsets it did not write itself): a pure function of the chunks' bytes, so a
part resumed after a kill gets the very footer a clean run writes.

The Thrift compact protocol is walked generically (every field is copied as it came) except
for the offsets named below (``FileMetaData``, ``RowGroup``, ``ColumnChunk`` and
``ColumnMetaData`` of parquet.thrift).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from workers.errors import UsageError

MAGIC = b"PAR1"

# Thrift compact protocol type ids.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE = 0, 1, 2, 3, 4, 5, 6, 7
_BINARY, _LIST, _SET, _MAP, _STRUCT = 8, 9, 10, 11, 12

# parquet.thrift field ids.
FMD_SCHEMA, FMD_NUM_ROWS, FMD_ROW_GROUPS = 2, 3, 4
RG_COLUMNS, RG_FILE_OFFSET, RG_ORDINAL = 1, 5, 7
CC_FILE_OFFSET, CC_META, CC_OFFSET_INDEX, CC_COLUMN_INDEX = 2, 3, 4, 6
CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICT_PAGE, CMD_BLOOM = 9, 10, 11, 14
_CC_OFFSETS = frozenset({CC_FILE_OFFSET, CC_OFFSET_INDEX, CC_COLUMN_INDEX})
_CMD_OFFSETS = frozenset({CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICT_PAGE, CMD_BLOOM})


class FooterError(UsageError):
    """A chunk's footer is not what this module can join (never for files it wrote)."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise FooterError("truncated Parquet footer")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _put_varint(out: bytearray, value: int) -> None:
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _skip(data: bytes, pos: int, kind: int) -> int:
    """The position after one value of ``kind`` starting at ``pos``."""
    if kind in (_TRUE, _FALSE, _BYTE):
        return pos + 1
    if kind in (_I16, _I32, _I64):
        return _varint(data, pos)[1]
    if kind == _DOUBLE:
        return pos + 8
    if kind == _BINARY:
        n, pos = _varint(data, pos)
        return pos + n
    if kind in (_LIST, _SET):
        size, elem, pos = _list_header(data, pos)
        for _ in range(size):
            pos = _skip(data, pos, elem)
        return pos
    if kind == _MAP:
        size, pos = _varint(data, pos)
        if size:
            kv = data[pos]
            pos += 1
            for _ in range(size):
                pos = _skip(data, pos, kv >> 4)
                pos = _skip(data, pos, kv & 0x0F)
        return pos
    if kind == _STRUCT:
        return _struct_fields(data, pos)[1]
    raise FooterError(f"unknown Thrift type {kind} in a Parquet footer")


def _list_header(data: bytes, pos: int) -> tuple[int, int, int]:
    head = data[pos]
    pos += 1
    size, elem = head >> 4, head & 0x0F
    if size == 15:
        size, pos = _varint(data, pos)
    # Booleans in a list are one byte each (compact protocol).
    return size, (_BYTE if elem in (_TRUE, _FALSE) else elem), pos


def _struct_fields(data: bytes, pos: int) -> tuple[list[tuple[int, int, int, int]], int]:
    """[(field id, type, value start, value end)] of the struct at ``pos``, and its end."""
    out: list[tuple[int, int, int, int]] = []
    last = 0
    while True:
        if pos >= len(data):
            raise FooterError("truncated Parquet footer")
        head = data[pos]
        pos += 1
        if head == _STOP:
            return out, pos
        ftype, delta = head & 0x0F, head >> 4
        if delta:
            fid = last + delta
        else:
            raw, pos = _varint(data, pos)
            fid = _unzigzag(raw)
        last = fid
        # A boolean field's value is its header's type (true/false): no byte follows.
        end = pos if ftype in (_TRUE, _FALSE) else _skip(data, pos, ftype)
        out.append((fid, ftype, pos, end))
        pos = end


class _Writer:
    """Emits a struct field by field (the field-id deltas as the compact protocol wants)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._last = [0]

    def field(self, fid: int, ftype: int) -> None:
        delta = fid - self._last[-1]
        if 0 < delta <= 15:
            self.out.append((delta << 4) | ftype)
        else:
            self.out.append(ftype)
            _put_varint(self.out, _zigzag(fid))
        self._last[-1] = fid

    def begin(self) -> None:
        self._last.append(0)

    def end(self) -> None:
        self.out.append(_STOP)
        self._last.pop()

    def i64(self, value: int) -> None:
        _put_varint(self.out, _zigzag(value))

    def raw(self, data: bytes) -> None:
        self.out += data


def _copy_struct(w: _Writer, data: bytes, pos: int, rewrite: dict[int, object], shift: int) -> int:
    """Copy the struct at ``pos``: integer fields in ``rewrite`` are shifted (value ``None``) or
    replaced (an int); struct fields there are copied by the nested rule (a dict)."""
    fields, end = _struct_fields(data, pos)
    w.begin()
    for fid, ftype, vstart, vend in fields:
        rule = rewrite.get(fid, ...)
        w.field(fid, ftype)
        if rule is ... or ftype not in (_I16, _I32, _I64, _STRUCT, _LIST):
            w.raw(data[vstart:vend])
        elif ftype == _STRUCT and isinstance(rule, dict):
            _copy_struct(w, data, vstart, rule, shift)
        elif ftype == _LIST and isinstance(rule, dict):
            size, elem, p = _list_header(data, vstart)
            w.raw(data[vstart:p])
            for _ in range(size):
                p = (
                    _copy_struct(w, data, p, rule, shift)
                    if elem == _STRUCT
                    else _skip(data, p, elem)
                )
        elif ftype in (_I16, _I32, _I64):
            value = _unzigzag(_varint(data, vstart)[0])
            w.i64(value + shift if rule is None else int(rule))  # type: ignore[call-overload]
        else:
            w.raw(data[vstart:vend])
    w.end()
    return end


@dataclass(frozen=True)
class Footer:
    """One chunk's footer: the Thrift bytes and where its fields are."""

    data: bytes

    @functools.cached_property
    def _top(self) -> dict[int, tuple[int, int, int]]:
        """The top-level fields, walked once (the walk skips through every row group, the
        bulk of a footer: a merge of 1,000 parts used to walk each footer three times here)."""
        fields, _ = _struct_fields(self.data, 0)
        return {fid: (ftype, s, e) for fid, ftype, s, e in fields}

    @property
    def num_rows(self) -> int:
        _t, s, _e = self._top[FMD_NUM_ROWS]
        return _unzigzag(_varint(self.data, s)[0])

    def schema_bytes(self) -> bytes:
        _t, s, e = self._top[FMD_SCHEMA]
        return self.data[s:e]

    def row_groups(self) -> tuple[int, int, int]:
        """(count, element type, start of the first) of the row group structs."""
        _t, s, _e = self._top[FMD_ROW_GROUPS]
        size, elem, p = _list_header(self.data, s)
        return size, elem, p


def split_file(data: bytes) -> tuple[bytes, Footer]:
    """A whole Parquet file's (body, footer): the body is everything before the footer, magic
    included (the first chunk keeps it, the others drop it)."""
    if len(data) < 12 or data[:4] != MAGIC or data[-4:] != MAGIC:
        raise FooterError("not a Parquet file")
    n = int.from_bytes(data[-8:-4], "little")
    if n + 12 > len(data):
        raise FooterError("a Parquet footer longer than its file")
    return data[: len(data) - 8 - n], Footer(data[len(data) - 8 - n : len(data) - 8])


def join(footers: list[tuple[int, Footer]]) -> bytes:
    """The footer, length and magic that end a file made of chunk bodies.

    ``footers`` is, per chunk with row groups, (the offset its *file* would have started at,
    i.e. where its body begins minus the 4 bytes of magic it dropped, and its footer). The
    first footer's schema, key-value metadata and writer stay; the row groups of all follow
    one another with offsets shifted and ordinals renumbered. Chunks must share one schema.
    """
    if not footers:
        raise FooterError("no footer to join")
    first = footers[0][1]
    schema = first.schema_bytes()
    rows = 0
    groups = bytearray()
    count = 0
    rg_rule: dict[int, object] = {
        RG_COLUMNS: {
            **dict.fromkeys(_CC_OFFSETS),
            CC_META: dict.fromkeys(_CMD_OFFSETS),
        },
        RG_FILE_OFFSET: None,
    }
    for shift, footer in footers:
        if footer.schema_bytes() != schema:
            raise FooterError("the chunks of one part have different Parquet schemas")
        rows += footer.num_rows
        size, elem, p = footer.row_groups()
        if size and elem != _STRUCT:
            raise FooterError("a Parquet footer whose row groups are not structs")
        for _ in range(size):
            w = _Writer()
            p = _copy_struct(w, footer.data, p, {**rg_rule, RG_ORDINAL: count}, shift)
            groups += w.out
            count += 1
    w = _Writer()
    w.begin()
    for fid, (ftype, vstart, vend) in first._top.items():
        w.field(fid, ftype)
        if fid == FMD_NUM_ROWS:
            w.i64(rows)
        elif fid == FMD_ROW_GROUPS:
            if count < 15:
                w.raw(bytes([(count << 4) | _STRUCT]))
            else:
                w.raw(bytes([0xF0 | _STRUCT]))
                _put_varint(w.out, count)
            w.raw(bytes(groups))
        else:
            w.raw(first.data[vstart:vend])
    w.end()
    footer_bytes = bytes(w.out)
    return footer_bytes + len(footer_bytes).to_bytes(4, "little") + MAGIC
