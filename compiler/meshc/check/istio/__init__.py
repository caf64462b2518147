"""Layer 2 of `meshc check`: istiod's webhook rules and `istioctl analyze` analyzers, on manifest dicts.

Input: emitted (or hand-written, for `meshc lint`) ServiceEntry / WorkloadEntry / DestinationRule
manifests, `networking.istio.io/v1` (any served version), as plain dicts.
Output: `check_object` -> findings of the Go validators for one object (what the validating webhook
rejects or warns about, plus the single-object CA-certificate analyzer); `analyze` -> findings of
the cross-object analyzers, each paired with the identity of the object its path points into.
Invariants: pure functions; no exception for any dict shape (type errors are the CRD layer's,
compiler/meshc/crd.py); every code is stable and listed in `ALL_RULES` and docs/checks.md; objects of
other kinds (or other API groups) produce no findings.
Codes emitted: I0xx shared primitives, I1xx ServiceEntry, I2xx WorkloadEntry message, I3xx
DestinationRule, A4xx cross-object analyzers, G0xx the egress path's analyzers (egress.py); see
docs/checks.md for the full list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshc.check.istio import (
    analyzers,
    destinationrule,
    egress,
    endpoints,
    loadbalancer,
    metadata,
    primitives,
    scoping,
    serviceentry,
    trafficpolicy,
    workloadentry,
)
from meshc.check.istio.analyzers import AnalyzerSettings
from meshc.check.istio.codes import Rule
from meshc.check.istio.fields import as_map, as_str, effective_namespace, is_map
from meshc.check.istio.inventory import Identity, Inventory, identity_of, is_istio
from meshc.model.diagnostics import Finding

__all__ = ["ALL_RULES", "AnalyzerSettings", "Identity", "Rule", "analyze", "check_object", "identity_of"]

ALL_RULES: tuple[Rule, ...] = (
    *metadata.RULES, *scoping.RULES, *primitives.RULES, *serviceentry.RULES, *endpoints.RULES,
    *workloadentry.RULES, *destinationrule.RULES, *trafficpolicy.RULES, *loadbalancer.RULES, *analyzers.RULES,
    *egress.RULES,
)

_CHECKS: dict[str, Callable[[Mapping[str, Any], str], list[Finding]]] = {
    "ServiceEntry": serviceentry.check_service_entry,
    "WorkloadEntry": lambda manifest, _namespace: workloadentry.check_workload_entry_object(manifest),
    "DestinationRule": destinationrule.check_destination_rule,
}


def check_object(manifest: Mapping[str, Any]) -> list[Finding]:
    """Per-object webhook rules, dispatched by kind; reserved annotations short-circuit like istiod."""
    if not is_map(manifest) or not is_istio(manifest):
        return []
    check = _CHECKS.get(as_str(manifest.get("kind")))
    if check is None:
        return []
    rejected = metadata.check_metadata(as_map(manifest.get("metadata")))
    if rejected:
        return rejected
    return check(manifest, effective_namespace(manifest))


def analyze(manifests: Sequence[Mapping[str, Any]], settings: AnalyzerSettings | None = None
            ) -> list[tuple[Identity, Finding]]:
    """Cross-object analyzers over all manifests of one environment (the egress path's included)."""
    settings, inventory = settings or AnalyzerSettings(), Inventory(manifests)
    return [*analyzers.run_all(manifests, settings, inventory), *egress.run_all(inventory, settings)]
