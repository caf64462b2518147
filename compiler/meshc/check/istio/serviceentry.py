"""ServiceEntry rules of istiod's validating webhook (`ValidateServiceEntry`, istio-facts.md 4.2).

Input: a ServiceEntry manifest (dict as in Kubernetes YAML).
Output: findings with data paths into the manifest, in the Go evaluation order.
Invariants: an invalid workload selector returns at once (as Go does); the TCP-without-addresses
warning I111 assumes istiod's default PILOT_ENABLE_IP_AUTOALLOCATE=true, so it only fires for
resolution NONE or the opt-out label (the settings-aware variant is analyzer A405).
Codes emitted: I101..I128 below, the endpoint codes of `endpoints` (I114-I116, I201-I205), and the
shared I010-I014, I020/I021, I030-I032, I040-I042.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshc.check.istio.codes import Rule, webhook_error, webhook_warning
from meshc.check.istio.endpoints import check_dns_endpoint, check_workload_entry
from meshc.check.istio.fields import as_int, as_list, as_map, as_str, enum_index, is_map, is_set, labels_of
from meshc.check.istio.primitives import (
    HTTP_FAMILY,
    TCP_FAMILY,
    TLS_FAMILY,
    VALIDATION,
    check_port,
    check_port_name,
    check_protocol,
    fqdn_error,
    ip_subnet_error,
    is_partial_wildcard,
    protocol_of,
    wildcard_domain_error,
)
from meshc.check.istio.scoping import check_export_to, check_selector
from meshc.model.diagnostics import DataPath, Finding, Severity

_SRC = f"{VALIDATION} ValidateServiceEntry"
RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")
NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS = range(5)
LOCATIONS = ("MESH_EXTERNAL", "MESH_INTERNAL")
AUTOALLOCATE_LABEL = "networking.istio.io/enable-autoallocate-ip"
WAYPOINT_LABEL = "istio.io/use-waypoint"
_DYNAMIC_PROTOCOLS = frozenset({"HTTP", "TLS", "GRPC", "HTTP2"})

NO_HOSTS = webhook_error("I101", "ServiceEntry has no hosts", _SRC, "list at least one host")
HOST_STAR = webhook_error("I102", "ServiceEntry host is the bare wildcard '*'", _SRC,
                          "use a domain or a leading-label wildcard such as *.example.com")
HOST_INVALID = webhook_error("I103", "ServiceEntry host is not a valid (wildcard) domain",
                             f"{_SRC}; agent ValidateWildcardDomain",
                             "use DNS-1123 labels, '*' only as (prefix of) the first label, no numeric last label")
HOST_PARTIAL_WILDCARD = webhook_warning(
    "I104", "partial wildcard host (e.g. *foo.com) outside DYNAMIC_DNS", f"{_SRC}; agent ValidatePartialWildCard",
    "use a whole-label wildcard *.foo.com, or resolution DYNAMIC_DNS")
SELECTOR_AND_ENDPOINTS = webhook_error("I105", "both workloadSelector and endpoints are set", _SRC,
                                       "use endpoints for fixed addresses or workloadSelector for WorkloadEntries")
ADDRESS_INVALID = webhook_error("I106", "address is not an IP or CIDR block", f"{_SRC}; agent ValidateIPSubnet",
                                "use an IP such as 10.0.0.1 or a CIDR such as 10.0.0.0/24 (no hostnames)")
CIDR_RESOLUTION = webhook_error("I107", "CIDR addresses with resolution other than NONE/STATIC", _SRC,
                                "use plain IPs, or resolution NONE or STATIC")
PORT_NULL = webhook_error("I108", "null entry in ports", _SRC, "remove the empty item from ports")
PORT_NAME_DUPLICATE = webhook_error("I109", "two ports with the same name", _SRC, "give each port a unique name")
PORT_NUMBER_DUPLICATE = webhook_error("I110", "two ports with the same number", _SRC,
                                      "give each port a unique number")
TCP_NEEDS_ADDRESS = webhook_warning(
    "I111", "TCP or protocol-less port without addresses and without VIP auto-allocation", _SRC,
    "set addresses, set a protocol (HTTP/TLS...), or use resolution DNS/STATIC so a VIP is auto-allocated")
NONE_WITH_ENDPOINTS = webhook_error("I112", "resolution NONE with endpoints", _SRC,
                                    "remove endpoints or use resolution STATIC or DNS")
NONE_WITH_SELECTOR = webhook_warning("I113", "resolution NONE with workloadSelector", _SRC,
                                     "use resolution STATIC for selected WorkloadEntries")
DNS_HOST_NOT_FQDN = webhook_error("I117", "DNS resolution without endpoints needs FQDN hosts (no wildcards)",
                                  _SRC, "use concrete hostnames, add endpoints, or use resolution NONE/DYNAMIC_DNS")
DNS_RR_ENDPOINTS = webhook_error("I118", "DNS_ROUND_ROBIN with more than one endpoint", _SRC,
                                 "keep a single endpoint, or use resolution DNS to balance across several")
DNS_TCP_MULTI_HOST = webhook_warning("I119", "DNS ServiceEntry with addresses, a TCP port and several hosts",
                                     _SRC, "split the hosts into separate ServiceEntries")
DYNAMIC_HOST_NOT_WILDCARD = webhook_error("I120", "DYNAMIC_DNS host is not a wildcard", _SRC,
                                          "use a wildcard host such as *.example.com, or resolution DNS")
DYNAMIC_ADDRESSES = webhook_error("I121", "DYNAMIC_DNS with addresses", _SRC, "remove addresses")
DYNAMIC_ENDPOINTS = webhook_error("I122", "DYNAMIC_DNS with endpoints", _SRC, "remove endpoints")
DYNAMIC_PROTOCOL = webhook_error("I123", "DYNAMIC_DNS port protocol not HTTP, TLS, GRPC or HTTP2", _SRC,
                                 "set the port protocol to HTTP, TLS, GRPC or HTTP2")
DYNAMIC_WAYPOINT = webhook_error("I124", "DYNAMIC_DNS MESH_INTERNAL ServiceEntry bound to a waypoint", _SRC,
                                 "set label istio.io/use-waypoint: none, or use location MESH_EXTERNAL")
RESOLUTION_UNKNOWN = webhook_error("I125", "unsupported resolution", _SRC,
                                   "use NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS")
MULTI_HOST_NON_HTTP = webhook_error(
    "I126", "several hosts with a port that is neither HTTP-family nor TLS (unset protocol counts)", _SRC,
    "set protocol HTTP/HTTP2/GRPC/HTTPS/TLS on every port, split the hosts, or use resolution NONE")
LOCATION_UNKNOWN = webhook_error("I127", "unknown location", "ServiceEntry proto (decoding)",
                                 "use MESH_EXTERNAL or MESH_INTERNAL")
ENDPOINT_NULL = webhook_error("I128", "null entry in endpoints", _SRC, "remove the empty item from endpoints")

RULES: tuple[Rule, ...] = (
    NO_HOSTS, HOST_STAR, HOST_INVALID, HOST_PARTIAL_WILDCARD, SELECTOR_AND_ENDPOINTS, ADDRESS_INVALID,
    CIDR_RESOLUTION, PORT_NULL, PORT_NAME_DUPLICATE, PORT_NUMBER_DUPLICATE, TCP_NEEDS_ADDRESS,
    NONE_WITH_ENDPOINTS, NONE_WITH_SELECTOR, DNS_HOST_NOT_FQDN, DNS_RR_ENDPOINTS, DNS_TCP_MULTI_HOST,
    DYNAMIC_HOST_NOT_WILDCARD, DYNAMIC_ADDRESSES, DYNAMIC_ENDPOINTS, DYNAMIC_PROTOCOL, DYNAMIC_WAYPOINT,
    RESOLUTION_UNKNOWN, MULTI_HOST_NON_HTTP, LOCATION_UNKNOWN, ENDPOINT_NULL,
)


@dataclass(frozen=True, slots=True)
class _SE:
    """The fields every ServiceEntry rule looks at, decoded once."""

    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    resolution: int
    hosts: list[str]
    addresses: list[Any]
    endpoints: list[Any]
    ports: list[Any]
    has_selector: bool


def resolution_of(spec: Mapping[str, Any]) -> int:
    """Resolution enum number (0 NONE .. 4 DYNAMIC_DNS); unknown values give -1 or their number."""
    return enum_index(spec.get("resolution"), RESOLUTIONS)


def auto_allocates(spec: Mapping[str, Any], labels: Mapping[str, str], feature_on: bool = True) -> bool:
    """Whether istiod gives the SE a VIP (`ShouldV2AutoAllocateIPFromConfig`)."""
    return (feature_on and resolution_of(spec) != NONE
            and labels.get(AUTOALLOCATE_LABEL, "").lower() != "false")


def check_service_entry(manifest: Mapping[str, Any], namespace: str) -> list[Finding]:
    spec = as_map(manifest.get("spec"))
    se = _SE(spec, labels_of(as_map(manifest.get("metadata"))), resolution_of(spec),
             [as_str(h) for h in as_list(spec.get("hosts"))], list(as_list(spec.get("addresses"))),
             list(as_list(spec.get("endpoints"))), list(as_list(spec.get("ports"))),
             is_set(spec, "workloadSelector"))
    out: list[Finding] = []
    if se.has_selector:
        out = check_selector(spec["workloadSelector"], "labels", ("spec", "workloadSelector"))
        if any(f.severity == Severity.ERROR for f in out):
            return out
    if se.has_selector and se.endpoints:
        out.append(SELECTOR_AND_ENDPOINTS.at(("spec", "endpoints"), "only one of WorkloadSelector or Endpoints "
                                                                      "is allowed in Service Entry"))
    out += _hosts(se) + _addresses(se)
    ports_found, port_names = _ports(se)
    out += ports_found + _by_resolution(se, port_names) + _multi_host(se)
    if enum_index(spec.get("location"), LOCATIONS) not in (0, 1):
        out.append(LOCATION_UNKNOWN.at(("spec", "location"), f"unknown location {spec.get('location')!r}"))
    out += check_export_to(namespace, spec.get("exportTo"), ("spec", "exportTo"), service_entry=True)[0]
    return out


def _hosts(se: _SE) -> list[Finding]:
    if not se.hosts:
        return [NO_HOSTS.at(("spec", "hosts"), "service entry must have at least one host")]
    out: list[Finding] = []
    for i, host in enumerate(se.hosts):
        path = ("spec", "hosts", i)
        if host == "*":
            out.append(HOST_STAR.at(path, "invalid host *"))
        elif error := wildcard_domain_error(host):
            out.append(HOST_INVALID.at(path, error))
        elif is_partial_wildcard(host) and se.resolution != DYNAMIC_DNS:
            out.append(HOST_PARTIAL_WILDCARD.at(path, f"partial wildcard {host!r} not allowed"))
    return out


def _addresses(se: _SE) -> list[Finding]:
    out: list[Finding] = []
    for i, raw in enumerate(se.addresses):
        error = ip_subnet_error(as_str(raw))
        if error:
            out.append(ADDRESS_INVALID.at(("spec", "addresses", i), error))
    if any("/" in as_str(a) for a in se.addresses) and se.resolution not in (NONE, STATIC):
        out.append(CIDR_RESOLUTION.at(("spec", "addresses"),
                                      "CIDR addresses are allowed only for NONE/STATIC resolution types"))
    return out


def _ports(se: _SE) -> tuple[list[Finding], frozenset[str]]:
    """Port checks in Go order; also returns the declared port names (for endpoint `ports` keys)."""
    names: set[str] = set()
    numbers: set[Any] = set()
    tcp_warning = not se.addresses and not auto_allocates(se.spec, se.labels)
    out: list[Finding] = []
    for i, raw in enumerate(se.ports):
        path = ("spec", "ports", i)
        if not is_map(raw):
            out.append(PORT_NULL.at(path, "service entry port may not be null"))
            continue
        name, number, protocol = as_str(raw.get("name")), raw.get("number"), as_str(raw.get("protocol"))
        as_number = as_int(number)
        number_key: int | str = as_str(number) if as_number is None else as_number
        if name in names:
            out.append(PORT_NAME_DUPLICATE.at((*path, "name"), f"service entry port name {name!r} already defined"))
        if number_key in numbers:
            out.append(PORT_NUMBER_DUPLICATE.at((*path, "number"), f"service entry port {number} already defined"))
        names.add(name)
        numbers.add(number_key)
        if raw.get("targetPort") not in (None, 0):
            out += check_port(raw.get("targetPort"), (*path, "targetPort"), "targetPort")
        if tcp_warning and protocol in ("", "TCP"):
            out.append(TCP_NEEDS_ADDRESS.at(path, "addresses are required for ports serving TCP (or unset) "
                                                  "protocol when IP Autoallocation is not enabled"))
        out += check_port_name(name, (*path, "name"))
        out += check_protocol(protocol, (*path, "protocol"))
        out += check_port(number, (*path, "number"))
    return out, frozenset(names)


def _by_resolution(se: _SE, port_names: frozenset[str]) -> list[Finding]:
    if se.resolution == NONE:
        return _resolution_none(se)
    if se.resolution == STATIC:
        return _each_endpoint(se, lambda ep, path: check_workload_entry(ep, path, port_names))
    if se.resolution in (DNS, DNS_ROUND_ROBIN):
        return _resolution_dns(se, port_names)
    if se.resolution == DYNAMIC_DNS:
        return _resolution_dynamic(se)
    return [RESOLUTION_UNKNOWN.at(("spec", "resolution"),
                                  f"unsupported resolution type {se.spec.get('resolution')!r}")]


def _resolution_none(se: _SE) -> list[Finding]:
    out: list[Finding] = []
    if se.endpoints:
        out.append(NONE_WITH_ENDPOINTS.at(("spec", "endpoints"),
                                          "no endpoints should be provided for resolution type none"))
    if se.has_selector:
        out.append(NONE_WITH_SELECTOR.at(("spec", "workloadSelector"),
                                         "workloadSelector should not be set when resolution mode is NONE"))
    return out


def _each_endpoint(se: _SE, check: Callable[[Mapping[str, Any], DataPath], list[Finding]]) -> list[Finding]:
    out: list[Finding] = []
    for i, endpoint in enumerate(se.endpoints):
        path = ("spec", "endpoints", i)
        if is_map(endpoint):
            out += check(endpoint, path)
        else:
            out.append(ENDPOINT_NULL.at(path, "endpoint cannot be nil"))
    return out


def _resolution_dns(se: _SE, port_names: frozenset[str]) -> list[Finding]:
    out: list[Finding] = []
    mode = RESOLUTIONS[se.resolution]
    if not se.endpoints:
        bad = next((i for i, h in enumerate(se.hosts) if fqdn_error(h)), None)
        if bad is not None:
            out.append(DNS_HOST_NOT_FQDN.at(("spec", "hosts", bad), "hosts must be FQDN or contain only prefix "
                                            f"wildcards if no endpoints are provided for resolution mode {mode}"))
    if se.resolution == DNS_ROUND_ROBIN and len(se.endpoints) > 1:
        out.append(DNS_RR_ENDPOINTS.at(("spec", "endpoints"),
                                       f"there must only be 0 or 1 endpoint for resolution mode {mode}"))
    out += _each_endpoint(se, lambda ep, path: check_dns_endpoint(ep, path, port_names))
    if se.addresses and len(se.hosts) > 1:
        tcp = next((i for i, p in enumerate(se.ports) if _protocol(p) in TCP_FAMILY), None)
        if tcp is not None:
            out.append(DNS_TCP_MULTI_HOST.at(("spec", "ports", tcp), "service entry can not have more than one "
                                             "host specified simultaneously with address and tcp port"))
    return out


def _resolution_dynamic(se: _SE) -> list[Finding]:
    out = [DYNAMIC_HOST_NOT_WILDCARD.at(("spec", "hosts", i), f"host {h!r} must be wildcarded for resolution "
                                        "mode DYNAMIC_DNS") for i, h in enumerate(se.hosts) if not h.startswith("*")]
    if se.addresses:
        out.append(DYNAMIC_ADDRESSES.at(("spec", "addresses"), "addresses are not allowed for DYNAMIC_DNS"))
    if se.endpoints:
        out.append(DYNAMIC_ENDPOINTS.at(("spec", "endpoints"), "endpoints are not allowed for DYNAMIC_DNS"))
    for i, port in enumerate(se.ports):
        if is_map(port) and _protocol(port) not in _DYNAMIC_PROTOCOLS:
            out.append(DYNAMIC_PROTOCOL.at(("spec", "ports", i, "protocol"), "only HTTP, TLS, GRPC, and HTTP2 "
                                           "protocols are supported for resolution type DYNAMIC_DNS"))
    waypoint = se.labels.get(WAYPOINT_LABEL)
    if enum_index(se.spec.get("location"), LOCATIONS) == 1 and waypoint not in (None, "none"):
        out.append(DYNAMIC_WAYPOINT.at(("metadata", "labels", WAYPOINT_LABEL), "DYNAMIC_DNS with MESH_INTERNAL "
                                       "is not supported through a waypoint"))
    return out


def _protocol(port: Any) -> str | None:
    return protocol_of(as_map(port).get("protocol"))


def _multi_host(se: _SE) -> list[Finding]:
    if se.resolution == NONE or len(se.hosts) < 2:
        return []
    for i, port in enumerate(se.ports):
        protocol = _protocol(port)
        if is_map(port) and protocol not in HTTP_FAMILY and protocol not in TLS_FAMILY:
            return [MULTI_HOST_NON_HTTP.at(("spec", "ports", i), "multiple hosts provided with non-HTTP, "
                                           f"non-TLS ports (port protocol {as_str(port.get('protocol'))!r})")]
    return []

