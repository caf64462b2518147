"""Cross-object analyzers of the egress path (docs/egress.md): gateway, waypoint and who may bypass them.

Input: the `Inventory` of one environment's manifests (ServiceEntry, WorkloadEntry, DestinationRule,
Gateway, VirtualService, Sidecar of networking.istio.io; AuthorizationPolicy of security.istio.io;
core/v1 Namespace) and `AnalyzerSettings` (its `dataplane` and `outbound_policy`: None when unknown,
as in `meshc lint`, where a Namespace labelled `istio.io/dataplane-mode: ambient` says ambient).
Output: `(identity, finding)` pairs; the identity names the object the finding's path points into.
Invariants: every analyzer indexes first (Gateways by namespace/name, VirtualServices by
namespace/host, DestinationRules by host, Sidecar egress hosts by namespace/host pattern) and never
compares all pairs; output order is deterministic (rule order, then input order). These are meshc's
own rules, not `istioctl analyze`'s: no IST code.
Codes emitted: G001 gateway VirtualService disagrees with the Gateway's servers or the ServiceEntry,
G002 mesh route's subset missing or its TLS disagrees with the Gateway server, G003 waypoint-bound
ServiceEntry with a wildcard host or exportTo, G004 traffic that can bypass the gateway (warning),
G005 VM workload in an ambient environment, G006 waypoint-bound ServiceEntry with resolution NONE
(warning).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshc.check.istio.analyzers import AnalyzerSettings, Result
from meshc.check.istio.codes import Rule
from meshc.check.istio.fields import as_int, as_list, as_map, as_str, has_items, is_map, labels_of, metadata_of
from meshc.check.istio.inventory import Inventory, Item, ServiceEntryView, is_istio, qualify
from meshc.check.istio.scoping import Scope, scope_of, visible_in
from meshc.check.istio.serviceentry import DYNAMIC_DNS, NONE
from meshc.model.diagnostics import DataPath, Severity

_EGRESS_TASK = "istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/"
_GATEWAY_GO = "pilot/pkg/networking/core/gateway.go"
_AMBIENT_EGRESS = "istio.io/latest/docs/ambient/usage/egress-gateway/"

# G001: istiod binds a VirtualService to a Gateway server when one of its hosts matches a server
# host (pickMatchingGatewayHosts) and a match's port is the server's port (isPortMatch); an HTTP or
# TLS-terminating HTTPS server reads only `http` routes, a PASSTHROUGH server only `tls` routes, any
# other server only `tcp` routes (buildGatewayTCPBasedFilterChains, createGatewayTCPFilterChainOpts).
GATEWAY_MISMATCH = Rule(
    "G001", Severity.ERROR, "a VirtualService bound to a Gateway and the mesh disagrees with the Gateway's "
    "servers or with the ServiceEntry of its host",
    f"{_GATEWAY_GO} buildGatewayTCPBasedFilterChains, createGatewayTCPFilterChainOpts, pickMatchingGatewayHosts; "
    f"{_EGRESS_TASK}",
    "make the VirtualService's hosts, match ports and sniHosts those of a Gateway server (tls routes for "
    "PASSTHROUGH servers, tcp routes for TLS/TCP servers, http routes for HTTP/HTTPS ones) and of the "
    "ServiceEntry's hosts and ports")
# G002: the egress-gateway task's DestinationRule for the gateway: subset with portLevelSettings
# tls ISTIO_MUTUAL and sni = the external host for an ISTIO_MUTUAL server; no TLS for PASSTHROUGH.
SUBSET_MISMATCH = Rule(
    "G002", Severity.ERROR, "the mesh route to the egress gateway names a subset no DestinationRule defines, "
    "or the subset's TLS disagrees with the Gateway server",
    f"{_EGRESS_TASK} (DestinationRule egressgateway-for-cnn); {_GATEWAY_GO} getSNIHostsForServer",
    "define the subset in the gateway host's DestinationRule, with portLevelSettings tls mode ISTIO_MUTUAL and "
    "sni one of the server's hosts for an ISTIO_MUTUAL server, and no TLS for a PASSTHROUGH server")
# G003: istio/api#3517 (ambient caveats: ServiceEntry exportTo is not used, wildcard hosts are not
# supported) and the Istio 1.28 change notes (waypoints: wildcard hosts only with DYNAMIC_DNS).
WAYPOINT_UNSUPPORTED = Rule(
    "G003", Severity.ERROR, "waypoint-bound ServiceEntry with a wildcard host (not DYNAMIC_DNS) or exportTo",
    "istio/api#3517 (ambient mode caveats); Istio 1.28 change notes (ambient, ServiceEntry); "
    f"{_AMBIENT_EGRESS}",
    "use exact hosts (or resolution DYNAMIC_DNS for a wildcard) and drop exportTo; restrict callers with an "
    "AuthorizationPolicy on the ServiceEntry instead")
# G004: sidecars route a host through the gateway only when they see the VirtualService
# (exportTo, Sidecar egress hosts); ALLOW_ANY sends hosts they do not see to PassthroughCluster.
GATEWAY_BYPASS = Rule(
    "G004", Severity.WARNING, "traffic can reach the external host without the egress gateway or waypoint",
    f"{_EGRESS_TASK} (Additional security considerations); "
    "istio.io/latest/docs/reference/config/networking/sidecar/ (egress hosts); "
    "istio.io/latest/docs/tasks/traffic-management/egress/egress-control/ (ALLOW_ANY)",
    "export the gateway VirtualService to every namespace that sees the ServiceEntry (and import it in their "
    "Sidecars), or narrow the ServiceEntry's exportTo; with consumers, set outboundTrafficPolicy REGISTRY_ONLY")
# G005: istio.io/latest/blog/2024/ambient-reaches-ga/ (virtual machines are not part of ambient GA).
AMBIENT_VM = Rule(
    "G005", Severity.ERROR, "a VM workload (WorkloadEntry, or ServiceEntry with workloadSelector or "
    "serviceAccount endpoints) in an ambient environment",
    "istio.io/latest/blog/2024/ambient-reaches-ga/ (VM support is not part of ambient)",
    "keep VM workloads in a sidecar environment, or declare the VM's service as external endpoints without "
    "serviceAccount")
# G006: Istio 1.28 change notes: a waypoint-bound ServiceEntry with resolution NONE is passthrough.
WAYPOINT_PASSTHROUGH = Rule(
    "G006", Severity.WARNING, "waypoint-bound ServiceEntry with resolution NONE (it becomes passthrough)",
    f"Istio 1.28 change notes (ambient: resolution NONE ServiceEntries bound to a waypoint); {_AMBIENT_EGRESS}",
    "use resolution DNS (or STATIC with endpoints) so the waypoint has a cluster for the host")

RULES: tuple[Rule, ...] = (GATEWAY_MISMATCH, SUBSET_MISMATCH, WAYPOINT_UNSUPPORTED, GATEWAY_BYPASS, AMBIENT_VM,
                           WAYPOINT_PASSTHROUGH)

USE_WAYPOINT = "istio.io/use-waypoint"
DATAPLANE_MODE = "istio.io/dataplane-mode"
SECURITY_GROUP = "security.istio.io"
MESH = "mesh"
PASSTHROUGH_MODES = frozenset({"PASSTHROUGH", "AUTO_PASSTHROUGH"})
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY"})
ROUTE_KINDS = ("http", "tls", "tcp")


def run_all(inventory: Inventory, settings: AnalyzerSettings) -> list[Result]:
    index = _Index(inventory, settings)
    return [*gateway_routes(index), *subsets_to_gateway(index), *waypoint_entries(index),
            *gateway_bypass(index), *ambient_vms(index), *waypoint_passthrough(index)]


# --- reading the objects -------------------------------------------------------------------------------

def host_matches(a: str, b: str) -> bool:
    """Istio's `host.Name.Matches` both ways: equal, `*`, or one wildcard covering the other."""
    if a == b or a == "*" or b == "*":
        return True
    if a.startswith("*") and b.startswith("*"):
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    return b.startswith("*") and a.endswith(b[1:])


@dataclass(frozen=True, slots=True)
class _Server:
    index: int
    number: int
    protocol: str
    hosts: tuple[str, ...]  # as written, `ns/host` or `host`
    mode: str  # tls.mode, "" without tls

    @property
    def passthrough(self) -> bool:
        return self.mode in PASSTHROUGH_MODES

    @property
    def reads(self) -> str:
        """The route kind istiod builds this server's filter chain from."""
        if self.protocol in HTTP_PROTOCOLS or (self.protocol == "HTTPS" and not self.passthrough):
            return "http"
        return "tls" if self.passthrough else "tcp"

    def names(self, gateway_ns: str, vs_ns: str) -> list[str]:
        """Server hosts a VirtualService of `vs_ns` may bind (namespace part checked, then stripped)."""
        out = []
        for host in self.hosts:
            ns, _, name = host.rpartition("/")
            if not ns or ns == "*" or ns == vs_ns or (ns == "." and vs_ns == gateway_ns):
                out.append(name)
        return out

    def serves(self, host: str, gateway_ns: str, vs_ns: str) -> bool:
        return any(host_matches(name, host) for name in self.names(gateway_ns, vs_ns))

    def describe(self) -> str:
        return f"{self.number}/{self.protocol or '(no protocol)'}" + (f" tls {self.mode}" if self.mode else "")


@dataclass(frozen=True, slots=True)
class _Gateway:
    item: Item
    servers: tuple[_Server, ...]

    def on_port(self, port: int) -> list[_Server]:
        return [s for s in self.servers if s.number == port]

    def describe(self) -> str:
        return ", ".join(s.describe() for s in self.servers) or "no servers"


def _gateway(item: Item) -> _Gateway:
    servers = []
    for i, server in enumerate(as_list(item.spec.get("servers"))):
        if is_map(server):
            port = as_map(server.get("port"))
            servers.append(_Server(i, as_int(port.get("number")) or 0, as_str(port.get("protocol")).upper(),
                                   tuple(as_str(h) for h in as_list(server.get("hosts"))),
                                   as_str(as_map(server.get("tls")).get("mode")).upper()))
    return _Gateway(item, tuple(servers))


@dataclass(frozen=True, slots=True)
class _Match:
    path: DataPath  # the match (or the route, when it has no match)
    port: int
    gateways: tuple[str, ...]  # `mesh` or `ns/name`
    sni_hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Route:
    kind: str
    path: DataPath  # ("spec", kind, i)
    matches: tuple[_Match, ...]
    destinations: tuple[tuple[DataPath, Mapping[str, Any]], ...]  # (path of route[j], destination)


@dataclass(frozen=True, slots=True)
class _VirtualService:
    item: Item
    scope: Scope
    hosts: tuple[str, ...]
    gateways: tuple[tuple[int, str], ...]  # (index in spec.gateways, `ns/name`), mesh left out
    routes: tuple[_Route, ...]


def _gateway_ref(ref: str, namespace: str) -> str:
    return ref if ref == MESH or "/" in ref else f"{namespace}/{ref}"


def _virtual_service(item: Item) -> _VirtualService | None:
    """A VirtualService bound to the mesh and to at least one Gateway, else None."""
    spec, ns = item.spec, item.namespace
    refs = [_gateway_ref(as_str(g), ns) for g in as_list(spec.get("gateways"))]
    if MESH not in refs or all(r == MESH for r in refs):
        return None
    routes = []
    for kind in ROUTE_KINDS:
        for i, route in enumerate(as_list(spec.get(kind))):
            if not is_map(route):
                continue
            path: DataPath = ("spec", kind, i)
            matches = [_Match((*path, "match", k), as_int(as_map(m).get("port")) or 0,
                              tuple(_gateway_ref(as_str(g), ns) for g in as_list(as_map(m).get("gateways")))
                              or tuple(refs), tuple(as_str(h) for h in as_list(as_map(m).get("sniHosts"))))
                       for k, m in enumerate(as_list(route.get("match")))]
            destinations = tuple(((*path, "route", j), as_map(as_map(d).get("destination")))
                                 for j, d in enumerate(as_list(route.get("route"))))
            routes.append(_Route(kind, path, tuple(matches) or (_Match(path, 0, tuple(refs), ()),), destinations))
    return _VirtualService(item, scope_of(ns, spec.get("exportTo")),
                           tuple(as_str(h) for h in as_list(spec.get("hosts"))),
                           tuple((i, r) for i, r in enumerate(refs) if r != MESH), tuple(routes))


@dataclass(frozen=True, slots=True)
class _SidecarHost:
    item: Item
    path: DataPath  # ("spec", "egress", i, "hosts", j)
    namespace: str  # the namespace part, `.` resolved; `*` any
    host: str


class _Index:
    """Everything the egress analyzers look up, indexed once."""

    def __init__(self, inventory: Inventory, settings: AnalyzerSettings) -> None:
        self.inventory, self.settings = inventory, settings
        self.gateways: dict[str, _Gateway] = {}  # `ns/name`
        self.virtual_services: list[_VirtualService] = []
        self.policies: list[Item] = []
        self.scoped: set[str] = set()  # namespaces with a Sidecar without workloadSelector
        self.sidecar_hosts: dict[tuple[str, str], list[_SidecarHost]] = defaultdict(list)
        for item in inventory.items:
            kind, manifest = item.ident[0], item.manifest
            if _group(manifest) == SECURITY_GROUP:
                if kind == "AuthorizationPolicy":
                    self.policies.append(item)
                continue
            if not is_istio(manifest):
                continue
            if kind == "Gateway":
                self.gateways.setdefault(f"{item.namespace}/{item.ident[2]}", _gateway(item))
            elif kind == "VirtualService":
                vs = _virtual_service(item)
                if vs is not None:
                    self.virtual_services.append(vs)
            elif kind == "Sidecar":
                self._add_sidecar(item)
        self.vs_by_host: dict[tuple[str, str], list[_VirtualService]] = defaultdict(list)
        for vs in self.virtual_services:
            for host in vs.hosts:
                self.vs_by_host[(vs.item.namespace, host)].append(vs)
        self.gateways_by_selector: dict[tuple[str, frozenset[tuple[str, str]]], list[_Gateway]] = defaultdict(list)
        for gateway in self.gateways.values():
            selector = labels_of({"labels": gateway.item.spec.get("selector")})
            self.gateways_by_selector[(gateway.item.namespace, frozenset(selector.items()))].append(gateway)
        self.entries = {(se.item.namespace, se.item.ident[2]): se for se in inventory.service_entries}
        self.drs: dict[str, list[Item]] = defaultdict(list)
        self.subsets: dict[tuple[str, str], list[tuple[Item, int]]] = defaultdict(list)  # (host, subset name)
        for dr in inventory.destination_rules:
            host = qualify(as_str(dr.spec.get("host")), dr.namespace, settings.cluster_domain)
            self.drs[host].append(dr)
            for i, subset in enumerate(as_list(dr.spec.get("subsets"))):
                self.subsets[(host, as_str(as_map(subset).get("name")))].append((dr, i))

    def _add_sidecar(self, item: Item) -> None:
        if not is_map(item.spec.get("workloadSelector")):
            self.scoped.add(item.namespace)  # the namespace's default Sidecar decides what it sees
        for i, egress in enumerate(as_list(item.spec.get("egress"))):
            for j, entry in enumerate(as_list(as_map(egress).get("hosts"))):
                ns, _, host = as_str(entry).rpartition("/")
                if ns in ("", "~"):
                    continue
                ns = item.namespace if ns == "." else ns
                self.sidecar_hosts[(ns, host)].append(
                    _SidecarHost(item, ("spec", "egress", i, "hosts", j), ns, host))

    def importers(self, namespace: str, host: str) -> list[_SidecarHost]:
        """Sidecar egress hosts that import `host` of `namespace` (a walk over the host's suffixes)."""
        patterns = [host, "*", *(f"*{host[i:]}" for i, c in enumerate(host) if c == ".")]
        return [entry for ns in (namespace, "*") for p in dict.fromkeys(patterns)
                for entry in self.sidecar_hosts.get((ns, p), ())]

    def ambient(self, namespace: str) -> bool:
        if self.settings.dataplane == "ambient":
            return True
        found = self.inventory.namespaces.get(namespace)
        return found is not None and labels_of(metadata_of(found.manifest)).get(DATAPLANE_MODE) == "ambient"

    def waypoint(self, se: ServiceEntryView) -> str:
        """The waypoint a ServiceEntry is bound to (its label, else its Namespace's), "" if none."""
        name = labels_of(metadata_of(se.item.manifest)).get(USE_WAYPOINT)
        if name is None:
            found = self.inventory.namespaces.get(se.item.namespace)
            name = labels_of(metadata_of(found.manifest)).get(USE_WAYPOINT, "") if found is not None else ""
        return "" if name == "none" else name


def _group(manifest: Mapping[str, Any]) -> str:
    return as_str(manifest.get("apiVersion")).split("/", 1)[0]


def _hosts(values: Iterable[str], limit: int = 4) -> str:
    """The first few distinct values, "a, b and others" (stops reading after limit + 1 of them)."""
    shown: dict[str, None] = {}
    for value in values:
        shown.setdefault(value)
        if len(shown) > limit:
            break
    names = list(shown)
    return ", ".join(names[:limit]) + (" and others" if len(names) > limit else "") if names else "(none)"


def _scope_text(scope: Scope) -> str:
    return "every namespace" if scope is None else _hosts(sorted(scope)) if scope else "no namespace"


# --- G001 ----------------------------------------------------------------------------------------------

def gateway_routes(index: _Index) -> Iterator[Result]:
    for vs in index.virtual_services:
        yield from _gateway_route_findings(index, vs)


def _gateway_route_findings(index: _Index, vs: _VirtualService) -> Iterator[Result]:
    ident, ns = vs.item.ident, vs.item.namespace
    bound: dict[str, _Gateway] = {}
    for i, ref in vs.gateways:
        gateway = index.gateways.get(ref)
        if gateway is None:
            yield ident, GATEWAY_MISMATCH.at(("spec", "gateways", i), (
                f"gateway {ref} is not defined: nothing serves the routes bound to it, and the mesh routes send "
                f"{_hosts(vs.hosts)} to a gateway that does not listen for it"))
        else:
            bound[ref] = gateway
    entries: dict[str, list[ServiceEntryView]] = {}
    for i, host in enumerate(vs.hosts):
        for ref, gateway in bound.items():
            if not any(s.serves(host, gateway.item.namespace, ns) for s in gateway.servers):
                yield ident, GATEWAY_MISMATCH.at(("spec", "hosts", i), (
                    f"host {host} is served by no server of Gateway {ref} (servers: "
                    f"{_hosts(h for s in gateway.servers for h in s.hosts)}): the gateway answers 404 or resets"))
        entries[host] = index.inventory.hosts.visible(host, ns)
        if not entries[host]:
            yield ident, GATEWAY_MISMATCH.at(("spec", "hosts", i), (
                f"host {host} is registered by no ServiceEntry visible in namespace {ns}: the gateway has no "
                "cluster for it (503) and sidecars do not route it to the gateway"))
    for route in vs.routes:
        for match in route.matches:
            if MESH in match.gateways:
                yield from _mesh_port(vs, match, entries)
            for ref in match.gateways:
                if ref in bound:
                    yield from _server_agreement(vs, route, match, ref, bound[ref])
        if not any(MESH in m.gateways for m in route.matches) and any(m.gateways for m in route.matches):
            yield from _gateway_destinations(index, vs, route)


def _ports(entries: Iterable[ServiceEntryView]) -> set[int]:
    return {as_int(as_map(p).get("number")) or 0 for se in entries for p in as_list(se.item.spec.get("ports"))}


def _mesh_port(vs: _VirtualService, match: _Match, entries: Mapping[str, list[ServiceEntryView]]
               ) -> Iterator[Result]:
    found = [se for host in vs.hosts for se in entries.get(host, ())]
    ports = _ports(found)
    if match.port and found and match.port not in ports:
        names = _hosts(se.item.ref for se in found)
        yield vs.item.ident, GATEWAY_MISMATCH.at((*match.path, "port"), (
            f"mesh match port {match.port} is not a port of {names} (ports {_hosts(str(p) for p in sorted(ports))}): "
            "sidecars have no listener for it, so this route never applies"))


def _server_agreement(vs: _VirtualService, route: _Route, match: _Match, ref: str, gateway: _Gateway
                      ) -> Iterator[Result]:
    ident, ns, gns = vs.item.ident, vs.item.namespace, gateway.item.namespace
    servers = gateway.on_port(match.port) if match.port else list(gateway.servers)
    if match.port and not servers:
        yield ident, GATEWAY_MISMATCH.at((*match.path, "port"), (
            f"port {match.port} is not served by Gateway {ref} (it serves {gateway.describe()}): "
            "the route never applies on the gateway"))
        return
    serving = [s for s in servers if any(s.serves(h, gns, ns) for h in vs.hosts)]
    if not serving:
        if match.port and any(s.serves(h, gns, ns) for s in gateway.servers for h in vs.hosts):
            yield ident, GATEWAY_MISMATCH.at((*match.path, "port"), (
                f"the server of Gateway {ref} on port {match.port} does not serve {_hosts(vs.hosts)} (its hosts: "
                f"{_hosts(h for s in servers for h in s.hosts)}): the route never applies on the gateway"))
        return
    if not any(s.reads == route.kind for s in serving):
        server = serving[0]
        what = {"http": "an HTTP server or an HTTPS server that terminates TLS",
                "tls": "a PASSTHROUGH server", "tcp": "a TCP server or a TLS server that terminates TLS"}
        yield ident, GATEWAY_MISMATCH.at(match.path, (
            f"{route.kind} route on Gateway {ref} port {server.number}, whose server is {server.describe()}: "
            f"{route.kind} routes apply only on {what[route.kind]}; this server reads only {server.reads} routes, "
            "so the gateway drops the traffic"))
    for j, sni in enumerate(match.sni_hosts):
        if not any(host_matches(name, sni) for s in serving for name in s.names(gns, ns)):
            yield ident, GATEWAY_MISMATCH.at((*match.path, "sniHosts", j), (
                f"sniHost {sni} is not a host of the server of Gateway {ref} on port {serving[0].number} "
                f"({_hosts(h for s in serving for h in s.hosts)}): no filter chain matches this SNI"))


def _gateway_destinations(index: _Index, vs: _VirtualService, route: _Route) -> Iterator[Result]:
    ns = vs.item.namespace
    for path, destination in route.destinations:
        host = as_str(destination.get("host"))
        if not host:
            continue
        found = index.inventory.hosts.visible(host, ns)
        if not found:
            yield vs.item.ident, GATEWAY_MISMATCH.at((*path, "destination", "host"), (
                f"the gateway route goes to {host}, which no ServiceEntry visible in namespace {ns} registers: "
                "the gateway answers 503"))
            continue
        port = as_int(as_map(destination.get("port")).get("number")) or 0
        ports = _ports(found)
        if port and port not in ports:
            yield vs.item.ident, GATEWAY_MISMATCH.at((*path, "destination", "port", "number"), (
                f"the gateway route goes to {host} port {port}, which is not a port of "
                f"{_hosts(se.item.ref for se in found)} (ports {_hosts(str(p) for p in sorted(ports))}): "
                "the gateway has no cluster for it (503)"))


# --- G002 ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Tls:
    mode: str
    sni: str
    path: DataPath  # the tls settings in the DestinationRule, or the subset when none applies


def _port_tls(policy: Mapping[str, Any], port: int, path: DataPath) -> _Tls | None:
    for i, setting in enumerate(as_list(policy.get("portLevelSettings"))):
        setting = as_map(setting)
        if as_int(as_map(setting.get("port")).get("number")) == port and is_map(setting.get("tls")):
            tls = as_map(setting.get("tls"))
            return _Tls(as_str(tls.get("mode")).upper(), as_str(tls.get("sni")),
                        (*path, "portLevelSettings", i, "tls"))
    if is_map(policy.get("tls")):
        tls = as_map(policy.get("tls"))
        return _Tls(as_str(tls.get("mode")).upper(), as_str(tls.get("sni")), (*path, "tls"))
    return None


def effective_tls(dr: Item, subset_index: int, port: int) -> _Tls:
    """The subset's TLS on a port: subset port level, subset, rule port level, rule (MergeTrafficPolicy)."""
    subset = as_map(as_list(dr.spec.get("subsets"))[subset_index])
    subset_path: DataPath = ("spec", "subsets", subset_index)
    return (_port_tls(as_map(subset.get("trafficPolicy")), port, (*subset_path, "trafficPolicy"))
            or _port_tls(as_map(dr.spec.get("trafficPolicy")), port, ("spec", "trafficPolicy"))
            or _Tls("", "", subset_path))


def subsets_to_gateway(index: _Index) -> Iterator[Result]:
    for vs in index.virtual_services:
        gateways = [index.gateways[ref] for _, ref in vs.gateways if ref in index.gateways]
        for route in vs.routes:
            mesh = [m for m in route.matches if MESH in m.gateways]
            if mesh:
                yield from _mesh_destinations(index, vs, route, mesh[0], gateways)


def _mesh_destinations(index: _Index, vs: _VirtualService, route: _Route, match: _Match,
                       gateways: Sequence[_Gateway]) -> Iterator[Result]:
    ns = vs.item.namespace
    for path, destination in route.destinations:
        host = qualify(as_str(destination.get("host")), ns, index.settings.cluster_domain)
        subset = as_str(destination.get("subset"))
        if not host or host in vs.hosts or not subset:
            continue  # not a route to the gateway's Service through a subset
        port = as_int(as_map(destination.get("port")).get("number")) or match.port
        defined = index.subsets.get((host, subset), [])
        if not defined:
            rules = index.drs.get(host, [])
            have = _hosts(as_str(as_map(s).get("name")) for dr in rules for s in as_list(dr.spec.get("subsets")))
            yield vs.item.ident, SUBSET_MISMATCH.at((*path, "destination", "subset"), (
                f"the mesh route goes to {host} subset {subset}, which no DestinationRule for {host} defines "
                f"({'subsets: ' + have if rules else 'no DestinationRule for this host'}): sidecars have no "
                "cluster for it and answer 503"))
            continue
        servers = [s for g in gateways for s in g.on_port(port)
                   if any(s.serves(h, g.item.namespace, ns) for h in vs.hosts)] if port else []
        if servers:
            dr, i = defined[0]
            yield from _subset_tls(dr, subset, effective_tls(dr, i, port), servers[0], port)


def _subset_tls(dr: Item, subset: str, tls: _Tls, server: _Server, port: int) -> Iterator[Result]:
    where = f"subset {subset} port {port} of {dr.ref}"
    mode = tls.mode or "unset"
    if server.passthrough:
        if tls.mode in ("ISTIO_MUTUAL", "SIMPLE", "MUTUAL"):
            yield dr.ident, SUBSET_MISMATCH.at((*tls.path, "mode"), (
                f"{where} wraps the connection in TLS mode {tls.mode}, but the Gateway server on port {port} is "
                f"{server.mode}: it reads the SNI of that outer TLS, not the application's, and no filter chain "
                "matches"))
        return
    if server.mode != "ISTIO_MUTUAL":
        return
    if tls.mode != "ISTIO_MUTUAL":
        sent = ("plaintext (or auto mutual TLS with the cluster name as SNI)" if tls.mode in ("", "DISABLE")
                else f"TLS mode {tls.mode} with its own certificates")
        yield dr.ident, SUBSET_MISMATCH.at((*tls.path, "mode") if tls.mode else tls.path, (
            f"{where} sends {sent} (tls mode {mode}), but the Gateway server on port {port} terminates "
            f"ISTIO_MUTUAL for {_hosts(server.hosts)}: the handshake fails"))
        return
    names = [h.rpartition("/")[2] for h in server.hosts]
    if "*" in names:
        return
    if not tls.sni:
        yield dr.ident, SUBSET_MISMATCH.at(tls.path, (
            f"{where} sets no sni: sidecars send the cluster name as SNI, but the Gateway server on port {port} "
            f"matches only {_hosts(names)}"))
    elif not any(host_matches(name, tls.sni) for name in names):
        yield dr.ident, SUBSET_MISMATCH.at((*tls.path, "sni"), (
            f"{where} sends SNI {tls.sni}, which is not a host of the Gateway server on port {port} "
            f"({_hosts(names)}): no filter chain matches"))


# --- G003, G006 ----------------------------------------------------------------------------------------

def waypoint_entries(index: _Index) -> Iterator[Result]:
    for se in index.inventory.service_entries:
        waypoint = index.waypoint(se)
        if not waypoint:
            continue
        if se.resolution != DYNAMIC_DNS:
            for i, host in enumerate(as_list(se.item.spec.get("hosts"))):
                if as_str(host).startswith("*"):
                    yield se.item.ident, WAYPOINT_UNSUPPORTED.at(("spec", "hosts", i), (
                        f"wildcard host {host} on a ServiceEntry bound to waypoint {waypoint}: ztunnel and waypoints "
                        "support wildcard hosts only with resolution DYNAMIC_DNS; traffic to it is not captured"))
        if se.scope is not None:  # exportTo ["*"] is the default, harmless
            yield se.item.ident, WAYPOINT_UNSUPPORTED.at(("spec", "exportTo"), (
                f"exportTo on a ServiceEntry bound to waypoint {waypoint}: ztunnel and waypoints ignore it, so every "
                "namespace reaches the host through the waypoint"))


def waypoint_passthrough(index: _Index) -> Iterator[Result]:
    for se in index.inventory.service_entries:
        waypoint = index.waypoint(se)
        if waypoint and se.resolution == NONE:
            yield se.item.ident, WAYPOINT_PASSTHROUGH.at(("spec", "resolution"), (
                f"{se.item.ref} is bound to waypoint {waypoint} with resolution NONE: the waypoint forwards to the "
                "original destination address (passthrough), so its policies see no host and DNS is not checked"))


# --- G005 ----------------------------------------------------------------------------------------------

def ambient_vms(index: _Index) -> Iterator[Result]:
    """VM workloads in ambient namespaces: WorkloadEntries, and ServiceEntries that select them or
    list endpoints with a service account (a proxy of the mesh on the VM)."""
    why = "VMs are not part of ambient mode (istio.io blog 2024/ambient-reaches-ga)"
    for item in index.inventory.workloads:
        if index.ambient(item.namespace):
            yield item.ident, AMBIENT_VM.at(("metadata", "name"), (
                f"{item.ref} is a VM workload in ambient namespace {item.namespace}: {why}; no ztunnel captures it"))
    for se in index.inventory.service_entries:
        if not index.ambient(se.item.namespace):
            continue
        if se.selector is not None:
            yield se.item.ident, AMBIENT_VM.at(("spec", "workloadSelector"), (
                f"{se.item.ref} selects VM workloads in ambient namespace {se.item.namespace}: {why}"))
        for i, endpoint in enumerate(as_list(se.item.spec.get("endpoints"))):
            if is_map(endpoint) and as_str(endpoint.get("serviceAccount")):
                yield se.item.ident, AMBIENT_VM.at(("spec", "endpoints", i, "serviceAccount"), (
                    f"endpoint {as_str(endpoint.get('address')) or i} of {se.item.ref} runs as service account "
                    f"{as_str(endpoint.get('serviceAccount'))} (a mesh VM) in ambient namespace "
                    f"{se.item.namespace}: {why}"))


# --- G004 ----------------------------------------------------------------------------------------------

def gateway_bypass(index: _Index) -> Iterator[Result]:
    yield from _exports(index)
    yield from _sidecars(index)
    if index.settings.outbound_policy == "ALLOW_ANY":
        yield from _passthrough(index)


def _gateway_names(vs: _VirtualService) -> str:
    return _hosts(f"Gateway {ref}" for _, ref in vs.gateways)


def _exports(index: _Index) -> Iterator[Result]:
    """Namespaces in a ServiceEntry's exportTo (without a Sidecar of their own) that the VirtualService
    routing its host through the gateway is not exported to."""
    seen: set[tuple[int, int]] = set()
    for vs in index.virtual_services:
        for host in vs.hosts:
            for se in index.inventory.hosts.candidates(host):
                if se.scope is None:
                    if vs.scope is not None and (se.item.index, -1) not in seen:
                        seen.add((se.item.index, -1))
                        yield vs.item.ident, GATEWAY_BYPASS.at(("spec", "exportTo"), (
                            f"{se.item.ref} exports {host} to every namespace, {vs.item.ref} only to "
                            f"{_scope_text(vs.scope)}: sidecars in any other namespace send {host} straight out, "
                            f"around {_gateway_names(vs)}"))
                    continue
                for k, entry in enumerate(as_list(se.item.spec.get("exportTo"))):
                    namespace = se.item.namespace if as_str(entry) == "." else as_str(entry)
                    if (namespace in ("*", "~") or visible_in(vs.scope, namespace) or namespace in index.scoped
                            or (se.item.index, k) in seen):
                        continue
                    seen.add((se.item.index, k))
                    yield se.item.ident, GATEWAY_BYPASS.at(("spec", "exportTo", k), (
                        f"namespace {namespace} sees {se.item.ref} ({host}) but not {vs.item.ref} (exported to "
                        f"{_scope_text(vs.scope)}): its sidecars send {host} straight out, around "
                        f"{_gateway_names(vs)}"))


def _sidecars(index: _Index) -> Iterator[Result]:
    """Sidecar egress hosts that import a gateway-routed ServiceEntry host but not its VirtualService."""
    seen: set[tuple[int, DataPath]] = set()
    for vs in index.virtual_services:
        gns = vs.item.namespace
        for host in vs.hosts:
            for se in index.inventory.hosts.candidates(host):
                for entry in index.importers(se.item.namespace, host):
                    namespace = entry.item.namespace
                    key = (entry.item.index, entry.path)
                    if key in seen or not visible_in(se.scope, namespace):
                        continue
                    imports_vs = visible_in(vs.scope, namespace) and any(
                        e.item.index == entry.item.index for e in index.importers(gns, host))
                    if not imports_vs:
                        seen.add(key)
                        why = ("imports no host of namespace " + gns if visible_in(vs.scope, namespace)
                               else f"is outside its exportTo ({_scope_text(vs.scope)})")
                        yield entry.item.ident, GATEWAY_BYPASS.at(entry.path, (
                            f"egress host {entry.namespace}/{entry.host} imports {host} of {se.item.ref}, but "
                            f"{vs.item.ref} is not imported (the Sidecar {why}): the workloads it applies to send "
                            f"{host} straight out, around {_gateway_names(vs)}"))


def _policy_hosts(policy: Item) -> list[str]:
    """Hosts an AuthorizationPolicy's rules name: operation.hosts and connection.sni values."""
    hosts: list[str] = []
    for rule in as_list(policy.spec.get("rules")):
        rule = as_map(rule)
        for to in as_list(rule.get("to")):
            hosts.extend(as_str(h) for h in as_list(as_map(as_map(to).get("operation")).get("hosts")))
        for when in as_list(rule.get("when")):
            if as_str(as_map(when).get("key")) == "connection.sni":
                hosts.extend(as_str(v) for v in as_list(as_map(when).get("values")))
    return list(dict.fromkeys(hosts))


def _passthrough(index: _Index) -> Iterator[Result]:
    """ALLOW_ANY: a proxy that does not know a host sends it to PassthroughCluster, so a gateway or
    waypoint AuthorizationPolicy restricting callers (`from`) does not restrict proxies outside the
    exportTo of the host's ServiceEntry or VirtualService."""
    for policy in index.policies:
        rules = [i for i, r in enumerate(as_list(policy.spec.get("rules"))) if has_items(as_map(r).get("from"))]
        if not rules:
            continue
        narrowed = _target_hosts(index, policy)
        selector = frozenset(labels_of({"labels": as_map(policy.spec.get("selector")).get("matchLabels")}).items())
        gateways = index.gateways_by_selector.get((policy.namespace, selector), []) if selector else []
        if gateways:
            hosts = _policy_hosts(policy) or [h.rpartition("/")[2] for g in gateways for s in g.servers
                                              for h in s.hosts]
            for host in dict.fromkeys(hosts):
                scopes = [se.scope for se in index.inventory.hosts.candidates(host)]
                scopes += [vs.scope for vs in index.vs_by_host.get((policy.namespace, host), ())]
                if any(scope is not None for scope in scopes):
                    narrowed.append(host)
        if narrowed:
            yield policy.ident, GATEWAY_BYPASS.at(("spec", "rules", rules[0], "from"), (
                f"outboundTrafficPolicy is ALLOW_ANY: proxies outside the exportTo of {_hosts(narrowed)} do not "
                "know the host and send it to PassthroughCluster, straight out and never through the gateway or "
                "waypoint this policy guards, so its `from` does not restrict them"))


def _target_hosts(index: _Index, policy: Item) -> list[str]:
    """Hosts of the waypoint-bound ServiceEntries a policy targets (`targetRefs`) with a narrowed exportTo."""
    hosts: list[str] = []
    for ref in as_list(policy.spec.get("targetRefs")):
        ref = as_map(ref)
        if as_str(ref.get("kind")) != "ServiceEntry":
            continue
        se = index.entries.get((policy.namespace, as_str(ref.get("name"))))
        if se is not None and se.scope is not None and index.waypoint(se):
            hosts.extend(se.hosts)
    return hosts
