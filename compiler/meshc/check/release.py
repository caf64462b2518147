"""The `release` layer of pass `check`: every emitted object against the Istio releases the estate
targets (`istio:` in meshc.yaml, one release or a fleet in migration).

Input: compiled environments (artifacts with their origin) and the target releases
(`CheckOptions.releases`, oldest first); the facts come from the release table
(data/istio-releases.yaml, meshc.model.release). Output: diagnostics at the declaration behind
the field. One pass over the artifacts; the rows that can fire for the targets are compiled once
per data plane and indexed by kind.

Codes (docs/checks.md, "Istio release"):
  R001 error: an object uses a field (or value) the lowest target release does not have;
  R002 warning: the target releases lie on both sides of a behaviour change that touches a field
       the object uses (the fleet runs it two ways).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from meshc.check.common import CheckOptions, Placer
from meshc.model.diagnostics import DataPath, Diagnostic, Finding, Severity
from meshc.model.release import (
    DEFAULT_ISTIO,
    EACH,
    BehaviourRow,
    FieldRow,
    Match,
    PathElem,
    ReleaseTable,
    parse_path,
    release_key,
    release_table,
)
from meshc.model.results import CompileResult

_HELP = "docs/checks.md#istio-release-r0xx"


@dataclass(frozen=True, slots=True)
class _Rule:
    """A row, compiled: its value test and companion paths (its path is where it sits in the trie)."""

    row: FieldRow | BehaviourRow
    path: tuple[PathElem, ...]
    value: Any
    regex: re.Pattern[str] | None
    with_: tuple[PathElem, ...] | None
    unless: tuple[PathElem, ...] | None
    shared: tuple[PathElem, ...] | None

    @classmethod
    def of(cls, row: FieldRow | BehaviourRow) -> _Rule:
        match = row.match
        return cls(row, parse_path(match.path), match.value,
                   None if match.pattern is None else re.compile(match.pattern),
                   None if match.with_ is None else parse_path(match.with_),
                   None if match.unless is None else parse_path(match.unless),
                   None if match.shared is None else parse_path(match.shared))

    def accepts(self, value: Any) -> bool:
        if self.value is not None and value != self.value:
            return False
        return self.regex is None or (isinstance(value, str) and self.regex.fullmatch(value) is not None)

    def applies_to(self, body: Mapping[str, Any], peers: Peers) -> bool:
        if self.with_ is not None and next(_values(body, self.with_), None) is None:
            return False
        if self.unless is not None and next(_values(body, self.unless), None) is not None:
            return False
        return self.shared is None or peers(self.shared, body) > 1


Peers = Callable[[tuple["PathElem", ...], Mapping[str, Any]], int]  # how many objects share body's value at a path


def _no_peers(path: tuple[PathElem, ...], body: Mapping[str, Any]) -> int:
    return 1


class _EnvPeers:
    """Objects of one environment by (shared path, group, kind, value), counted on first use."""

    def __init__(self, bodies: Sequence[Mapping[str, Any]]) -> None:
        self.bodies = bodies
        self.counts: dict[tuple[PathElem, ...], Counter[tuple[str, str, bytes]]] = {}

    def _key(self, path: tuple[PathElem, ...], body: Mapping[str, Any]) -> tuple[str, str, bytes] | None:
        found = next(_values(body, path), None)
        if found is None:
            return None
        return (_group(body.get("apiVersion")), str(body.get("kind", "")),
                orjson.dumps(found[1], option=orjson.OPT_SORT_KEYS))

    def __call__(self, path: tuple[PathElem, ...], body: Mapping[str, Any]) -> int:
        counts = self.counts.get(path)
        if counts is None:
            counts = self.counts[path] = Counter(k for b in self.bodies if (k := self._key(path, b)) is not None)
        key = self._key(path, body)
        return 0 if key is None else counts[key]


def _values(node: Any, path: Sequence[PathElem], at: DataPath = ()) -> Iterator[tuple[DataPath, Any]]:
    """(concrete path, value) of every value `path` reaches in `node` (EACH: every list item)."""
    if not path:
        if node is not None:
            yield at, node
        return
    head, rest = path[0], path[1:]
    if head is EACH:
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield from _values(item, rest, (*at, i))
    elif isinstance(node, Mapping) and head in node:
        yield from _values(node[head], rest, (*at, head))


@dataclass
class _Trie:
    """The rows of one kind merged by path: a body is walked once, whatever the number of rows."""

    children: dict[PathElem, _Trie] = field(default_factory=dict)
    rules: list[tuple[int, _Rule]] = field(default_factory=list)  # (row number, rule) ending here

    def add(self, number: int, rule: _Rule) -> None:
        node = self
        for elem in rule.path:
            node = node.children.setdefault(elem, _Trie())
        node.rules.append((number, rule))

    def walk(self, node: Any, at: DataPath, hits: dict[int, list[DataPath]], rules: dict[int, _Rule]) -> None:
        if node is None:
            return
        for number, rule in self.rules:
            if rule.accepts(node):
                hits.setdefault(number, []).append(at)
                rules[number] = rule
        for elem, sub in self.children.items():
            if elem is EACH:
                if isinstance(node, list):
                    for i, item in enumerate(node):
                        sub.walk(item, (*at, i), hits, rules)
            elif isinstance(node, Mapping) and elem in node:
                sub.walk(node[elem], (*at, elem), hits, rules)


def _group(api_version: Any) -> str:
    text = api_version if isinstance(api_version, str) else ""
    return text.rpartition("/")[0]


@dataclass(frozen=True)
class _Plan:
    """What can fire for one set of target releases on one data plane: a trie per (group, kind)."""

    releases: tuple[str, ...]
    dataplane: str
    kinds: dict[tuple[str, str], _Trie]


def _plan(table: ReleaseTable, releases: Sequence[str], dataplane: str) -> _Plan:
    low, high = release_key(releases[0]), release_key(releases[-1])

    def applies(match: Match) -> bool:
        return match.dataplane is None or match.dataplane == dataplane

    rows: list[FieldRow | BehaviourRow] = [r for r in table.fields
                                           if release_key(r.since) > low and applies(r.match)]
    rows += [r for r in table.behaviour if low < release_key(r.release) <= high and applies(r.match)]
    kinds: dict[tuple[str, str], _Trie] = {}
    for number, row in enumerate(rows):
        kinds.setdefault((row.match.group, row.match.kind), _Trie()).add(number, _Rule.of(row))
    return _Plan(tuple(releases), dataplane, kinds)


def _field_name(path: Sequence[PathElem]) -> str:
    return next((p for p in reversed(path) if p is not EACH), "")


def release_findings(body: Mapping[str, Any], plan: _Plan, peers: Peers = _no_peers) -> list[Finding]:
    """R001 and R002 findings of one object (`peers`: the other objects of its environment)."""
    trie = plan.kinds.get((_group(body.get("apiVersion")), str(body.get("kind", ""))))
    if trie is None:
        return []
    hits: dict[int, list[DataPath]] = {}
    rules: dict[int, _Rule] = {}
    trie.walk(body, (), hits, rules)
    if not hits:
        return []
    out: list[Finding] = []
    releases, dataplane = plan.releases, plan.dataplane
    lowest, targets = releases[0], ", ".join(releases)
    for number in sorted(hits):
        rule = rules[number]
        if not rule.applies_to(body, peers):
            continue
        row = rule.row
        on = f" on {dataplane} data planes" if row.match.dataplane else ""
        if isinstance(row, FieldRow):
            for path in hits[number]:
                out.append(Finding(
                    "R001", Severity.ERROR,
                    f"{row.feature} needs Istio {row.since}{on}; this estate targets {lowest}"
                    + (f" (istio: {targets})" if len(releases) > 1 else ""), path,
                    hint=f'raise istio: in meshc.yaml to "{row.since}" or later once every cluster runs it, or '
                         f"remove {row.feature} from the declaration (source: {row.source}; see {_HELP})"))
            continue
        change = release_key(row.release)
        before = max((r for r in releases if release_key(r) < change), key=release_key)
        after = min((r for r in releases if release_key(r) >= change), key=release_key)
        out.append(Finding(
            "R002", Severity.WARNING,
            f"Istio {before} and {after} treat {_field_name(rule.path)} differently{on}: from {row.release}, "
            f"{row.change}", hits[number][0],
            hint=f"check that the object does what you mean on both releases (set the value explicitly where the "
                 f"change is about a default), or drop {before} from istio: in meshc.yaml once the fleet runs "
                 f"{after} or later (source: {row.source}; see {_HELP})"))
    return out


def run_release(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    """The layer: every artifact of every environment against the target releases."""
    releases = tuple(sorted(dict.fromkeys(opts.releases or (DEFAULT_ISTIO,)), key=release_key))
    table = release_table()
    plans: dict[str, _Plan] = {}
    out: list[Diagnostic] = []
    for env in result.envs.values():
        dataplane = str(getattr(env.settings, "dataplane", "sidecar") or "sidecar")
        plan = plans.get(dataplane)
        if plan is None:
            plan = plans[dataplane] = _plan(table, releases, dataplane)
        if not plan.kinds:
            continue
        placer: Placer | None = None
        peers = _EnvPeers([a.body for a in env.artifacts])
        for art in env.artifacts:
            found = release_findings(art.body, plan, peers)
            if found:
                placer = placer or Placer(env)
                out.extend(placer(art, f) for f in found)
    return out


def findings_for(body: Mapping[str, Any], releases: Sequence[str], dataplane: str = "sidecar",
                 others: Sequence[Mapping[str, Any]] = ()) -> list[Finding]:
    """The layer's findings for one object (among `others` of its environment) and target releases
    (for tests and tools)."""
    ordered = tuple(sorted(dict.fromkeys(releases), key=release_key))
    return release_findings(body, _plan(release_table(), ordered, dataplane), _EnvPeers([body, *others]))
