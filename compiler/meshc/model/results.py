"""What the pipeline's passes hand on: one environment's compiled services, artifacts, bundle and
Envoy configuration (`EnvResult`), the whole compile (`CompileResult`), and one unit of work
(`UnitOut`: validate + expand + render of one service in one environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from meshc.model.bundle import Bundle, Spooled, content
from meshc.model.core import Artifact, EnvSettings, Service
from meshc.model.diagnostics import Diagnostic, Finding, has_errors
from meshc.model.ids import ObjectId

if TYPE_CHECKING:
    from meshc.runtime.cache import BuildCache


@dataclass(frozen=True)
class EnvoyConfig:
    """An environment's Envoy bootstrap as its bundle file (bytes, or spooled to disk by the worker
    that built it: at 10,000 services it is ~130 MB of JSON and ~300 MB as dicts), where each part
    came from (path prefix -> Istio object), and, when the worker that built it also ran the envoy
    check layer on it, that layer's findings."""

    file: bytes | Spooled
    sha256: str
    sources: dict[tuple[Any, ...], ObjectId]  # bootstrap path prefix -> the Istio object it came from
    findings: list[tuple[tuple[Any, ...], Finding]] | None = None  # (bootstrap path, finding)

    def data(self) -> bytes:
        return content(self.file)

    def bootstrap(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.data())
        return value


@dataclass
class EnvResult:
    settings: EnvSettings
    services: list[Service] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    bundle: Bundle | None = None
    envoy: EnvoyConfig | None = None


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
