"""`meshc diff`: two sides (git refs, repositories or bundles) -> a `ChangeSet`.

Input: a `DiffRequest` (what the user passed). Output: a `ChangeSet` whose objects are matched by
identity (kind, namespace, name) per environment, with field changes computed by deepdiff on
normalised bodies (see `meshc.diff_objects` for the list semantics), renames paired (see
`meshc.diff_rename`), the ignore file applied, risk flags computed and sensitive values masked.
Stage order, written once in `run`:

    resolve sides -> compare -> ignore -> risks -> mask

Invariants: objects whose index.json sha256 is equal on both sides are never parsed; key order,
quoting and formatting never produce a change; a change set is never mutated, each stage returns
a new one; the masking pass is last, so no later stage can see a sensitive value.
Input problems raise `DiffError` (exit 2 in the CLI).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepdiff import DeepDiff

from meshc.diff.declared import declaration_changes
from meshc.diff.filters import apply_ignore, load_ignore, mask_changeset
from meshc.diff.maps import ServiceMap, service_map
from meshc.diff.model import ChangeKind, ChangeSet, EnvChanges, FieldChange, ObjectDiff, ObjectSnapshot
from meshc.diff.model import Path as DataPath
from meshc.diff.objects import (
    Entry,
    Key,
    artifact_objects,
    entry,
    load_bodies,
    manifest_listing,
    normalise,
    read_index,
    with_declared_sources,
)
from meshc.diff.rename import NAME_PATH, pair_renames
from meshc.diff.risk import find_risks
from meshc.diff.sides import DiffError, EnvData, Side, load_mask_rules, resolve_side
from meshc.model.ids import ObjectId

MAP_KINDS = ("ServiceEntry", "WorkloadEntry", "DestinationRule")
__all__ = ["DiffRequest", "DiffError", "run", "compare", "field_changes"]

_CATEGORIES: dict[str, ChangeKind] = {
    "values_changed": "changed", "type_changes": "changed",
    "dictionary_item_added": "added", "iterable_item_added": "added",
    "dictionary_item_removed": "removed", "iterable_item_removed": "removed",
}


@dataclass(frozen=True)
class DiffRequest:
    base: str
    head: str | None = None
    root: Path = Path(".")
    envs: tuple[str, ...] = ()
    salt: str = ""


def run(request: DiffRequest) -> ChangeSet:
    """The whole command: resolve both sides, compare, then ignore -> risks -> mask."""
    base = resolve_side(request.base, "base", request.root, request.envs)
    head = resolve_side(request.head, "head", request.root, request.envs)
    missing = [e for e in request.envs if e not in base.envs and e not in head.envs]
    if missing:
        known = sorted(base.envs.keys() | head.envs.keys())
        raise DiffError(f"unknown environment {missing[0]!r} (on both sides); known: {', '.join(known) or 'none'}")
    changes = compare(base, head)
    changes = replace(changes, declared=declaration_changes(request.root, base.info, head.info))
    changes = apply_ignore(changes, load_ignore(request.root))
    changes = changes.with_envs(changes.envs, risks=find_risks(changes, (base, head)))
    masks = load_mask_rules(request.root) + base.mask_rules + head.mask_rules
    return mask_changeset(changes, masks, request.salt)


def compare(base: Side, head: Side) -> ChangeSet:
    envs: dict[str, EnvChanges] = {}
    notes = list(base.notes + head.notes)
    for env in sorted(base.envs.keys() | head.envs.keys()):
        result, more = diff_env(env, base.envs.get(env), head.envs.get(env))
        envs[env] = result
        notes.extend(f"{env}: {n}" for n in more)
    return ChangeSet(base.info, head.info, envs, notes=tuple(notes))


class _Listing:
    """The objects of one side of one environment: digests for all, entries and bodies on demand."""

    def __init__(self, data: EnvData | None) -> None:
        self.data = data
        self.raw: dict[Key, Mapping[str, Any]] = {}
        self.pre: dict[Key, tuple[Entry, dict[str, Any]]] = {}
        if data is not None:
            try:
                self.raw = manifest_listing(data.index if data.index is not None else read_index(data.view))
                self.pre = with_declared_sources(artifact_objects(data.view), self.raw)
            except (OSError, ValueError, KeyError) as exc:
                raise DiffError(f"cannot read the bundle of environment {data.view.env}: {exc}") from None
        self._by_service: dict[str, list[Key]] | None = None
        self.digests = {k: str(v.get("sha256", "")) for k, v in self.raw.items()}
        self.digests.update((k, e.digest) for k, (e, _) in self.pre.items())

    def service_maps(self, services: Iterable[str]) -> dict[str, ServiceMap | None]:
        """The maps of these services on this side (from their Istio objects' bodies, each file
        parsed once), None for a service absent here."""
        if self._by_service is None:
            self._by_service = {}
            for key, raw in self.raw.items():
                if key[0] in MAP_KINDS and raw.get("service"):
                    self._by_service.setdefault(str(raw["service"]), []).append(key)
        wanted = {s: sorted(self._by_service.get(s, [])) for s in services}
        bodies = self.bodies([k for keys in wanted.values() for k in keys])
        out: dict[str, ServiceMap | None] = {}
        for service, keys in wanted.items():
            namespace = next((k[1] for k in keys if k[0] == "ServiceEntry"), keys[0][1] if keys else "")
            out[service] = service_map(service, namespace, [bodies[k] for k in keys]) if keys else None
        return out

    def entry(self, key: Key) -> Entry:
        return self.pre[key][0] if key in self.pre else entry(key, self.raw[key])

    def bodies(self, keys: list[Key]) -> dict[Key, dict[str, Any]]:
        need = [self.entry(k) for k in keys if k not in self.pre]
        loaded = load_bodies(self.data.view, need) if need and self.data is not None else {}
        out: dict[Key, dict[str, Any]] = {}
        for key in keys:
            body = self.pre[key][1] if key in self.pre else loaded.get(ObjectId(*key))
            if body is None:
                raise DiffError(f"index.json of {self.data.view.env if self.data else '?'} lists "
                                f"{ObjectId(*key)} in {self.entry(key).file}, but that file does not hold it")
            out[key] = body
        return out


def diff_env(env: str, base: EnvData | None, head: EnvData | None) -> tuple[EnvChanges, list[str]]:
    b, h = _Listing(base), _Listing(head)
    differ = sorted(k for k in b.digests.keys() & h.digests.keys() if not b.digests[k] or b.digests[k] != h.digests[k])
    gone = sorted(b.digests.keys() - h.digests.keys())
    new = sorted(h.digests.keys() - b.digests.keys())
    b_bodies, h_bodies = b.bodies(differ + gone), h.bodies(differ + new)
    modified = []
    for key in differ:
        before, after = normalise(key[0], b_bodies[key]), normalise(key[0], h_bodies[key])
        found = field_changes(before, after)
        if found:
            modified.append(ObjectDiff(ObjectId(*key), h.entry(key).source, b.entry(key).source, found, before, after,
                                       service=h.entry(key).service or b.entry(key).service,
                                       refs=references(before) + references(after)))
    removed, added, pairs, notes = pair_renames([_snapshot(b.entry(k), b_bodies[k]) for k in gone],
                                                [_snapshot(h.entry(k), h_bodies[k]) for k in new])
    renamed = [ObjectDiff(p.new.id, p.new.source, p.old.source,
                          field_changes(p.old.norm, p.new.norm, skip={NAME_PATH}),
                          p.old.norm, p.new.norm, old=p.old.id, similarity=p.similarity,
                          service=p.new.service or p.old.service,
                          refs=references(p.old.norm) + references(p.new.norm)) for p in pairs]
    production = bool((head and head.production) or (base and base.production))
    source = (head.source if head else "") or (base.source if base else "")
    touched = {i.service for i in [*added, *removed] if i.service and i.id.kind in MAP_KINDS}
    touched |= {d.service for d in [*modified, *renamed] if d.service and d.id.kind in MAP_KINDS}
    b_maps, h_maps = b.service_maps(touched), h.service_maps(touched)
    maps = {s: (b_maps[s], h_maps[s]) for s in sorted(touched)}
    return EnvChanges(env, production, source, tuple(added), tuple(removed), tuple(modified),
                      tuple(renamed), maps), notes


def _snapshot(item: Entry, body: dict[str, Any]) -> ObjectSnapshot:
    norm = normalise(item.id.kind, body)
    return ObjectSnapshot(item.id, item.source, body, norm, item.service, references(norm))


def references(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The hosts and IP addresses an Istio object names (normalised body): what links a derived
    Envoy cluster or iptables rule to it in the review by cause."""
    spec = body.get("spec") if isinstance(body, Mapping) else None
    if not isinstance(spec, Mapping):
        return ()

    def values(value: Any) -> list[Any]:
        return list(value.values()) if isinstance(value, Mapping) else list(value) if isinstance(value, list) else []

    out = [str(h) for h in values(spec.get("hosts"))] + [str(a).split("/")[0] for a in values(spec.get("addresses"))]
    out += [str(e["address"]) for e in values(spec.get("endpoints")) if isinstance(e, Mapping) and "address" in e]
    out += [str(spec[k]) for k in ("host", "address") if isinstance(spec.get(k), str)]
    return tuple(sorted(set(out)))


def _path_key(path: DataPath) -> tuple[tuple[int, Any], ...]:
    return tuple((0, s) if isinstance(s, int) else (1, str(s)) for s in path)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types throughout (True is not 1, 1 is not 1.0)."""
    if a is b:
        return True
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def prune(before: Any, after: Any) -> tuple[Any, Any]:
    """Both mappings without the keys whose values are the same (recursively): deepdiff's result
    and paths are unchanged, but it never walks the parts that did not change."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return before, after
    b_out: dict[Any, Any] = {}
    a_out: dict[Any, Any] = {}
    for key, value in before.items():
        if key not in after:
            b_out[key] = value
        elif not (value == after[key] and same(value, after[key])):
            b_out[key], a_out[key] = prune(value, after[key])
    a_out.update((k, v) for k, v in after.items() if k not in before)
    return b_out, a_out


def field_changes(before: Any, after: Any, skip: frozenset[DataPath] | set[DataPath] = frozenset()
                  ) -> tuple[FieldChange, ...]:
    """Semantic changes between two normalised bodies, sorted by path."""
    tree = DeepDiff(*prune(before, after), view="tree", threshold_to_diff_deeper=0)
    out: list[FieldChange] = []
    for category, levels in tree.items():
        kind = _CATEGORIES.get(category, "changed")
        for level in levels:
            path = tuple(level.path(output_format="list"))
            out.append(FieldChange(path, kind, None if kind == "added" else level.t1,
                                   None if kind == "removed" else level.t2))
    # deepdiff compares list items by Python equality, so `[true]` and `[1]` (or `[1]` and `[1.0]`)
    # look the same to it; a value of another type is a change. Add what it missed.
    covered = {c.path for c in out}
    out.extend(_type_changes(before, after, (), covered))
    out = [c for c in out if c.path not in skip]
    return tuple(sorted(out, key=lambda c: (_path_key(c.path), c.kind)))


def _type_changes(a: Any, b: Any, path: DataPath, covered: set[DataPath]) -> Iterator[FieldChange]:
    """Changes between values that are equal in Python but not in type (bool/int/float), below
    `path`, where no reported change already covers them."""
    if any(path[:i] in covered for i in range(len(path) + 1)) or same(a, b):
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() & b.keys():
            yield from _type_changes(a[key], b[key], (*path, key), covered)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                yield from _type_changes(x, y, (*path, i), covered)
        elif not any(c[:len(path)] == path for c in covered):
            yield FieldChange(path, "changed", a, b)
    else:
        yield FieldChange(path, "changed", a, b)
