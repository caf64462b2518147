"""What every check layer shares: its options (with the content-hash memo), the input-error
exception, and the `Placer` that turns a finding on an emitted object into a diagnostic at the
declaration behind it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from meshc.files.source import locate
from meshc.front.provenance import locate_finding
from meshc.model.core import Artifact
from meshc.model.diagnostics import Diagnostic, Finding, Position, format_path
from meshc.model.ids import ObjectId
from meshc.model.release import DEFAULT_ISTIO
from meshc.model.results import EnvResult

LAYERS = ("schema", "istio", "release", "cue", "envoy")
T = TypeVar("T")
CheckKey = tuple[str, ...]  # (layer, content sha256), or the envoy layer's ("envoy-item", message type, sha256)


class CheckInputError(Exception):
    """A layer cannot run (missing CRDs, broken policy, no engine): exit code 2."""

    def __init__(self, diags: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.message for d in diags))
        self.diags = diags


@dataclass(frozen=True)
class CheckOptions:
    layers: tuple[str, ...] = LAYERS
    crds: Path | None = None
    crds_at: Position | None = None  # where the CRD file was named (meshc.yaml crds:, or the file itself)
    policies: Path | None = None
    repo_root: Path = Path(".")
    envoy_binary: bool = False
    releases: tuple[str, ...] = (DEFAULT_ISTIO,)  # the target Istio releases (meshc.yaml istio:), oldest first
    cache: Mapping[CheckKey, Any] | None = field(default=None, compare=False)  # the last build's, read only


@dataclass
class CheckRun:
    """One run of the check pass: its options (never changed), what it learned for the next build
    (findings per content hash, not yet in any cache), the time each layer took, its diagnostics."""

    opts: CheckOptions
    learned: dict[CheckKey, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def known(self, key: CheckKey) -> Any | None:
        """What this run or the last build found for `key`, or None."""
        if key in self.learned:
            return self.learned[key]
        cache = self.opts.cache
        return cache.get(key) if cache is not None else None

    def memo(self, layer: str, payload: bytes, compute: Callable[[], T]) -> T:
        """Findings of `layer` for content `payload`, computed once per content hash (when caching)."""
        if self.opts.cache is None:
            return compute()
        key = (layer, hashlib.sha256(payload).hexdigest())
        found: T | None = self.known(key)
        if found is None:
            found = self.learned[key] = compute()
        return found


def body_bytes(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class Placer:
    """Finding -> Diagnostic, with the artifact lookups of one environment cached."""

    def __init__(self, env: EnvResult) -> None:
        self.env = env
        self.by_id: dict[ObjectId, Artifact] = {a.identity: a for a in env.artifacts}
        self.decls = {s.name: s.decl for s in env.services}

    def __call__(self, art: Artifact, finding: Finding) -> Diagnostic:
        decl = self.decls.get(art.service)
        pos = locate_finding(art, decl, finding.path) if decl is not None else None
        if pos is None and art.source is not None:  # kept verbatim: the field's own line
            pos = locate(art.source.file, art.node, finding.path)[0] if art.node is not None else art.source
        if pos is None and not art.service and self.env.settings.source is not None:
            pos = self.env.settings.source.position  # an object of the whole environment: env.yaml made it
        return Diagnostic(finding.code, finding.severity, finding.message, pos,
                          format_path(finding.path), finding.hint, self.env.settings.name,
                          art.identity, finding.istio_code)

    def by_identity(self, ident: tuple[str, str, str]) -> Artifact | None:
        return self.by_id.get(ObjectId(*ident))
