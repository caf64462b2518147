"""Who can reach what: the visibility and authorization istiod derives from one environment's objects.

Input: the emitted Istio objects of one environment (plain bodies, as `Artifact.body`; keyed
lists normalised by the diff, `{key: item}`, are read as lists too), the mesh's outbound traffic
policy (ALLOW_ANY | REGISTRY_ONLY), the trust domain and the dataplane (sidecar | ambient).
Output: for a host and a caller (namespace, optional service account) an `Answer`: the verdict

    allowed   the caller reaches the host (path direct, gateway or waypoint)
    blocked   REGISTRY_ONLY and the host is not visible to the caller: Envoy's BlackHoleCluster, 502
    denied    an AuthorizationPolicy on the path refuses the caller: 403 (HTTP) or a reset connection
    bypass    ALLOW_ANY and the host is not visible: PassthroughCluster, straight out, around any
              gateway or waypoint and its policies

with the path (direct, gateway, waypoint, passthrough; none when blocked) and the reasons: each
names the object (Kind/namespace/name) and the field that decided a step. `Mesh.who_can_reach`
asks for every known caller, `Mesh.what_can_reach` for every host. Pure: no I/O, no settings read.

The rules, as Istio documents them:

* exportTo (ServiceEntry, VirtualService, DestinationRule): absent = "*" (meshConfig
  defaultServiceExportTo), "." = the object's namespace, "~" = nobody, else namespace names.
  istio.io/latest/docs/reference/config/networking/service-entry/#ServiceEntry-export_to;
  istio/istio pkg/config/visibility/visibility.go, pilot/pkg/model/push_context.go.
* Sidecar: the one without workloadSelector in the caller's namespace (else the one without
  workloadSelector in the root namespace, istio-system) limits the config the proxy sees to its
  egress hosts "ns/dnsName" ("." the Sidecar's namespace, "*" any, "~" none; dnsName "*" or
  "*.suffix" wildcards), after exportTo; its outboundTrafficPolicy overrides the mesh's.
  istio.io/latest/docs/reference/config/networking/sidecar/#IstioEgressListener and
  #OutboundTrafficPolicy; istio/istio pilot/pkg/model/sidecar.go; host overlap as
  pkg/config/host/name.go Name.Matches.
* REGISTRY_ONLY vs ALLOW_ANY: istio.io/latest/docs/tasks/traffic-management/egress/egress-control/
  (an unknown host gets 502 under REGISTRY_ONLY, passes through under ALLOW_ANY).
* Egress gateway: a VirtualService with gateways [mesh, <gw>] whose mesh route sends the host to
  the gateway's Service; the gateway pods (Gateway.spec.selector) apply the AuthorizationPolicies
  of their namespace (and of the root namespace) whose selector they match.
  istio.io/latest/docs/tasks/traffic-management/egress/egress-gateway/.
* AuthorizationPolicy: DENY first, then with no ALLOW policy the request is allowed, else one ALLOW
  rule must match (from: source.principals "td/ns/N/sa/SA", namespaces; to: operation.hosts,
  ports; when: connection.sni); values match exactly, by prefix ("abc*"), suffix ("*abc") or "*".
  istio.io/latest/docs/reference/config/security/authorization-policy/ and
  istio.io/latest/docs/concepts/security/#authorization-policies.
* Ambient: a ServiceEntry labelled istio.io/use-waypoint goes through that waypoint, which applies
  the AuthorizationPolicies whose targetRefs name the ServiceEntry (or the waypoint's Gateway).
  istio.io/latest/docs/ambient/usage/egress-gateway/, istio.io/latest/docs/ambient/usage/waypoint/.
  Sidecar resources do not apply to ambient workloads; ztunnel forwards to a host it has no
  service for as addressed (istio.io/latest/docs/ambient/architecture/data-plane/), so an
  unregistered host is a bypass there whatever outboundTrafficPolicy says.

Not modelled: Kubernetes Services (only the objects given are known), ports of egress listeners,
request principals, IP blocks, methods and paths (noted in the reasons when a rule has them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshc.model.values import HTTP_FAMILY

Body = Mapping[str, Any]

VERDICTS = ("allowed", "bypass", "denied", "blocked")
PATHS = ("direct", "gateway", "waypoint", "passthrough", "none")
# A caller nobody names: a namespace no object mentions, a service account no policy names.
OTHER = "*other*"
WAYPOINT_LABEL = "istio.io/use-waypoint"
WAYPOINT_NS_LABEL = "istio.io/use-waypoint-namespace"
ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace default


@dataclass(frozen=True)
class Caller:
    namespace: str
    service_account: str | None = None

    def principal(self, trust_domain: str) -> str:
        return f"{trust_domain}/ns/{self.namespace}/sa/{self.service_account or OTHER}"

    def __str__(self) -> str:
        ns = "(any other namespace)" if self.namespace == OTHER else self.namespace
        if self.service_account is None:
            return ns
        return f"{ns} sa {self.service_account}"

    def to_json(self) -> dict[str, Any]:
        return {"namespace": None if self.namespace == OTHER else self.namespace,
                "anyOtherNamespace": self.namespace == OTHER, "serviceAccount": self.service_account}


@dataclass(frozen=True)
class Reason:
    object: str   # Kind/namespace/name, or "mesh" for the mesh-wide settings
    field: str    # the field that decided, e.g. spec.exportTo
    says: str

    def __str__(self) -> str:
        return f"{self.object} {self.field}: {self.says}" if self.field else f"{self.object}: {self.says}"

    def to_json(self) -> dict[str, str]:
        return {"object": self.object, "field": self.field, "says": self.says}


@dataclass(frozen=True)
class Answer:
    host: str
    caller: Caller
    verdict: str
    path: str
    reasons: tuple[Reason, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "caller": self.caller.to_json(), "verdict": self.verdict, "path": self.path,
                "reasons": [r.to_json() for r in self.reasons]}


def _items(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple)) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strs(value: Any) -> list[str]:
    return [str(v) for v in _items(value)]


def covers(pattern: str, host: str) -> bool:
    """A host name pattern ("*", "*.suffix" or a name) covers a host (pkg/config/host/name.go)."""
    pattern, host = pattern.lower(), host.lower()
    if pattern == host or pattern == "*":
        return True
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])  # "*.a.com" covers "b.a.com" and "*.b.a.com", not "a.com"
    return False


def overlap(a: str, b: str) -> bool:
    """Name.Matches: either covers the other."""
    return covers(a, b) or covers(b, a)


def value_matches(pattern: str, value: str) -> bool:
    """AuthorizationPolicy string match: exact, "*", prefix "abc*", suffix "*abc"."""
    if pattern == "*" or pattern == value:
        return True
    if pattern.endswith("*") and value.startswith(pattern[:-1]):
        return True
    return pattern.startswith("*") and value.endswith(pattern[1:])


@dataclass
class _Obj:
    kind: str
    namespace: str
    name: str
    body: Body

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def spec(self) -> Mapping[str, Any]:
        return _map(self.body.get("spec"))

    @property
    def labels(self) -> Mapping[str, Any]:
        return _map(_map(self.body.get("metadata")).get("labels"))


def _export_ok(obj: _Obj, caller_ns: str) -> tuple[bool, Reason]:
    values = _strs(obj.spec.get("exportTo"))
    if not values:
        return True, Reason(obj.id, "spec.exportTo", "unset: exported to every namespace (default \"*\")")
    shown = "[" + ", ".join(values) + "]"
    if "~" in values:
        return False, Reason(obj.id, "spec.exportTo", f"{shown}: exported to no namespace")
    if "*" in values:
        return True, Reason(obj.id, "spec.exportTo", f"{shown}: exported to every namespace")
    if caller_ns in values or ("." in values and caller_ns == obj.namespace):
        return True, Reason(obj.id, "spec.exportTo", f"{shown}: exported to {caller_ns}")
    return False, Reason(obj.id, "spec.exportTo",
                         f"{shown}: not exported to {Caller(caller_ns)}" + (
                             f" (\".\" is {obj.namespace})" if "." in values else ""))


@dataclass(frozen=True)
class Mesh:
    """One environment's objects, indexed once; ask it `reach`, `who_can_reach`, `what_can_reach`."""

    objects: Sequence[Body]
    outbound_policy: str = "ALLOW_ANY"
    trust_domain: str = "cluster.local"
    dataplane: str = "sidecar"
    root_namespace: str = ROOT_NAMESPACE
    known: Sequence[Caller] = ()  # callers known besides the objects (env.yaml namespaces: and their accounts)
    _by_kind: dict[str, list[_Obj]] = field(default_factory=dict, init=False, repr=False, compare=False)
    # host (lower case) -> (ServiceEntry, its host as written); wildcard hosts apart, checked one by one
    _exact: dict[str, list[tuple[_Obj, str]]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _wild: list[tuple[_Obj, str]] = field(default_factory=list, init=False, repr=False, compare=False)
    _hosts: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    _vs_exact: dict[str, list[_Obj]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _vs_wild: list[tuple[_Obj, str]] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for body in self.objects:
            if not isinstance(body, Mapping):
                continue
            meta = _map(body.get("metadata"))
            obj = _Obj(str(body.get("kind") or ""), str(meta.get("namespace") or "default"),
                       str(meta.get("name") or ""), body)
            kind = obj.kind
            if kind == "Gateway" and not str(body.get("apiVersion", "networking.istio.io")).startswith(
                    "networking.istio.io"):
                kind = "K8sGateway"
            self._by_kind.setdefault(kind, []).append(obj)
        for objs in self._by_kind.values():
            objs.sort(key=lambda o: (o.namespace, o.name))
        names: set[str] = set()
        for o in self._of("ServiceEntry"):
            for h in _strs(o.spec.get("hosts")):
                names.add(h)
                if h.startswith("*"):
                    self._wild.append((o, h))
                else:
                    self._exact.setdefault(h.lower(), []).append((o, h))
        for o in self._of("VirtualService"):
            for h in _strs(o.spec.get("hosts")):
                names.add(h)
                if h.startswith("*"):
                    self._vs_wild.append((o, h))
                else:
                    self._vs_exact.setdefault(h.lower(), []).append(o)
        self._hosts.extend(sorted(names))

    def _of(self, kind: str) -> list[_Obj]:
        return self._by_kind.get(kind, [])

    # --- what is known --------------------------------------------------------------------------

    def hosts(self) -> list[str]:
        """Every host a ServiceEntry or VirtualService of the environment names."""
        return list(self._hosts)

    def knows(self, host: str) -> bool:
        return bool(self._entries(host) or self._virtual_services(host))

    def _virtual_services(self, host: str) -> list[_Obj]:
        found = {id(o): o for o in self._vs_exact.get(host.lower(), ())}
        found.update((id(o), o) for o, h in self._vs_wild if covers(h, host))
        return sorted(found.values(), key=lambda o: (o.namespace, o.name))

    def namespaces(self) -> list[str]:
        """Every namespace the objects mention: their own, exportTo, Sidecar hosts, policy sources."""
        found: set[str] = set()
        for objs in self._by_kind.values():
            for o in objs:
                found.add(o.namespace)
                found.update(v for v in _strs(o.spec.get("exportTo")) if v not in (".", "*", "~"))
        for o in self._of("Sidecar"):
            for listener in _items(o.spec.get("egress")):
                found.update(h.split("/", 1)[0] for h in _strs(_map(listener).get("hosts")) if "/" in h)
        for caller in (*self._policy_callers(), *self.known):
            found.add(caller.namespace)
        return sorted(n for n in found if n and n not in (".", "*", "~") and "*" not in n)

    def _policy_callers(self) -> set[Caller]:
        out: set[Caller] = set()
        for o in self._of("AuthorizationPolicy"):
            for rule in _items(o.spec.get("rules")):
                for src in _items(_map(rule).get("from")):
                    source = _map(_map(src).get("source"))
                    out.update(Caller(n) for n in _strs(source.get("namespaces")) if "*" not in n)
                    for p in _strs(source.get("principals")):
                        parts = p.split("/")
                        if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa" and "*" not in parts[2]:
                            out.add(Caller(parts[2], parts[4] if "*" not in parts[4] else None))
        return out

    def callers(self) -> list[Caller]:
        """Each known namespace, each service account a policy names or `known` lists, and any
        other namespace."""
        out = {Caller(n) for n in self.namespaces()} | self._policy_callers() | set(self.known)
        return sorted(out, key=lambda c: (c.namespace, c.service_account or "")) + [Caller(OTHER)]

    # --- the questions ----------------------------------------------------------------------------

    def who_can_reach(self, host: str) -> list[Answer]:
        return [self.reach(host, c) for c in self.callers()]

    def what_can_reach(self, namespace: str, service_account: str | None = None) -> list[Answer]:
        caller = Caller(namespace, service_account)
        return [self.reach(h, caller) for h in self.hosts()]

    def reach(self, host: str, caller: Caller) -> Answer:
        if self.dataplane == "ambient":
            return self._ambient(host, caller)
        return self._sidecar_mode(host, caller)

    # --- sidecar mode -----------------------------------------------------------------------------

    def _sidecar(self, ns: str) -> _Obj | None:
        """The Sidecar without workloadSelector of the namespace, else of the root namespace."""
        for where in (ns, self.root_namespace):
            for o in self._of("Sidecar"):
                if o.namespace == where and not o.spec.get("workloadSelector"):
                    return o
        return None

    @staticmethod
    def _imports(sidecar: _Obj, obj_ns: str, names: Iterable[str]) -> str | None:
        """The egress host entry of the Sidecar that imports config of namespace obj_ns for every
        one of `names` (hosts that must all overlap the entry's dnsName), or None."""
        wanted = list(names)
        for listener in _items(sidecar.spec.get("egress")):
            for entry in _strs(_map(listener).get("hosts")):
                ns, _, dns = entry.partition("/")
                if not dns:
                    continue
                if ns == "~" or (ns not in ("*", ".") and ns != obj_ns) or (ns == "." and sidecar.namespace != obj_ns):
                    continue
                if all(overlap(dns, n) for n in wanted):
                    return entry
        return None

    def _visible(self, obj: _Obj, names: Sequence[str], caller: Caller, sidecar: _Obj | None,
                 reasons: list[Reason]) -> bool:
        ok, why = _export_ok(obj, caller.namespace)
        reasons.append(why)
        if not ok or sidecar is None:
            return ok
        entry = self._imports(sidecar, obj.namespace, names)
        if entry is None:
            hosts = [h for listener in _items(sidecar.spec.get("egress")) for h in _strs(_map(listener).get("hosts"))]
            reasons.append(Reason(sidecar.id, "spec.egress[].hosts",
                                  f"no entry imports {obj.namespace}/{names[0]} ({', '.join(hosts) or 'none'})"))
            return False
        reasons.append(Reason(sidecar.id, "spec.egress[].hosts", f"{entry} imports {obj.namespace}/{names[0]}"))
        return True

    def _entries(self, host: str) -> list[tuple[_Obj, str]]:
        """The ServiceEntries with a host covering `host`, with that host."""
        found = list(self._exact.get(host.lower(), ())) + [(o, h) for o, h in self._wild if covers(h, host)]
        return sorted(found, key=lambda e: (e[0].namespace, e[0].name))

    def _policy(self, caller: Caller, sidecar: _Obj | None) -> tuple[str, Reason]:
        mode = _map(sidecar.spec.get("outboundTrafficPolicy")).get("mode") if sidecar is not None else None
        if sidecar is not None and mode:
            return str(mode), Reason(sidecar.id, "spec.outboundTrafficPolicy.mode",
                                     f"{mode} for {Caller(caller.namespace)} (overrides the mesh's)")
        return self.outbound_policy, Reason("mesh", "outboundTrafficPolicy.mode", self.outbound_policy)

    def _sidecar_mode(self, host: str, caller: Caller) -> Answer:
        reasons: list[Reason] = []
        sidecar = self._sidecar(caller.namespace)
        if sidecar is not None:
            reasons.append(Reason(sidecar.id, "", f"applies to the proxies of {Caller(caller.namespace)}"
                                  + (" (root namespace default)" if sidecar.namespace != caller.namespace else "")))
        policy, why = self._policy(caller, sidecar)
        entries = self._entries(host)
        if not entries:
            reasons.append(Reason("mesh", "", f"no ServiceEntry has host {host}"))
        visible = [(o, h) for o, h in entries if self._visible(o, [h, host] if h != host else [h], caller,
                                                               sidecar, reasons)]
        if not visible:
            return self._unregistered(host, caller, policy, why, reasons)
        route = self._gateway_route(host, caller, sidecar, reasons)
        if route is None:
            reasons.append(Reason(visible[0][0].id, "", "the caller's proxy connects to the host itself"))
            return Answer(host, caller, "allowed", "direct", tuple(reasons))
        gateway, gw_host = route
        if gateway is None:
            return Answer(host, caller, "blocked" if policy == "REGISTRY_ONLY" else "bypass",
                          "none" if policy == "REGISTRY_ONLY" else "passthrough", tuple(reasons + [why]))
        policies = self._gateway_policies(gateway)
        verdict = self._authorize(policies, caller, host, self._ports(host), reasons,
                                  f"the gateway pods ({gateway.id})")
        return Answer(host, caller, verdict, "gateway", tuple(reasons))

    def _unregistered(self, host: str, caller: Caller, policy: str, why: Reason, reasons: list[Reason]) -> Answer:
        reasons.append(why)
        if policy == "REGISTRY_ONLY":
            reasons.append(Reason("mesh", "", f"{host} is not in {Caller(caller.namespace)}'s registry: "
                                              "BlackHoleCluster, 502"))
            return Answer(host, caller, "blocked", "none", tuple(reasons))
        around = [vs.id for vs in self._virtual_services(host) if len(_strs(vs.spec.get("gateways"))) > 1]
        past = f", around {', '.join(around)} and the gateway's policies" if around else ""
        reasons.append(Reason("mesh", "", f"{host} is not in {Caller(caller.namespace)}'s registry: "
                                          f"PassthroughCluster{past}"))
        return Answer(host, caller, "bypass", "passthrough", tuple(reasons))

    def _tcp_only(self, host: str) -> bool:
        """Whether every port of the host is carried as TCP (no HTTP port): then istiod's authz
        builder drops HTTP-only fields from a DENY rule and skips an ALLOW rule that has them
        (pilot/pkg/security/authz/model: "must not be used in TCP")."""
        protocols = {str(_map(p).get("protocol", "")).upper() for o, _ in self._entries(host)
                     for p in _items(o.spec.get("ports"))}
        return bool(protocols) and not protocols & HTTP_FAMILY

    def _ports(self, host: str) -> set[int]:
        out: set[int] = set()
        for o, _ in self._entries(host):
            for p in _items(o.spec.get("ports")):
                number = _map(p).get("number")
                if isinstance(number, int):
                    out.add(number)
        return out

    def _gateway_route(self, host: str, caller: Caller, sidecar: _Obj | None,
                       reasons: list[Reason]) -> tuple[_Obj | None, str] | None:
        """A VirtualService bound to mesh and a gateway, visible to the caller, whose mesh route sends
        `host` to another host (the gateway's Service): (the Gateway or None when the caller cannot
        see the gateway's Service or the Gateway is not there, that host); None without such a route."""
        for vs in self._virtual_services(host):
            gateways = _strs(vs.spec.get("gateways"))
            vs_host = next((h for h in _strs(vs.spec.get("hosts")) if covers(h, host)), None)
            if vs_host is None or "mesh" not in gateways or len(gateways) < 2:
                continue
            target = self._mesh_destination(vs, host)
            if target is None:
                continue
            dest, where = target
            seen: list[Reason] = []
            if not self._visible(vs, [vs_host], caller, sidecar, seen):
                reasons.extend(seen)
                reasons.append(Reason(vs.id, "spec.gateways", "not applied to this caller: its traffic does "
                                                              "not go through the gateway"))
                continue
            reasons.extend(seen)
            reasons.append(Reason(vs.id, where, f"mesh route sends {host} to {dest}"))
            gw_ns = dest.split(".")[1] if dest.count(".") >= 1 else vs.namespace
            if sidecar is not None and self._imports(sidecar, gw_ns, [dest]) is None:
                reasons.append(Reason(sidecar.id, "spec.egress[].hosts",
                                      f"no entry imports {gw_ns}/{dest}: the gateway's Service is unknown"))
                return None, dest
            if sidecar is not None:
                entry = self._imports(sidecar, gw_ns, [dest])
                reasons.append(Reason(sidecar.id, "spec.egress[].hosts",
                                      f"{entry} imports the gateway's Service {gw_ns}/{dest}"))
            name = next(g for g in gateways if g != "mesh")
            gw_ns_name, _, gw_name = name.rpartition("/")
            gateway = next((g for g in self._of("Gateway")
                            if g.name == gw_name and g.namespace == (gw_ns_name or vs.namespace)), None)
            if gateway is None:
                reasons.append(Reason(vs.id, "spec.gateways", f"Gateway {name} is not among the objects"))
                return None, dest
            reasons.append(Reason(gateway.id, "spec.selector", "selects the gateway pods " + _labels(
                gateway.spec.get("selector"))))
            return gateway, dest
        return None

    @staticmethod
    def _mesh_destination(vs: _Obj, host: str) -> tuple[str, str] | None:
        for proto in ("http", "tls", "tcp"):
            for i, route in enumerate(_items(vs.spec.get(proto))):
                matches = _items(_map(route).get("match"))
                gws = [g for m in matches for g in _strs(_map(m).get("gateways"))]
                if gws and "mesh" not in gws:
                    continue
                for j, dest in enumerate(_items(_map(route).get("route"))):
                    d = str(_map(_map(dest).get("destination")).get("host", ""))
                    if d and not covers(d, host) and not covers(host, d):
                        return d, f"spec.{proto}[{i}].route[{j}].destination.host"
        return None

    def _gateway_policies(self, gateway: _Obj) -> list[_Obj]:
        pods = {str(k): str(v) for k, v in _map(gateway.spec.get("selector")).items()}
        out = []
        for ap in self._of("AuthorizationPolicy"):
            if ap.namespace not in (gateway.namespace, self.root_namespace) or ap.spec.get("targetRefs") \
                    or ap.spec.get("targetRef"):
                continue
            want = _map(_map(ap.spec.get("selector")).get("matchLabels"))
            if all(pods.get(str(k)) == str(v) for k, v in want.items()):
                out.append(ap)
        return sorted(out, key=lambda a: (a.namespace, a.name))

    # --- ambient ----------------------------------------------------------------------------------

    def _ambient(self, host: str, caller: Caller) -> Answer:
        reasons: list[Reason] = [Reason("mesh", "dataplane", "ambient: ztunnel carries the caller's traffic "
                                                              "(Sidecar resources do not apply)")]
        entries = self._entries(host)
        visible = [(o, h) for o, h in entries if self._visible(o, [h], caller, None, reasons)]
        if not visible:
            reasons.append(Reason("mesh", "", f"{host} is not a service {Caller(caller.namespace)} knows: ztunnel "
                                              "forwards it as addressed (passthrough)"))
            return Answer(host, caller, "bypass", "passthrough", tuple(reasons))
        se = visible[0][0]
        waypoint = se.labels.get(WAYPOINT_LABEL)
        if not waypoint or waypoint == "none":
            reasons.append(Reason(se.id, f"metadata.labels[{WAYPOINT_LABEL}]",
                                  "unset: ztunnel connects to the host itself, no waypoint applies policies"))
            return Answer(host, caller, "allowed", "direct", tuple(reasons))
        wns = str(se.labels.get(WAYPOINT_NS_LABEL) or se.namespace)
        reasons.append(Reason(se.id, f"metadata.labels[{WAYPOINT_LABEL}]", f"bound to waypoint {wns}/{waypoint}"))
        policies = []
        for ap in self._of("AuthorizationPolicy"):
            for ref in _items(ap.spec.get("targetRefs")) + ([ap.spec["targetRef"]] if ap.spec.get("targetRef") else []):
                ref = _map(ref)
                kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
                if (kind == "ServiceEntry" and name == se.name and ap.namespace == se.namespace) or \
                        (kind == "Gateway" and name == str(waypoint) and ap.namespace == wns):
                    policies.append(ap)
                    reasons.append(Reason(ap.id, "spec.targetRefs", f"names {kind} {name}: applied by the waypoint"))
                    break
        verdict = self._authorize(sorted(policies, key=lambda a: (a.namespace, a.name)), caller, host,
                                  self._ports(host), reasons, f"waypoint {wns}/{waypoint}")
        return Answer(host, caller, verdict, "waypoint", tuple(reasons))

    # --- authorization ----------------------------------------------------------------------------

    def _authorize(self, policies: list[_Obj], caller: Caller, host: str, ports: set[int],
                   reasons: list[Reason], where: str) -> str:
        principal = caller.principal(self.trust_domain)
        tcp = self._tcp_only(host)
        denies = [p for p in policies if str(p.spec.get("action", "ALLOW")) == "DENY"]
        allows = [p for p in policies if str(p.spec.get("action", "ALLOW")) == "ALLOW"]
        for ap in denies:
            for i, rule in enumerate(_items(ap.spec.get("rules"))):
                ok, why = _rule(_map(rule), caller, principal, host, ports, "DENY" if tcp else "")
                if ok:
                    reasons.append(Reason(ap.id, f"spec.rules[{i}]", f"DENY matches: {why}"))
                    return "denied"
        if not allows:
            reasons.append(Reason("mesh", "", f"no ALLOW AuthorizationPolicy applies to {where}: allowed"))
            return "allowed"
        misses = []
        for ap in allows:
            rules = _items(ap.spec.get("rules"))
            if not rules:
                misses.append(Reason(ap.id, "spec.rules", "none: allows nothing"))
            for i, rule in enumerate(rules):
                ok, why = _rule(_map(rule), caller, principal, host, ports, "ALLOW" if tcp else "")
                if ok:
                    reasons.append(Reason(ap.id, f"spec.rules[{i}]", f"ALLOW matches: {why}"))
                    return "allowed"
                misses.append(Reason(ap.id, f"spec.rules[{i}]", f"does not match: {why}"))
        reasons.extend(misses)
        reasons.append(Reason("mesh", "", f"ALLOW policies apply to {where} and none matches {_shown(principal)}: "
                                          "denied (403, or a reset connection for TCP)"))
        return "denied"


def _labels(value: Any) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(_map(value).items())) + "}"


def _any(patterns: list[str], value: str) -> bool:
    return any(value_matches(p, value) for p in patterns)


_HTTP_ONLY = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")


def _rule(rule: Mapping[str, Any], caller: Caller, principal: str, host: str, ports: set[int],
          tcp_action: str = "") -> tuple[bool, str]:
    """Whether one AuthorizationPolicy rule matches the caller's requests to host; and why (or why
    not). `tcp_action` (the host is carried as TCP only): an ALLOW rule with HTTP-only fields
    matches nothing, a DENY rule is matched without them, as istiod builds them for TCP chains."""
    said: list[str] = []
    http_only = sorted({k for op in _items(rule.get("to")) for k in _map(_map(op).get("operation")) if k in _HTTP_ONLY})
    if tcp_action and http_only:
        if tcp_action == "ALLOW":
            return False, f"HTTP-only {', '.join(http_only)} on a TCP connection: istiod leaves the ALLOW rule out"
        rule = {**rule, "to": [{"operation": {k: v for k, v in _map(_map(op).get("operation")).items()
                                              if k not in _HTTP_ONLY}} for op in _items(rule.get("to"))]}
        said.append(f"HTTP-only {', '.join(http_only)} dropped on a TCP connection (istiod)")
    sources = _items(rule.get("from"))
    if sources:
        hit = None
        for k, src in enumerate(sources):
            source = _map(_map(src).get("source"))
            ok, why = _source(source, caller, principal)
            if ok:
                hit = f"from[{k}] {why}"
                break
            said.append(f"from[{k}] {why}")
        if hit is None:
            return False, "; ".join(said)
        said = [hit]
    operations = _items(rule.get("to"))
    if operations:
        hit = None
        misses = []
        for k, op in enumerate(operations):
            ok, why = _operation(_map(_map(op).get("operation")), host, ports)
            if ok:
                hit = f"to[{k}] {why}"
                break
            misses.append(f"to[{k}] {why}")
        if hit is None:
            return False, "; ".join(misses)
        said.append(hit)
    for k, cond in enumerate(_items(rule.get("when"))):
        ok, why = _condition(_map(cond), caller, principal, host, ports)
        if not ok:
            return False, f"when[{k}] {why}"
        said.append(f"when[{k}] {why}")
    return True, "; ".join(said) or "an empty rule matches every request"


def _source(source: Mapping[str, Any], caller: Caller, principal: str) -> tuple[bool, str]:
    said = []
    ns = caller.namespace
    for key, value, positive in (("principals", principal, True), ("notPrincipals", principal, False),
                                 ("namespaces", ns, True), ("notNamespaces", ns, False)):
        patterns = _strs(source.get(key))
        if not patterns:
            continue
        if _any(patterns, value) != positive:
            return False, f"source.{key} [{', '.join(patterns)}] " + ("excludes" if not positive else "lacks") + \
                f" {_shown(value)}"
        said.append(f"source.{key} [{', '.join(patterns)}]")
    others = sorted(k for k in source if k not in ("principals", "notPrincipals", "namespaces", "notNamespaces"))
    if others:
        said.append(f"({', '.join(others)} not modelled: assumed to match)")
    return True, " ".join(said) or "any source"


def _operation(op: Mapping[str, Any], host: str, ports: set[int]) -> tuple[bool, str]:
    said = []
    hosts, not_hosts = _strs(op.get("hosts")), _strs(op.get("notHosts"))
    if hosts and not any(value_matches(p.lower(), host.lower()) for p in hosts):
        return False, f"operation.hosts [{', '.join(hosts)}] lack {host}"
    if not_hosts and any(value_matches(p.lower(), host.lower()) for p in not_hosts):
        return False, f"operation.notHosts [{', '.join(not_hosts)}] exclude {host}"
    if hosts:
        said.append(f"operation.hosts [{', '.join(hosts)}]")
    wanted = _strs(op.get("ports"))
    if wanted:
        if ports and not any(p.isdigit() and int(p) in ports for p in wanted):
            return False, f"operation.ports [{', '.join(wanted)}] hold none of {host}'s ports"
        said.append(f"operation.ports [{', '.join(wanted)}]")
    others = sorted(k for k in op if k in ("methods", "paths", "notMethods", "notPaths", "notPorts"))
    if others:
        said.append(f"(only some requests: {', '.join(others)})")
    return True, " ".join(said) or "any operation"


def _condition(cond: Mapping[str, Any], caller: Caller, principal: str, host: str,
               ports: set[int]) -> tuple[bool, str]:
    key = str(cond.get("key", ""))
    values, not_values = _strs(cond.get("values")), _strs(cond.get("notValues"))
    subject = {"connection.sni": host, "source.namespace": caller.namespace, "source.principal": principal}.get(key)
    if key == "destination.port":
        hit = not ports or any(v.isdigit() and int(v) in ports for v in values)
        return hit, f"{key} [{', '.join(values)}]" + ("" if hit else " holds none of the host's ports")
    if subject is None:
        return True, f"{key} not modelled: assumed to match"
    if values and not _any(values, subject):
        return False, f"{key} [{', '.join(values)}] lacks {_shown(subject)}"
    if not_values and _any(not_values, subject):
        return False, f"{key} notValues [{', '.join(not_values)}] exclude {_shown(subject)}"
    return True, f"{key} [{', '.join(values or not_values)}]"


def _shown(value: str) -> str:
    return value.replace(f"sa/{OTHER}", "sa/(any other)").replace(OTHER, "(any other namespace)")


def reach(objects: Sequence[Body], host: str, caller: Caller, *, outbound_policy: str = "ALLOW_ANY",
          trust_domain: str = "cluster.local", dataplane: str = "sidecar") -> Answer:
    """One answer, for a one-off question (build a `Mesh` to ask many)."""
    return Mesh(objects, outbound_policy, trust_domain, dataplane).reach(host, caller)
