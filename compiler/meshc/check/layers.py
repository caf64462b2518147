"""Pass `check`: artifacts of each environment -> diagnostics, in layers.

Input: a CompileResult (typed artifacts with provenance) and the layers to run.
Output: Diagnostics placed at the declaration behind each finding (never at generated YAML).
Layers (docs/checks.md): `schema` (the Istio CRDs' openAPIV3Schema + CEL rules + list-map keys,
meshc.check.schema), `istio` (istiod webhook rules and cross-object analyzers, meshc.check.istio),
`release` (fields and behaviour changes against the target Istio releases, meshc.check.release),
`cue` (organisation policies, meshc.check.cue), `envoy` (Envoy API validation of the emitted
bootstrap, meshc.check.envoy). A layer that cannot run is an input error (C0xx), never a pass.
Codes: C002 CRD file unusable, C003 policy engine unusable, C004 no CRD file configured
(warning: the schema layer did not run), plus each layer's own codes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from meshc.check.common import LAYERS, CheckInputError, CheckOptions, CheckRun, Placer, body_bytes
from meshc.check.cue.layer import run_cue
from meshc.check.envoy.layer import run_envoy
from meshc.check.istio import AnalyzerSettings, analyze, check_object
from meshc.check.release import run_release
from meshc.check.schema.crd import CrdError, CrdSet
from meshc.files.confine import CRD_LIMIT, read_regular
from meshc.front.project import SCHEMA_HELP
from meshc.model.diagnostics import Diagnostic, Finding, Position, Severity
from meshc.model.release import EMITTED_KINDS
from meshc.model.results import CompileResult

__all__ = ["LAYERS", "CheckInputError", "CheckOptions", "CheckRun", "check_run", "run_checks",
           "parse_layers", "threshold_reached"]


def check_run(result: CompileResult, opts: CheckOptions) -> CheckRun:
    """The check pass: all requested layers over every compiled environment, in order. Returns
    the diagnostics, what the run learned for the next build's cache (the caller decides whether
    to keep it) and each layer's time; raises CheckInputError."""
    run = CheckRun(opts)
    runners: dict[str, Callable[[CompileResult, CheckRun], list[Diagnostic]]] = {
        "schema": _schema_layer, "istio": _istio_layer, "release": _release_layer, "cue": run_cue,
        "envoy": run_envoy}
    for layer in opts.layers:
        start = time.perf_counter()
        run.diagnostics.extend(runners[layer](result, run))
        run.timings[layer] = time.perf_counter() - start
    return run


def run_checks(result: CompileResult, opts: CheckOptions) -> list[Diagnostic]:
    """The diagnostics of `check_run`."""
    return check_run(result, opts).diagnostics


def _schema_layer(result: CompileResult, run: CheckRun) -> list[Diagnostic]:
    opts = run.opts
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

    def validate(body: Mapping[str, Any]) -> list[Finding]:
        return crds().validate(body)

    out: list[Diagnostic] = []
    for env in result.envs.values():
        placer = Placer(env)
        for art in env.artifacts:
            found = run.memo(layer, body_bytes(art.body), partial(validate, art.body))
            out.extend(placer(art, f) for f in found)
    return out


def missing_kinds(crd_set: CrdSet) -> list[str]:
    """The kinds meshc emits that a CRD set does not serve (as `group/*` kind)."""
    served = {(av.split("/")[0], kind) for av, kind in crd_set.kinds()}
    return [f"{kind} ({group})" for group, kind in EMITTED_KINDS if (group, kind) not in served]


def _istio_layer(result: CompileResult, run: CheckRun) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for env in result.envs.values():
        placer = Placer(env)
        for art in env.artifacts:
            found = run.memo("istio", body_bytes(art.body), partial(check_object, art.body))
            out.extend(placer(art, f) for f in found)
        gateway = env.settings.egress.gateway
        analyzers = AnalyzerSettings(
            cluster_domain=env.settings.cluster_domain, dataplane=env.settings.dataplane,
            outbound_policy=env.settings.proxy.outbound_policy,
            kubernetes_services=(gateway.host(env.settings.cluster_domain),) if gateway is not None else ())
        for ident, finding in analyze([a.body for a in env.artifacts], analyzers):
            target = placer.by_identity(ident)
            if target is not None:
                out.append(placer(target, finding))
    return out


def _release_layer(result: CompileResult, run: CheckRun) -> list[Diagnostic]:
    return run_release(result, run.opts)


def threshold_reached(diags: Iterable[Diagnostic], fail_on: Severity) -> bool:
    return any(d.severity >= fail_on for d in diags)


def parse_layers(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(v for v in LAYERS if v in set(values)) if values else LAYERS
