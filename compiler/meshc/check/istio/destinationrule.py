"""DestinationRule rules of istiod's validating webhook (`ValidateDestinationRule`, istio-facts.md 4.4)
and the single-object `istioctl analyze` check `destinationrule.CaCertificateAnalyzer` (4.5).

Input: a DestinationRule manifest and its effective namespace.
Output: findings with paths under `spec`.
Invariants: subsets are checked with the same traffic-policy rules as the top level; the CA
analyzer looks at the top-level `tls` and top-level `portLevelSettings` only (subsets are not
checked, as in Istio).
Codes emitted: I301, I340-I343, I350 (IST0128), I351 (IST0129), everything of `trafficpolicy` and
`loadbalancer`, and the shared I010-I014, I020/I021, I030-I032.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error
from meshc.check.istio.fields import as_list, as_map, as_str, enum_index, is_map, is_set
from meshc.check.istio.primitives import AGENT, VALIDATION, check_labels, is_dns1123_label, wildcard_domain_error
from meshc.check.istio.scoping import check_export_to, check_selector
from meshc.check.istio.trafficpolicy import MUTUAL, SIMPLE, TLS_MODES, check_traffic_policy
from meshc.model.diagnostics import DataPath, Finding, Severity

_DR = f"{VALIDATION} ValidateDestinationRule"
_CA = "pkg/config/analysis/analyzers/destinationrule/ca-certificates.go CaCertificateAnalyzer"

HOST_INVALID = webhook_error("I301", "DestinationRule host is not a valid (wildcard) domain",
                             f"{_DR}; {AGENT} ValidateWildcardDomain",
                             "use a registry hostname such as api.example.com (or a *.suffix wildcard)")
SUBSET_NULL = webhook_error("I340", "null entry in subsets", _DR, "remove the empty item from subsets")
SUBSET_DUPLICATE = webhook_error("I341", "two subsets with the same name", _DR, "give each subset a unique name")
SUBSET_NAME = webhook_error("I342", "subset name empty or not a DNS-1123 label", f"{VALIDATION} validateSubsetName",
                            "use lowercase letters, digits and '-', e.g. v1")
EXPORT_WITH_SELECTOR = webhook_error(
    "I343", "DestinationRule with workloadSelector exported beyond its own namespace",
    f"{VALIDATION} validateExportTo", "with workloadSelector set exportTo to ['.'] only (or omit it)")
NO_CA_DESTINATION = Rule(
    "I350", Severity.WARNING, "TLS SIMPLE/MUTUAL without caCertificates, or with credentialName but no "
    "workloadSelector (destination level)", _CA,
    "set tls.caCertificates (or credentialName together with workloadSelector)", "IST0128")
NO_CA_PORT = Rule(
    "I351", Severity.WARNING, "TLS SIMPLE/MUTUAL without caCertificates, or with credentialName but no "
    "workloadSelector (port level)", _CA,
    "set caCertificates in the portLevelSettings tls (or credentialName together with workloadSelector)", "IST0129")

RULES: tuple[Rule, ...] = (HOST_INVALID, SUBSET_NULL, SUBSET_DUPLICATE, SUBSET_NAME, EXPORT_WITH_SELECTOR,
                           NO_CA_DESTINATION, NO_CA_PORT)


def check_destination_rule(manifest: Mapping[str, Any], namespace: str) -> list[Finding]:
    spec = as_map(manifest.get("spec"))
    out: list[Finding] = []
    error = wildcard_domain_error(as_str(spec.get("host")))
    if error:
        out.append(HOST_INVALID.at(("spec", "host"), error))
    if is_set(spec, "trafficPolicy"):
        out += check_traffic_policy(as_map(spec["trafficPolicy"]), namespace, ("spec", "trafficPolicy"))
    out += _subsets(as_list(spec.get("subsets")), namespace)
    out += _export_to(spec, namespace)
    if is_set(spec, "workloadSelector"):
        out += check_selector(spec["workloadSelector"], "matchLabels", ("spec", "workloadSelector"))
    return out + _ca_certificates(spec)


def _subsets(subsets: Any, namespace: str) -> list[Finding]:
    seen: set[str] = set()
    out: list[Finding] = []
    for i, subset in enumerate(subsets):
        path: DataPath = ("spec", "subsets", i)
        if not is_map(subset):
            out.append(SUBSET_NULL.at(path, "subset may not be null"))
            continue
        name = as_str(subset.get("name"))
        if name in seen:
            out.append(SUBSET_DUPLICATE.at((*path, "name"), f"duplicate subset names: {name}"))
        seen.add(name)
        if not is_dns1123_label(name):
            out.append(SUBSET_NAME.at((*path, "name"), f"subset name is invalid: {name!r}"))
        out += check_labels(subset.get("labels"), (*path, "labels"))
        if is_set(subset, "trafficPolicy"):
            out += check_traffic_policy(as_map(subset["trafficPolicy"]), namespace, (*path, "trafficPolicy"))
    return out


def _export_to(spec: Mapping[str, Any], namespace: str) -> list[Finding]:
    path = ("spec", "exportTo")
    out, accepted = check_export_to(namespace, spec.get("exportTo"), path, service_entry=False)
    if is_set(spec, "workloadSelector") and accepted:
        if namespace not in accepted:
            out.append(EXPORT_WITH_SELECTOR.at(path, "destination rule with workload selector cannot have "
                                                     "exportTo beyond current namespace"))
        elif len(accepted) > 1:
            out.append(EXPORT_WITH_SELECTOR.at(path, "destination rule with workload selector cannot have "
                                                     "multiple entries in exportTo"))
    return out


def _unverified(tls: Mapping[str, Any], has_selector: bool) -> str | None:
    """CaCertificateAnalyzer: SIMPLE/MUTUAL without CA, unless credentialName with a workload selector.

    Returns what goes wrong, or None when the analyzer stays silent.
    """
    if enum_index(tls.get("mode"), TLS_MODES) not in (SIMPLE, MUTUAL) or as_str(tls.get("caCertificates")):
        return None
    mode = as_str(tls.get("mode"))
    if not as_str(tls.get("credentialName")):
        return (f"TLS {mode} without caCertificates: the server certificate is checked only against the "
                "proxy's default (OS) trust bundle, not a CA you chose")
    if has_selector:
        return None
    return (f"TLS {mode} with credentialName but no workloadSelector: sidecars ignore credentialName, drop this "
            "TLS setting and send plaintext (only gateways use it)")


def _ca_certificates(spec: Mapping[str, Any]) -> list[Finding]:
    policy = as_map(spec.get("trafficPolicy"))
    selector = is_set(spec, "workloadSelector")
    out: list[Finding] = []
    problem = _unverified(as_map(policy.get("tls")), selector)
    if problem:
        out.append(NO_CA_DESTINATION.at(("spec", "trafficPolicy", "tls"), problem))
    for i, entry in enumerate(as_list(policy.get("portLevelSettings"))):
        problem = _unverified(as_map(as_map(entry).get("tls")), selector)
        if problem:
            port = as_map(as_map(entry).get("port")).get("number")
            path = ("spec", "trafficPolicy", "portLevelSettings", i, "tls")
            out.append(NO_CA_PORT.at(path, f"port {port}: {problem}"))
    return out
