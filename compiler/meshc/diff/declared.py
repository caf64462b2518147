"""Where a change was declared: the lines of environments/ a git change touches, per service.

Input: the repository root and the two sides (`SideInfo`). Output: service name -> positions
(``file:line``) of the changed lines inside that service's entry (a `services:` item or an
`overrides:` item named after it), head side; an entry deleted whole is given at its base-side
line with `` (removed)``; and ``env:<name>`` -> the changed lines of that environment's
env.yaml (`ENV_KEY`). Only git sides (and the working tree as head) have lines to compare;
for others the result is empty and the review falls back to the declaration each object names.
Invariants: read-only (`git diff`, `git show`); never raises (a git or YAML problem gives {}).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

from meshc.diff.model import SideInfo
from meshc.files.source import compose_all
from meshc.front.load import ROOT

ENV_KEY = "env:"
_ENV_FILE = re.compile(rf"^{ROOT}/([^/]+)/env\.yaml$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _git(root: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None


def _entries(text: str) -> Iterator[tuple[str, int, int]]:
    """(service name, first line, last line) of each services:/overrides: item of a file."""
    try:
        docs = compose_all(text)
    except Exception:  # noqa: BLE001 - a side that does not parse has been reported by its compile
        return
    for doc in docs:
        for key, value in getattr(doc, "value", []) if doc is not None else []:
            if getattr(key, "value", None) not in ("services", "overrides") or not isinstance(value.value, list):
                continue
            for item in value.value:
                name = next((v.value for k, v in getattr(item, "value", []) or []
                             if getattr(k, "value", None) == "name" and isinstance(v.value, str)), None)
                if name is not None:
                    yield name, item.start_mark.line + 1, max(item.start_mark.line + 1, item.end_mark.line)


def _read(root: Path, side: SideInfo, rel: str) -> str | None:
    if side.kind == "worktree":
        try:
            return (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    return _git(root, "show", f"{side.commit}:./{rel}")


def declaration_changes(root: Path, base: SideInfo, head: SideInfo) -> dict[str, tuple[str, ...]]:
    if base.kind != "git" or head.kind not in ("git", "worktree"):
        return {}
    rev = [base.commit] + ([head.commit] if head.kind == "git" else [])
    out = _git(root, "diff", "-U0", "--no-color", "--no-ext-diff", "--relative", *rev, "--", ROOT)
    if out is None:
        return {}
    hunks: dict[tuple[str, str], list[tuple[int, int, int, int]]] = {}
    old = new = ""
    for line in out.splitlines():
        if line.startswith("--- "):
            old = line[6:] if line.startswith("--- a/") else ""
        elif line.startswith("+++ "):
            new = line[6:] if line.startswith("+++ b/") else ""
        elif (found := _HUNK.match(line)) is not None:
            a, b, c, d = (int(g) if g is not None else 1 for g in found.groups())
            hunks.setdefault((old, new), []).append((a, b, c, d))
    places: dict[str, set[tuple[str, int, str]]] = {}
    for (old, new), ranges in hunks.items():
        env_file = _ENV_FILE.match(new or old)
        if env_file is not None:
            for a, _, c, d in ranges:
                places.setdefault(ENV_KEY + env_file.group(1), set()).add(
                    (new, c, "") if new and d else (old, a, " (removed)"))
            continue
        head_items = list(_entries(_read(root, head, new) or "")) if new else []
        base_items = list(_entries(_read(root, base, old) or "")) if old else []
        for a, b, c, d in ranges:
            hit = False
            for name, first, last in head_items:
                lo, hi = (c, c + d - 1) if d else (c, c)
                if lo <= last and hi >= first and d:
                    places.setdefault(name, set()).add((new, max(lo, first), ""))
                    hit = True
            if hit or not b:
                continue
            for name, first, last in base_items:  # lines only removed: the base side says where
                if a <= last and a + b - 1 >= first:
                    places.setdefault(name, set()).add((old, max(a, first), " (removed)"))
    return {name: tuple(f"{file}:{line}{note}" for file, line, note in sorted(found))
            for name, found in sorted(places.items())}
