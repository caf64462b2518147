r"""One CUE evaluation for many documents: the policy files wrapped once, the documents side by side.

Input: groups of (policy files, documents): paths to .cue files, key -> JSON-able dict.
Output: a `Batch` holding the text of `policies.cue`, the bytes of `documents.cue` and a `LineMap`
that turns a line of `policies.cue` back into (policy file, line).

`policies.cue` is:

    import (...)                      every import of every policy file, hoisted and de-duplicated
    _meshcPolicy0: {
    <policy file 1, verbatim>          its `package` and `import` lines blanked, not removed
    <policy file 2, verbatim>
    }
    _meshcPolicy1: {...}               a second group of policy files (another profile), if any
    meshcDocuments: "prod": _meshcPolicy0
    meshcDocuments: "dev": _meshcPolicy1
    meshcSentinel: "fail" & "always"   an error on purpose, see below

and `documents.cue` is `meshcDocuments: {key: document, ...}` written as JSON (JSON is CUE syntax;
CUE parses it faster than it decodes a .json file). Every document is therefore unified with the
policies of its group on its own, and each error CUE reports starts with `meshcDocuments.<key>.`.
Any string reaches the policies as it is: the JSON escapes what a CUE file cannot hold raw (NUL
and the other C0 controls as \u00XX, and the byte order mark, which CUE refuses anywhere but at
the start of a file, as \ufeff). A lone surrogate cannot be written in UTF-8 nor as a CUE escape
(CUE pairs \ud83d\ude00 into one character and refuses a lone one): `build` raises `BatchError`
naming the document and the path; meshc rejects such strings when it reads a declaration.
Tests: tests/test_cue_strings.py.

The sentinel makes every run fail, so `cue export` only validates and never encodes the documents
as JSON (half the time of a run); and CUE v0.4 reports an *incomplete* value (a field a policy
requires but the document lacks) only when nothing else failed, so with the sentinel it is never
reported, instead of depending on the other documents of the batch.

Invariants: each policy line becomes exactly one line of `policies.cue`, unchanged, so line and
column of every position map back exactly; the policy files share one scope (like the files of
one CUE package); a policy file cannot see another document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

DOCS_FIELD = "meshcDocuments"
POLICY_FIELD = "_meshcPolicy"
SENTINEL_FIELD = "meshcSentinel"
POLICIES_NAME = "policies.cue"
DOCUMENTS_NAME = "documents.cue"

_PACKAGE = re.compile(r"^\s*package\s+[\w$#]+\s*(//.*)?$")
_IMPORT_ONE = re.compile(r"^\s*import\s+(?!\()(.*)$")
_IMPORT_OPEN = re.compile(r"^\s*import\s*\((.*)$")
_SPEC = re.compile(r'(?:([A-Za-z_$#][\w$#]*)\s+)?"([^"\\]+)"')
_SKIPPABLE = re.compile(r"^\s*(//.*)?$")
_KEYWORD = re.compile(r"^\s*import\b\s*\(?")


class BatchError(ValueError):
    """A policy file that cannot be wrapped (message names file:line:col)."""


@dataclass(frozen=True)
class Span:
    path: Path
    first: int  # line of policies.cue holding the file's line 1
    count: int


@dataclass
class LineMap:
    spans: list[Span] = field(default_factory=list)

    def locate(self, line: int) -> tuple[Path, int] | None:
        """(policy file, line in it) for a line of policies.cue; None for the wrapper's own lines."""
        for span in self.spans:
            if span.first <= line < span.first + span.count:
                return span.path, line - span.first + 1
        return None

    def nearest_before(self, line: int) -> tuple[Path, int] | None:
        """The last policy line at or before `line` (a wrapper line blamed on the file above it)."""
        best = None
        for span in self.spans:
            if span.first <= line:
                best = (span.path, min(line - span.first + 1, span.count))
        return best


@dataclass(frozen=True)
class Batch:
    policies: str
    documents: bytes
    lines: LineMap


def _import_name(alias: str | None, path: str) -> str:
    if alias:
        return alias
    last = path.split(":")[-1] if ":" in path else path.rsplit("/", 1)[-1]
    return last.split("@")[0]


def _header_end(lines: list[str]) -> int:
    """Index of the first line after the package clause and import declarations."""
    i, in_block = 0, False
    while i < len(lines):
        text = lines[i]
        if in_block:
            in_block = ")" not in text
        elif _IMPORT_OPEN.match(text):
            in_block = ")" not in text.split("(", 1)[1]
        elif not (_PACKAGE.match(text) or _IMPORT_ONE.match(text) or _SKIPPABLE.match(text)):
            return i
        i += 1
    return i


def split_file(path: Path, text: str) -> tuple[list[tuple[str | None, str, int]], list[str]]:
    """(imports as (alias, path, line), body lines with package/import lines blanked)."""
    lines = text.splitlines()
    end = _header_end(lines)
    imports: list[tuple[str | None, str, int]] = []
    for i in range(end):
        if _SKIPPABLE.match(lines[i]) and not _IMPORT_OPEN.match(lines[i]):
            continue
        code = _KEYWORD.sub("", lines[i].split("//", 1)[0])
        if not _PACKAGE.match(lines[i]):
            for m in _SPEC.finditer(code):
                imports.append((m.group(1), m.group(2), i + 1))
        lines[i] = ""
    return imports, lines


def _merge_imports(found: list[tuple[Path, str | None, str, int]]) -> list[str]:
    by_name: dict[str, tuple[str, str | None, Path, int]] = {}
    for path, alias, target, line in found:
        name = _import_name(alias, target)
        seen = by_name.get(name)
        if seen and seen[0] != target:
            raise BatchError(f"{path}:{line}:1: import name {name!r} means {target!r} here but "
                             f"{seen[0]!r} in {seen[2]}:{seen[3]} (policy files share one scope)")
        if not seen or (seen[1] is None and alias is not None):
            by_name[name] = (target, alias, path, line)
    specs = []
    for _name, (target, alias, _, _) in sorted(by_name.items()):
        specs.append(f'\t{alias} "{target}"' if alias else f'\t"{target}"')
    return specs


Group = tuple[Sequence[Path], Mapping[str, Any]]


def _read(path: Path, cache: dict[Path, tuple[list[tuple[str | None, str, int]], list[str]]]
          ) -> tuple[list[tuple[str | None, str, int]], list[str]]:
    if path not in cache:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BatchError(f"{path}: cannot read policy file: {exc}") from None
        cache[path] = split_file(path, text)
    return cache[path]


def _wrapped(groups: Sequence[Group]) -> tuple[list[str], LineMap]:
    """policies.cue's lines: the hoisted imports, then one `_meshcPolicy<i>: {...}` per group."""
    cache: dict[Path, tuple[list[tuple[str | None, str, int]], list[str]]] = {}
    for files, _ in groups:
        for path in files:
            _read(path, cache)
    found = [(path, alias, target, line) for path, (imports, _) in cache.items()
             for alias, target, line in imports]
    specs = _merge_imports(found)
    out = ["// Generated by meshc (compiler/meshc/cue_batch.py) for one engine call; do not edit."]
    if specs:
        out += ["import (", *specs, ")"]
    lines = LineMap()
    for i, (files, _) in enumerate(groups):
        out.append(f"{POLICY_FIELD}{i}: {{")
        for path in files:
            body = cache[path][1] or [""]
            lines.spans.append(Span(path, len(out) + 1, len(body)))
            out.extend(body)
        out.append("}")
    return out, lines


def build_groups(groups: Sequence[Group]) -> Batch:
    """One batch for several (policy files, documents) groups: each document is unified with the
    policies of its own group only. Document keys must be unique across groups."""
    out, lines = _wrapped(groups)
    documents: dict[str, Any] = {}
    for i, (_, docs) in enumerate(groups):
        for key, doc in docs.items():
            if key in documents:
                raise BatchError(f"document {key!r} is given twice")
            documents[key] = doc
            out.append(f"{DOCS_FIELD}: {json.dumps(str(key))}: {POLICY_FIELD}{i}")
    out += [f'{SENTINEL_FIELD}: "fail" & "always"', ""]
    data = f"{DOCS_FIELD}: ".encode() + documents_json(documents) + b"\n"
    return Batch("\n".join(out), data, lines)


_BOM = "\ufeff".encode()


def documents_json(documents: Mapping[str, Any]) -> bytes:
    """The documents as JSON that CUE reads back as the same values, whatever their strings hold."""
    try:
        data = orjson.dumps(documents, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        where = _unencodable(documents, ())
        if where is None:
            raise
        path, text = where
        at = f"document {path[0]!r} at {'.'.join(map(str, path[1:])) or '(top)'}" if path else "a document key"
        raise BatchError(f"cannot write the documents for CUE: the string {text[:60]!r} ({at}) holds a "
                         "lone surrogate, which no UTF-8 text (nor a CUE escape) can hold") from None
    # orjson escapes C0 controls, '"' and '\\'; the one other character CUE refuses raw is the
    # byte order mark. It is 3 bytes no other character's UTF-8 contains: replacing bytes is exact.
    return data.replace(_BOM, b"\\ufeff") if _BOM in data else data


def _unencodable(value: Any, path: tuple[Any, ...]) -> tuple[tuple[Any, ...], str] | None:
    """(path, string) of the first string holding a lone surrogate, keys included."""
    if isinstance(value, str):
        return (path, value) if any(0xD800 <= ord(c) <= 0xDFFF for c in value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _unencodable(key, path) or _unencodable(item, path + (key,))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _unencodable(item, path + (i,))
            if found:
                return found
    return None


def build(policy_files: Sequence[Path], documents: Mapping[str, Any]) -> Batch:
    """Wrap `policy_files` once and put `documents` side by side (see the module docstring)."""
    return build_groups([(policy_files, documents)])


__all__ = ["Batch", "BatchError", "Group", "LineMap", "build", "build_groups", "split_file", "DOCS_FIELD",
           "POLICIES_NAME", "DOCUMENTS_NAME"]
