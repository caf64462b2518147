"""Rename pairing for `meshc diff`: a removed and an added object of the same kind that are the
same object under a new name.

Input: the removed and added `ObjectSnapshot`s of one environment (with normalised bodies).
Output: the removed and added objects left unpaired, and the pairs.
Method: before comparing, the old object's name and service name are replaced by the new ones
wherever they occur as a whole word in a string (labels, selectors, WorkloadEntry names) and
metadata.name is left out. Exact matches are paired first (a hash per object, linear); then,
per kind, pairs whose share of equal leaf paths is >= `THRESHOLD` are paired greedily, best
first, ties by identity, but only when that kind has at most `PAIR_LIMIT` candidate pairs
(a note says when the search was skipped). Deterministic.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from meshc.diff.model import ObjectSnapshot, Path

THRESHOLD = 0.9
PAIR_LIMIT = 10_000
NAME_PATH = ("metadata", "name")
Leaves = dict[Path, Any]


@dataclass(frozen=True)
class Pair:
    old: ObjectSnapshot
    new: ObjectSnapshot
    similarity: float


def leaves(value: Any, path: Path = ()) -> Leaves:
    """Flatten to leaf path -> scalar (empty containers are leaves)."""
    out: Leaves = {}
    if isinstance(value, dict) and value:
        for key, item in value.items():
            out.update(leaves(item, path + (key,)))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            out.update(leaves(item, path + (i,)))
    elif path != NAME_PATH:
        out[path] = value
    return out


def _swaps(old: ObjectSnapshot, new_name: str, new_service: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in ((old.id.name, new_name), (old.service, new_service)) if a and a != b]


def _substituter(swaps: list[tuple[str, str]]) -> Callable[[Any], Any]:
    """Replace each old name by its new one where it stands as a whole word in a string."""
    if not swaps:
        return lambda v: v
    table = dict(swaps)
    words = sorted(table, key=len, reverse=True)
    pattern = re.compile("(?<![A-Za-z0-9])(" + "|".join(map(re.escape, words)) + ")(?![A-Za-z0-9])")

    def sub(value: Any) -> Any:
        return pattern.sub(lambda m: table[m.group(1)], value) if isinstance(value, str) else value
    return sub


def _renamed_leaves(snap: Leaves, sub: Callable[[Any], Any]) -> Leaves:
    return {tuple(sub(s) for s in p): sub(v) for p, v in snap.items()}


def _fingerprint(snap: ObjectSnapshot, flat: Leaves) -> str:
    """Equal for two objects that differ only in their own name and service name."""
    sub = _substituter(_swaps(snap, "\0name\0", "\0svc\0"))
    rows = sorted((repr(p), repr(v)) for p, v in _renamed_leaves(flat, sub).items())
    return snap.id.kind + hashlib.sha256(orjson.dumps(rows)).hexdigest()


def similarity(old: Leaves, new: Leaves) -> float:
    union = old.keys() | new.keys()
    if not union:
        return 1.0
    same = sum(1 for p in old.keys() & new.keys() if old[p] == new[p] and type(old[p]) is type(new[p]))
    return same / len(union)


def pair_renames(removed: list[ObjectSnapshot], added: list[ObjectSnapshot]
                 ) -> tuple[list[ObjectSnapshot], list[ObjectSnapshot], list[Pair], list[str]]:
    flat = {id(s): leaves(s.norm) for s in removed + added}
    pairs = _exact(removed, added, flat)
    taken = {id(p.old) for p in pairs} | {id(p.new) for p in pairs}
    notes: list[str] = []
    for kind in sorted({s.id.kind for s in removed} & {s.id.kind for s in added}):
        rs = [s for s in removed if s.id.kind == kind and id(s) not in taken]
        ads = [s for s in added if s.id.kind == kind and id(s) not in taken]
        if len(rs) * len(ads) > PAIR_LIMIT:
            notes.append(f"rename detection by similarity skipped for {kind}: "
                         f"{len(rs)} removed x {len(ads)} added objects exceed {PAIR_LIMIT} pairs")
            continue
        for pair in _similar(rs, ads, flat):
            pairs.append(pair)
    taken = {id(p.old) for p in pairs} | {id(p.new) for p in pairs}
    pairs.sort(key=lambda p: (p.new.id, p.old.id))
    return ([s for s in removed if id(s) not in taken], [s for s in added if id(s) not in taken],
            pairs, notes)


def _exact(removed: list[ObjectSnapshot], added: list[ObjectSnapshot], flat: dict[int, Leaves]) -> list[Pair]:
    by_print: dict[str, list[ObjectSnapshot]] = {}
    for snap in sorted(added, key=lambda s: s.id):
        by_print.setdefault(_fingerprint(snap, flat[id(snap)]), []).append(snap)
    pairs = []
    for snap in sorted(removed, key=lambda s: s.id):
        bucket = by_print.get(_fingerprint(snap, flat[id(snap)]))
        if bucket:
            pairs.append(Pair(snap, bucket.pop(0), 1.0))
    return pairs


def _similar(removed: list[ObjectSnapshot], added: list[ObjectSnapshot], flat: dict[int, Leaves]) -> list[Pair]:
    candidates: list[tuple[float, ObjectSnapshot, ObjectSnapshot]] = []
    for old in removed:
        for new in added:
            score = similarity(_renamed_leaves(flat[id(old)], _substituter(_swaps(old, new.id.name, new.service))),
                               flat[id(new)])
            if score >= THRESHOLD:
                candidates.append((score, old, new))
    candidates.sort(key=lambda c: (-c[0], c[1].id, c[2].id))
    used: set[int] = set()
    out = []
    for score, old, new in candidates:
        if id(old) not in used and id(new) not in used:
            used.update((id(old), id(new)))
            out.append(Pair(old, new, round(score, 3)))
    return out
