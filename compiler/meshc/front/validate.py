"""Pass `validate`: merged `ServiceDecl`s -> typed `Service`s, or diagnostics at the declaration.

Input: schema-valid merged declarations of one environment and its settings.
Output: `Service` values that expand can trust. Invariants: a Service is only built when its
declaration has no error; derived values (port names, WorkloadEntry names, namespaces) are fixed here.
Codes (docs/declarations.md): V001-V033, each a way a declaration would produce Istio config that is
rejected or that silently does something other than what its author meant
(istio-facts.md section 9).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from meshc.front.checker import Checker
from meshc.front.declschema import did_you_mean
from meshc.front.declschema import validate as schema_validate
from meshc.front.validate_egress import check_egress, effective_egress
from meshc.front.validate_tls import check_tls
from meshc.model.core import (
    Consumer,
    Endpoint,
    EnvSettings,
    Port,
    Service,
    ServiceDecl,
    Subset,
    Tls,
    TrafficPolicy,
)
from meshc.model.diagnostics import DataPath, Diagnostic, Severity
from meshc.model.netaddr import UNIX_PREFIX, is_cidr, is_fqdn, is_ip, is_unix
from meshc.model.values import HTTP_FAMILY, TLS_FAMILY, duration_nanos, label_key_error, label_value_error

_DURATIONS = {"connectTimeout", "maxConnectionDuration", "idleTimeout", "time", "interval",
              "baseEjectionTime", "duration", "ttl"}
_UNSAFE = re.compile(r"[^a-z0-9]+")


def validate_service(env: EnvSettings, decl: ServiceDecl) -> tuple[Service | None, list[Diagnostic]]:
    """One service on its own (cacheable: depends only on the declaration and the environment)."""
    chk = Checker(env, decl)
    _check(chk)
    return (None if chk.errors else build_service(env, decl)), chk.diags


def cross_check(env: EnvSettings, services: list[Service]) -> list[Diagnostic]:
    """Rules across services: two services must not produce the same WorkloadEntry."""
    seen: dict[tuple[str, str], str] = {}
    out: list[Diagnostic] = []
    for svc in services:
        chk = Checker(env, svc.decl)
        _check_we_names(chk, svc, seen)
        out.extend(chk.diags)
    return out


def validate_env(env: EnvSettings, decls: list[ServiceDecl]) -> tuple[list[Service], list[Diagnostic]]:
    services: list[Service] = []
    diags: list[Diagnostic] = []
    for decl in decls:
        svc, problems = validate_service(env, decl)
        diags.extend(problems)
        if svc is not None:
            services.append(svc)
    return services, diags + cross_check(env, services)


def _check(chk: Checker) -> None:
    problems = schema_validate("declarations#service", chk.data, chk.decl.layers[0].file, None)
    for d in problems:  # merged result must be complete; place it via provenance
        path = _parse_shown(d.path)
        chk.add(d.code, path, d.message, d.hint)
    if chk.errors:
        return
    for fn in (_hosts, _addresses, _ports, _endpoints, _durations, _labels, _annotations, _budget, _failover,
               _shadowed):
        fn(chk)
    check_tls(chk, _ports_by_number(chk.data))
    check_egress(chk)


_LABEL_MAPS = ("labels", "clientSelector", "selector")
# The API server refuses an object whose annotations (keys + values) exceed 256 KiB
# (k8s.io/apimachinery ValidateAnnotationsSize, TotalAnnotationSizeLimitB).
ANNOTATIONS_LIMIT = 256 * 1024


def _labels(chk: Checker) -> None:
    """Every label map (endpoint and subset labels, clientSelector) as Kubernetes validates it."""
    def walk(value: Any, path: DataPath) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                if key in _LABEL_MAPS and isinstance(sub, dict):
                    for k, v in sub.items():
                        problem = label_key_error(str(k)) or (
                            label_value_error(v) if isinstance(v, str) else "label values must be strings")
                        if problem:
                            chk.add("V028", (*path, key, k), problem,
                                    "label keys are [prefix/]name (name: at most 63 of letters, digits, '-', '_', "
                                    "'.'); values at most 63 of the same, or empty")
                else:
                    walk(sub, (*path, key))
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                walk(sub, (*path, i))
    walk(chk.data, ())


def _annotations(chk: Checker) -> None:
    """owner and description become annotations: keep them under the API server's limit."""
    size = sum(len(k) + len(str(chk.data.get(f) or "").encode())
               for f, k in (("owner", "meshc.dev/owner"), ("description", "meshc.dev/description")))
    if size > ANNOTATIONS_LIMIT:
        field = "description" if len(str(chk.data.get("description") or "")) else "owner"
        chk.add("V029", (field,), f"{field} is {size:,} bytes with its annotation key: the Kubernetes API server "
                f"refuses annotations over {ANNOTATIONS_LIMIT:,} bytes (256 KiB)",
                "shorten it; link to a document for long text")


# What one declaration may expand to (docs/declarations.md#limits): Envoy clusters (a cluster per
# host, port and subset, as istiod builds them) and endpoint entries (each cluster lists the
# service's endpoints). Istio's own maxima (256 hosts, 256 ports, 4,096 endpoints) multiply to
# over a million entries and hundreds of MB of proxy configuration for one service.
MAX_CLUSTERS = 1024
MAX_ENDPOINT_ENTRIES = 65_536


def _budget(chk: Checker) -> None:
    hosts = len(chk.data.get("hosts") or [])
    ports = len(chk.data.get("ports") or [])
    subsets = len(chk.data.get("subsets") or [])
    endpoints = max(len(chk.data.get("endpoints") or []), 1)
    clusters = hosts * ports * (1 + subsets)
    entries = clusters * endpoints
    if clusters > MAX_CLUSTERS or entries > MAX_ENDPOINT_ENTRIES:
        chk.add("V031", (), f"the service expands to {clusters:,} Envoy clusters ({hosts} hosts x {ports} ports x "
                f"{1 + subsets} subsets and default) with {entries:,} endpoint entries; one declaration may expand "
                f"to at most {MAX_CLUSTERS:,} clusters and {MAX_ENDPOINT_ENTRIES:,} entries",
                "split it into several services (by host, port range or endpoint group)")


def _parse_shown(shown: str) -> DataPath:
    out: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", shown):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(out)


def _hosts(chk: Checker) -> None:
    res = chk.data.get("resolution", "none")
    for i, host in enumerate(chk.data["hosts"]):
        path = ("hosts", i)
        if host == "*" or ("*" in host and not host.startswith("*.")) or "*" in host[1:]:
            chk.add("V002", path, f"host {host!r} is not allowed: only a leading '*.' wildcard is",
                    "use a concrete name or a wildcard such as *.example.com")
        elif not is_fqdn(host, wildcard=True):
            if is_ip(host) or is_cidr(host):
                chk.add("V002", path, f"host {host!r} is an IP address, not a DNS name",
                        "put IP addresses under addresses:, and use a DNS name here")
            else:
                chk.add("V002", path, f"host {host!r} is not a valid DNS name (labels of letters, digits and "
                        "'-', at most 63 characters each, separated by dots)",
                        "write the host name alone: no scheme, port, path, spaces or control characters")
        elif "." not in host.rstrip("."):
            chk.add("V001", path, f"host {host!r} has no dot: a DestinationRule naming it would be "
                    "expanded to a cluster-local name and never apply",
                    f"use a fully qualified name, e.g. {host}.example.internal")
        elif host.startswith("*.") and res in ("dns", "dns-round-robin") and not chk.data.get("endpoints"):
            chk.add("V003", path, f"wildcard host {host!r} cannot be resolved with resolution {res}",
                    "use resolution: none for wildcard egress, or list endpoints to resolve")
    if len(chk.data["hosts"]) > 1 and res != "none":
        for j, port in enumerate(chk.data["ports"]):
            proto = port["protocol"].upper()
            if proto not in HTTP_FAMILY | TLS_FAMILY:
                chk.add("V020", ("ports", j, "protocol"), f"several hosts with resolution {res} need "
                        f"HTTP or TLS ports; port {port['number']} is {proto}",
                        "split the service into one per host, or use an HTTP/TLS protocol")


def _addresses(chk: Checker) -> None:
    res = chk.data.get("resolution", "none")
    for i, addr in enumerate(chk.data.get("addresses", [])):
        if is_cidr(addr):
            if res not in ("none", "static"):
                chk.add("V021", ("addresses", i), f"CIDR {addr!r} is only allowed with resolution "
                        "none or static", "use a single IP, or change the resolution")
        elif not is_ip(addr):
            chk.add("V022", ("addresses", i), f"address {addr!r} is not an IP address or CIDR",
                    "write an IP (10.0.0.1) or CIDR (10.0.0.0/24); DNS names go under hosts:")


def _ports_by_number(data: Mapping[str, Any]) -> dict[int, Port]:
    return {p.number: p for p in _make_ports(data)}


def _make_ports(data: Mapping[str, Any]) -> list[Port]:
    return [Port(p["number"], p["protocol"].upper(),
                 p.get("name") or f"{p['protocol'].lower().replace('_', '-')}-{p['number']}",
                 p.get("targetPort")) for p in data["ports"]]


def _ports(chk: Checker) -> None:
    seen_num: dict[int, int] = {}
    seen_name: dict[str, int] = {}
    for i, port in enumerate(_make_ports(chk.data)):
        if port.number in seen_num:
            chk.add("V004", ("ports", i), f"port {port.number} is declared twice", "remove one")
        if port.name in seen_name:
            chk.add("V004", ("ports", i), f"port name {port.name!r} is used twice",
                    "give the ports different names")
        seen_num.setdefault(port.number, i)
        seen_name.setdefault(port.name, i)
    numbers = set(seen_num)
    for scope, policy in _policies(chk.data):
        for j, entry in enumerate(policy.get("portLevel", [])):
            if entry["port"] not in numbers:
                chk.add("V018", scope + ("portLevel", j, "port"), f"portLevel names port "
                        f"{entry['port']}, which the service does not declare",
                        f"use one of the service ports: {sorted(numbers)}")


def _policies(data: Mapping[str, Any]) -> Iterator[tuple[DataPath, Mapping[str, Any]]]:
    if data.get("trafficPolicy"):
        yield ("trafficPolicy",), data["trafficPolicy"]
    for i, sub in enumerate(data.get("subsets", [])):
        if sub.get("trafficPolicy"):
            yield ("subsets", i, "trafficPolicy"), sub["trafficPolicy"]


# failoverPriority labels Istio fills from an endpoint's locality and network (pilot's
# LocalityLbSetting handling, pkg/config/labels: topology.istio.io/network, topology.kubernetes.io/region
# and zone, topology.istio.io/subzone), not from its labels.
_TOPOLOGY = {"topology.istio.io/network": ("network",), "topology.kubernetes.io/region": ("locality", "region"),
             "topology.kubernetes.io/zone": ("locality", "zone"), "topology.istio.io/subzone": ("locality", "subzone")}


def _carries(ep: Mapping[str, Any], selector: Mapping[str, Any], label: str) -> bool:
    if label in _TOPOLOGY:
        value: Any = ep
        for key in _TOPOLOGY[label]:
            value = value.get(key) if isinstance(value, Mapping) else None
        return bool(value)
    return label in (ep.get("labels") or {}) or label in selector


def _failover(chk: Checker) -> None:
    """V032: a failoverPriority label no endpoint of the service carries orders nothing: every
    endpoint matches the client equally on it, so Istio's failover priority ignores it."""
    data = chk.data
    endpoints = data.get("endpoints") or []
    selector = (data.get("selector") or {}) if data.get("endpointsAs") == "workloadEntries" else {}
    levels: list[tuple[DataPath, Mapping[str, Any]]] = []
    for path, policy in _policies(data):
        levels.append((path, policy))
        levels.extend(((*path, "portLevel", j), entry) for j, entry in enumerate(policy.get("portLevel") or []))
    for path, policy in levels:
        setting = ((policy.get("loadBalancer") or {}).get("localityLbSetting") or {})
        for i, entry in enumerate(setting.get("failoverPriority") or []):
            label = str(entry).split("=", 1)[0]
            if not any(_carries(ep, selector, label) for ep in endpoints):
                where = (*path, "loadBalancer", "localityLbSetting", "failoverPriority", i)
                chk.add("V032", where, f"failoverPriority label {label!r} is carried by no endpoint of this "
                        "service, so it orders nothing", f"set {label!r} on the endpoints that should be "
                        "preferred (labels:, or locality:/network: for topology labels), or remove it",
                        Severity.WARNING)


# Port-level settings replace these service-level settings wholesale for their port
# (istio-facts.md 3.2 portLevelSettings and pitfall 22; pilot/pkg/networking/core/cluster_traffic_policy.go).
_REPLACED_PER_PORT = ("connectionPool", "outlierDetection")


def _shadowed(chk: Checker) -> None:
    """V033: a service-level connectionPool/outlierDetection that a portLevel entry shadows: Istio
    applies the port's entry instead of the service-level policy (nothing is inherited), so a
    setting the entry does not repeat never reaches that port."""
    for scope, policy in _policies(chk.data):
        for key in _REPLACED_PER_PORT:
            if not policy.get(key):
                continue
            for j, entry in enumerate(policy.get("portLevel") or []):
                if entry.get(key):
                    continue
                port = entry.get("port")
                chk.add("V033", (*scope, key), f"{key} never applies to port {port}: its portLevel entry "
                        f"replaces the service-level policy for that port wholesale and sets no {key}",
                        f"repeat the {key} under the portLevel entry for port {port}, or move it there "
                        "if it is meant for that port only", Severity.WARNING,
                        involves=((*scope, "portLevel", j),))


def _endpoints(chk: Checker) -> None:
    data, res = chk.data, chk.data.get("resolution", "none")
    eps = data.get("endpoints", [])
    if eps and res == "none":
        chk.add("V005", ("endpoints",), "resolution none forwards to the address the client "
                "dialled, so endpoints would be ignored (Istio rejects them)",
                "set resolution: static (IP endpoints) or dns (hostname endpoints)")
        return
    if len(eps) > 1 and res == "dns-round-robin":
        chk.add("V006", ("endpoints", 1), "resolution dns-round-robin uses at most one endpoint",
                "use resolution: dns to balance over several endpoints")
    names = {p.name for p in _make_ports(data)}
    seen: dict[str, int] = {}
    for i, ep in enumerate(eps):
        _endpoint(chk, i, ep, res, names, len(data["ports"]))
        if ep["address"] in seen:
            chk.add("V023", ("endpoints", i, "address"), f"endpoint {ep['address']!r} is listed twice",
                    "remove one of them")
        seen.setdefault(ep["address"], i)
    if data.get("endpointsAs") == "workloadEntries" and data.get("location", "external") == "external":
        chk.add("V011", ("endpointsAs",), "WorkloadEntries must be selected by an internal "
                "service (location: internal); Istio pairs them with MESH_INTERNAL entries",
                "set location: internal, or use endpointsAs: inline")


def _endpoint(chk: Checker, i: int, ep: Mapping[str, Any], res: str, names: set[str],
              nports: int) -> None:
    addr = ep["address"]
    where = ("endpoints", i, "address")
    if res == "static" and not (is_ip(addr) or is_unix(addr)):
        looks_like_ip = bool(addr) and all(c in "0123456789abcdefABCDEF.:/" for c in addr) and any(
            c in ".:" for c in addr) and any(c.isdigit() for c in addr)
        chk.add("V007", where, f"endpoint {addr!r} is not an IP: resolution static needs IPs",
                "fix the address (an IPv4 address is four numbers 0-255)" if looks_like_ip
                else "use resolution: dns for hostname endpoints")
    if res.startswith("dns") and not (is_ip(addr) or is_fqdn(addr)):
        chk.add("V008", where, f"endpoint {addr!r} is neither an IP nor a DNS name",
                "write an IP address or a host name")
    if is_unix(addr):
        rest = addr[len(UNIX_PREFIX):]
        if ep.get("ports") or nports != 1 or not rest.startswith(("/", "@")) or rest.endswith("/"):
            chk.add("V024", where, "a unix socket endpoint needs an absolute path (or @abstract), "
                    "no ports map and a service with exactly one port", "fix the socket endpoint")
    for key in ep.get("ports", {}):
        if key not in names:
            chk.add("V009", ("endpoints", i, "ports", key), f"endpoint port {key!r} is not a port "
                    f"name of this service{did_you_mean(key, sorted(names))}",
                    f"use one of: {', '.join(sorted(names))}")
    net = ep.get("network")
    if net and chk.env.networks and net not in chk.env.networks:
        chk.add("V010", ("endpoints", i, "network"), f"network {net!r} is not declared in "
                f"env.yaml{did_you_mean(net, list(chk.env.networks))}",
                f"use one of: {', '.join(chk.env.networks)}")
    if ep.get("serviceAccount") and chk.data.get("location", "external") == "external":
        chk.add("V027", ("endpoints", i, "serviceAccount"), "a serviceAccount on an external "
                "service's endpoint never gets Istio mTLS (MESH_EXTERNAL disables auto-mTLS)",
                "set location: internal for VMs that run a sidecar", Severity.WARNING)


def _durations(chk: Checker) -> None:
    for scope, policy in _policies(chk.data):
        for path, key, value in _walk(policy, scope):
            if key in _DURATIONS and isinstance(value, str):
                ns = duration_nanos(value)
                if ns is None or ns < 1_000_000 or ns % 1_000_000:
                    chk.add("V019", path, f"duration {value!r} must be at least 1ms and a whole "
                            "number of milliseconds", "write e.g. 250ms, 5s or 1m")


def _walk(value: Any, path: DataPath) -> Iterator[tuple[DataPath, str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield path + (k,), k, v
            yield from _walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, path + (i,))


def _check_we_names(chk: Checker, svc: Service, seen: dict[tuple[str, str], str]) -> None:
    if svc.endpoints_as != "workloadEntries":
        return
    for i, ep in enumerate(svc.endpoints):
        key = (svc.namespace, f"{svc.name}-{ep.name}")
        if key in seen:
            chk.add("V025", ("endpoints", i), f"WorkloadEntry name {key[1]!r} is also produced by "
                    f"service {seen[key]!r}", "give the endpoint a distinct name:")
        seen.setdefault(key, svc.name)


def endpoint_name(ep: Mapping[str, Any]) -> str:
    if ep.get("name"):
        return str(ep["name"])
    return _UNSAFE.sub("-", ep["address"].lower()).strip("-")[:40].strip("-") or "endpoint"


def build_service(env: EnvSettings, decl: ServiceDecl) -> Service:
    d = decl.data
    tls = d.get("tls")
    return Service(
        name=d["name"], namespace=d.get("namespace", env.namespace), owner=d.get("owner", ""),
        description=d.get("description", ""), hosts=tuple(d["hosts"]),
        addresses=tuple(d.get("addresses", ())), location=d.get("location", "external"),
        resolution=d.get("resolution", "none"), ports=tuple(_make_ports(d)),
        endpoints=tuple(_make_endpoint(ep) for ep in d.get("endpoints", ())),
        endpoints_as=d.get("endpointsAs", "inline"),
        selector=d.get("selector") or {"app": d["name"]},
        tls=_make_tls(tls) if tls else None, client_selector=d.get("clientSelector", {}),
        traffic_policy=TrafficPolicy.of(d.get("trafficPolicy")),
        subsets=tuple(Subset(s["name"], s.get("labels", {}), TrafficPolicy.of(s.get("trafficPolicy")))
                      for s in d.get("subsets", ())),
        export_to=tuple(d.get("exportTo", ())), decl=decl, egress=effective_egress(env, d),
        consumers=tuple(Consumer(c["namespace"], c.get("serviceAccount")) for c in d.get("consumers", ())))


def _make_endpoint(ep: Mapping[str, Any]) -> Endpoint:
    loc = ep.get("locality") or {}
    parts = [loc.get("region", ""), loc.get("zone", ""), loc.get("subzone", "")]
    while parts and not parts[-1]:
        parts.pop()
    return Endpoint(ep["address"], endpoint_name(ep), ep.get("ports", {}), ep.get("labels", {}),
                    "/".join(parts), ep.get("weight"), ep.get("network"), ep.get("serviceAccount"))


def _make_tls(t: Mapping[str, Any]) -> Tls:
    return Tls(t["mode"], t.get("sni"), tuple(t.get("subjectAltNames", ())), t.get("credentialName"),
               t.get("caCertificates"), t.get("clientCertificate"), t.get("privateKey"),
               t.get("insecureSkipVerify"))
