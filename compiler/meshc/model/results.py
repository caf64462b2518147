"""What the pipeline's passes hand on: one environment's compiled services, artifacts, bundle and
Envoy configuration (`EnvResult`), the whole compile (`CompileResult`), and one unit of work
(`UnitOut`: validate + expand + render of one service in one environment)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from meshc.model.bundle import ENVOY_BOOTSTRAP, ENVOY_CLUSTERS, ENVOY_LISTENERS, Bundle, Spooled, content
from meshc.model.core import Artifact, EnvSettings, Service
from meshc.model.diagnostics import Diagnostic, Finding, has_errors
from meshc.model.ids import ObjectId

if TYPE_CHECKING:
    from meshc.runtime.cache import BuildCache


@dataclass(frozen=True)
class EnvoyConfig:
    """An environment's Envoy files: `file` is the large shared one (envoy/clusters.json: bytes, or
    spooled to disk by the worker that built it: ~130 MB of JSON at 10,000 services), `files` the
    others (listeners.json, the egress bootstrap.json, workloads/<group>.json; a
    `model.bundle.SpooledFiles` when the worker spooled the large ones). `sources` maps paths
    of the egress proxy's whole configuration (`bootstrap()`) to the Istio object each part came
    from, `workload_sources` the same for each workload file's own static part; when the worker
    that built them also ran the envoy check layer, `findings` holds its findings."""

    file: bytes | Spooled
    sha256: str  # of every Envoy file of the environment
    sources: dict[tuple[Any, ...], ObjectId]  # bootstrap path prefix -> the Istio object it came from
    findings: list[tuple[tuple[Any, ...], Finding]] | None = None  # (path, finding); workload files' prefixed
    files: Mapping[str, bytes] = field(default_factory=dict)
    workload_sources: dict[str, dict[tuple[Any, ...], ObjectId]] = field(default_factory=dict)
    # the shared clusters and listeners the egress proxy shadows (no whole configuration holds
    # them), as a static part checked like a view's: {"static_resources": {...}} (JSON)
    shadowed: bytes = b""

    def static_part(self, rel: str) -> dict[str, Any]:
        """The static resources a checked part holds: a view's, or the shadowed shared ones."""
        data = self.shadowed if rel == ENVOY_CLUSTERS else self.files[rel]
        static: dict[str, Any] = orjson.loads(data).get("static_resources") or {}
        return static

    def data(self) -> bytes:
        return content(self.file)

    def bootstrap(self) -> dict[str, Any]:
        """The egress proxy's configuration as one static Bootstrap: the shared clusters and
        listeners with its own, in name order (as built)."""
        return whole_bootstrap(orjson.loads(self.data()), orjson.loads(self.files[ENVOY_LISTENERS]),
                               orjson.loads(self.files[ENVOY_BOOTSTRAP]))


def whole_bootstrap(clusters: dict[str, Any], listeners: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """One static Bootstrap from shared CDS and LDS files and a proxy's bootstrap: what that
    proxy runs."""
    static = own.get("static_resources") or {}

    def merged(shared: dict[str, Any], key: str) -> list[dict[str, Any]]:
        """The shared resources, each replaced by a static one of the same name (Envoy keeps a
        static cluster or listener and skips the CDS/LDS one), in name order."""
        items = {str(r.get("name", "")): {k: v for k, v in r.items() if k != "@type"}
                 for r in shared.get("resources") or []}
        items.update((str(item.get("name", "")), item) for item in static.get(key) or [])
        return [items[name] for name in sorted(items)]

    out: dict[str, Any] = {"static_resources": {"listeners": merged(listeners, "listeners"),
                                                "clusters": merged(clusters, "clusters")}}
    ads = (own.get("dynamic_resources") or {}).get("ads_config")
    if ads is not None:
        out["dynamic_resources"] = {"ads_config": ads}
    return out


@dataclass
class EnvResult:
    settings: EnvSettings
    services: list[Service] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    bundle: Bundle | None = None
    envoy: EnvoyConfig | None = None
    # the objects of the environment as a whole (consumer Sidecars, the waypoint), one file each
    shared: list[UnitOut] = field(default_factory=list)


@dataclass
class CompileResult:
    envs: dict[str, EnvResult] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    cache: BuildCache | None = None

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


@dataclass(frozen=True)
class UnitOut:
    """validate + expand + render of one service in one environment."""

    valid: bool
    artifacts: list[Artifact]
    diagnostics: list[Diagnostic]
    file: str = ""
    data: bytes = b""
    entries: tuple[dict[str, str], ...] = ()
