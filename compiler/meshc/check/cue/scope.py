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
from collections.abc import Iterable

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
    text = _strip_comments(text)
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




_SHAPE = re.compile(r"^objects\??:(\[(string|_)\]:)?\{\.\.\.\}$")


def reads_objects(texts: Iterable[str]) -> bool:
    """False when no file constrains `objects` beyond its shape: every mention is a top-level
    declaration `objects: [string]: {...}` (or `[_]`, or `objects: {...}`), which any object
    satisfies. Then the cue layer leaves the emitted objects out of the documents: CUE would only
    read them to find nothing (about a fifth of its time on the generated estates)."""
    try:
        return not all(_objects_shape_only(text) for text in texts)
    except _Unsupported:
        return True


def _objects_shape_only(text: str) -> bool:
    code = _strip_comments(text)
    for m in re.finditer(r"\bobjects\b", code):
        line_start = code.rfind("\n", 0, m.start()) + 1
        line_end = code.find("\n", m.start())
        line = code[line_start:len(code) if line_end < 0 else line_end]
        if code[line_start:m.start()].strip() or not _SHAPE.match("".join(line.split())):
            return False
        if _depth(code, m.start()) != 0:
            return False
    return True


def _strip_comments(text: str) -> str:
    """The text with `//` comments blanked (string literals kept; raw strings unsupported)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "#" and i + 1 < n and text[i + 1] in "\"'#":
            raise _Unsupported("raw string")
        if c in "\"'":
            j = _skip_string(text, i)
            out.append(text[i:j])
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _depth(code: str, end: int) -> int:
    """Bracket depth at `end` of comment-free code (strings skipped)."""
    depth, i = 0, 0
    while i < end:
        c = code[i]
        if c in "\"'":
            i = _skip_string(code, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        i += 1
    return depth


__all__ = ["per_service", "reads_objects", "SCOPED"]
