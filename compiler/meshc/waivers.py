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
import fnmatch
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .diagnostics import Diagnostic, Position, Severity
from .source import parse

_REQUIRED = ("code", "owner", "reason", "expires")


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
        return (d.code == self.code and fnmatch.fnmatchcase(d.env, self.env)
                and fnmatch.fnmatchcase(d.object, self.object) and fnmatch.fnmatchcase(d.path, self.path))


def load_waivers(path: Path, rel: str) -> tuple[list[Waiver], list[Diagnostic]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [], [Diagnostic("W000", Severity.ERROR, f"cannot read waivers file: {exc.strerror}",
                               Position(rel), hint="fix the waivers: path in meshc.yaml")]
    docs, diags = parse(rel, data)
    if diags:
        return [], diags
    entries = (docs[0].value or {}).get("waivers", []) if docs and isinstance(docs[0].value, dict) else None
    if not isinstance(entries, list):
        return [], [Diagnostic("W000", Severity.ERROR, "waivers file must hold `waivers:` with a list",
                               Position(rel, 1, 1), hint="see docs/checks.md#waivers")]
    out: list[Waiver] = []
    problems: list[Diagnostic] = []
    seq = docs[0].node.value[0][1].value if docs[0].node.value else []
    for item, node in zip(entries, seq):
        pos = Position(rel, node.start_mark.line + 1, node.start_mark.column + 1)
        missing = [k for k in _REQUIRED if not isinstance(item, dict) or not item.get(k)]
        if missing:
            problems.append(Diagnostic("W000", Severity.ERROR, f"waiver lacks {', '.join(missing)}", pos,
                                       hint="every waiver needs code, owner, reason and expires"))
            continue
        expires = item["expires"]
        if not isinstance(expires, dt.date):
            problems.append(Diagnostic("W000", Severity.ERROR, "expires must be a date (YYYY-MM-DD)",
                                       pos, hint="write e.g. expires: 2027-01-31"))
            continue
        out.append(Waiver(str(item["code"]), str(item.get("env", "*")), str(item.get("object", "*")),
                          str(item.get("path", "*")), str(item["owner"]), str(item["reason"]),
                          expires, pos))
    return out, problems


def apply_waivers(diags: Sequence[Diagnostic], waivers: Sequence[Waiver], today: dt.date,
                  complete: bool = True) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """(remaining + waiver findings, waived). Unused waivers are reported only by a `complete`
    check (every layer, every environment): a partial check cannot know they are unused."""
    kept: list[Diagnostic] = []
    waived: list[Diagnostic] = []
    used: set[int] = set()
    for d in diags:
        hit = next((i for i, w in enumerate(waivers) if w.expires >= today and w.matches(d)), None)
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
