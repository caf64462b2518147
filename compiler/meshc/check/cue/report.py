"""Turn CUE's error entries for one batch into violations per document, or into a policy problem.

Input: `Entry` values (compiler/meshc/cue_errors.py) from one `cue export -E` of a batch, the batch's
`LineMap` and the document keys.
Output: `Report(violations={key: [CueViolation]}, problems=[text], errors={key: [error path]})`
(`errors`: the path of each of CUE's errors inside the document, hidden labels kept, as CUE wrote
it, before the merging below). A problem is an error outside
every document (syntax, import) or one that means the policy itself is broken (cycle, reference
not found, undefined field): the caller raises it, it is never a violation.

Invariants: one violation per (document, data path): CUE's several lines for one path (an empty
disjunction) are merged; errors inside hidden fields (`_x`, `#X`) are echoes of a data error next to
them and are dropped when one exists under the same prefix, else reported at that prefix; the
policy position is the constraint's position mapped back to its policy file; violations are
sorted by path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from meshc.check.cue import batch as cue_batch
from meshc.check.cue.batch import LineMap
from meshc.check.cue.errors import Entry, HiddenLabel, PathLabel, split_path

DataPath = tuple[str | int, ...]
ErrorPath = tuple[PathLabel, ...]  # a path as CUE wrote it: a hidden label is a HiddenLabel
_RULE = re.compile(r"^\s*//\s*rule\s+([A-Za-z0-9_.-]+)\s*:\s*(.*\S)")
_DISJUNCTION = re.compile(r"^\d+ errors in empty disjunction$")
_CONFLICT = re.compile(r"^conflicting values (.+) and (.+)$")
_POLICY_BUG = re.compile(r'^(cycle|structural cycle|reference "[^"]*" not found|undefined field)')
_PREFIXES = ("cue: marshal error: ",)
_INTERNAL = re.compile(rf"\b{re.escape(cue_batch.POLICY_FIELD)}[0-9]*\.")


@dataclass(frozen=True)
class CueViolation:
    """One failed constraint: where it is written (policy file:line:col; "", 0, 0 when CUE gave no
    position) and the data path inside the document, e.g. ("services", "stripe", "tls", "mode")."""

    policy_file: str
    policy_line: int
    policy_col: int
    path: DataPath
    message: str


@dataclass
class Report:
    violations: dict[str, list[CueViolation]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    errors: dict[str, list[ErrorPath]] = field(default_factory=dict)


def build_report(entries: list[Entry], lines: LineMap, keys: set[str]) -> Report:
    groups: dict[tuple[str, tuple[PathLabel, ...]], list[Entry]] = {}
    problems: list[Entry] = []
    for entry in _strip_prefixes(entries):
        path = entry.path
        if path == (cue_batch.SENTINEL_FIELD,):
            continue
        inside = (len(path) >= 2 and path[0] == cue_batch.DOCS_FIELD
                  and not isinstance(path[1], (HiddenLabel, int)) and path[1] in keys)
        if not inside or _POLICY_BUG.match(entry.message):
            problems.append(entry)
        else:
            groups.setdefault((str(path[1]), path[2:]), []).append(entry)
    if problems:
        return Report(problems=describe(problems, lines))
    rules = RuleComments()
    out: dict[str, list[CueViolation]] = {}
    for (key, path), found in _drop_hidden(groups).items():
        out.setdefault(key, []).append(_violation(path, found, lines, rules))
    for found_list in out.values():
        found_list.sort(key=lambda v: (_path_key(v.path), v.policy_file, v.policy_line, v.policy_col))
    errors: dict[str, list[ErrorPath]] = {}
    for key, path in groups:
        errors.setdefault(key, []).append(path)
    return Report(violations=out, errors=errors)


def _strip_prefixes(entries: list[Entry]) -> list[Entry]:
    for entry in entries:
        for prefix in _PREFIXES:
            if not entry.path and entry.message.startswith(prefix):
                got = split_path(entry.message[len(prefix):])
                if got:
                    entry.path, entry.message = got[0], got[1].rstrip(":").rstrip()
    return entries


def _hidden_at(path: tuple[PathLabel, ...]) -> int:
    return next((i for i, label in enumerate(path) if isinstance(label, HiddenLabel)), -1)


def _plain(path: tuple[PathLabel, ...]) -> DataPath:
    return tuple(x if isinstance(x, int) else str(x) for x in path)


def _drop_hidden(groups: dict[tuple[str, tuple[PathLabel, ...]], list[Entry]]
                 ) -> dict[tuple[str, DataPath], list[Entry]]:
    out = {(k, _plain(p)): v for (k, p), v in groups.items() if _hidden_at(p) < 0}
    data_paths = list(out)
    for (key, path), found in groups.items():
        cut = _hidden_at(path)
        if cut < 0:
            continue
        prefix = _plain(path[:cut])
        if any(k == key and len(p) >= cut and p[:cut] == prefix for k, p in data_paths):
            continue
        out.setdefault((key, prefix), []).extend(found)
    return out


def _path_key(path: DataPath) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, x) if isinstance(x, int) else (1, x) for x in path)


def _violation(path: DataPath, found: list[Entry], lines: LineMap, rules: RuleComments) -> CueViolation:
    messages: list[str] = []
    for entry in found:
        if entry.message and entry.message not in messages:
            messages.append(entry.message)
    if len(messages) > 1:
        messages = [m for m in messages if not _DISJUNCTION.match(m)] or messages
    cue_text = condense(messages) or "; ".join(messages) or "constraint failed"
    where = constraint_position(found, lines)
    if where is None:
        return CueViolation("", 0, 0, path, cue_text)
    file, line, col = where
    rule = rules.find(file, line)
    message = f"{rule[0]}: {rule[1]} ({cue_text})" if rule else cue_text
    return CueViolation(file, line, col, path, message)


def condense(messages: list[str]) -> str | None:
    """'conflicting values "simple" and "x"; conflicting values "mutual" and "x"' (an empty
    disjunction) -> '"x" is not one of "simple" | "mutual"'; None when the messages are not like that."""
    pairs = [m.groups() for m in (_CONFLICT.match(x) for x in messages) if m]
    if len(messages) < 2 or len(pairs) != len(messages):
        return None
    common = set(pairs[0]).intersection(*pairs[1:])
    if len(common) != 1:
        return None
    value = common.pop()
    others = [b if a == value else a for a, b in pairs]
    return f"{value} is not one of {' | '.join(others)}"


def constraint_position(found: list[Entry], lines: LineMap) -> tuple[str, int, int] | None:
    """The policy position on the latest line of policies.cue among the entries' positions: CUE lists
    the pattern, the guard and the value of a failed constraint, and the value comes last."""
    best: tuple[int, int, str, int] | None = None
    for entry in found:
        for name, line, col in entry.positions:
            at = lines.locate(line) if name == cue_batch.POLICIES_NAME else None
            if at is None:
                continue
            cand = (line, -col, str(at[0]), at[1])
            if best is None or cand[:2] > best[:2]:
                best = cand
    return None if best is None else (best[2], best[3], -best[1])


def describe(problems: list[Entry], lines: LineMap) -> list[str]:
    """One line per problem entry: 'policy file:line:col: message' where CUE gave a position."""
    out = []
    for entry in problems:
        where = [where_is(name, line, col, lines) for name, line, col in entry.positions]
        path = entry.path
        if len(path) >= 2 and path[0] == cue_batch.DOCS_FIELD:
            label = f"[document {path[1]}] " + ".".join(str(x) for x in path[2:])
        else:
            label = ".".join(str(x) for x in path)
        text = _INTERNAL.sub("", f"{label}: {entry.message}" if label else entry.message)
        line = f"{where[0]}: {text}" if where else text
        if line not in out:  # a policy file used by several groups fails once per group
            out.append(line)
            out.extend(f"    also {w}" for w in where[1:4])
    return out


def where_is(name: str, line: int, col: int, lines: LineMap) -> str:
    if name != cue_batch.POLICIES_NAME:
        return f"{name}:{line}:{col}"
    at = lines.locate(line)
    if at is not None:
        return f"{at[0]}:{at[1]}:{col}"
    near = lines.nearest_before(line)
    return f"{near[0]}:{near[1]} (near the end of the file)" if near else f"<generated>:{line}:{col}"


class RuleComments:
    """`// rule <id>: <text>` comments: the nearest one at or above a constraint names its rule."""

    def __init__(self) -> None:
        self._cache: dict[str, list[str]] = {}

    def find(self, file: str, line: int) -> tuple[str, str] | None:
        if file not in self._cache:
            try:
                self._cache[file] = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                self._cache[file] = []
        text = self._cache[file]
        for i in range(min(line, len(text)) - 1, -1, -1):
            m = _RULE.match(text[i])
            if m:
                return m.group(1), m.group(2)
        return None


__all__ = ["CueViolation", "DataPath", "ErrorPath", "Report", "RuleComments", "build_report", "condense",
           "constraint_position", "describe", "where_is"]
