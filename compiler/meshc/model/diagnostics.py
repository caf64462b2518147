"""Diagnostics: errors as values with positions.

Every pass reports problems as `Diagnostic` values; nothing is raised for user mistakes.
Checks that look at an emitted object (schema, CEL, Istio rules, Envoy) report a `Finding`,
which carries a data path inside that object; the pipeline turns it into a `Diagnostic` by
looking the path up in the object's provenance (see `meshc.provenance`).

Printing happens in one place (`render_text`), sorted and de-duplicated, with positions relative
to the working directory as ``./file:line:col`` so editors can jump to them.
"""

from __future__ import annotations

import builtins
import enum
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from meshc.model.ids import ObjectId

PathElem = str | int
DataPath = tuple[PathElem, ...]


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in a source file; line and col are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        path = self.file if self.file.startswith(("/", "./", "<")) else f"./{self.file}"
        if self.line:
            return f"{path}:{self.line}:{self.col or 1}"
        return path


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found inside one emitted object, before it is placed in a source file."""

    code: str
    severity: Severity
    message: str
    path: DataPath = ()
    istio_code: str = ""
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    position: Position | None = None
    path: str = ""
    hint: str = ""
    env: str = ""
    object: ObjectId | str = ""  # the emitted object, or a text such as `service NAME`
    istio_code: str = ""
    related: tuple[Position, ...] = field(default=())

    def sort_key(self) -> tuple[builtins.object, ...]:  # `object` here is the field
        pos = self.position or Position("")
        return (pos.file, pos.line, pos.col, self.env, self.code, str(self.object), self.path, self.message)


def format_path(path: Sequence[PathElem]) -> str:
    """('spec', 'ports', 0, 'name') -> 'spec.ports[0].name'."""
    out: list[str] = []
    for elem in path:
        if isinstance(elem, int):
            out.append(f"[{elem}]")
        else:
            out.append(("." if out else "") + str(elem))
    return "".join(out)


def has_errors(diags: Iterable[Diagnostic], threshold: Severity = Severity.ERROR) -> bool:
    return any(d.severity >= threshold for d in diags)


def normalise(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted, de-duplicated."""
    return sorted(set(diags), key=Diagnostic.sort_key)


def merge_envs(items: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The same finding in several environments as one diagnostic listing them ("dev, prod"), for
    people; machine formats keep one record per environment."""
    groups: dict[Diagnostic, list[str]] = {}
    for d in items:
        groups.setdefault(replace(d, env=""), []).append(d.env)
    merged = [replace(d, env=", ".join(sorted(set(envs)))) for d, envs in groups.items()]
    return sorted(merged, key=Diagnostic.sort_key)


_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def printable(text: str) -> str:
    """`text` with control, format (bidi), separator and surrogate characters written as escapes
    (\\x1b, \\u202e): a value printed on a terminal, in a CI log or a comment cannot move the
    cursor, reorder text, or start a line of its own. Newlines too: callers print lines."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() and unicodedata.category(ch) not in _UNPRINTABLE
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


def render_one(d: Diagnostic) -> str:
    d = replace(d, message=printable(d.message), hint=printable(d.hint), object=printable(str(d.object)),
                path=printable(d.path), env=printable(d.env))
    where = f"{printable(str(d.position))}: " if d.position else ""
    ctx = []
    if d.env:
        ctx.append(f"{'envs' if ', ' in d.env else 'env'} {d.env}")
    if d.object:
        ctx.append(str(d.object))
    if d.path:
        ctx.append(d.path)
    head = f"{where}{d.severity.label}[{d.code}]: {d.message}"
    lines = [head]
    if ctx:
        lines.append(f"    at {' '.join(ctx)}")
    if d.istio_code:
        lines.append(f"    istio: {d.istio_code}")
    for rel in d.related:
        lines.append(f"    see also {rel}")
    if d.hint:
        lines.append(f"    fix: {d.hint}")
    return "\n".join(lines)


def render_text(diags: Iterable[Diagnostic]) -> str:
    items = merge_envs(normalise(diags))
    body = "\n".join(render_one(d) for d in items)
    counts = {s: sum(1 for d in items if d.severity == s) for s in Severity}
    summary = (
        f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s), "
        f"{counts[Severity.INFO]} info"
    )
    return f"{body}\n{summary}\n" if body else ""
