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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
class _Matcher:
    """A row's `Match`, compiled: path elements, the value test, the companion paths."""

    path: tuple[PathElem, ...]
    value: Any
    regex: re.Pattern[str] | None
    with_: tuple[PathElem, ...] | None
    unless: tuple[PathElem, ...] | None

    @classmethod
    def of(cls, match: Match) -> _Matcher:
        return cls(parse_path(match.path), match.value,
                   None if match.pattern is None else re.compile(match.pattern),
                   None if match.with_ is None else parse_path(match.with_),
                   None if match.unless is None else parse_path(match.unless))

    def hits(self, body: Mapping[str, Any]) -> Iterator[DataPath]:
        """The paths in `body` where the row applies (none when a companion path says not)."""
        if self.with_ is not None and next(_values(body, self.with_), None) is None:
            return
        if self.unless is not None and next(_values(body, self.unless), None) is not None:
            return
        for path, value in _values(body, self.path):
            if self.value is not None and value != self.value:
                continue
            if self.regex is not None and not (isinstance(value, str) and self.regex.fullmatch(value)):
                continue
            yield path


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


def _group(api_version: Any) -> str:
    text = api_version if isinstance(api_version, str) else ""
    return text.rpartition("/")[0]


Index = dict[tuple[str, str], list[tuple[FieldRow | BehaviourRow, _Matcher]]]


@dataclass(frozen=True)
class _Plan:
    """What can fire for one set of target releases on one data plane, by (group, kind)."""

    fields: Index
    behaviour: Index


def _plan(table: ReleaseTable, releases: Sequence[str], dataplane: str) -> _Plan:
    low, high = release_key(releases[0]), release_key(releases[-1])

    def applies(match: Match) -> bool:
        return match.dataplane is None or match.dataplane == dataplane

    fields: Index = {}
    for row in table.fields:
        if release_key(row.since) > low and applies(row.match):
            fields.setdefault((row.match.group, row.match.kind), []).append((row, _Matcher.of(row.match)))
    behaviour: Index = {}
    for brow in table.behaviour:
        if low < release_key(brow.release) <= high and applies(brow.match):
            behaviour.setdefault((brow.match.group, brow.match.kind), []).append((brow, _Matcher.of(brow.match)))
    return _Plan(fields, behaviour)


def _field_name(path: Sequence[PathElem]) -> str:
    return next((p for p in reversed(path) if p is not EACH), "")


def release_findings(body: Mapping[str, Any], plan: _Plan, releases: Sequence[str],
                     dataplane: str) -> list[Finding]:
    """R001 and R002 findings of one object."""
    key = (_group(body.get("apiVersion")), str(body.get("kind", "")))
    fields, behaviour = plan.fields.get(key), plan.behaviour.get(key)
    if not fields and not behaviour:
        return []
    out: list[Finding] = []
    lowest, targets = releases[0], ", ".join(releases)
    for row, matcher in fields or ():
        assert isinstance(row, FieldRow)
        on = f" on {dataplane} data planes" if row.match.dataplane else ""
        for path in matcher.hits(body):
            out.append(Finding(
                "R001", Severity.ERROR,
                f"{row.feature} needs Istio {row.since}{on}; this estate targets {lowest}"
                + (f" (istio: {targets})" if len(releases) > 1 else ""), path,
                hint=f'raise istio: in meshc.yaml to "{row.since}" or later once every cluster runs it, or remove '
                     f"{_field_name(matcher.path)} from the declaration (source: {row.source}; see {_HELP})"))
    for brow, matcher in behaviour or ():
        assert isinstance(brow, BehaviourRow)
        first = next(matcher.hits(body), None)
        if first is None:
            continue
        change = release_key(brow.release)
        before = max((r for r in releases if release_key(r) < change), key=release_key)
        after = min((r for r in releases if release_key(r) >= change), key=release_key)
        on = f" on {dataplane} data planes" if brow.match.dataplane else ""
        out.append(Finding(
            "R002", Severity.WARNING,
            f"Istio {before} and {after} treat {_field_name(matcher.path)} differently{on}: from {brow.release}, "
            f"{brow.change}", first,
            hint=f"check that the object does what you mean on both releases (set the value explicitly where the "
                 f"change is about a default), or drop {before} from istio: in meshc.yaml once the fleet runs "
                 f"{after} or later (source: {brow.source}; see {_HELP})"))
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
        if not plan.fields and not plan.behaviour:
            continue
        placer: Placer | None = None
        for art in env.artifacts:
            found = release_findings(art.body, plan, releases, dataplane)
            if found:
                placer = placer or Placer(env)
                out.extend(placer(art, f) for f in found)
    return out


def findings_for(body: Mapping[str, Any], releases: Sequence[str], dataplane: str = "sidecar") -> list[Finding]:
    """The layer's findings for one object and target releases (for tests and tools)."""
    ordered = tuple(sorted(dict.fromkeys(releases), key=release_key))
    return release_findings(body, _plan(release_table(), ordered, dataplane), ordered, dataplane)
