"""Where a change was declared: the lines of environments/ a git change touches, per service.

Input: the repository root and the two sides (`SideInfo`). Output: service name -> positions
(``file:line``) of the changed lines inside that service's entry (a `services:` item or an
`overrides:` item named after it), head side (lines removed from an entry that stays: where
they were, or where the entry now ends); an entry deleted whole is given at its base-side line
with `` (removed)``; and ``env:<name>`` -> the changed lines of that environment's
env.yaml (`ENV_KEY`). Only git sides (and the working tree as head) have lines to compare;
for others the result is empty and the review falls back to the declaration each object names.
Invariants: read-only (`git diff`, `git show`); never raises (a git or YAML problem gives {}).
"""

from __future__ import annotations

import bisect
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


class _Lines:
    """Entries (name, first line, last line) sorted by first line, searched by line range."""

    def __init__(self, entries: list[tuple[str, int, int]]) -> None:
        self.entries = sorted(entries, key=lambda e: (e[1], e[2], e[0]))
        self.firsts = [e[1] for e in self.entries]

    def overlapping(self, lo: int, hi: int) -> list[tuple[str, int, int]]:
        """Entries that share a line with lo..hi (entries of one file do not nest)."""
        out = []
        start = max(0, bisect.bisect_right(self.firsts, lo) - 1)
        for entry in self.entries[start:]:
            if entry[1] > hi:
                break
            if entry[2] >= lo:
                out.append(entry)
        return out


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
        head_items = sorted(_entries(_read(root, head, new) or "")) if new else []
        base_items = sorted(_entries(_read(root, base, old) or "")) if old else []
        head_index, base_index = _Lines(head_items), _Lines(base_items)
        head_last = {name: last for name, _, last in head_items}
        for a, b, c, d in ranges:
            if d:  # lines added or changed on the head side: the entries they fall in
                hits = head_index.overlapping(c, c + d - 1)
                for name, first, _ in hits:
                    places.setdefault(name, set()).add((new, max(c, first), ""))
                if hits or not b:
                    continue
            else:  # lines only removed: inside an entry that stays (lines c and c + 1 both its own)
                inside = [e for e in head_index.overlapping(c, c + 1) if e[1] <= c and e[2] >= c + 1]
                for name, _, _ in inside:
                    places.setdefault(name, set()).add((new, c, ""))
                if inside:
                    continue
            for name, first, _ in base_index.overlapping(a, a + b - 1):
                if name in head_last:  # its last lines removed: where the entry now ends
                    places.setdefault(name, set()).add((new, head_last[name], ""))
                else:  # the entry removed whole: the base side says where it was
                    places.setdefault(name, set()).add((old, max(a, first), " (removed)"))
    return {name: tuple(f"{file}:{line}{note}" for file, line, note in sorted(found))
            for name, found in sorted(places.items())}
