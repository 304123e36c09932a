"""Go's ``encoding/json`` syntax errors, worded as Go words them.

Python's :mod:`json` and Go accept the same documents, but their errors read differently
(``Expecting value: line 1 column 1`` against ``invalid character 'x' looking for beginning of
value``). The controller reports Go's, so the runner reads JSON with Python and, when that fails,
finds the first byte Go's scanner stops at and says what Go would: ``invalid character C
CONTEXT`` or ``unexpected end of JSON input``. Go's scanner checks the whole input before it
decodes, so its syntax error is the error ``json.Unmarshal`` returns for a malformed document.

Written from the language's documented behaviour (encoding/json's scanner states), not copied.
"""

from __future__ import annotations

_SPACE = b" \t\r\n"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = b'bfnrt\\/"'
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}
_QUOTED = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 92: "\\\\"}
END = "unexpected end of JSON input"


class _Stop(Exception):
    """The scanner's first error."""


def quote_char(c: int) -> str:
    """A byte as Go's scanner quotes it in an error (``quoteChar``: strconv.Quote of the
    byte's rune, single quotes around it)."""
    if c == ord("'"):
        return "'\\''"
    if c in _QUOTED:
        return f"'{_QUOTED[c]}'"
    if c < 0x20 or c == 0x7F:
        return f"'\\x{c:02x}'"
    if 0x80 <= c <= 0xA0 or c == 0xAD:
        # not printable for strconv.IsPrint: C1 controls, no-break space, soft hyphen
        return f"'\\u{c:04x}'"
    return f"'{chr(c)}'"


def syntax_error(text: str | bytes) -> str | None:
    """Go's error for ``text`` as JSON, or None when Go's scanner accepts it."""
    data = text.encode() if isinstance(text, str) else text
    try:
        end = _Scanner(data).value(0)
        while end < len(data):
            if data[end] not in _SPACE:
                raise _Stop(_bad(data[end], "after top-level value"))
            end += 1
    except _Stop as stop:
        return str(stop)
    except RecursionError:
        return None  # nested deeper than Python follows: the caller's own message stands
    return None


def error_of(text: str | bytes, exc: BaseException) -> str:
    """Go's message for ``text`` that Python's json refused with ``exc`` (``exc``'s own
    when Go's scanner would accept it: a value Go reads but this caller does not take)."""
    return syntax_error(text) or str(exc)


def _bad(c: int, context: str) -> str:
    return f"invalid character {quote_char(c)} {context}"


class _Scanner:
    """Recursive descent over the bytes, stopping where Go's state machine does. At the end of
    the input Go feeds one space to the state it is in: mid-number or mid-literal that space is
    the invalid character, elsewhere the input simply ended."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def at(self, i: int) -> int:
        """The byte at ``i``; past the end the space Go's scanner feeds at EOF."""
        return self.data[i] if i < len(self.data) else 0x20

    def skip(self, i: int) -> int:
        """Past whitespace to a byte that must exist (else the input ended too soon)."""
        while i < len(self.data) and self.data[i] in _SPACE:
            i += 1
        if i >= len(self.data):
            raise _Stop(END)
        return i

    def value(self, i: int) -> int:
        i = self.skip(i)
        c = self.data[i]
        if c == ord("{"):
            return self.object(i + 1)
        if c == ord("["):
            return self.array(i + 1)
        if c == ord('"'):
            return self.string(i + 1)
        if c == ord("-") or c in _DIGITS:
            return self.number(i)
        if c in _LITERALS:
            word = _LITERALS[c]
            for k in range(1, len(word)):
                if self.at(i + k) != word[k]:
                    expect = f"in literal {word.decode()} (expecting {quote_char(word[k])})"
                    raise _Stop(_bad(self.at(i + k), expect))
            return i + len(word)
        raise _Stop(_bad(c, "looking for beginning of value"))

    def object(self, i: int) -> int:
        i = self.skip(i)
        if self.data[i] == ord("}"):
            return i + 1
        while True:
            if self.data[i] != ord('"'):
                raise _Stop(_bad(self.data[i], "looking for beginning of object key string"))
            i = self.skip(self.string(i + 1))
            if self.data[i] != ord(":"):
                raise _Stop(_bad(self.data[i], "after object key"))
            i = self.skip(self.value(i + 1))
            if self.data[i] == ord("}"):
                return i + 1
            if self.data[i] != ord(","):
                raise _Stop(_bad(self.data[i], "after object key:value pair"))
            i = self.skip(i + 1)

    def array(self, i: int) -> int:
        i = self.skip(i)
        if self.data[i] == ord("]"):
            return i + 1
        while True:
            i = self.skip(self.value(i))
            if self.data[i] == ord("]"):
                return i + 1
            if self.data[i] != ord(","):
                raise _Stop(_bad(self.data[i], "after array element"))
            i += 1

    def string(self, i: int) -> int:
        """Past the closing quote of a string whose opening quote is before ``i``."""
        while True:
            if i >= len(self.data):
                raise _Stop(END)
            c = self.data[i]
            if c == ord('"'):
                return i + 1
            if c < 0x20:
                raise _Stop(_bad(c, "in string literal"))
            if c == ord("\\"):
                # mid-escape, the end of the input is the space Go feeds: an invalid character
                i += 1
                if self.at(i) == ord("u"):
                    for _ in range(4):
                        i += 1
                        if self.at(i) not in _HEX:
                            raise _Stop(_bad(self.at(i), "in \\u hexadecimal character escape"))
                elif self.at(i) not in _ESCAPES:
                    raise _Stop(_bad(self.at(i), "in string escape code"))
            i += 1

    def number(self, i: int) -> int:
        if self.data[i] == ord("-"):
            i += 1
            if self.at(i) not in _DIGITS:
                raise _Stop(_bad(self.at(i), "in numeric literal"))
        if self.at(i) == ord("0"):
            i += 1
        else:
            while self.at(i) in _DIGITS:
                i += 1
        if self.at(i) == ord("."):
            i += 1
            if self.at(i) not in _DIGITS:
                raise _Stop(_bad(self.at(i), "after decimal point in numeric literal"))
            while self.at(i) in _DIGITS:
                i += 1
        if self.at(i) in b"eE":
            i += 1
            if self.at(i) in b"+-":
                i += 1
            if self.at(i) not in _DIGITS:
                raise _Stop(_bad(self.at(i), "in exponent of numeric literal"))
            while self.at(i) in _DIGITS:
                i += 1
        return min(i, len(self.data))
