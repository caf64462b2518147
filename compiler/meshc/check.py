"""Pass `check`: artifacts of each environment -> diagnostics, in layers.

Input: a CompileResult (typed artifacts with provenance) and the layers to run.
Output: Diagnostics placed at the declaration behind each finding (never at generated YAML).
Layers (docs/checks.md): `schema` (the Istio CRDs' openAPIV3Schema + CEL rules + list-map keys,
meshc.crd), `istio` (istiod webhook rules and cross-object analyzers, meshc.rules),
`cue` (organisation policies, meshc.check_cue), `envoy` (Envoy API validation of the emitted
bootstrap, meshc.check_envoy). A layer that cannot run is an input error (C0xx), never a pass.
Codes: C002 CRD file unusable, C003 policy engine unusable, C004 no CRD file configured
(warning: the schema layer did not run), plus each layer's own codes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import orjson

from .confine import CRD_LIMIT, read_regular
from .diagnostics import Diagnostic, Finding, Position, Severity, format_path
from .model import Artifact, Identity
from .pipeline import CompileResult, EnvResult
from .project import SCHEMA_HELP
from .provenance import locate_finding
from .release import EMITTED_KINDS

LAYERS = ("schema", "istio", "cue", "envoy")
T = TypeVar("T")


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
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    cache: dict[tuple[str, str], Any] | None = field(default=None, compare=False)

    def memo(self, layer: str, payload: bytes, compute: Callable[[], T]) -> T:
        """Findings of `layer` for content `payload`, computed once per content hash."""
        if self.cache is None:
            return compute()
        key = (layer, hashlib.sha256(payload).hexdigest())
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]  # type: ignore[no-any-return]


def body_bytes(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class Placer:
    """Finding -> Diagnostic, with the artifact lookups of one environment cached."""

    def __init__(self, env: EnvResult) -> None:
        self.env = env
        self.by_id: dict[Identity, Artifact] = {a.identity: a for a in env.artifacts}
        self.decls = {s.name: s.decl for s in env.services}

    def __call__(self, art: Artifact, finding: Finding) -> Diagnostic:
        decl = self.decls.get(art.service)
        pos = locate_finding(art, decl, finding.path) if decl is not None else None
        return Diagnostic(finding.code, finding.severity, finding.message, pos,
                          format_path(finding.path), finding.hint, self.env.settings.name,
                          str(art.identity), finding.istio_code)

    def by_identity(self, ident: tuple[str, str, str]) -> Artifact | None:
        return self.by_id.get(Identity(*ident))


def run_checks(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    """All requested layers over every compiled environment; raises CheckInputError."""
    import time

    out: list[Diagnostic] = []
    runners: dict[str, Callable[[CompileResult, CheckOptions], list[Diagnostic]]] = {
        "schema": _schema_layer, "istio": _istio_layer, "cue": _cue_layer, "envoy": _envoy_layer}
    for layer in opts.layers:
        start = time.perf_counter()
        out.extend(runners[layer](result, opts))
        opts.timings[layer] = time.perf_counter() - start
    return out


def _schema_layer(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    from .crd import CrdError, CrdSet

    if opts.crds is None:
        return [Diagnostic(
            "C004", Severity.WARNING, "schema layer skipped: no Istio CRD file configured",
            Position("meshc.yaml"), hint="remove crds: from meshc.yaml to use the shipped schemas, or "
            "name a CRD file (the output of `kubectl get crd -o yaml`) or pass --crds PATH")]
    crd_file = opts.crds
    where = opts.crds_at or Position(str(crd_file))

    def unusable(message: str) -> CheckInputError:
        return CheckInputError([Diagnostic("C002", Severity.ERROR, message, where,
                                           hint="point crds: at a valid CRD file (`kubectl get crd -o yaml` of "
                                                "the Istio release you run), or remove crds: to use the shipped "
                                                f"schemas; see {SCHEMA_HELP}")])

    try:
        layer = "schema:" + hashlib.sha256(read_regular(crd_file, CRD_LIMIT)).hexdigest()
    except OSError as exc:
        raise unusable(f"{crd_file}: cannot read the CRD file: {exc.strerror or exc}") from None
    loaded: list[CrdSet] = []

    def crds() -> CrdSet:
        """Loaded (CEL rules compiled) on the first object the cache does not answer."""
        if not loaded:
            try:
                crd_set = CrdSet.load(crd_file, eager=False)
            except CrdError as exc:
                raise unusable(str(exc)) from None
            missing = missing_kinds(crd_set)
            if missing:
                raise unusable(f"{crd_file}: serves no {', '.join(missing)}, which meshc emits")
            loaded.append(crd_set)
        return loaded[0]

    out: list[Diagnostic] = []
    for env in result.envs.values():
        placer = Placer(env)
        for art in env.artifacts:
            found = opts.memo(layer, body_bytes(art.body), lambda a=art: crds().validate(a.body))
            out.extend(placer(art, f) for f in found)
    return out


def missing_kinds(crd_set: "CrdSet") -> list[str]:
    """The kinds meshc emits that a CRD set does not serve (as `group/*` kind)."""
    served = {(av.split("/")[0], kind) for av, kind in crd_set.kinds()}
    return [f"{kind} ({group})" for group, kind in EMITTED_KINDS if (group, kind) not in served]


def _istio_layer(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    from .rules import analyze, check_object

    out: list[Diagnostic] = []
    for env in result.envs.values():
        placer = Placer(env)
        for art in env.artifacts:
            found = opts.memo("istio", body_bytes(art.body), lambda a=art: check_object(a.body))
            out.extend(placer(art, f) for f in found)
        for ident, finding in analyze([a.body for a in env.artifacts]):
            art = placer.by_identity(ident)
            if art is not None:
                out.append(placer(art, finding))
    return out


def _cue_layer(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    from .check_cue import run_cue

    return run_cue(result, opts)


def _envoy_layer(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    from .check_envoy import run_envoy

    return run_envoy(result, opts)


def threshold_reached(diags: Iterable[Diagnostic], fail_on: Severity) -> bool:
    return any(d.severity >= fail_on for d in diags)


def parse_layers(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v for v in LAYERS if v in set(values)) if values else LAYERS
