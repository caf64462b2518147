"""The Istio side of the Envoy translation: manifests -> services, endpoints, DestinationRules.

Input: plain manifest dicts (ServiceEntry, WorkloadEntry, DestinationRule of group
``networking.istio.io``; other kinds are ignored). Output: `Service` values (one per SE host,
with its ports, endpoints and accepted SANs) and `DestRule` values (DRs of one namespace for one
host merged), as istiod's registry conversion has them (reference sections 1-3, 5.2).

Invariants: deterministic order. Objects are taken in (namespace, name) order, which stands in
for istiod's creation-time order ("oldest wins"). No diagnostics are produced here: malformed
specs are the Istio validation pass's business, this module only skips what it cannot use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from meshc.model.ids import ObjectId
from meshc.model.netaddr import UNIX_PREFIX, is_ip, normalise_address

GROUP = "networking.istio.io"
TLS_MODE_LABEL = "security.istio.io/tlsMode"
LOCALITY_LABEL = "topology.istio.io/locality"
LEGACY_LOCALITY_LABEL = "istio-locality"
CONNECT_STRATEGY = "istio.io/connect-strategy"
DNS_MODES = ("DNS", "DNS_ROUND_ROBIN")


@dataclass(frozen=True)
class SvcPort:
    name: str
    number: int
    protocol: str  # upper-case; "" means protocol auto-detection
    target_port: int = 0


@dataclass(frozen=True)
class Endpoint:
    address: str
    ports: Mapping[str, int]
    labels: Mapping[str, str]
    locality: str
    weight: int
    tls_mode: str
    origin: ObjectId

    def port_for(self, port: SvcPort) -> int:
        """Endpoint port precedence: unix socket (0) > ports[name] > targetPort > number."""
        if self.address.startswith(UNIX_PREFIX):
            return 0
        return int(self.ports.get(port.name) or port.target_port or port.number)


@dataclass(frozen=True)
class Service:
    host: str
    namespace: str
    addresses: tuple[str, ...]
    ports: tuple[SvcPort, ...]
    resolution: str
    mesh_external: bool
    endpoints: tuple[Endpoint, ...]
    service_accounts: tuple[str, ...]
    origin: ObjectId
    connect_strategy: str = ""
    # the VirtualService routes bound to `mesh` that send this host's ports elsewhere (an egress
    # gateway); each proxy uses the first one visible to its namespace (`MeshRoute`)
    mesh_routes: tuple[MeshRoute, ...] = ()
    # a Kubernetes Service meshc only knows as a route destination (the egress gateway): no
    # ServiceEntry; only the subset clusters the routes name are built, never a listener
    kubernetes: bool = False


@dataclass(frozen=True)
class DestRule:
    ident: ObjectId
    host: str
    traffic_policy: Mapping[str, Any]
    subsets: tuple[Mapping[str, Any], ...] = field(default=())
    selector: tuple[tuple[str, str], ...] = ()  # workloadSelector.matchLabels; () = applies to every proxy
    export_to: tuple[str, ...] = ()  # spec.exportTo; () = every namespace


def visible(export_to: Sequence[str], owner: str, namespace: str) -> bool:
    """Whether an object of namespace `owner` with `exportTo` is visible to a proxy of `namespace`
    (`.`: its own namespace, `*` or nothing: every namespace; pilot/pkg/model/push_context.go)."""
    if not export_to or "*" in export_to or namespace in export_to:
        return True
    return "." in export_to and owner == namespace


def _of_kind(manifests: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    found = [
        m for m in manifests
        if m.get("kind") == kind and str(m.get("apiVersion", "")).startswith(GROUP + "/")
    ]
    return sorted(found, key=lambda m: (_namespace(m), _name(m)))


def _namespace(manifest: Mapping[str, Any]) -> str:
    return str((manifest.get("metadata") or {}).get("namespace") or "default")


def _name(manifest: Mapping[str, Any]) -> str:
    return str((manifest.get("metadata") or {}).get("name") or "")


def ident(manifest: Mapping[str, Any]) -> ObjectId:
    return ObjectId(str(manifest.get("kind")), _namespace(manifest), _name(manifest))


def _spec(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = manifest.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def spiffe_id(trust_domain: str, namespace: str, account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}"


def _locality(spec: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    locality = str(spec.get("locality") or "")
    if not locality:
        label = labels.get(LOCALITY_LABEL) or labels.get(LEGACY_LOCALITY_LABEL) or ""
        locality = label.replace(".", "/")
    return "/".join(locality.split("/")[:3])


def _tls_mode(labels: Mapping[str, str], service_account: str) -> str:
    if TLS_MODE_LABEL in labels:
        return labels[TLS_MODE_LABEL]
    return "istio" if service_account else "disabled"


def _topology_labels(locality: str, network: str) -> dict[str, str]:
    parts = (locality.split("/") + ["", "", ""])[:3]
    keys = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone",
            "topology.istio.io/subzone")
    out = {key: value for key, value in zip(keys, parts, strict=False) if value}
    if network:
        out["topology.istio.io/network"] = network
    return out


def _endpoint(spec: Mapping[str, Any], labels: Mapping[str, str], origin: ObjectId) -> Endpoint:
    account = str(spec.get("serviceAccount") or "")
    locality = _locality(spec, labels)
    augmented = {**labels, **_topology_labels(locality, "")}  # `AugmentLabels` (label.go): region/zone/subzone
    network = str(spec.get("network") or "")
    if network and "topology.istio.io/network" not in labels:  # ... and the network only when not set
        augmented["topology.istio.io/network"] = network
    return Endpoint(
        address=str(spec.get("address") or ""),
        ports={str(k): int(v) for k, v in (spec.get("ports") or {}).items()},
        labels=augmented,
        locality=locality,
        weight=int(spec.get("weight") or 0) or 1,
        tls_mode=_tls_mode(labels, account),
        origin=origin,
    )


@dataclass(frozen=True)
class _Workload:
    endpoint: Endpoint
    account: str


_LabelIndex = dict[tuple[str, str, str], list[_Workload]]


def _workload_entries(manifests: Sequence[Mapping[str, Any]]) -> _LabelIndex:
    """WorkloadEntries indexed by (namespace, label key, label value), in manifest order;
    metadata labels win over spec labels. Selecting by one label of a selector through the index
    keeps selection linear in the estate's size."""
    out: _LabelIndex = {}
    for we in _of_kind(manifests, "WorkloadEntry"):
        spec = _spec(we)
        labels = {**(spec.get("labels") or {}), **((we.get("metadata") or {}).get("labels") or {})}
        workload = _Workload(_endpoint(spec, labels, ident(we)), str(spec.get("serviceAccount") or ""))
        for key, value in labels.items():
            out.setdefault((_namespace(we), str(key), str(value)), []).append(workload)
    return out


def _usable(endpoint: Endpoint, resolution: str, selected: bool) -> bool:
    """Which addresses each resolution can use (reference 1.2, 1.4, 5.6)."""
    address = endpoint.address
    if not address:
        return False  # network-only endpoints need a gateway, which is not modelled
    if selected and resolution not in DNS_MODES and not is_ip(address):
        return False  # hostnames / unix sockets are only selectable by DNS-type services
    if resolution == "STATIC":
        return is_ip(address) or address.startswith(UNIX_PREFIX)
    if resolution in DNS_MODES:
        return not address.startswith(UNIX_PREFIX)
    return True


def _se_workloads(se: Mapping[str, Any], wes: _LabelIndex) -> list[_Workload]:
    spec = _spec(se)
    if isinstance(spec.get("workloadSelector"), Mapping):
        selector = spec["workloadSelector"].get("labels") or {}
        if not selector:
            return []  # an empty selector selects nothing
        first = next(iter(selector.items()))
        candidates = wes.get((_namespace(se), str(first[0]), str(first[1])), [])
        return [w for w in candidates if all(w.endpoint.labels.get(k) == v for k, v in selector.items())]
    origin = ident(se)
    return [
        _Workload(_endpoint(ep, ep.get("labels") or {}, origin), str(ep.get("serviceAccount") or ""))
        for ep in spec.get("endpoints") or [] if isinstance(ep, Mapping)
    ]


def _ports(spec: Mapping[str, Any]) -> tuple[SvcPort, ...]:
    return tuple(
        SvcPort(str(p.get("name") or ""), int(p.get("number") or 0),
                str(p.get("protocol") or "").upper(), int(p.get("targetPort") or 0))
        for p in spec.get("ports") or [] if isinstance(p, Mapping)
    )


def _services_of(se: Mapping[str, Any], wes: _LabelIndex,
                 trust_domain: str) -> list[Service]:
    spec = _spec(se)
    resolution = str(spec.get("resolution") or "NONE")
    selected = isinstance(spec.get("workloadSelector"), Mapping)
    workloads = [w for w in _se_workloads(se, wes) if _usable(w.endpoint, resolution, selected)]
    accounts = list(spec.get("subjectAltNames") or [])
    for w in workloads:
        sid = spiffe_id(trust_domain, _namespace(se), w.account) if w.account else ""
        if sid and sid not in accounts:
            accounts.append(sid)
    annotations = (se.get("metadata") or {}).get("annotations") or {}
    out = []
    for host in spec.get("hosts") or []:
        endpoints = tuple(w.endpoint for w in workloads)
        declared = spec.get("endpoints") or selected
        if resolution in DNS_MODES and not declared and not host.startswith("*"):
            endpoints = (Endpoint(host, {}, {}, "", 1, "disabled", ident(se)),)
        out.append(Service(
            host=str(host), namespace=_namespace(se),
            addresses=tuple(normalise_address(str(a)) for a in spec.get("addresses") or []),
            ports=_ports(spec), resolution=resolution,
            mesh_external=str(spec.get("location") or "MESH_EXTERNAL") != "MESH_INTERNAL",
            endpoints=endpoints, service_accounts=tuple(accounts), origin=ident(se),
            connect_strategy=str(annotations.get(CONNECT_STRATEGY) or ""),
        ))
    return out


def load_services(manifests: Sequence[Mapping[str, Any]], trust_domain: str) -> list[Service]:
    """Every ServiceEntry host as a `Service`, oldest (by namespace/name) first."""
    wes = _workload_entries(manifests)
    out: list[Service] = []
    for se in _of_kind(manifests, "ServiceEntry"):
        out.extend(_services_of(se, wes, trust_domain))
    return out


def _merge(rules: list[Mapping[str, Any]]) -> DestRule:
    """Same-namespace DRs for one host: first top-level policy wins, subsets concatenated."""
    policy: Mapping[str, Any] = {}
    subsets: list[Mapping[str, Any]] = []
    for rule in rules:
        spec = _spec(rule)
        policy = policy or spec.get("trafficPolicy") or {}
        names = {s.get("name") for s in subsets}
        subsets += [s for s in spec.get("subsets") or [] if s.get("name") not in names]
    return DestRule(ident(rules[0]), str(_spec(rules[0]).get("host")), policy, tuple(subsets),
                    export_to=_export_to(rules[0]))


def _export_to(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(e) for e in _spec(manifest).get("exportTo") or [])


def _fqdn(host: str, namespace: str, cluster_domain: str) -> str:
    """`ResolveShortnameToFQDN`: a host without a dot is `<host>.<namespace>.svc.<cluster domain>`."""
    if "." in host or host == "*":
        return host
    return f"{host}.{namespace}.svc.{cluster_domain}"


def load_destination_rules(manifests: Sequence[Mapping[str, Any]],
                           cluster_domain: str) -> dict[str, list[DestRule]]:
    """DRs without workloadSelector, merged per (namespace, host), grouped by namespace; short
    hosts are qualified with the environment's cluster domain."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for dr in _of_kind(manifests, "DestinationRule"):
        spec = _spec(dr)
        if spec.get("workloadSelector") or not spec.get("host"):
            continue
        key = (_namespace(dr), _fqdn(str(spec["host"]), _namespace(dr), cluster_domain))
        grouped.setdefault(key, []).append(dr)
    out: dict[str, list[DestRule]] = {}
    for (namespace, host), rules in sorted(grouped.items()):
        merged = _merge(rules)
        out.setdefault(namespace, []).append(
            DestRule(merged.ident, host, merged.traffic_policy, merged.subsets, export_to=merged.export_to))
    return out


def load_selector_rules(manifests: Sequence[Mapping[str, Any]], cluster_domain: str) -> list[DestRule]:
    """DRs with a workloadSelector, in Istio's order (selector DRs sort first, then by creation:
    here (namespace, name)); DRs of one namespace, host and selector are merged."""
    grouped: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Mapping[str, Any]]] = {}
    for dr in _of_kind(manifests, "DestinationRule"):
        spec = _spec(dr)
        chosen = spec.get("workloadSelector")
        if not isinstance(chosen, Mapping) or not spec.get("host"):
            continue
        labels = chosen.get("matchLabels") or {}
        selector = tuple(sorted((str(k), str(v)) for k, v in labels.items())) if isinstance(labels, Mapping) else ()
        host = _fqdn(str(spec["host"]), _namespace(dr), cluster_domain)
        grouped.setdefault((_namespace(dr), host, selector), []).append(dr)
    out: list[DestRule] = []
    for (_, host, selector), rules in grouped.items():
        merged = _merge(rules)
        out.append(DestRule(merged.ident, host, merged.traffic_policy, merged.subsets, selector))
    return out


def rules_selecting(rules: Sequence[DestRule], namespace: str, labels: Mapping[str, str]) -> list[DestRule]:
    """The workloadSelector DRs that apply to a proxy: those of its own namespace whose selector is
    a subset of its labels (`SidecarScope.DestinationRule`, pilot/pkg/model/sidecar.go)."""
    return [r for r in rules if r.ident.namespace == namespace
            and all(labels.get(k) == v for k, v in r.selector)]


def find_selected(rules: Sequence[DestRule], service: Service) -> DestRule | None:
    """The first selected DR for a service's host: an exact host, else the most specific wildcard."""
    exact = next((r for r in rules if r.host == service.host), None)
    if exact is not None:
        return exact
    scored = [(_host_score(r.host, service.host), i, r) for i, r in enumerate(rules)]
    scored = [item for item in scored if item[0] >= 0]
    return max(scored, key=lambda item: (item[0], -item[1]))[2] if scored else None


_INDEX: dict[int, tuple[Any, dict[str, tuple[dict[str, DestRule], list[DestRule]]]]] = {}


def _rule_index(rules: Mapping[str, list[DestRule]], namespace: str
                ) -> tuple[dict[str, DestRule], list[DestRule]]:
    """(exact host -> first rule, wildcard rules) of one namespace, built once per rules map."""
    held = _INDEX.get(id(rules))
    if held is None or held[0] is not rules:
        _INDEX.clear()
        held = (rules, {})
        _INDEX[id(rules)] = held
    per_ns = held[1]
    if namespace not in per_ns:
        exact: dict[str, DestRule] = {}
        wild: list[DestRule] = []
        for r in rules.get(namespace, []):
            if r.host.startswith("*"):
                wild.append(r)
            else:
                exact.setdefault(r.host, r)
        per_ns[namespace] = (exact, wild)
    return per_ns[namespace]


def _host_score(rule_host: str, host: str) -> int:
    """How specifically a DR host matches a service host: -1 none, else longer is better."""
    if rule_host == host:
        return 1_000_000
    if rule_host == "*":
        return 0
    if rule_host.startswith("*"):
        suffix = rule_host[1:]
        return len(suffix) if host.lstrip("*").endswith(suffix) else -1
    return -1


def find_rule(rules: Mapping[str, list[DestRule]], service: Service,
              root_namespace: str = "istio-system", proxy_namespace: str = "") -> DestRule | None:
    """The DR for a service: the service's own namespace first, then the root namespace.
    An exact host match is the most specific one, found by lookup; only wildcard rules are scored.
    With `proxy_namespace`, a rule whose exportTo hides it from that namespace is skipped (the
    service's DR moved into the egress gateway's namespace with `exportTo: [.]` applies to the
    gateway only: `PushContext.destinationRule`, pilot/pkg/model/push_context.go:1259-1325)."""
    for namespace in (service.namespace, root_namespace):
        exact, wild = _rule_index(rules, namespace)
        found = exact.get(service.host)
        if found is not None and (not proxy_namespace or visible(found.export_to, namespace, proxy_namespace)):
            return found
        if proxy_namespace:
            wild = [r for r in wild if visible(r.export_to, namespace, proxy_namespace)]
        scored = [(_host_score(r.host, service.host), r) for r in wild]
        scored = [item for item in scored if item[0] >= 0]
        if scored:
            return max(scored, key=lambda item: item[0])[1]
    return None


# ----------------------------------------------------------------------------- VirtualServices

MESH = "mesh"
ROUTE_KINDS = ("http", "tls", "tcp")


@dataclass(frozen=True)
class RouteRule:
    """One match of one VirtualService route (a rule without `match` is one rule matching all):
    the gateways it applies to (`mesh` or `<namespace>/<name>`), its port (0: any), its SNI hosts
    (`tls` routes) and its destinations (FQDN host, port (0: the listener's), subset)."""

    kind: str  # http | tls | tcp
    index: int  # the route's position in spec.<kind>
    name: str
    gateways: tuple[str, ...]
    port: int
    sni_hosts: tuple[str, ...]
    destinations: tuple[tuple[str, int, str], ...]


@dataclass(frozen=True)
class VirtualSvc:
    ident: ObjectId
    hosts: tuple[str, ...]
    export_to: tuple[str, ...]
    rules: tuple[RouteRule, ...]


@dataclass(frozen=True)
class MeshRoute:
    """A `mesh` route of a VirtualService sending a host's port to another destination (the
    egress gateway's subset): what a sidecar's listener for that host uses instead of the host's
    own cluster."""

    kind: str
    port: int  # 0: every port of the host
    name: str
    sni_hosts: tuple[str, ...]
    host: str  # the destination
    dest_port: int  # 0: the listener's port
    subset: str
    vs: ObjectId
    export_to: tuple[str, ...]
    index: int

    def cluster(self, listener_port: int) -> str:
        """`GetDestinationCluster` (pilot/pkg/networking/core/route/route.go:351): the destination's
        port, else the listener's."""
        return f"outbound|{self.dest_port or listener_port}|{self.subset}|{self.host}"


def qualify_gateway(name: str, namespace: str) -> str:
    """A VirtualService's gateway reference as istiod resolves it: `mesh`, or `<namespace>/<name>`
    with the VirtualService's namespace when none is written."""
    return name if name == MESH or "/" in name else f"{namespace}/{name}"


def _rules(spec: Mapping[str, Any], namespace: str, cluster_domain: str) -> list[RouteRule]:
    default_gateways = tuple(qualify_gateway(str(g), namespace) for g in spec.get("gateways") or [MESH])
    out: list[RouteRule] = []
    for kind in ROUTE_KINDS:
        for index, rule in enumerate(spec.get(kind) or []):
            if not isinstance(rule, Mapping):
                continue
            destinations = tuple(
                (_fqdn(str((d.get("destination") or {}).get("host") or ""), namespace, cluster_domain),
                 int(((d.get("destination") or {}).get("port") or {}).get("number") or 0),
                 str((d.get("destination") or {}).get("subset") or ""))
                for d in rule.get("route") or [] if isinstance(d, Mapping))
            for match in rule.get("match") or [{}]:
                if not isinstance(match, Mapping):
                    continue
                gateways = tuple(qualify_gateway(str(g), namespace) for g in match.get("gateways") or []) \
                    or default_gateways
                out.append(RouteRule(kind, index, str(rule.get("name") or ""), gateways,
                                     int(match.get("port") or 0),
                                     tuple(str(h) for h in match.get("sniHosts") or []), destinations))
    return out


def load_virtual_services(manifests: Sequence[Mapping[str, Any]], cluster_domain: str) -> list[VirtualSvc]:
    """Every VirtualService, oldest (by namespace/name) first, its routes split per match."""
    out = []
    for vs in _of_kind(manifests, "VirtualService"):
        spec = _spec(vs)
        hosts = tuple(_fqdn(str(h), _namespace(vs), cluster_domain) for h in spec.get("hosts") or [])
        out.append(VirtualSvc(ident(vs), hosts, _export_to(vs), tuple(_rules(spec, _namespace(vs), cluster_domain))))
    return out


_KIND_PROTOCOL = {"http": "HTTP", "tls": "TLS", "tcp": "TCP"}


def with_mesh_routes(services: Sequence[Service], manifests: Sequence[Mapping[str, Any]],
                     cluster_domain: str) -> list[Service]:
    """The services with the `mesh` routes of the VirtualServices that send their host elsewhere
    (one destination: weighted routes are not modelled), plus a `kubernetes` Service for each
    in-cluster destination of such a route that no ServiceEntry declares (the egress gateway's
    `<name>.<namespace>.svc.<cluster domain>`: its subset clusters are what the routes name).
    The gateway's endpoints are its Kubernetes Service's, which meshc does not know: the name is
    resolved by DNS (STRICT_DNS) on the Service port."""
    known = {s.host for s in services}
    routes: dict[str, list[MeshRoute]] = {}
    targets: dict[str, dict[int, str]] = {}
    origins: dict[str, ObjectId] = {}
    suffix = f".svc.{cluster_domain}"
    for vs in load_virtual_services(manifests, cluster_domain):
        for rule in vs.rules:
            if MESH not in rule.gateways or len(rule.destinations) != 1:
                continue
            host, port, subset = rule.destinations[0]
            for own in vs.hosts:
                if host == own or not host:
                    continue
                routes.setdefault(own, []).append(MeshRoute(rule.kind, rule.port, rule.name, rule.sni_hosts, host,
                                                            port, subset, vs.ident, vs.export_to, rule.index))
            number = port or rule.port
            if host not in known and host.endswith(suffix) and host.count(".") >= 3 and number:
                targets.setdefault(host, {}).setdefault(number, _KIND_PROTOCOL[rule.kind])
                origins.setdefault(host, vs.ident)
    out = [replace(s, mesh_routes=tuple(routes[s.host])) if s.host in routes else s for s in services]
    for host, ports in sorted(targets.items()):
        origin = origins[host]
        out.append(Service(
            host=host, namespace=host.split(".")[1], addresses=(),
            ports=tuple(SvcPort(f"{proto.lower()}-{number}", number, proto) for number, proto in sorted(ports.items())),
            resolution="DNS", mesh_external=False,
            endpoints=(Endpoint(host, {}, {}, "", 1, "disabled", origin),), service_accounts=(),
            origin=origin, kubernetes=True))
    return out
