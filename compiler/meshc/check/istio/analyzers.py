"""Cross-object analyzers: what `istioctl analyze` (and meshc) find only by looking at several objects.

Input: all manifests of one environment (any kinds) and `AnalyzerSettings`.
Output: `(identity, finding)` pairs; the identity names the object the finding's path points into.
Invariants: visibility follows exportTo (`.` own namespace, `*` or empty all, `~` none, names);
every analyzer indexes first (by host+port, host, namespace, label) and never compares all pairs;
output order is deterministic (analyzer order, then input order).
Codes emitted: A401 same host+port in two visible ServiceEntries, A402 same with different protocol
(IST0177), A403 DestinationRule host without ServiceEntry (IST0174), A404 the same for a host that
looks like a Kubernetes Service (info), A405 TCP port without addresses or VIP (IST0134), A406 subset
selects no endpoint (IST0173 variant), A407 WorkloadEntry selected by no ServiceEntry or Kubernetes
Service, A408 duplicate object, A409 DestinationRules merged for one host, A410 Kubernetes Service port
name without a protocol prefix (IST0118).
Kubernetes objects (core/v1 Service, Pod, Node, Namespace; `meshc lint` reads them, emitted
environments have none): a DestinationRule host may be a Service `<name>.<ns>.svc.<domain>` (visible
by its `networking.istio.io/exportTo` annotation), a subset may select Pods (with their Node's
topology labels) through a ServiceEntry's or a Service's selector, and a Service selector selects
WorkloadEntries of its namespace as istiod's Kubernetes registry does.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from meshc.check.istio.codes import Rule
from meshc.check.istio.fields import as_int, as_list, as_map, as_str, has_items, is_map, is_set, labels_of
from meshc.check.istio.inventory import (
    Identity,
    Inventory,
    Item,
    KubeServiceView,
    ServiceEntryView,
    endpoint_labels,
    qualify,
)
from meshc.check.istio.primitives import string_map, wildcard_domain_error
from meshc.check.istio.scoping import visible_in
from meshc.check.istio.serviceentry import AUTOALLOCATE_LABEL, DYNAMIC_DNS, NONE, auto_allocates
from meshc.model.diagnostics import Finding, Severity
from meshc.model.settings import DEFAULT_CLUSTER_DOMAIN

_AN = "pkg/config/analysis/analyzers"
DUPLICATE_HOST = Rule(
    "A401", Severity.WARNING, "two ServiceEntries visible in a common namespace declare the same host and port",
    f"{_AN}/serviceentry/conflictingserviceentries.go (same host+port, any protocol)",
    "declare each host:port once, or narrow exportTo so the entries are never visible together")
CONFLICTING_PROTOCOL = Rule(
    "A402", Severity.WARNING, "same host and port declared with different protocols by visible ServiceEntries",
    f"{_AN}/serviceentry/conflictingserviceentries.go ConflictingServiceEntryProtocolAnalyzer",
    "use one protocol for the host:port in every ServiceEntry", "IST0177")
UNKNOWN_HOST = Rule(
    "A403", Severity.WARNING, "DestinationRule host matches no ServiceEntry visible to its namespace",
    f"{_AN}/destinationrule/subset.go (UnknownDestinationRuleHost)",
    "fix the host spelling, declare the service, or export its ServiceEntry to this namespace", "IST0174")
UNKNOWN_KUBE_HOST = Rule(
    "A404", Severity.INFO, "DestinationRule host matches no ServiceEntry but looks like a Kubernetes Service",
    f"{_AN}/destinationrule/subset.go (UnknownDestinationRuleHost)",
    "nothing to do if the Kubernetes Service exists in the cluster; otherwise declare the service", "IST0174")
TCP_WITHOUT_ADDRESS = Rule(
    "A405", Severity.WARNING, "TCP or protocol-less port on a ServiceEntry without addresses and without an "
    "auto-allocated VIP", f"{_AN}/serviceentry/protocoladdresses.go ProtocolAddressesAnalyzer",
    "set addresses, set an HTTP/TLS protocol, or rely on VIP auto-allocation (resolution != NONE)", "IST0134")
SUBSET_NO_ENDPOINT = Rule(
    "A406", Severity.ERROR, "DestinationRule subset labels select no endpoint of the service",
    f"{_AN}/destinationrule/subset.go SubsetSelectPodAnalyzer (extended to endpoints and WorkloadEntries)",
    "match the subset labels to labels of the service's endpoints: ServiceEntry endpoints, or the "
    "WorkloadEntries and Pods its selector selects", "IST0173")
UNSELECTED_WORKLOAD = Rule(
    "A407", Severity.WARNING, "WorkloadEntry is selected by no ServiceEntry or Kubernetes Service in its namespace",
    "meshc (istio-facts.md 2: a WorkloadEntry must be paired with a selecting ServiceEntry or Kubernetes Service)",
    "add a ServiceEntry whose workloadSelector.labels (or a Service whose selector) match this WorkloadEntry, "
    "or delete it")
DUPLICATE_OBJECT = Rule(
    "A408", Severity.ERROR, "the same kind/namespace/name is defined twice",
    "meshc (Kubernetes object identity)", "rename one object or remove the duplicate")
MERGED_DESTINATION_RULES = Rule(
    "A409", Severity.WARNING, "several DestinationRules for one host in one namespace are merged",
    "pilot/pkg/model/destination_rule.go mergeDestinationRule",
    "put all policies and subsets for the host into one DestinationRule")

PORT_NAME_CONVENTION = Rule(
    "A410", Severity.INFO, "Kubernetes Service port name without a protocol prefix (and no appProtocol)",
    f"{_AN}/service/portname.go PortNameAnalyzer; pkg/config/kube/conversion.go ConvertProtocol",
    "name the port <protocol>[-suffix] (http-web, grpc, tcp-db...) or set appProtocol", "IST0118")

RULES: tuple[Rule, ...] = (DUPLICATE_HOST, CONFLICTING_PROTOCOL, UNKNOWN_HOST, UNKNOWN_KUBE_HOST,
                           TCP_WITHOUT_ADDRESS, SUBSET_NO_ENDPOINT, UNSELECTED_WORKLOAD, DUPLICATE_OBJECT,
                           MERGED_DESTINATION_RULES, PORT_NAME_CONVENTION)

Result = tuple[Identity, Finding]


@dataclass(frozen=True)
class AnalyzerSettings:
    auto_allocate: bool = True    # whether istiod auto-allocates VIPs (affects the TCP-without-addresses analyzer)
    # A405 as `istioctl analyze` decides IST0134: from the mesh config's proxyMetadata alone
    # (ISTIO_META_DNS_CAPTURE=true and ISTIO_META_DNS_AUTO_ALLOCATE / PILOT_ENABLE_IP_AUTOALLOCATE=true),
    # whatever the resolution. None: from what istiod does (`auto_allocate`, resolution, opt-out label).
    mesh_dns_auto_allocate: bool | None = None
    root_namespace: str = "istio-system"
    cluster_domain: str = DEFAULT_CLUSTER_DOMAIN  # short DestinationRule hosts: <host>.<ns>.svc.<this>
    # the egress analyzers (egress.py): env.yaml dataplane (sidecar | ambient) and
    # proxy.outboundTrafficPolicy; None: unknown (meshc lint)
    dataplane: str | None = None
    outbound_policy: str | None = None
    # hosts of Kubernetes Services the environment says exist (env.yaml egress.gateway): a
    # DestinationRule for one of them is not reported as matching nothing (A404)
    kubernetes_services: tuple[str, ...] = ()


def run_all(manifests: Sequence[Mapping[str, Any]], settings: AnalyzerSettings,
            inventory: Inventory | None = None) -> list[Result]:
    inventory = Inventory(manifests) if inventory is None else inventory
    return [*duplicate_objects(inventory), *conflicting_hosts(inventory),
            *tcp_without_addresses(inventory, settings), *destination_rule_hosts(inventory, settings),
            *merged_destination_rules(inventory, settings), *unselected_workloads(inventory),
            *port_names(inventory)]


def _names(items: Iterable[Item], limit: int = 3) -> str:
    """The first few distinct objects, "a, b, c and others" (never walks the whole iterable)."""
    refs: dict[int, str] = {}
    for item in items:
        if item.index not in refs:
            refs[item.index] = item.ref
            if len(refs) > limit:
                break
    shown = list(refs.values())
    return ", ".join(shown[:limit]) + (" and others" if len(shown) > limit else "")


def duplicate_objects(inventory: Inventory) -> Iterator[Result]:
    first: dict[tuple[str, str, str, str], Item] = {}
    for item in inventory.items:
        group = as_str(item.manifest.get("apiVersion")).rpartition("/")[0]
        key = (group, item.ident[0], item.namespace, item.ident[2])
        if key in first:
            yield item.ident, DUPLICATE_OBJECT.at(("metadata", "name"), f"{item.ref} is defined more than once "
                                                  f"(object #{first[key].index + 1} and #{item.index + 1}); "
                                                  "applying both keeps only the last")
        else:
            first[key] = item


@dataclass(frozen=True, slots=True)
class _PortDecl:
    se: ServiceEntryView
    host: str
    host_index: int
    number: int
    port_index: int
    protocol: str


def _port_decls(se: ServiceEntryView) -> Iterator[_PortDecl]:
    spec = se.item.spec
    ports: dict[int, tuple[int, str]] = {}
    for i, port in enumerate(as_list(spec.get("ports"))):
        number = as_int(as_map(port).get("number"))
        if is_map(port) and number and number not in ports:
            ports[number] = (i, as_str(port.get("protocol")).upper())
    hosts = {as_str(h): i for i, h in reversed(list(enumerate(as_list(spec.get("hosts")))))}
    for host, host_index in hosts.items():
        for number, (port_index, protocol) in ports.items():
            yield _PortDecl(se, host, host_index, number, port_index, protocol)


def conflicting_hosts(inventory: Inventory) -> Iterator[Result]:
    groups: dict[tuple[str, int], list[_PortDecl]] = defaultdict(list)
    latest = {(se.item.namespace, se.item.ident[2]): se for se in inventory.service_entries}  # A408 reports repeats
    for se in latest.values():
        if se.scope != frozenset():
            for decl in _port_decls(se):
                groups[(decl.host, decl.number)].append(decl)
    for decls in groups.values():
        if len(decls) > 1:
            yield from _group_conflicts(decls)


def _group_conflicts(decls: list[_PortDecl]) -> Iterator[Result]:
    """Declarations of one host+port: each one that shares a namespace with another is reported.

    Per namespace (and for the visible-everywhere ones) the declarations and a protocol Counter are
    indexed once, so each declaration costs O(namespaces in its exportTo), not O(group).
    """
    everywhere = [d for d in decls if d.se.scope is None]
    by_namespace: dict[str, list[_PortDecl]] = defaultdict(list)
    for decl in decls:
        for namespace in decl.se.scope or ():
            by_namespace[namespace].append(decl)
    counts = {ns: Counter(d.protocol for d in ds) for ns, ds in by_namespace.items()}
    every_count, all_count = Counter(d.protocol for d in everywhere), Counter(d.protocol for d in decls)
    for decl in decls:
        scope = decl.se.scope
        if scope is None:
            pools, counters, own = [decls], [all_count], 1
        else:
            pools = [everywhere, *(by_namespace[ns] for ns in scope)]
            counters, own = [every_count, *(counts[ns] for ns in scope)], len(scope)
        if sum(map(len, pools)) <= own:
            continue  # only itself in every namespace it is visible in
        different = any(p != decl.protocol for c in counters for p in c)
        partners = _partners(decl, chain.from_iterable(pools), different)
        yield _conflict(decl, different, list(islice(partners, 4)))


def _partners(decl: _PortDecl, pool: Iterable[_PortDecl], different: bool) -> Iterator[_PortDecl]:
    """Other ServiceEntries in the pool, each once; only those with another protocol when `different`."""
    seen = {id(decl.se)}
    for other in pool:
        if id(other.se) not in seen and (not different or other.protocol != decl.protocol):
            seen.add(id(other.se))
            yield other


def _conflict(decl: _PortDecl, different: bool, partners: list[_PortDecl]) -> Result:
    where = f"host {decl.host} port {decl.number}"
    if different:
        others = ", ".join(f"{p.protocol or '(unset)'} in {p.se.item.ref}" for p in partners[:3])
        finding = CONFLICTING_PROTOCOL.at(("spec", "ports", decl.port_index), (
            f"{where} has protocol {decl.protocol or '(unset)'} here but {others}"
            f"{' and others' if len(partners) > 3 else ''}, visible in the same namespaces"))
    else:
        finding = DUPLICATE_HOST.at(("spec", "hosts", decl.host_index), (
            f"{where} is also declared by {_names(p.se.item for p in partners)}, visible in the same namespaces: "
            "endpoints merge within a namespace, otherwise clients keep only one of the entries"))
    return decl.se.item.ident, finding


def tcp_without_addresses(inventory: Inventory, settings: AnalyzerSettings) -> Iterator[Result]:
    for se in inventory.service_entries:
        spec, labels = se.item.spec, labels_of(as_map(se.item.manifest.get("metadata")))
        status = as_map(se.item.manifest.get("status"))
        if has_items(spec.get("addresses")) or has_items(status.get("addresses")):
            continue
        if settings.mesh_dns_auto_allocate is not None:
            if settings.mesh_dns_auto_allocate:
                continue
            why = ("the mesh config's proxyMetadata does not turn on DNS capture and VIP auto-allocation "
                   "(as istioctl analyze reads it; istiod's own allocation is not seen offline)")
        elif auto_allocates(spec, labels, settings.auto_allocate):
            continue
        else:
            why = ("resolution is NONE" if se.resolution == NONE else "auto-allocation is off in AnalyzerSettings"
                   if not settings.auto_allocate else f"the label {AUTOALLOCATE_LABEL}=false opts out of a VIP")
        for i, port in enumerate(as_list(spec.get("ports"))):
            if is_map(port) and as_str(port.get("protocol")).upper() in ("", "TCP"):
                yield se.item.ident, TCP_WITHOUT_ADDRESS.at(("spec", "ports", i), (
                    f"port {port.get('number')} serves TCP (or an unset protocol) without addresses and {why}: "
                    "clients match it by port alone and other TCP services on that port conflict"))


Destination = ServiceEntryView | KubeServiceView


class _Destinations:
    """Resolves DR hosts to visible ServiceEntries and Kubernetes Services; a host seen from one
    namespace is resolved once."""

    def __init__(self, inventory: Inventory, settings: AnalyzerSettings) -> None:
        self.inventory, self.root = inventory, settings.root_namespace
        self._services: dict[tuple[str, str], list[Destination]] = {}
        self._labelled: dict[tuple[str, str], list[Destination]] = {}
        self._selected: dict[tuple[str, str, frozenset[tuple[str, str]]], bool] = {}
        self._kube: dict[str, list[KubeServiceView]] = defaultdict(list)
        for service in inventory.services:
            self._kube[service.host(settings.cluster_domain)].append(service)

    def _kube_candidates(self, host: str) -> list[KubeServiceView]:
        if not host.startswith("*"):
            return self._kube.get(host, [])
        suffix = host[1:]
        return [s for name, found in self._kube.items() if name.endswith(suffix) for s in found]

    def services(self, host: str, namespace: str) -> list[Destination]:
        key = (host, namespace)
        if key not in self._services:
            everywhere = namespace == self.root
            kube = [s for s in self._kube_candidates(host) if everywhere or visible_in(s.scope, namespace)]
            self._services[key] = [*self.inventory.hosts.visible(host, namespace, everywhere), *kube]
        return self._services[key]

    def labelled(self, host: str, namespace: str) -> list[Destination]:
        """Services whose endpoints subsets filter (not DYNAMIC_DNS, not NONE without selector, not a
        Kubernetes Service without selector)."""
        key = (host, namespace)
        if key not in self._labelled:
            self._labelled[key] = [d for d in self.services(host, namespace) if (
                d.selector is not None if isinstance(d, KubeServiceView) else
                d.resolution != DYNAMIC_DNS and not (d.resolution == NONE and d.selector is None))]
        return self._labelled[key]

    def selects(self, host: str, namespace: str, labels: Mapping[str, str]) -> bool:
        key = (host, namespace, frozenset(labels.items()))
        if key not in self._selected:
            self._selected[key] = any(self._selects(d, labels) for d in self.labelled(host, namespace))
        return self._selected[key]

    def _selects(self, destination: Destination, labels: Mapping[str, str]) -> bool:
        """Whether an endpoint of the service carries `labels`: an inline endpoint, or a WorkloadEntry
        or Pod (with its Node's topology labels) in the service's namespace that its selector selects."""
        if isinstance(destination, ServiceEntryView):
            for endpoint in destination.endpoints:
                own = endpoint_labels(labels_of(endpoint), endpoint)
                if all(own.get(k) == v for k, v in labels.items()):
                    return True
        selector = destination.selector
        if selector is None or any(selector.get(k, v) != v for k, v in labels.items()):
            return False
        wanted, namespace = {**selector, **labels}, destination.item.namespace
        return bool(self.inventory.workload_index.select(namespace, wanted)
                    or self.inventory.pod_index.select(namespace, wanted))


def destination_rule_hosts(inventory: Inventory, settings: AnalyzerSettings) -> Iterator[Result]:
    destinations = _Destinations(inventory, settings)
    for dr in inventory.destination_rules:
        written = as_str(dr.spec.get("host"))
        host = qualify(written, dr.namespace, settings.cluster_domain)
        if wildcard_domain_error(host):
            continue  # I301 already rejects it
        if destinations.services(host, dr.namespace):
            yield from _subsets(dr, host, destinations)
        elif host in settings.kubernetes_services:
            continue
        elif ".svc." in host and not inventory.services:
            yield dr.ident, UNKNOWN_KUBE_HOST.at(("spec", "host"), f"host {written} ({host}) matches no "
                                                 f"ServiceEntry visible in namespace {dr.namespace}; it only "
                                                 "applies if a Kubernetes Service of that name exists")
        else:
            what = "ServiceEntry or Kubernetes Service" if inventory.services else "ServiceEntry"
            yield dr.ident, UNKNOWN_HOST.at(("spec", "host"), f"host {written} matches no {what} visible "
                                            f"in namespace {dr.namespace}; the rule is ignored")


def _subsets(dr: Item, host: str, destinations: _Destinations) -> Iterator[Result]:
    for i, subset in enumerate(as_list(dr.spec.get("subsets"))):
        labels = string_map(as_map(subset).get("labels"))
        if not labels or destinations.selects(host, dr.namespace, labels):
            continue
        services = destinations.labelled(host, dr.namespace)
        if services:
            shown = ", ".join(f"{k}={v}" for k, v in labels.items())
            yield dr.ident, SUBSET_NO_ENDPOINT.at(("spec", "subsets", i, "labels"), (
                f"subset {as_str(as_map(subset).get('name'))!r} ({shown}) selects no endpoint of {host}: neither "
                f"the endpoints of {_names(d.item for d in services)} nor the WorkloadEntries and Pods they "
                "select carry these labels, so its cluster is empty"))


def merged_destination_rules(inventory: Inventory, settings: AnalyzerSettings) -> Iterator[Result]:
    groups: dict[tuple[str, str, frozenset[tuple[str, str]] | None], list[Item]] = defaultdict(list)
    for dr in inventory.destination_rules:
        spec = dr.spec
        selector = (frozenset(string_map(as_map(spec["workloadSelector"]).get("matchLabels")).items())
                    if is_set(spec, "workloadSelector") else None)
        host = qualify(as_str(spec.get("host")), dr.namespace, settings.cluster_domain)
        groups[(dr.namespace, host, selector)].append(dr)
    for (namespace, host, _), rules in groups.items():
        if len({dr.ident for dr in rules}) < 2:
            continue  # one object written twice is A408, not a merge
        for dr in rules:
            others = (r for r in rules if r.ident != dr.ident)
            yield dr.ident, MERGED_DESTINATION_RULES.at(("spec", "host"), (
                f"{dr.ref} shares host {host} in namespace {namespace} with {_names(others)}: Istio merges "
                "them, concatenating subsets (duplicate names dropped) and keeping only the oldest rule's "
                "top-level trafficPolicy"))


def unselected_workloads(inventory: Inventory) -> Iterator[Result]:
    workloads = inventory.workload_index
    selectors = {(se.item.namespace, frozenset(se.selector.items())): se.selector
                 for se in inventory.service_entries if se.selector is not None}
    selectors.update({(s.item.namespace, frozenset(s.selector.items())): s.selector
                      for s in inventory.services if s.selector})  # a Service selects WorkloadEntries too
    selected: set[int] = set()
    for (namespace, _), labels in selectors.items():
        selected |= workloads.select(namespace, labels)
    for i, item in enumerate(workloads.items):
        if i not in selected:
            yield item.ident, UNSELECTED_WORKLOAD.at(("metadata", "name"), (
                f"{item.ref} is selected by no ServiceEntry workloadSelector or Kubernetes Service selector in "
                f"namespace {item.namespace}, so no service sends traffic to it"))


#: `ConvertProtocol`'s protocol names (case-insensitive) and the ports that default to TCP.
_PORT_PROTOCOLS = {"tcp", "udp", "grpc", "grpc-web", "http", "http_proxy", "http2", "https", "tls", "mongo",
                   "redis", "mysql"}
_APP_PROTOCOLS = {"kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"}
_WELL_KNOWN_PORTS = {25, 53, 3306, 27017}
#: Namespaces the port-name analyzer skips (inject.IgnoredNamespaces).
_IGNORED_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}


def _port_protocol_known(port: Mapping[str, Any]) -> bool:
    if as_str(port.get("protocol")).upper() == "UDP":
        return True
    name = as_str(port.get("name"))
    if is_set(port, "appProtocol"):
        name = as_str(port.get("appProtocol"))
        if name in _APP_PROTOCOLS:
            return True
    if name.lower().startswith("grpc-web"):
        return True
    if name.partition("-")[0].lower() in _PORT_PROTOCOLS:
        return True
    return as_int(port.get("port")) in _WELL_KNOWN_PORTS


def port_names(inventory: Inventory) -> Iterator[Result]:
    for service in inventory.services:
        item = service.item
        if item.namespace in _IGNORED_NAMESPACES:
            continue
        for i, port in enumerate(as_list(item.spec.get("ports"))):
            if not is_map(port):
                continue
            name = as_str(port.get("name"))
            if _port_protocol_known(port):
                continue
            yield item.ident, PORT_NAME_CONVENTION.at(("spec", "ports", i, "name"), (
                f"port {port.get('port')} named {name or '(unnamed)'!r} of {item.ref} has no protocol prefix and "
                "no appProtocol: Istio falls back to protocol sniffing for it"))
