"""Waivers as code: a committed YAML file of accepted findings, each with owner, reason and expiry.

    waivers:
      - code: IST0134-like code, e.g. A401   # required
        env: prod                          # optional, glob
        object: ServiceEntry/egress/legacy # optional, glob ("Kind/namespace/name" or "service <name>")
        path: spec.ports*                  # optional, glob
        owner: team-net                    # required
        reason: VIP assigned by DNS proxy  # required
        expires: 2027-03-31                # required, YYYY-MM-DD

Waived findings are listed in the summary, never hidden. An expired waiver (W001, error) or one that
matched nothing (W002, warning) is a finding itself. Malformed waiver files are input errors (W000).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from meshc.files.confine import read_regular
from meshc.files.globs import MAX_PATTERN, glob_match
from meshc.files.source import Document, locate, parse
from meshc.model.diagnostics import Diagnostic, Position, Severity

_REQUIRED = ("code", "owner", "reason", "expires")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Waiver:
    code: str
    env: str
    object: str
    path: str
    owner: str
    reason: str
    expires: dt.date
    position: Position

    def matches(self, d: Diagnostic) -> bool:
        return (d.code == self.code and glob_match(self.env, d.env)
                and glob_match(self.object, str(d.object)) and glob_match(self.path, d.path))


def load_waivers(path: Path, rel: str) -> tuple[list[Waiver], list[Diagnostic]]:
    try:
        data = read_regular(path)
    except OSError as exc:
        return [], [Diagnostic("W000", Severity.ERROR, f"cannot read waivers file: {exc.strerror}",
                               Position(rel), hint="fix the waivers: path in meshc.yaml")]
    docs, diags = parse(rel, data)
    if diags:
        return [], diags
    doc = docs[0] if docs else None
    if doc is None or doc.value is None:
        return [], []
    entries = doc.value.get("waivers", []) if isinstance(doc.value, dict) else None
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        return [], [Diagnostic("W000", Severity.ERROR, "waivers file must hold `waivers:` with a list",
                               _at(rel, doc, ("waivers",)), hint="see docs/checks.md#waivers")]
    out: list[Waiver] = []
    problems: list[Diagnostic] = []
    for i, item in enumerate(entries):
        pos = _at(rel, doc, ("waivers", i))
        missing = [k for k in _REQUIRED if not isinstance(item, dict) or item.get(k) in (None, "")]
        if missing:
            problems.append(Diagnostic("W000", Severity.ERROR, f"waiver lacks {', '.join(missing)}", pos,
                                       hint="every waiver needs code, owner, reason and expires"))
            continue
        long = next((k for k in ("env", "object", "path") if len(str(item.get(k, ""))) > MAX_PATTERN), None)
        if long is not None:
            problems.append(Diagnostic("W000", Severity.ERROR, f"{long}: a glob of over {MAX_PATTERN:,} characters",
                                       _at(rel, doc, ("waivers", i, long)), hint="shorten the glob"))
            continue
        expires, why = _date(item["expires"])
        if expires is None:
            problems.append(Diagnostic("W000", Severity.ERROR, f"expires: {item['expires']!r} is not a date ({why})",
                                       _at(rel, doc, ("waivers", i, "expires")),
                                       hint="write a real calendar date as YYYY-MM-DD, e.g. expires: 2027-01-31"))
            continue
        out.append(Waiver(str(item["code"]), str(item.get("env", "*")), str(item.get("object", "*")),
                          str(item.get("path", "*")), str(item["owner"]), str(item["reason"]),
                          expires, pos))
    return out, problems


def _at(rel: str, doc: Document, path: tuple[str | int, ...]) -> Position:
    return locate(rel, doc.node, path)[0] if doc.node is not None else Position(rel, 1, 1)


def _date(value: object) -> tuple[dt.date | None, str]:
    """A YYYY-MM-DD date, or None and why not (the reader keeps dates as the text written)."""
    text = str(value)
    if not _DATE.fullmatch(text):
        return None, "the format is YYYY-MM-DD"
    try:
        return dt.date.fromisoformat(text), ""
    except ValueError as exc:
        return None, str(exc)


def waiver_index(d: Diagnostic, waivers: Sequence[Waiver], today: dt.date) -> int | None:
    """The waiver that accepts `d`: the first unexpired one that matches (None when none does)."""
    return next((i for i, w in enumerate(waivers) if w.expires >= today and w.matches(d)), None)


def apply_waivers(diags: Sequence[Diagnostic], waivers: Sequence[Waiver], today: dt.date,
                  complete: bool = True) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(remaining + waiver findings, waived). Unused waivers are reported only by a `complete`
    check (every layer, every environment): a partial check cannot know they are unused."""
    kept: list[Diagnostic] = []
    waived: list[Diagnostic] = []
    used: set[int] = set()
    for d in diags:
        hit = waiver_index(d, waivers, today)
        if hit is None:
            kept.append(d)
        else:
            used.add(hit)
            w = waivers[hit]
            waived.append(replace(d, hint=f"waived by {w.position} ({w.owner}: {w.reason}; until {w.expires})"))
    for i, w in enumerate(waivers):
        if w.expires < today:
            kept.append(Diagnostic("W001", Severity.ERROR, f"waiver for {w.code} expired on {w.expires}",
                                   w.position, hint="fix the finding, or renew the waiver with a reason"))
        elif i not in used and complete:
            kept.append(Diagnostic("W002", Severity.WARNING, f"waiver for {w.code} matches no finding",
                                   w.position, hint="remove the waiver"))
    return kept, waived
