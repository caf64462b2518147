"""The change model of `meshc diff`: typed, frozen values that every later stage reads.

Input: nothing (this module only defines types). Output: `ChangeSet` and its parts.
Invariants:
* objects are identified by `ObjectId` (meshc.model.ids: kind, namespace, name) within one environment; Envoy
  clusters/listeners and iptables chains use the bundle file as namespace;
* a `FieldChange.path` is a tuple of segments; `ItemKey` segments name an item of a keyed or
  set-like list (``spec.ports[number=80]``), ints are positions in ordered lists;
* values are plain data or `Masked` (after the masking pass, never the masked value itself);
* filters (masking, ignore rules) return new change sets; renderers never change them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from meshc.diff.maps import ServiceMap
from meshc.model.ids import ObjectId

ChangeKind = Literal["added", "removed", "changed"]
Segment = str | int
Path = tuple[Segment, ...]


class ItemKey(str):
    """A dict key standing for one item of a keyed or set-like list; shown as ``[text]``."""

    __slots__ = ()


def _needs_quotes(key: str) -> bool:
    return not key or any(ch in key for ch in '.[]" ')


def format_path(path: Path) -> str:
    """('spec', ItemKey('number=80'), 'name') -> 'spec[number=80].name'; odd keys are quoted."""
    out: list[str] = []
    for seg in path:
        if isinstance(seg, ItemKey):
            out.append(f"[{seg}]")
        elif isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _needs_quotes(seg):
            out.append('["' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"]')
        else:
            out.append(("." if out else "") + seg)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Masked:
    """Stands for a sensitive value: its length (characters of its text) and a short keyed hash."""

    length: int
    digest: str

    def __str__(self) -> str:
        return f"<masked: len {self.length}, hmac-sha256:{self.digest}>"


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: Path
    kind: ChangeKind
    before: Any = None
    after: Any = None

    @property
    def where(self) -> str:
        return format_path(self.path)


@dataclass(frozen=True, slots=True)
class ObjectSnapshot:
    """An added or removed object: its body as emitted, and the declaration behind it."""

    id: ObjectId
    source: str
    body: Mapping[str, Any] = field(compare=False, repr=False)
    norm: Mapping[str, Any] = field(compare=False, repr=False, default_factory=dict)
    service: str = ""
    refs: tuple[str, ...] = ()  # hosts and addresses the object names (to attribute derived changes)


@dataclass(frozen=True, slots=True)
class ObjectDiff:
    """A modified object (same identity on both sides) or a renamed one (`old` is set)."""

    id: ObjectId
    source: str
    base_source: str
    changes: tuple[FieldChange, ...]
    before: Mapping[str, Any] = field(compare=False, repr=False, default_factory=dict)
    after: Mapping[str, Any] = field(compare=False, repr=False, default_factory=dict)
    old: ObjectId | None = None
    similarity: float = 1.0
    service: str = ""  # the declared service the object belongs to (index.json), "" for derived ones
    refs: tuple[str, ...] = ()  # hosts and addresses the object names on either side


@dataclass(frozen=True, slots=True)
class EnvChanges:
    env: str
    production: bool = False
    env_source: str = ""
    added: tuple[ObjectSnapshot, ...] = ()
    removed: tuple[ObjectSnapshot, ...] = ()
    modified: tuple[ObjectDiff, ...] = ()
    renamed: tuple[ObjectDiff, ...] = ()
    # touched service -> its map on the base and head sides (None: absent there); meshc.diff.maps
    maps: Mapping[str, tuple[ServiceMap | None, ServiceMap | None]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified or self.renamed)

    def objects(self) -> Iterator[tuple[str, ObjectSnapshot | ObjectDiff]]:
        """Every changed object with its change kind, in report order."""
        for kind, items in (("removed", self.removed), ("added", self.added),
                            ("renamed", self.renamed), ("modified", self.modified)):
            for item in items:
                yield kind, item


@dataclass(frozen=True, slots=True)
class IgnoredChange:
    env: str
    object: ObjectId
    what: str          # "added", "removed", "renamed" or a field change kind
    path: str          # "" for a whole object
    rule: str          # e.g. ".meshc-diffignore#2 (kind=DestinationRule path=metadata.*)"


@dataclass(frozen=True, slots=True)
class RiskFlag:
    code: str
    env: str
    object: str
    message: str
    source: str


@dataclass(frozen=True, slots=True)
class SideInfo:
    spec: str       # what the user passed, e.g. "origin/main", "out/", "working tree"
    kind: str       # "git", "repo", "bundle", "worktree", or "live" (meshc drift, meshc import's input)
    commit: str = ""

    @property
    def label(self) -> str:
        return f"{self.spec} ({self.commit[:12]})" if self.commit else self.spec


@dataclass(frozen=True, slots=True)
class ChangeSet:
    base: SideInfo
    head: SideInfo
    envs: Mapping[str, EnvChanges]
    ignored: tuple[IgnoredChange, ...] = ()
    risks: tuple[RiskFlag, ...] = ()
    notes: tuple[str, ...] = ()
    # service -> declaration lines the change touches (git sides; meshc.diff.declared)
    declared: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return all(e.empty for e in self.envs.values())

    def with_envs(self, envs: Mapping[str, EnvChanges], **more: Any) -> ChangeSet:
        return replace(self, envs=dict(envs), **more)

    def counts(self) -> dict[str, int]:
        out = {"added": 0, "removed": 0, "modified": 0, "renamed": 0}
        for env in self.envs.values():
            for kind, _ in env.objects():
                out[kind] += 1
        return out
