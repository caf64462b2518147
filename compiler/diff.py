"""`meshc diff`: two sides (git refs, repositories or bundles) -> a `ChangeSet`.

Input: a `DiffRequest` (what the user passed). Output: a `ChangeSet` whose objects are matched by
identity (kind, namespace, name) per environment, with field changes computed by deepdiff on
normalised bodies (see `compiler.diff_objects` for the list semantics), renames paired (see
`compiler.diff_rename`), the ignore file applied, risk flags computed and sensitive values masked.
Stage order, written once in `run`:

    resolve sides -> compare -> ignore -> risks -> mask

Invariants: objects whose index.json sha256 is equal on both sides are never parsed; key order,
quoting and formatting never produce a change; a change set is never mutated, each stage returns
a new one; the masking pass is last, so no later stage can see a sensitive value.
Input problems raise `DiffError` (exit 2 in the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from deepdiff import DeepDiff

from .diff_filters import apply_ignore, load_ignore, mask_changeset
from .diff_model import (ChangeKind, ChangeSet, EnvChanges, FieldChange, ObjectDiff, ObjectId,
                         ObjectSnapshot, Path as DataPath)
from .diff_objects import Entry, artifact_objects, load_bodies, manifest_entries, normalise, read_index
from .diff_rename import NAME_PATH, pair_renames
from .diff_risk import find_risks
from .diff_sides import DiffError, EnvData, Side, load_mask_rules, resolve_side

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
    changes = apply_ignore(changes, load_ignore(request.root))
    changes = changes.with_envs(changes.envs, risks=find_risks(changes))
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


def _collect(data: EnvData | None) -> tuple[dict[ObjectId, Entry], dict[ObjectId, dict[str, Any]]]:
    if data is None:
        return {}, {}
    try:
        entries = manifest_entries(read_index(data.view))
        bodies: dict[ObjectId, dict[str, Any]] = {}
        for oid, (entry, body) in artifact_objects(data.view).items():
            entries[oid], bodies[oid] = entry, body
    except (OSError, ValueError, KeyError) as exc:
        raise DiffError(f"cannot read the bundle of environment {data.view.env}: {exc}") from None
    return entries, bodies


def _bodies(data: EnvData | None, entries: Mapping[ObjectId, Entry], ids: Iterable[ObjectId],
            preloaded: Mapping[ObjectId, dict[str, Any]]) -> dict[ObjectId, dict[str, Any]]:
    ids = list(ids)
    need = [entries[i] for i in ids if i not in preloaded]
    loaded = load_bodies(data.view, need) if need and data is not None else {}
    lost = [i for i in ids if i not in preloaded and i not in loaded]
    if lost:
        raise DiffError(f"index.json lists {lost[0]} in {entries[lost[0]].file}, but that file does not hold it")
    return {i: preloaded[i] if i in preloaded else loaded[i] for i in ids}


def diff_env(env: str, base: EnvData | None, head: EnvData | None) -> tuple[EnvChanges, list[str]]:
    b_entries, b_pre = _collect(base)
    h_entries, h_pre = _collect(head)
    common = b_entries.keys() & h_entries.keys()
    differ = sorted(i for i in common if not b_entries[i].digest or b_entries[i].digest != h_entries[i].digest)
    gone = sorted(b_entries.keys() - h_entries.keys())
    new = sorted(h_entries.keys() - b_entries.keys())
    b_bodies = _bodies(base, b_entries, differ + gone, b_pre)
    h_bodies = _bodies(head, h_entries, differ + new, h_pre)
    modified = []
    for oid in differ:
        before, after = normalise(oid.kind, b_bodies[oid]), normalise(oid.kind, h_bodies[oid])
        found = field_changes(before, after)
        if found:
            modified.append(ObjectDiff(oid, h_entries[oid].source, b_entries[oid].source, found, before, after))
    removed, added, pairs, notes = pair_renames([_snapshot(b_entries[i], b_bodies[i]) for i in gone],
                                                [_snapshot(h_entries[i], h_bodies[i]) for i in new])
    renamed = [ObjectDiff(p.new.id, p.new.source, p.old.source,
                          field_changes(p.old.norm, p.new.norm, skip={NAME_PATH}),
                          p.old.norm, p.new.norm, old=p.old.id, similarity=p.similarity) for p in pairs]
    production = bool((head and head.production) or (base and base.production))
    source = (head.source if head else "") or (base.source if base else "")
    return EnvChanges(env, production, source, tuple(added), tuple(removed), tuple(modified),
                      tuple(renamed)), notes


def _snapshot(entry: Entry, body: dict[str, Any]) -> ObjectSnapshot:
    return ObjectSnapshot(entry.id, entry.source, body, normalise(entry.id.kind, body), entry.service)


def _path_key(path: DataPath) -> tuple[tuple[int, Any], ...]:
    return tuple((0, s) if isinstance(s, int) else (1, str(s)) for s in path)


def field_changes(before: Any, after: Any, skip: frozenset[DataPath] | set[DataPath] = frozenset()
                  ) -> tuple[FieldChange, ...]:
    """Semantic changes between two normalised bodies, sorted by path."""
    tree = DeepDiff(before, after, view="tree", threshold_to_diff_deeper=0)
    out: list[FieldChange] = []
    for category, levels in tree.items():
        kind = _CATEGORIES.get(category, "changed")
        for level in levels:
            path = tuple(level.path(output_format="list"))
            if path in skip:
                continue
            out.append(FieldChange(path, kind, None if kind == "added" else level.t1,
                                   None if kind == "removed" else level.t2))
    return tuple(sorted(out, key=lambda c: (_path_key(c.path), c.kind)))
