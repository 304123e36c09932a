"""Redaction of secrets from text a person or a file will see: one linear pass, no mangling.

The rule (also in docs/reference/environment.md):

* A known secret value (the database URL's password, a runner ``secretKeyRef`` value) of at
  least :data:`MIN_SECRET_LEN` characters is replaced by ``***`` wherever it appears as a
  whole value: an edge of the secret that is a letter, digit or ``_`` must not touch another
  such character in the text (``step`` never becomes ``ste***``), unless an escape sequence
  (``\\n``, ``\\x41``, ``\\u00e9``, ``%0A``) stands there. Its URL-encoded, JSON- and
  repr-escaped and HTML-escaped spellings are replaced the same way.
* Whatever the secret, the password slot of any ``scheme://user:password@`` and the value of
  any ``password=``/``passwd=``/``pwd=`` pair are replaced: a short or unknown password still
  never leaves there.
* A secret shorter than :data:`MIN_SECRET_LEN` is redacted only in those two positions (one
  character replaced everywhere it stands alone would turn every ``a`` into ``***``); the
  runner and the steps warn about it.

Every occurrence search is ``str.find`` plus a period skip (as in Knuth-Morris-Pratt), so a
text of n characters costs O(n + m) per secret spelling of m characters, even for
self-overlapping secrets like ``aaaa``; the URL pattern only starts where a scheme can start.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, unquote

MIN_SECRET_LEN = 4
"""Shorter secrets are redacted only in URL password slots and ``password=`` values."""

MASK = "***"

# The scheme may start only where no scheme character precedes it: otherwise every position
# of a long token would start a scan to its end (quadratic). The password runs to the last
# "@" before the authority ends, so "p@ss" unencoded is masked whole.
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#\"'<>]*:(?P<pw>[^\s/?#\"'<>]*)@"
)
_KEY_PASSWORD = re.compile(
    r"(?i)(?<![\w-])(?:password|passwd|pwd)=(?:\\?[\"'])?(?P<pw>[^\s&;,\"'<>\\]*)"
)
# An escape sequence ending right before a secret counts as a boundary: "\nhunter22" in JSON.
_ESCAPE_BEFORE = re.compile(
    r"(?:\\[nrtbfv0]|\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8}|%[0-9A-Fa-f]{2})\Z"
)
_WORD = re.compile(r"\w")


def _is_word(ch: str) -> bool:
    return bool(_WORD.match(ch))


def url_passwords(url: str) -> list[str]:
    """The password of a URL as each parser may read it: up to the first or the last ``@``
    of the authority (an unencoded ``@`` in it), each ``@``-piece, or ``?password=``."""
    found: list[str] = []
    m = _URL_PASSWORD.search(url)
    if m and m.group("pw"):
        pw = m.group("pw")
        found += [pw, pw.partition("@")[0], *pw.split("@")]
    _, sep, rest = url.partition("://")
    if sep and "@" in rest and ":" in rest.rpartition("@")[0]:
        # A "/", "?" or "#" in the password: to the first "@" and to the last.
        found += [
            rest.partition("@")[0].partition(":")[2],
            rest.rpartition("@")[0].partition(":")[2],
        ]
    found += [k.group("pw") for k in _KEY_PASSWORD.finditer(url)]
    return [p for p in dict.fromkeys(found) if p]


def secret_values_of_url(url: str | None) -> tuple[str, ...]:
    """The password in a database URL as it is written and as it decodes."""
    values = url_passwords(url) if url else []
    return tuple(dict.fromkeys(v for pw in values for v in (pw, unquote(pw))))


def too_short(values: Iterable[str]) -> list[str]:
    """Secret values too short to redact outside password positions (for a warning)."""
    return [v for v in values if 0 < len(v) < MIN_SECRET_LEN]


def spellings(value: str) -> list[str]:
    """The ways ``value`` can appear in text we write: raw, URL-encoded, JSON, repr, HTML."""
    forms = [
        value,
        quote(value, safe=""),
        quote(value, safe="/:@!$&'()*+,;="),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        html.escape(value),
    ]
    return [f for f in dict.fromkeys(forms) if len(f) >= MIN_SECRET_LEN]


def _period(s: str) -> int:
    """The smallest period of ``s`` (len(s) minus its longest proper border), in O(len(s))."""
    m = len(s)
    if s[0] not in s[1:]:
        return m  # no border can exist: the common case for random tokens is one C scan
    fail = [0] * m
    k = 0
    for i in range(1, m):
        c = s[i]
        while k and s[k] != c:
            k = fail[k - 1]
        if s[k] == c:
            k += 1
        fail[i] = k
    return m - fail[-1]


class _Pattern:
    """One secret spelling with what its occurrence scan and boundary checks need."""

    __slots__ = ("left_word", "period", "right_word", "tail", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.period = _period(text)
        self.tail = text[len(text) - self.period :]
        self.left_word = _is_word(text[0])
        self.right_word = _is_word(text[-1])

    def occurrences(self, text: str) -> Iterator[int]:
        """Every start of this spelling in ``text``, overlapping ones included, in O(n + m).

        After an occurrence at i, one at i + period follows iff the text continues the period
        (an O(period) check); any other next occurrence starts after i + m - period (Fine and
        Wilf), so ``find`` never rescans a region more than once.
        """
        s, m, p = self.text, len(self.text), self.period
        i = text.find(s)
        while i >= 0:
            yield i
            while text.startswith(self.tail, i + m):
                i += p
                yield i
            i = text.find(s, i + m - p + 1)

    def whole_value_at(self, text: str, i: int) -> bool:
        j = i + len(self.text)
        if (
            self.left_word
            and i > 0
            and _is_word(text[i - 1])
            and not _ESCAPE_BEFORE.search(text, max(0, i - 10), i)
        ):
            return False
        return not (self.right_word and j < len(text) and _is_word(text[j]))


class Redactor:
    """Replaces the secrets it was built with, and URL/``password=`` passwords, by ``***``."""

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        forms: dict[str, None] = {}
        for value in secret_values:
            if value and len(value) >= MIN_SECRET_LEN:
                forms.update(dict.fromkeys(spellings(value)))
        self.patterns = [_Pattern(f) for f in forms]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the secrets stand in ``text``, as (start, end), unsorted and maybe overlapping."""
        found = [
            (i, i + len(p.text))
            for p in self.patterns
            for i in p.occurrences(text)
            if p.whole_value_at(text, i)
        ]
        for rx in (_URL_PASSWORD, _KEY_PASSWORD):
            found.extend(m.span("pw") for m in rx.finditer(text) if m.group("pw"))
        return found

    def __call__(self, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        spans.sort()
        out: list[str] = []
        pos = 0
        start, end = spans[0]
        for s, e in spans[1:]:
            if s <= end:  # overlapping spellings or a secret inside a URL: mask their union
                end = max(end, e)
                continue
            out += (text[pos:start], MASK)
            pos, (start, end) = end, (s, e)
        out += (text[pos:start], MASK, text[end:])
        return "".join(out)


@functools.lru_cache(maxsize=16)
def _redactor(secret_values: frozenset[str]) -> Redactor:
    return Redactor(secret_values)


def redact(text: str, secret_values: Iterable[str] = ()) -> str:
    """``text`` with every secret value and every URL/``password=`` password replaced by ``***``."""
    return _redactor(frozenset(secret_values))(text)


def redact_values(obj: Any, secret_values: Iterable[str] = ()) -> Any:
    """``obj`` (JSON-like) with every string in it redacted, before it is serialized.

    Redacting the raw strings, not their serialized text, sees a secret beside a newline or a
    quote as it is, not as ``\\nsecret`` or ``\\"secret``.
    """
    red = _redactor(frozenset(secret_values))

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return red(value)
        if isinstance(value, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(obj)
