"""Does a set of CUE policy files look at one service at a time? (decides how the cue layer splits
an environment's document).

Input: the text of policy files. Output: `per_service(texts)` is True when no file can see across
services: the top-level fields `services` and `objects` are only ever *declared* (a line that
starts, at the top level of the file, with `services:` or `objects:`), never *referred to*
(`len(services)`, `for k, v in services`, `services["x"]`, `"\\(objects)"`, an alias, a label
inside another struct, ...). Everything else, `env` included, may be referred to freely.

When that holds, unifying the policies with the whole environment document gives exactly the
errors of unifying them with one document per service (`{env, services: {one}, objects: {its}}`)
plus one document with no service (for the constraints on `env`): a pattern constraint
`services: [_]: {...}` applies to each service on its own, and nothing else can read a service.
The cue layer then caches and re-vets per service, so a one-service change re-runs CUE on that
service only. When it does not hold (or the scan meets syntax it does not model, such as raw
strings `#"..."#`), the environment stays one document: slower on a change, never wrong.

The scan is lexical: comments (`//` to the end of the line) are skipped, string literals ("..."
'...', and the triple-quoted forms) are read as text *including* any `\\(...)` interpolation (so an
interpolated reference counts), and depth is the nesting of (), [] and {} outside strings.
"""

from __future__ import annotations

import re
from typing import Iterable

SCOPED = ("services", "objects")
_WORD = re.compile(r"[A-Za-z_$#][A-Za-z0-9_$#]*")


class _Unsupported(Exception):
    pass


def per_service(texts: Iterable[str]) -> bool:
    try:
        return all(_declares_only(text) for text in texts)
    except _Unsupported:
        return False


def _declares_only(text: str) -> bool:
    depth = 0
    i, n = 0, len(text)
    line_start = True  # only whitespace since the last newline
    while i < n:
        c = text[i]
        if c == "\n":
            line_start = True
            i += 1
            continue
        if c in " \t\r":
            i += 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "#" and i + 1 < n and text[i + 1] in "\"'#":
            raise _Unsupported("raw string")
        if c in "\"'":
            i = _skip_string(text, i)
            line_start = False
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        m = _WORD.match(text, i)
        if m is not None:
            word = m.group(0)
            if word in SCOPED and not _is_declaration(text, m.end(), depth, line_start):
                return False
            line_start = False
            i = m.end()
            continue
        line_start = False
        i += 1
    return True


def _is_declaration(text: str, end: int, depth: int, line_start: bool) -> bool:
    """`services:` (or `services?:` / `services!:`) opening a line at the top level."""
    if depth != 0 or not line_start:
        return False
    rest = text[end:end + 3].lstrip(" \t")
    return rest.startswith(":") or rest.startswith("?:") or rest.startswith("!:")


def _skip_string(text: str, i: int) -> int:
    """Index after the string literal starting at i. An interpolation's text is scanned for the
    scoped words by the caller's rule: any occurrence inside a string is a reference."""
    quote = text[i]
    triple = text.startswith(quote * 3, i)
    close = quote * 3 if triple else quote
    j = i + len(close)
    while j < len(text):
        if text[j] == "\\":
            if text.startswith("\\(", j):
                k = _interpolation_end(text, j + 2)
                if any(re.search(rf"\b{w}\b", text[j + 2:k]) for w in SCOPED):
                    raise _Reference()
                j = k + 1
                continue
            j += 2
            continue
        if text.startswith(close, j):
            return j + len(close)
        if text[j] == "\n" and not triple:
            raise _Unsupported("unterminated string")
        j += 1
    raise _Unsupported("unterminated string")


def _interpolation_end(text: str, j: int) -> int:
    depth = 1
    while j < len(text):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    raise _Unsupported("unterminated interpolation")


class _Reference(_Unsupported):
    """A scoped word inside an interpolation: the file refers to it."""


__all__ = ["per_service", "SCOPED"]
