"""Read CUE's error text: entries with a value path, a message and source positions.

Input: the standard error of `cue export -E` (any CUE version from v0.4 on prints the same shape):

    meshcDocuments.prod.services."payments-stripe".tls.mode: conflicting values "simple" and "disable":
        ./documents.json:1:220
        ./policies.cue:14:9

Output: `Entry` values: `path` (labels; list indexes as int, quoted labels decoded), `message`,
`positions` as (file, line, col). A line that does not start with a path (a syntax error, a cycle)
gives an entry with an empty path.
Invariants: a label is only taken as a list index when CUE printed it unquoted and all digits (a map
key "0" is printed quoted); a hidden (`_x`) or definition (`#X`) label is kept as written, so
callers can tell it from a data key, which CUE would have quoted if it started with `_` or `#`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PathLabel = str | int

_IDENT = re.compile(r"[A-Za-z_$#][A-Za-z0-9_$#]*|[0-9]+")
_POSITION = re.compile(r"^\s+(\S.*?):(\d+):(\d+)\s*$")


class HiddenLabel(str):
    """A hidden field or definition label (`_x`, `#X`): never part of the data."""


@dataclass
class Entry:
    path: tuple[PathLabel, ...]
    message: str
    positions: list[tuple[str, int, int]] = field(default_factory=list)


def _quoted(text: str, start: int) -> tuple[str, int] | None:
    """Decode the quoted label starting at text[start] == '"'; (label, index after it)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            raw = text[start:i + 1]
            try:
                return str(json.loads(raw)), i + 1
            except ValueError:
                return raw[1:-1], i + 1
        i += 1
    return None


def _label(text: str, i: int) -> tuple[PathLabel, int] | None:
    if i < len(text) and text[i] == '"':
        return _quoted(text, i)
    m = _IDENT.match(text, i)
    if not m:
        return None
    word = m.group(0)
    if word.isdigit():
        return int(word), m.end()
    return (HiddenLabel(word) if word[0] in "_#" else word), m.end()


def split_path(line: str) -> tuple[tuple[PathLabel, ...], str] | None:
    """('a', 0, 'b.c'), 'msg' from 'a.0."b.c": msg'; None when the line has no leading path."""
    labels: list[PathLabel] = []
    i = 0
    while True:
        got = _label(line, i)
        if got is None:
            return None
        labels.append(got[0])
        i = got[1]
        if line.startswith(": ", i) or (line.startswith(":", i) and i + 1 == len(line)):
            return tuple(labels), line[i + 1:].strip()
        if not line.startswith(".", i):
            return None
        i += 1


def _clean(message: str) -> str:
    message = message.strip()
    while message.endswith(":"):
        message = message[:-1].rstrip()
    return message


def parse(stderr: str) -> list[Entry]:
    """All entries of CUE's error output, in order."""
    entries: list[Entry] = []
    for raw in stderr.splitlines():
        if not raw.strip():
            continue
        pos = _POSITION.match(raw)
        if pos and entries:
            name = pos.group(1)
            entries[-1].positions.append(
                (name[2:] if name.startswith("./") else name, int(pos.group(2)), int(pos.group(3))))
        elif raw[0].isspace() and entries:
            entries[-1].message = f"{entries[-1].message} {raw.strip()}"
        else:
            got = split_path(raw)
            path, message = got if got else ((), raw)
            entries.append(Entry(path, _clean(message)))
    for entry in entries:
        entry.message = _clean(entry.message)
    return entries


__all__ = ["Entry", "HiddenLabel", "PathLabel", "parse", "split_path"]
